"""Hand-made benchmark rows and results: report and CLI tests without building or timing a model."""

from __future__ import annotations

from typing import Any

from padim_edge.bench.runner import BenchResult
from padim_edge.bench.timing import summarize

#: A machine description with every key the reports read.
MACHINE: dict[str, Any] = {
    "cpu": "Test CPU",
    "isa": [],
    "logical_cpus": 2,
    "physical_cores": 2,
    "hypervisor": False,
    "memory_gb": 4,
    "os": "Linux",
    "gpus": [],
    "python": "3.x",
    "onnxruntime": "1.x",
    "providers": ["CPUExecutionProvider"],
    "torch": None,
}


def row(
    variant: str,
    batch: int,
    ms: float,
    *,
    threads: int = 2,
    model: str = "R18-Rd100",
    background_cpu: float | None = 0.0,
) -> dict[str, Any]:
    """One benchmark row of ``ms`` milliseconds per image (CPU, 224x224)."""
    summary = summarize([ms / 1e3 * batch] * 3)
    return {
        "model": model,
        "variant": variant,
        "engine": "torch" if variant == "eager" else "onnxruntime",
        "engine_version": "x",
        "provider": "torch-cpu" if variant == "eager" else "CPUExecutionProvider",
        "providers": [],
        "device": "cpu",
        "threads": threads,
        "threads_label": "all" if threads == 2 else str(threads),
        "batch": batch,
        "frame": "224x224",
        "precision": "fp32",
        "reps": 3,
        "latency_ms": summary.scaled(1e3).to_dict(),
        "per_image_ms": {k: getattr(summary.scaled(1e3 / batch), k) for k in ("mean", "p50", "p90", "p99")},
        "images_per_s": 1e3 / ms,
        "model_bytes": 1,
        "load_s": 0.1,
        "rss_before_load_mb": 1.0,
        "rss_after_load_mb": 2.0,
        "peak_rss_mb": 3.0,
        "peak_rss_scope": "subprocess",
        "background_cpu": background_cpu,
    }


def result(rows: list[dict[str, Any]], **kwargs: Any) -> BenchResult:
    """A result holding ``rows`` on :data:`MACHINE`."""
    return BenchResult(machine=dict(MACHINE), runs=[], rows=rows, **kwargs)
