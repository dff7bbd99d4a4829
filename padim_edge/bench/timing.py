"""Latency statistics and the time-bounded measurement loop (numpy only).

The loop follows ONNX Runtime's transformers benchmark helper: a few warm-up calls, then timed calls
until there are at least ``min_reps`` of them *and* ``min_seconds`` have passed, whichever comes
later, with caps (``max_reps``, ``max_seconds``) so that a slow configuration still finishes. The cap
in seconds never cuts a measurement below ``floor_reps`` calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

#: Percentiles every summary reports.
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class TimingPolicy:
    """How long to measure one configuration (one model, engine, threads and batch size).

    Attributes:
        warmup: Untimed calls before timing (at least one: the first call allocates, TensorRT builds).
        min_reps: Timed calls at least (100 makes p99 the mean of the two slowest calls, roughly).
        min_seconds: Timed wall time at least.
        max_reps: Stop after this many calls even if ``min_seconds`` has not passed.
        max_seconds: Stop after this much timed wall time even if ``min_reps`` is not reached...
        floor_reps: ...but never with fewer calls than this.
    """

    warmup: int = 3
    min_reps: int = 100
    min_seconds: float = 3.0
    max_reps: int = 10_000
    max_seconds: float = 30.0
    floor_reps: int = 5

    def __post_init__(self) -> None:
        if self.warmup < 1:
            raise ValueError(f"warmup must be >= 1, got {self.warmup}")
        if self.min_reps < 1 or self.floor_reps < 1:
            raise ValueError("min_reps and floor_reps must be >= 1")
        if self.max_reps < self.min_reps:
            raise ValueError(f"max_reps ({self.max_reps}) must be >= min_reps ({self.min_reps})")
        if self.min_seconds < 0 or self.max_seconds < self.min_seconds:
            raise ValueError(
                f"need 0 <= min_seconds ({self.min_seconds}) <= max_seconds ({self.max_seconds})"
            )

    def to_dict(self) -> dict[str, float]:
        """Plain dict (for JSON)."""
        return asdict(self)


@dataclass(frozen=True)
class Summary:
    """Statistics of a list of durations, in the unit they were given in.

    Attributes:
        reps: Number of timed calls.
        total: Sum of the durations.
        mean: Arithmetic mean.
        std: Sample standard deviation (0 for one call).
        min: Fastest call.
        p50: Median (linear interpolation between order statistics, as ``numpy.percentile``).
        p90: 90th percentile.
        p99: 99th percentile (with fewer than 100 calls it lies between the two slowest).
        max: Slowest call.
    """

    reps: int
    total: float
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float

    def scaled(self, factor: float) -> Summary:
        """Every statistic multiplied by ``factor`` (``reps`` unchanged): unit changes, per-image values."""
        return Summary(
            reps=self.reps,
            total=self.total * factor,
            mean=self.mean * factor,
            std=self.std * factor,
            min=self.min * factor,
            p50=self.p50 * factor,
            p90=self.p90 * factor,
            p99=self.p99 * factor,
            max=self.max * factor,
        )

    def to_dict(self) -> dict[str, float]:
        """Plain dict (for JSON)."""
        return asdict(self)


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation (``numpy.percentile``'s default).

    Raises:
        ValueError: ``values`` is empty or ``q`` is outside [0, 100].
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("percentile of an empty list")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    return float(np.percentile(array, q))


def summarize(durations: Sequence[float] | np.ndarray) -> Summary:
    """Summary statistics of durations (any unit; the summary keeps it).

    Raises:
        ValueError: No durations.
    """
    array = np.asarray(durations, dtype=np.float64)
    if array.size == 0:
        raise ValueError("cannot summarize zero timings")
    p50, p90, p99 = np.percentile(array, PERCENTILES)
    return Summary(
        reps=int(array.size),
        total=float(array.sum()),
        mean=float(array.mean()),
        std=float(array.std(ddof=1)) if array.size > 1 else 0.0,
        min=float(array.min()),
        p50=float(p50),
        p90=float(p90),
        p99=float(p99),
        max=float(array.max()),
    )


def time_calls(
    fn: Callable[[], object],
    policy: TimingPolicy,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Warm ``fn`` up, then time calls to it as ``policy`` says.

    Args:
        fn: The call to time; it must finish its work before returning (host outputs).
        policy: Warm-up, minimum and maximum repetitions and seconds.
        clock: Monotonic clock in seconds (injectable for tests).

    Returns:
        The duration of every timed call, in seconds, in call order.
    """
    for _ in range(policy.warmup):
        fn()
    times: list[float] = []
    start = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        times.append(t1 - t0)
        reps, elapsed = len(times), t1 - start
        if reps >= policy.max_reps:
            break
        if reps >= policy.min_reps and elapsed >= policy.min_seconds:
            break
        if elapsed >= policy.max_seconds and reps >= policy.floor_reps:
            break
    return times
