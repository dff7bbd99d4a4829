"""What a video run did (:class:`VideoRun`: counts, frames/s, latency) and its live line on stderr."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np

from padim_edge.runtime.video.buffer import FrameBuffer

#: Latencies kept for the p50 / p99 (the newest ones): bounded memory on an endless stream.
LATENCY_WINDOW = 10_000
#: Seconds between summary lines on stderr (a terminal's line is rewritten every second instead).
SUMMARY_EVERY_S = 10.0


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


class LiveSummary:
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
