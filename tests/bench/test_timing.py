"""Timing statistics and the repetition policy."""

from __future__ import annotations

import numpy as np
import pytest

from padim_edge.bench.timing import Summary, TimingPolicy, percentile, summarize, time_calls

# ----------------------------------------------------------------------------------------------- math


def test_summary_of_known_timings() -> None:
    times = np.arange(1, 101, dtype=float)  # 1 .. 100
    s = summarize(times)
    assert s.reps == 100
    assert s.total == pytest.approx(5050)
    assert s.mean == pytest.approx(50.5)
    assert s.min == 1 and s.max == 100
    assert s.p50 == pytest.approx(50.5)
    assert s.p90 == pytest.approx(90.1)
    assert s.p99 == pytest.approx(99.01)
    assert s.std == pytest.approx(np.std(times, ddof=1))


def test_summary_small_and_scaled() -> None:
    s = summarize([0.004])
    assert (s.p50, s.p99, s.std, s.reps) == (0.004, 0.004, 0.0, 1)
    t = summarize([1.0, 2.0, 3.0, 4.0]).scaled(1e3 / 4)  # seconds per batch of 4 -> ms per image
    assert t.p50 == pytest.approx(625.0)
    assert t.reps == 4
    assert Summary(**t.to_dict()) == t


def test_percentile_interpolates_and_rejects_bad_input() -> None:
    assert percentile([10, 20], 50) == 15
    assert percentile([3, 1, 2], 100) == 3
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        summarize([])


class FakeClock:
    """Advances only when the timed function runs (0.25 s a call: exact in binary)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += 0.25


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (TimingPolicy(warmup=2, min_reps=5, min_seconds=0.0, max_seconds=10.0), 5),  # reps bound
        (TimingPolicy(warmup=2, min_reps=2, min_seconds=1.0, max_seconds=10.0), 4),  # seconds bound (later)
        (TimingPolicy(warmup=2, min_reps=100, min_seconds=1.0, max_seconds=2.0, floor_reps=5), 8),  # time cap
        (TimingPolicy(warmup=2, min_reps=100, min_seconds=0.0, max_seconds=0.5, floor_reps=5), 5),  # floor
        (TimingPolicy(warmup=2, min_reps=3, min_seconds=100.0, max_seconds=200.0, max_reps=3), 3),  # reps cap
    ],
)
def test_time_calls_follows_the_policy(policy: TimingPolicy, expected: int) -> None:
    clock = FakeClock()
    times = time_calls(clock.work, policy, clock=clock)
    assert len(times) == expected
    assert clock.calls == expected + policy.warmup
    assert all(t == 0.25 for t in times)


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        TimingPolicy(warmup=0)
    with pytest.raises(ValueError):
        TimingPolicy(min_reps=10, max_reps=5)
    with pytest.raises(ValueError):
        TimingPolicy(min_seconds=5, max_seconds=1)
