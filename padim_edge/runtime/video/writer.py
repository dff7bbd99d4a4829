"""What a video run writes as it goes: the per-frame JSON lines, and the annotated video (--video-out)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

import numpy as np

from padim_edge.runtime.video.errors import VideoError
from padim_edge.runtime.video.opencv import load_cv2

#: ``--video-out`` suffix -> OpenCV FourCC of the codec written.
CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "MJPG"}
#: Frame rate written to an annotated video when the source does not say its own.
FALLBACK_FPS = 25.0
#: The JSON lines' file in ``--output``.
FRAMES_FILE = "frames.jsonl"


class FrameLines:
    """One JSON line per frame, flushed per batch: to a stream (default stdout), or to ``frames.jsonl``
    in a folder once :meth:`open` is called.

    Args:
        results: The stream (``None``: ``sys.stdout`` as it is now).
    """

    def __init__(self, results: IO[str] | None = None) -> None:
        self.stream: IO[str] = sys.stdout if results is None else results
        self.file: IO[str] | None = None

    def open(self, folder: Path) -> None:
        """Write to ``folder/frames.jsonl`` instead (the folder is created)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.stream = self.file = open(folder / FRAMES_FILE, "w", encoding="utf-8")  # noqa: SIM115

    def write(self, record: dict[str, Any]) -> None:
        """One frame's line."""
        self.stream.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        """Make the lines written so far visible (once per batch)."""
        self.stream.flush()

    def close(self) -> None:
        """Flush, and close the file if one was opened (call it on every exit path)."""
        self.stream.flush()
        if self.file is not None:
            self.file.close()


class AnnotatedVideo:
    """Writes each scored frame's overlay (the model's view, heat map, score, colour bar) to a video.

    Opened at the first frame (its size is the overlay's). Frames that failed are not written.
    """

    def __init__(self, path: Path, info: Any, fps: float) -> None:
        from padim_edge.geometry import Geometry
        from padim_edge.visualize import colour_scale

        if path.suffix.lower() not in CODECS:
            raise VideoError(
                f"--video-out {path}: unknown video type {path.suffix!r}; use one of "
                f"{', '.join(sorted(CODECS))}"
            )
        self.cv2 = load_cv2()
        self.path, self.fps = path, fps
        self.geometry = Geometry(info.resize, info.crop)
        self.scale = colour_scale(info)
        self.labelled = info.threshold is not None
        self.writer: Any = None
        self.size: tuple[int, int] | None = None
        self.count = 0

    def add(self, image: np.ndarray, pred: Any) -> None:
        from padim_edge.visualize import ColourScale, annotated_overlay

        if self.scale is None:  # no training scores in the model: fix the scale on the first frame
            low = float(np.min(pred.anomaly_map))
            self.scale = ColourScale(low, max(2.0 * float(pred.score), low + 1e-6), "the first frame's range")
        label = ("ANOMALOUS" if pred.is_anomalous else "ok") if self.labelled else None
        view = self.geometry.image_view(image)
        picture = annotated_overlay(
            view, np.asarray(pred.anomaly_map, np.float32), self.scale, score=float(pred.score), label=label
        )
        cv2 = self.cv2
        if self.writer is None:
            self.size = (picture.shape[1], picture.shape[0])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*CODECS[self.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise VideoError(f"--video-out {self.path}: OpenCV cannot write this file (folder, codec)")
        self.writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        self.count += 1

    def close(self) -> None:
        """Finish the file (its index is written now: call it on every exit path)."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
