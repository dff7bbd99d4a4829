"""One video run: the reader thread, the scoring loop and its outputs (:func:`run_video`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import IO, Any

from padim_edge.runtime.video.buffer import FrameBuffer, read_into
from padim_edge.runtime.video.scoring import score_frames
from padim_edge.runtime.video.sources import DEFAULT_TIMEOUT_S, OpenCVSource
from padim_edge.runtime.video.summary import LiveSummary, VideoRun
from padim_edge.runtime.video.writer import FALLBACK_FPS, AnnotatedVideo, FrameLines


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
    lines = FrameLines(results)
    summary = LiveSummary(run, err)
    reader = threading.Thread(
        target=read_into, args=(frames_source, buffer, every), name="padim-video-reader", daemon=True
    )
    try:
        if video_out is not None:
            annotated = AnnotatedVideo(
                Path(video_out), model.info, (frames_source.fps or FALLBACK_FPS) / every
            )
        if output is not None:
            lines.open(Path(output))
        reader.start()
        while True:
            frames = buffer.take(batch_size)
            if not frames:
                break
            scored = score_frames(model, frames, batch_size)
            now = time.monotonic()
            for frame, (record, pred) in zip(frames, scored):
                lines.write(record)
                summary.add(record, frame.captured, now)
                if annotated is not None and pred is not None and frame.image is not None:
                    annotated.add(frame.image, pred)
            lines.flush()
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
        lines.close()
    if buffer.error is not None:
        run.error = str(buffer.error)
    run.notes.extend(getattr(frames_source, "notes", []))
    summary.finish(buffer)
    if output is not None:
        from padim_edge import atomic

        atomic.write_json(Path(output) / "summary.json", run.as_json())
    return run
