"""Score video files, cameras, RTSP/HTTP streams and GStreamer pipelines (``padim-predict --video``).

The decoder is OpenCV (the ``[video]`` extra, ``opencv-python-headless``), chosen because one
``cv2.VideoCapture`` opens all four kinds of source: files and URLs through its FFmpeg backend, camera
indices through V4L2, and GStreamer pipeline strings, the Jetson norm, through the GStreamer backend that
JetPack's system OpenCV is built with (pip's wheels are not: on a Jetson use JetPack's ``python3-opencv``).

How a run flows (numpy + OpenCV + onnxruntime; no torch):

* a reader thread decodes frames (BGR -> RGB) into a bounded :class:`FrameBuffer`. A file is read
  whole, every frame (or every k-th with ``every``): the reader waits while the buffer is full. A live
  source (camera, URL, pipeline) is never waited on: when scoring falls behind, the oldest buffered
  frame is dropped and counted, so memory stays bounded and results stay recent;
* the calling thread takes whatever is buffered (up to ``batch_size`` frames), scores it in one run and
  writes one JSON line per frame (frame index, timestamp, score, label; or the frame's error),
  flushed as written, so Ctrl-C or a camera that disappears loses nothing already scored;
* optionally each scored frame's overlay (:func:`padim_edge.visualize.annotated_overlay`) goes into an
  annotated video, and a summary line on stderr gives frames/s, p50 / p99 latency, drops and anomalies.

A frame that cannot be decoded, or whose size differs from a fixed-size (``--target tensorrt``)
model's, is an error for that frame (its JSON line says why), not for the run. A source that cannot be
opened, does not answer within the timeout, or stops delivering is one :class:`VideoError` line, raised
after everything scored so far is written.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
import numpy as np

#: Seconds a URL may take to answer (open) and, once open, to deliver a frame (read).
DEFAULT_TIMEOUT_S = 10.0
#: Latencies kept for the p50 / p99 (the newest ones): bounded memory on an endless stream.
LATENCY_WINDOW = 10_000
#: Seconds between summary lines on stderr (a terminal's line is rewritten every second instead).
SUMMARY_EVERY_S = 10.0
#: Consecutive undecodable frames after which a file is given up as corrupt.
MAX_BAD_FRAMES = 25
#: ``--video-out`` suffix -> OpenCV FourCC of the codec written.
CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "MJPG"}
#: Frame rate written to an annotated video when the source does not say its own.
FALLBACK_FPS = 25.0
#: URL schemes opened with FFmpeg's network timeouts.
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class VideoError(RuntimeError):
    """The source cannot be opened, does not answer, or stopped; or the annotated video cannot be written."""


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


# --------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Frame:
    """One frame position of a source.

    Attributes:
        index: Position in the source, counting every decoded frame (skipped and dropped ones too).
        time: Seconds from the start: the container's timestamp for a file, the capture time since the
            source opened for a live source.
        image: ``uint8 [H, W, 3]`` RGB, or ``None`` when the frame could not be decoded.
        error: Why it could not be decoded, or ``None``.
        captured: ``time.monotonic()`` when it was decoded (its latency runs from here).
    """

    index: int
    time: float
    image: np.ndarray | None
    error: str | None = None
    captured: float = field(default_factory=time.monotonic)


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
        if spec.kind == "gstreamer" and not _has_gstreamer(cv2):
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
                rgb, error = _to_rgb(cv2, image if ok else None, index)
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


def _to_rgb(cv2: Any, image: np.ndarray | None, index: int) -> tuple[np.ndarray | None, str | None]:
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


def _has_gstreamer(cv2: Any) -> bool:
    found = re.search(r"GStreamer:\s*(\w+)", cv2.getBuildInformation())
    return bool(found) and found.group(1).upper() == "YES"


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


# -------------------------------------------------------------------------------------------- the buffer


class FrameBuffer:
    """A bounded, thread-safe queue of frames between the reader and the scorer.

    Args:
        capacity: Most frames held.
        drop_oldest: When full, drop the oldest frame and count it (a live source), instead of making
            :meth:`put` wait for room (a file).

    Attributes:
        dropped: Frames dropped because the buffer was full.
        high_water: Most frames ever held at once (never above ``capacity``).
        error: What ended the source, if it failed (set by :meth:`close`).
    """

    def __init__(self, capacity: int, *, drop_oldest: bool) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.drop_oldest = capacity, drop_oldest
        self.items: deque[Frame] = deque()
        self.dropped = 0
        self.high_water = 0
        self.error: BaseException | None = None
        self.closed = self.cancelled = False
        self.lock = threading.Condition()

    def put(self, frame: Frame) -> bool:
        """Add a frame (dropping the oldest, or waiting for room). Returns ``False`` once cancelled."""
        with self.lock:
            while not self.drop_oldest and len(self.items) >= self.capacity and not self.cancelled:
                self.lock.wait()
            if self.cancelled:
                return False
            if len(self.items) >= self.capacity:
                self.items.popleft()
                self.dropped += 1
            self.items.append(frame)
            self.high_water = max(self.high_water, len(self.items))
            self.lock.notify_all()
            return True

    def take(self, most: int) -> list[Frame]:
        """Wait for at least one frame and return up to ``most``; ``[]`` once closed and empty."""
        with self.lock:
            while not self.items and not self.closed:
                self.lock.wait()
            taken = [self.items.popleft() for _ in range(min(most, len(self.items)))]
            self.lock.notify_all()
            return taken

    def close(self, error: BaseException | None = None) -> None:
        """The source ended (``error``: why, if it failed)."""
        with self.lock:
            self.closed, self.error = True, error
            self.lock.notify_all()

    def cancel(self) -> None:
        """Stop the reader: :meth:`put` returns ``False`` from now on."""
        with self.lock:
            self.cancelled = True
            self.lock.notify_all()


def _read_into(source: Any, buffer: FrameBuffer, every: int) -> None:
    """The reader thread: decode frames into ``buffer`` until the source ends or the run is cancelled."""
    error: BaseException | None = None
    try:
        for frame in source.frames(every):
            if not buffer.put(frame):
                break
    except Exception as exc:  # a failing source ends the run with its message; scored frames are kept
        error = exc
    finally:
        buffer.close(error)


# ----------------------------------------------------------------------------------------------- scoring


def score_frames(model: Any, frames: list[Frame], batch_size: int) -> list[tuple[dict[str, Any], Any]]:
    """Score frames in one run: ``(record, prediction)`` per frame, in order.

    ``record`` is the frame's JSON line (``frame``, ``time``, ``score``, ``label``; or ``frame``,
    ``time``, ``error``); ``prediction`` the model's :class:`~padim_edge.runtime.model.Prediction`, or
    ``None`` for a frame that failed.

    A frame that failed to decode, or whose size differs from a fixed-size model's, gets an ``error``
    record; if the model still refuses the batch, frames are scored one by one so only the bad one fails.
    """
    size = model.info.input_size
    records: dict[int, tuple[dict[str, Any], Any]] = {}
    good: list[int] = []
    for k, frame in enumerate(frames):
        if frame.error is not None or frame.image is None:
            records[k] = _error_record(frame, frame.error or f"frame {frame.index} could not be decoded")
        elif size is not None and tuple(frame.image.shape[:2]) != tuple(size):
            height, width = frame.image.shape[:2]
            records[k] = _error_record(
                frame,
                f"frame {frame.index} is {height}x{width} (HxW); this model was built for "
                f"{size[0]}x{size[1]} frames (padim-export --target tensorrt --input-size); export one for "
                "this size or for any size (the default target)",
            )
        else:
            good.append(k)
    try:
        predictions = model.predict([frames[k].image for k in good], batch_size=batch_size) if good else []
        for k, pred in zip(good, predictions):
            records[k] = _record(frames[k], pred)
    except ValueError:  # InputError: score one by one so only the frame at fault fails
        for k in good:
            try:
                records[k] = _record(frames[k], model.predict(frames[k].image)[0])
            except ValueError as exc:
                records[k] = _error_record(frames[k], f"frame {frames[k].index}: {exc}")
    return [records[k] for k in range(len(frames))]


def _record(frame: Frame, pred: Any) -> tuple[dict[str, Any], Any]:
    label = None if pred.is_anomalous is None else ("anomalous" if pred.is_anomalous else "ok")
    score = round(float(pred.score), 6)
    return {"frame": frame.index, "time": round(frame.time, 3), "score": score, "label": label}, pred


def _error_record(frame: Frame, error: str) -> tuple[dict[str, Any], Any]:
    return {"frame": frame.index, "time": round(frame.time, 3), "error": error}, None


# ----------------------------------------------------------------------------------------------- outputs


@dataclass
class VideoRun:
    """What a :func:`run_video` call did.

    Attributes:
        source: The source's name.
        frames: Frames given a result line (scored or failed).
        scored: Frames scored.
        failed: Frames with an ``error`` line (undecodable, wrong size).
        dropped: Frames of a live source dropped because scoring fell behind.
        anomalies: Frames labelled anomalous (calibrated models only).
        seconds: Wall time of the run.
        p50_ms: Median latency per frame (decoded -> result written), over the newest
            :data:`LATENCY_WINDOW` frames; ``None`` before any.
        p99_ms: 99th-percentile latency, likewise.
        buffer_high_water: Most frames buffered at once.
        error: The source's failure, one line, or ``None``.
        notes: Warnings (e.g. a file shorter than its header says).
        interrupted: The run was stopped with Ctrl-C.
    """

    source: str
    frames: int = 0
    scored: int = 0
    failed: int = 0
    dropped: int = 0
    anomalies: int = 0
    seconds: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    buffer_high_water: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def fps(self) -> float:
        """Frames given a result per second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The one-line summary printed on stderr."""
        latency = (
            f"latency p50 {self.p50_ms:.1f} ms p99 {self.p99_ms:.1f} ms"
            if self.p50_ms is not None and self.p99_ms is not None
            else "latency -"
        )
        failed = f", {self.failed} failed" if self.failed else ""
        return (
            f"video: {self.frames} frames{failed}, {self.fps:.1f} frames/s, {latency}, "
            f"{self.dropped} dropped, {self.anomalies} anomalous"
        )

    def as_json(self) -> dict[str, Any]:
        """The summary as written to ``summary.json``."""
        return {
            "source": self.source,
            "frames": self.frames,
            "scored": self.scored,
            "failed": self.failed,
            "dropped": self.dropped,
            "anomalies": self.anomalies,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.fps, 2),
            "p50_ms": None if self.p50_ms is None else round(self.p50_ms, 2),
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 2),
            "buffer_high_water": self.buffer_high_water,
            "error": self.error,
            "notes": self.notes,
            "interrupted": self.interrupted,
        }


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


class _Summary:
    """Counts, latency window and the live line on stderr."""

    def __init__(self, run: VideoRun, err: IO[str] | None) -> None:
        self.run, self.err = run, err
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.start = self.last = time.monotonic()
        self.tty = bool(err is not None and getattr(err, "isatty", lambda: False)())

    def add(self, record: dict[str, Any], captured: float, now: float) -> None:
        run = self.run
        run.frames += 1
        if "error" in record:
            run.failed += 1
        else:
            run.scored += 1
            run.anomalies += record["label"] == "anomalous"
            self.latencies.append(now - captured)

    def update(self, buffer: FrameBuffer) -> None:
        """Print the line when it is due."""
        now = time.monotonic()
        if self.err is not None and now - self.last >= (1.0 if self.tty else SUMMARY_EVERY_S):
            self.last = now
            self._count(buffer, now)
            self.err.write(("\r" + self.run.line() + "\033[K") if self.tty else self.run.line() + "\n")
            self.err.flush()

    def _count(self, buffer: FrameBuffer, now: float) -> None:
        run = self.run
        run.seconds, run.dropped = now - self.start, buffer.dropped
        run.buffer_high_water = buffer.high_water
        if self.latencies:
            p50, p99 = np.percentile(np.fromiter(self.latencies, float), [50, 99])
            run.p50_ms, run.p99_ms = 1000 * float(p50), 1000 * float(p99)

    def finish(self, buffer: FrameBuffer) -> None:
        """Final counts, and the last line."""
        self._count(buffer, time.monotonic())
        if self.err is not None:
            self.err.write(("\r" if self.tty else "") + self.run.line() + ("\033[K\n" if self.tty else "\n"))
            self.err.flush()


# ------------------------------------------------------------------------------------------------ the run


def run_video(
    model: Any,
    source: str | Any,
    output: Path | None = None,
    every: int = 1,
    *,
    batch_size: int = 8,
    video_out: Path | None = None,
    buffer_frames: int | None = None,
    live: bool | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    results: IO[str] | None = None,
    err: IO[str] | None = None,
) -> VideoRun:
    """Score a video, camera or stream frame by frame; results are written as they come.

    Args:
        model: A :class:`padim_edge.runtime.model.PadimModel` (or anything with its ``predict`` / ``info``).
        source: A SOURCE string (file, camera index, URL, GStreamer pipeline), or an object with
            ``name``, ``live``, ``fps``, ``frames(every)`` and ``release()`` like :class:`OpenCVSource`.
        output: Folder for ``frames.jsonl`` (one line per frame, written as scored) and ``summary.json``;
            ``None``: the JSON lines go to ``results`` (default stdout).
        every: Score every ``every``-th frame only (frame indices keep counting every frame).
        batch_size: Most frames per graph run.
        video_out: Annotated video to write (``.avi``: MJPG, ``.mp4``: mp4v), at the source's frame rate
            divided by ``every``.
        buffer_frames: Frames buffered between reader and scorer (default: ``batch_size`` for a live
            source, which drops the oldest beyond it, so results stay recent; ``2 * batch_size`` for a
            file, whose reader waits for room).
        live: Override whether the source is live (default: files are not, cameras / URLs / pipelines are).
        timeout: Seconds a URL may take to answer, and to deliver each frame.
        results: Stream for the JSON lines when ``output`` is ``None``.
        err: Stream for the summary lines (``None``: none).

    Returns:
        The run's counts (:class:`VideoRun`); ``error`` is set when the source failed part-way (every
        frame before it is written).

    Raises:
        VideoError: The source could not be opened, or ``video_out`` cannot be written.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    frames_source = OpenCVSource(source, timeout=timeout, live=live) if isinstance(source, str) else source
    run = VideoRun(source=frames_source.name)
    live_source = bool(frames_source.live)
    capacity = buffer_frames or (batch_size if live_source else 2 * batch_size)
    buffer = FrameBuffer(capacity, drop_oldest=live_source)
    annotated: AnnotatedVideo | None = None
    sink: IO[str] = sys.stdout if results is None else results
    opened: IO[str] | None = None
    summary = _Summary(run, err)
    reader = threading.Thread(
        target=_read_into, args=(frames_source, buffer, every), name="padim-video-reader", daemon=True
    )
    try:
        if video_out is not None:
            annotated = AnnotatedVideo(
                Path(video_out), model.info, (frames_source.fps or FALLBACK_FPS) / every
            )
        if output is not None:
            Path(output).mkdir(parents=True, exist_ok=True)
            sink = opened = open(Path(output) / "frames.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        reader.start()
        while True:
            frames = buffer.take(batch_size)
            if not frames:
                break
            scored = score_frames(model, frames, batch_size)
            now = time.monotonic()
            for frame, (record, pred) in zip(frames, scored):
                sink.write(json.dumps(record) + "\n")
                summary.add(record, frame.captured, now)
                if annotated is not None and pred is not None and frame.image is not None:
                    annotated.add(frame.image, pred)
            sink.flush()
            summary.update(buffer)
    except KeyboardInterrupt:
        run.interrupted = True
    finally:
        buffer.cancel()
        if reader.is_alive():
            reader.join(timeout + 1.0)
        if not reader.is_alive():
            frames_source.release()  # else the reader is stuck in a read: the process exit closes it
        if annotated is not None:
            annotated.close()
        sink.flush()
        if opened is not None:
            opened.close()
    if buffer.error is not None:
        run.error = str(buffer.error)
    run.notes.extend(getattr(frames_source, "notes", []))
    summary.finish(buffer)
    if output is not None:
        from padim_edge import atomic

        atomic.write_json(Path(output) / "summary.json", run.as_json())
    return run


# ----------------------------------------------------------------------------------------- command line


def video_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--video`` and its options to ``padim-predict`` (decorate its ``main`` under ``@click.command``).

    The options are handled here: with ``--video`` the command scores the source and returns, without
    it ``main`` runs as before and never sees them.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = {name: kwargs.pop(name) for name in _OPTION_NAMES}
        context = click.get_current_context()
        if options["video"] is None:
            for name in _given(context, _OPTION_NAMES[1:]):
                raise click.UsageError(f"{_hint(context, name)} needs --video SOURCE")
            return command(*args, **kwargs)
        for name in _given(context, [name for name in kwargs if name not in _USED]):
            raise click.UsageError(
                f"{_hint(context, name)} does not apply to --video, which scores one source (no image PATH, "
                "--files-from, overlay or --ray options)"
            )
        return _video_command(options, kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


_OPTIONS = [
    click.option(
        "--video",
        metavar="SOURCE",
        help="Score a video instead of images: a file, a camera index (0), an RTSP/HTTP URL or a GStreamer "
        "pipeline ('... ! appsink'; needs an OpenCV built with GStreamer, e.g. JetPack's). One JSON line "
        "per frame (frame, time, score, label, or error) on stdout, or in --output/frames.jsonl with "
        "summary.json. A live source drops (and counts) frames when scoring falls behind. Needs "
        "padim-edge[video].",
    ),
    click.option(
        "--every",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        metavar="K",
        help="--video: score every K-th frame.",
    ),
    click.option(
        "--video-out",
        type=click.Path(path_type=Path, dir_okay=False),
        metavar="FILE",
        help="--video: write an annotated video (overlay, score, colour bar): .avi (MJPG) or .mp4 (mp4v).",
    ),
    click.option(
        "--buffer",
        "buffer_frames",
        type=click.IntRange(min=1),
        metavar="N",
        help="--video: frames held between decoding and scoring (default: --batch-size for a live source, "
        "which drops the oldest beyond N; 2 x --batch-size for a file).",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_TIMEOUT_S,
        show_default=True,
        metavar="S",
        help="--video: seconds a URL may take to answer, and to deliver each frame.",
    ),
]
_OPTION_NAMES = ("video", "every", "video_out", "buffer_frames", "timeout")
#: padim-predict's own parameters that --video uses; any other given with it is refused.
_USED = {
    "model_path", "output", "device", "batch_size", "threads", "trt_cache", "trt_profile",
    "trt_workspace_mib", "quiet",
}  # fmt: skip


def _given(context: click.Context, names: Any) -> list[str]:
    """The parameters among ``names`` given on the command line (or by environment), not defaulted."""
    explicit = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    return [name for name in names if context.get_parameter_source(name) in explicit]


def _hint(context: click.Context, name: str) -> str:
    """How the user wrote a parameter: ``--every``, ``PATH...``."""
    param = next(p for p in context.command.params if p.name == name)
    return max(param.opts, key=len) if isinstance(param, click.Option) else param.human_readable_name


def _video_command(options: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """``padim-predict MODEL --video SOURCE``: open the model and the source, run, report in one line."""
    from padim_edge import atomic
    from padim_edge.extras import MissingExtraError
    from padim_edge.runtime.cli import open_model

    if kwargs.get("model_path") is None:
        raise click.MissingParameter(
            ctx=click.get_current_context(), param_type="argument", param_hint="'MODEL'"
        )
    output: Path | None = kwargs.get("output")
    try:
        if output is not None:
            atomic.check_output_folder(output, what="--output")
        if options["video_out"] is not None:
            atomic.check_output_file(options["video_out"], what="--video-out")
        load_cv2()
    except (atomic.OutputError, MissingExtraError) as exc:
        raise click.ClickException(str(exc)) from exc
    model = open_model(
        kwargs["model_path"],
        kwargs.get("device", "auto"),
        kwargs.get("threads"),
        trt_cache=kwargs.get("trt_cache"),
        trt_profile=kwargs.get("trt_profile"),
        trt_workspace_mib=kwargs.get("trt_workspace_mib"),
    )
    click.echo(
        f"model {kwargs['model_path']} ({model.info.description}) on {', '.join(model.providers)}", err=True
    )
    try:
        with atomic.write_errors(output, error=click.ClickException):
            run = run_video(
                model,
                options["video"],
                output,
                options["every"],
                batch_size=kwargs.get("batch_size", 8),
                video_out=options["video_out"],
                buffer_frames=options["buffer_frames"],
                timeout=options["timeout"],
                err=None if kwargs.get("quiet") else sys.stderr,
            )
    except VideoError as exc:
        raise click.ClickException(str(exc)) from exc
    if kwargs.get("quiet"):
        click.echo(run.line(), err=True)
    for note in run.notes:
        click.echo(f"warning: {note}", err=True)
    if output is not None:
        click.echo(f"wrote frames.jsonl and summary.json to {output}", err=True)
    if run.interrupted:
        click.echo(f"interrupted after {run.frames} frames; their results are kept", err=True)
        raise click.exceptions.Exit(130)
    if run.error is not None:
        raise click.ClickException(run.error)
    if run.failed:
        raise click.ClickException(
            f"{run.failed} of {run.frames} frames failed (their 'error' lines say why)"
        )
