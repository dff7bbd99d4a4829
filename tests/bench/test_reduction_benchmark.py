"""benchmarks/reduction.py: its cost figure (the reducer itself: tests/export/test_reduction.py)."""

from __future__ import annotations

import pytest

from tests.bench.conftest import benchmark_script


@pytest.fixture(scope="module")
def reduction():
    with benchmark_script("reduction") as module:
        yield module


def test_projection_cost(reduction) -> None:
    assert reduction.projection_macs((64, 128, 256), 100, 56) == 100 * (
        64 * 56**2 + 128 * 28**2 + 256 * 14**2
    )
