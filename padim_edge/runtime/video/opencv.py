"""OpenCV, the decoder (the ``[video]`` extra): importing it, and what its frames and build need."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np


def load_cv2() -> Any:
    """Import OpenCV, or fail in one line naming the extra to install.

    OpenCV's and FFmpeg's own log lines (a timeout, a damaged JPEG) are silenced unless
    ``OPENCV_LOG_LEVEL`` / ``OPENCV_FFMPEG_LOGLEVEL`` are set: the per-frame error says what happened.

    Raises:
        padim_edge.extras.MissingExtraError: OpenCV is not installed.
    """
    from padim_edge.extras import require

    require("padim-predict --video", "video")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


def to_rgb(cv2: Any, image: np.ndarray | None, index: int) -> tuple[np.ndarray | None, str | None]:
    """OpenCV's decoded frame (BGR, or gray / BGRA from some cameras) as uint8 RGB, or why it cannot be."""
    if image is None or image.size == 0:
        return None, f"frame {index} could not be decoded"
    if image.dtype != np.uint8:
        return None, f"frame {index} has {image.dtype} pixels; only 8-bit video is scored"
    channels = 1 if image.ndim == 2 else image.shape[2]
    codes = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}
    if image.ndim not in (2, 3) or channels not in codes:
        return None, f"frame {index} has shape {list(image.shape)}; expected a gray, BGR or BGRA image"
    return cv2.cvtColor(image, codes[channels]), None


def has_gstreamer(cv2: Any) -> bool:
    """Whether this OpenCV was built with its GStreamer backend (JetPack's is; pip's wheels are not)."""
    found = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(found) and found.group(1).upper() == "YES"
