"""Reproduce the PaDiM paper's Table VII (inference time) with padim-edge, end to end through the runtime.

Runs, in one report (``benchmarks/results/table7.{json,md,png}``):

* R18-Rd100 at 224: fused ONNX graph, truncated backbone alone, PyTorch eager; CPU EP at 1 thread and
  at every thread; batch sweep ``--r18-batch-sizes``.
* WR50-Rd550 at 224: the same three at every thread over ``--wr50-batch-sizes`` (each call streams the
  ~2.5 GB packed Sigma^-1, so the sweep is shorter on small machines), and at 1 thread over
  ``--wr50-single-thread-batch-sizes``.
* CUDA EP / TensorRT EP rows for both when this onnxruntime build has them (skipped otherwise).

Everything calls :mod:`padim_edge.bench`, the library behind ``padim-bench``. Models are random-init
(latency does not depend on the weights), fitted on synthetic frames, and rebuilt unless
``--workdir`` keeps them (WR50-Rd550 takes a few minutes and ~6.5 GB of disk to build).

Usage::

    python benchmarks/table7.py                      # full run (~10-15 min on 2 cores)
    python benchmarks/table7.py --quick              # batch 1 and 8, shorter timing (~5 min)
    python benchmarks/table7.py --workdir /tmp/padim-models --no-wr50
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

from padim_edge.bench import report
from padim_edge.bench.cli import parse_devices, parse_int_list, parse_threads
from padim_edge.bench.runner import BenchConfig, BenchResult, run_benchmark
from padim_edge.bench.timing import TimingPolicy

RESULTS = Path(__file__).resolve().parent / "results"


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=RESULTS,
    show_default=True,
    help="Folder for table7.json / .md / .png.",
)
@click.option("--r18-batch-sizes", default="1,2,4,8,16,32", show_default=True, help="R18-Rd100 batch sweep.")
@click.option(
    "--wr50-batch-sizes",
    default="1,2,4,8",
    show_default=True,
    help="WR50-Rd550 batch sweep at every thread (and on GPUs).",
)
@click.option(
    "--wr50-single-thread-batch-sizes",
    default="1",
    show_default=True,
    help="WR50-Rd550 batch sizes at 1 thread ('' to skip).",
)
@click.option("--threads", default="1,all", show_default=True, help="CPU thread settings for R18-Rd100.")
@click.option(
    "--device", default=None, help="cpu,cuda,tensorrt (default: every one this onnxruntime build has)."
)
@click.option(
    "--min-seconds", type=float, default=2.0, show_default=True, help="Timing per batch size, at least."
)
@click.option("--min-reps", type=int, default=100, show_default=True, help="Calls per batch size, at least.")
@click.option(
    "--max-seconds",
    type=float,
    default=8.0,
    show_default=True,
    help="Cap per batch size (never below 5 calls).",
)
@click.option(
    "--wait-idle",
    type=float,
    default=20.0,
    show_default=True,
    help="Wait up to this long before each configuration for other processes to leave the CPU.",
)
@click.option(
    "--retries",
    type=int,
    default=2,
    show_default=True,
    help="Re-measure configurations timed while other processes used >10% of the CPU.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep / reuse the built models here (default: temporary, deleted).",
)
@click.option("--no-wr50", is_flag=True, help="R18-Rd100 only.")
@click.option("--quick", is_flag=True, help="Batch sizes 1 and 8 only, 50 calls / 1 s minimum, 5 s cap.")
def main(
    output: Path,
    r18_batch_sizes: str,
    wr50_batch_sizes: str,
    wr50_single_thread_batch_sizes: str,
    threads: str,
    device: str | None,
    min_seconds: float,
    min_reps: int,
    max_seconds: float,
    wait_idle: float,
    retries: int,
    workdir: Path | None,
    no_wr50: bool,
    quick: bool,
) -> None:
    """Run the Table VII reproduction and write benchmarks/results/table7.{json,md,png}."""
    if quick:
        r18_batch_sizes, wr50_batch_sizes, wr50_single_thread_batch_sizes = "1,8", "1,8", "1"
        min_seconds, min_reps, max_seconds = 1.0, 50, 5.0
    policy = TimingPolicy(
        min_reps=min_reps, min_seconds=min_seconds, max_seconds=max(max_seconds, min_seconds)
    )
    devices = parse_devices(device)
    temporary = workdir is None
    models = Path(tempfile.mkdtemp(prefix="padim-table7-")) if temporary else workdir
    common = {
        "policy": policy,
        "workdir": models,
        "wait_idle": wait_idle,
        "retries": retries,
        "frame": (224, 224),
        "resize": 256,
    }
    plans = [
        BenchConfig(
            backbones=["r18"],
            batch_sizes=parse_int_list(r18_batch_sizes, name="--r18-batch-sizes"),
            threads=parse_threads(threads),
            devices=devices,
            **common,
        ),
    ]
    notes = []
    if not no_wr50:
        wr50 = parse_int_list(wr50_batch_sizes, name="--wr50-batch-sizes")
        plans.append(
            BenchConfig(backbones=["wr50"], batch_sizes=wr50, threads=["all"], devices=devices, **common)
        )
        single = [int(b) for b in wr50_single_thread_batch_sizes.split(",") if b.strip()]
        if single:
            plans.append(
                BenchConfig(backbones=["wr50"], batch_sizes=single, threads=["1"], devices=["cpu"], **common)
            )
        notes.append(
            f"WR50-Rd550: batch sweep {','.join(map(str, wr50))} at every thread"
            + (f", batch {','.join(map(str, single))} at 1 thread" if single else "")
            + f" (R18-Rd100 sweeps {r18_batch_sizes}): every WR50-Rd550 call reads the ~2.5 GB packed "
            "Sigma^-1 and runs the much heavier Wide-ResNet-50-2 backbone, so larger batches are left out to "
            "keep the run within ~15 minutes on 2 cores (pass --wr50-batch-sizes 1,2,4,8,16,32 for the full "
            "sweep)."
        )
    start = time.perf_counter()
    result: BenchResult | None = None
    try:
        for plan in plans:
            part = run_benchmark(plan)
            result = part if result is None else result.merge(part)
    finally:
        if temporary:
            shutil.rmtree(models, ignore_errors=True)
    assert result is not None
    result.notes.extend(notes)
    paths = report.write_all(result, output, stem="table7", title="PaDiM Table VII reproduction (padim-edge)")
    for line in report.summary_lines(result):
        print(line, file=sys.stderr)
    print(f"{len(result.rows)} rows in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    for path in paths.values():
        print(path)
    if result.failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
