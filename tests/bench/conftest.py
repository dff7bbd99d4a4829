"""Shared by the benchmark tests: tiny settings and one tiny end-to-end run (built once per session)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from padim_edge.bench import report
from padim_edge.bench.runner import BenchConfig, BenchResult, run_benchmark
from padim_edge.bench.timing import TimingPolicy
from padim_edge.runtime import available
from tests.conftest import ROOT

TINY = {"dims": 16, "resize": 72, "crop": 64}
TINY_ARGS = ["--dims", "16", "--resize", "72", "--crop", "64"]
FAST = TimingPolicy(warmup=1, min_reps=3, min_seconds=0.0, max_seconds=1.0, floor_reps=1)
FAST_ARGS = ["--warmup", "1", "--min-reps", "2", "--min-seconds", "0", "--max-seconds", "1"]
HAS_CUDA = "CUDAExecutionProvider" in available()


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models folder shared by every end-to-end test (built once, then reused)."""
    return tmp_path_factory.mktemp("bench-models")


@pytest.fixture(scope="session")
def tiny_run(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[BenchResult, dict[str, Path]]:
    config = BenchConfig(
        backbones=["r18"],
        batch_sizes=[2, 1],
        threads=["1"],
        devices=["cpu"],
        policy=FAST,
        frame=(48, 80),
        fit_frames=4,
        isolate=False,
        workdir=workdir,
        progress=False,
        **TINY,
    )
    result = run_benchmark(config)
    paths = report.write_all(result, tmp_path_factory.mktemp("out"), stem="tiny")
    return result, paths


@contextmanager
def benchmark_script(name: str) -> Iterator[ModuleType]:
    """``benchmarks/<name>.py`` imported as a module, its folder on ``sys.path`` meanwhile (as when run).

    Afterwards ``sys.path`` is as it was and the benchmark modules this import loaded are forgotten,
    so their short names (``harness``, ``accuracy``, ...) do not shadow anything in later tests.
    """
    folder = ROOT / "benchmarks"
    path, loaded = list(sys.path), set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path[:] = path
        for module in set(sys.modules) - loaded:
            if Path(getattr(sys.modules[module], "__file__", None) or "/").parent == folder:
                del sys.modules[module]
