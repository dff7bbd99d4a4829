"""The bounded buffer between the reader thread and the scorer: a file's reader waits for room, a live
source's oldest frame is dropped (and counted) instead, so memory stays bounded and results recent."""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from padim_edge.runtime.video.frame import Frame


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


def read_into(source: Any, buffer: FrameBuffer, every: int) -> None:
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
