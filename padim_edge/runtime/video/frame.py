"""The frame every stage passes on: the reader decodes it, the buffer holds it, the scorer scores it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


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
