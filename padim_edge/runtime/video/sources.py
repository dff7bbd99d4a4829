"""Opening a ``--video`` SOURCE with OpenCV: a file, a camera index, an RTSP/HTTP URL or a GStreamer
pipeline, and decoding its frames in order."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from padim_edge.runtime.video.errors import VideoError
from padim_edge.runtime.video.frame import Frame
from padim_edge.runtime.video.opencv import has_gstreamer, load_cv2, to_rgb

#: Seconds a URL may take to answer (open) and, once open, to deliver a frame (read).
DEFAULT_TIMEOUT_S = 10.0
#: Consecutive undecodable frames after which a file is given up as corrupt.
MAX_BAD_FRAMES = 25
#: URL schemes opened with FFmpeg's network timeouts.
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


@dataclass(frozen=True)
class SourceSpec:
    """What a ``--video`` SOURCE string names.

    Attributes:
        kind: ``file``, ``camera``, ``url`` or ``gstreamer``.
        target: The path or URL or pipeline as given, or the camera index.
        live: Whether frames come at the source's pace (drop when behind) rather than on demand.
    """

    kind: str
    target: str | int
    live: bool

    @property
    def name(self) -> str:
        """How messages name the source."""
        return f"camera {self.target}" if self.kind == "camera" else f"{self.kind} {self.target}"


def parse_source(source: str) -> SourceSpec:
    """Classify a SOURCE: a camera index (``0``), a URL (``rtsp://``, ``http://``...), a GStreamer
    pipeline (contains ``!``), else a video file."""
    text = source.strip()
    if text.isdigit():
        return SourceSpec("camera", int(text), True)
    if _URL.match(text) and not text.lower().startswith("file://"):
        return SourceSpec("url", text, True)
    if "!" in text:
        return SourceSpec("gstreamer", text, True)
    return SourceSpec("file", text[7:] if text.lower().startswith("file://") else text, False)


class OpenCVSource:
    """Frames from OpenCV (``cv2.VideoCapture``) of a file, camera, URL or GStreamer pipeline.

    Args:
        source: The SOURCE string (see :func:`parse_source`).
        timeout: Seconds a URL may take to open, and to deliver each frame once open.
        live: Override whether the source is live (default: files are not, the rest are).

    Raises:
        VideoError: The source does not exist, cannot be opened, or did not answer within ``timeout``.
    """

    def __init__(self, source: str, *, timeout: float = DEFAULT_TIMEOUT_S, live: bool | None = None) -> None:
        self.cv2 = cv2 = load_cv2()
        self.spec = spec = parse_source(source)
        self.name = spec.name
        self.live = spec.live if live is None else live
        self.notes: list[str] = []
        if spec.kind == "file" and not Path(str(spec.target)).is_file():
            raise VideoError(f"video file not found: {spec.target}")
        if spec.kind == "gstreamer" and not has_gstreamer(cv2):
            raise VideoError(
                f"{source!r} looks like a GStreamer pipeline ('!'), but this OpenCV ({cv2.__version__}) has "
                "no GStreamer backend (pip's opencv-python-headless wheels have none; JetPack's OpenCV has "
                "one): use an OpenCV built with GStreamer, or give a file, camera index or URL"
            )
        self.capture = self._open(timeout)
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: float | None = fps if math.isfinite(fps) and 0 < fps < 1000 else None
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count: int | None = count if count > 0 and spec.kind == "file" else None

    def _open(self, timeout: float) -> Any:
        cv2, spec = self.cv2, self.spec
        ms = int(timeout * 1000)
        start = time.monotonic()
        box: list[Any] = []

        def open_capture() -> None:
            if spec.kind == "url":
                params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
                box.append(cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, params))
            elif spec.kind == "gstreamer":
                box.append(cv2.VideoCapture(spec.target, cv2.CAP_GSTREAMER))
            else:
                box.append(cv2.VideoCapture(spec.target))

        # FFmpeg honours the timeout for URLs; the thread bounds the wait for any backend that would not
        opener = threading.Thread(target=open_capture, name="padim-video-open", daemon=True)
        opener.start()
        opener.join(timeout + 5.0)
        waited = time.monotonic() - start
        if not box or not box[0].isOpened():
            if box:
                box[0].release()
            if spec.kind == "url" and waited >= 0.9 * timeout:
                raise VideoError(
                    f"{spec.target} did not answer within {timeout:g} s (--timeout): check the address and "
                    "that the stream is running"
                )
            raise VideoError(_open_failure(spec))
        return box[0]

    def frames(self, every: int = 1) -> Iterator[Frame]:
        """Decode frames in order, yielding every ``every``-th frame position (others are only grabbed).

        An undecodable frame of a file is yielded with its error and reading goes on; a live source
        that stops delivering (camera unplugged, stream ended, read timeout) raises.

        Raises:
            VideoError: A live source stopped, or a file gave :data:`MAX_BAD_FRAMES` bad frames in a row.
        """
        cv2, capture = self.cv2, self.capture
        start = time.monotonic()
        index, bad = 0, 0
        pending: list[Frame] = []  # failed frames of a file, yielded once a later frame decodes
        while True:
            if not capture.grab():
                if self.live:
                    raise VideoError(
                        f"{self.name} stopped delivering frames after {index} (disconnected, the stream "
                        "ended, or no frame within --timeout)"
                    )
                if self.frame_count is None or index >= self.frame_count:
                    break  # the end of the file
                bad += 1
                if bad > MAX_BAD_FRAMES:
                    break
                if index % every == 0:
                    reason = f"frame {index} could not be decoded (corrupt or missing data)"
                    pending.append(Frame(index, self._time(index, start, None), None, reason))
                index += 1
                continue
            yield from pending
            pending, bad = [], 0
            if index % every == 0:
                ok, image = capture.retrieve()
                stamp = self._time(index, start, capture.get(cv2.CAP_PROP_POS_MSEC))
                rgb, error = to_rgb(cv2, image if ok else None, index)
                yield Frame(index, stamp, rgb, error)
            index += 1
        if bad > MAX_BAD_FRAMES:
            yield from pending
            raise VideoError(
                f"{self.name}: {MAX_BAD_FRAMES} frames in a row from frame {index - bad + 1} could not be "
                "decoded; giving up (corrupt file)"
            )
        if pending:  # frames the header announces that never decoded: a truncated or damaged file
            self.notes.append(
                f"{self.name} ended after {index - bad} frames; its header announces "
                f"{self.frame_count} (truncated or damaged file)"
            )

    def _time(self, index: int, start: float, position_ms: float | None) -> float:
        if self.live:
            return time.monotonic() - start
        if (position_ms is not None and position_ms > 0) or index == 0:
            return (position_ms or 0.0) / 1000.0
        return index / self.fps if self.fps else 0.0

    def release(self) -> None:
        """Close the capture (a camera is free for others again)."""
        self.capture.release()


def _open_failure(spec: SourceSpec) -> str:
    if spec.kind == "file":
        return (
            f"cannot read video {spec.target}: OpenCV could not open it (not a video, damaged, or a codec "
            "this OpenCV lacks)"
        )
    if spec.kind == "camera":
        return (
            f"camera {spec.target} could not be opened (no such device, or in use by another program); "
            "list cameras with `v4l2-ctl --list-devices`"
        )
    if spec.kind == "url":
        return f"cannot open {spec.target}: connection refused, not found, or not a stream OpenCV can read"
    return f"GStreamer pipeline could not be opened: {spec.target} (check it with gst-launch-1.0)"
