"""Latency and memory suite: the paper's Table VII, the compact heads, PatchCore beside PaDiM, fit memory.

The latency commands are fixed sets of :mod:`padim_edge.bench` runs (the library behind
``padim-bench``): uint8 frames in, maps and scores out, through the runtime on the CPU EP (and CUDA /
TensorRT rows where this onnxruntime build has them), each configuration in a fresh process (peak RSS,
load time and file size per model), with the ``backbone`` (same preprocessing + truncated CNN) and
PyTorch ``eager`` comparators. Models are random-init (latency does not depend on the weights),
fitted on synthetic frames and rebuilt unless ``--workdir`` keeps them.

* ``table7``: R18-Rd100 at 1 and every thread, batch 1-32; WR50-Rd550 at every thread, batch 1-8, and
  at 1 thread, batch 1 (WR50-Rd550 takes a few minutes and ~6.5 GB of disk to build). ``table7.*``.
* ``compact-head``: R18-Rd100 and WR50-Rd550 with the float32 and the int8 head (Sigma^-1 stored as
  int8), 2 threads, batch 1, fused vs backbone alone: latency, file size, load peak RSS.
  ``compact_head_latency.*``.
* ``patchcore``: PatchCore R18 with coresets 0.1 and 0.01 of a 240-frame fit, float32 and int8 bank,
  beside PaDiM R18-Rd100, 2 threads, batch 1 and 8. ``patchcore_latency.*``.
* ``fit-memory``: peak RSS of a PaDiM fit on 100 vs 700 images (each in a fresh process); goal:
  within 10 %. Images: the magnetic tile's ``train/good`` when present, else synthetic. ``fit_memory.*``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    ROOT,
    TILES,
    Run,
    header,
    output_options,
    synthetic_images,
    table,
    workspace,
    write_results,
)

from padim_edge.bench import report
from padim_edge.bench.cli import parse_devices, parse_int_list, parse_threads
from padim_edge.bench.runner import BenchConfig, BenchResult, run_benchmark
from padim_edge.bench.timing import TimingPolicy

#: The bound on the peak-RSS difference between the two fits.
MAX_FIT_GROWTH = 0.10
MARKER = "FIT_MEMORY "


def bench(plans: list[BenchConfig], output: Path, stem: str, title: str, notes: list[str]) -> None:
    """Run ``plans`` into one report ``<output>/<stem>.{json,md,png}``; exit 1 when a row failed."""
    start = time.perf_counter()
    result: BenchResult | None = None
    for plan in plans:
        part = run_benchmark(plan)
        result = part if result is None else result.merge(part)
    assert result is not None
    result.notes.extend(notes)
    paths = report.write_all(result, output, stem=stem, title=title)
    for line in report.summary_lines(result):
        click.echo(line, err=True)
    click.echo(f"{len(result.rows)} rows in {time.perf_counter() - start:.0f} s", err=True)
    for path in paths.values():
        click.echo(str(path))
    if result.failures:
        sys.exit(1)


def timing_options(command: Any) -> Any:
    """Timing policy options shared by the latency commands."""
    for option in (
        click.option("--quick", is_flag=True, help="Shorter timing (50 calls / 1 s minimum, 5 s cap)."),
        click.option("--retries", type=int, default=2, show_default=True, help="Re-measure contended rows."),
        click.option("--wait-idle", type=float, default=20.0, show_default=True, help="Wait for quiet, s."),
        click.option("--device", help="cpu,cuda,tensorrt (default: every one this onnxruntime build has)."),
    ):  # fmt: skip
        command = option(command)
    return output_options(command)


def common(workdir: Path, quick: bool, wait_idle: float, retries: int) -> dict[str, Any]:
    """The BenchConfig settings every latency command shares."""
    policy = TimingPolicy(min_reps=50, min_seconds=1.0, max_seconds=5.0) if quick else TimingPolicy(
        min_reps=100, min_seconds=2.0, max_seconds=8.0
    )  # fmt: skip
    return {
        "policy": policy,
        "workdir": workdir,
        "wait_idle": wait_idle,
        "retries": retries,
        "progress": True,
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Latency and memory benchmarks (see the module docstring)."""


@main.command("table7")
@timing_options
@click.option("--r18-batch-sizes", default="1,2,4,8,16,32", show_default=True)
@click.option("--wr50-batch-sizes", default="1,2,4,8", show_default=True, help="At every thread.")
@click.option("--threads", default="1,all", show_default=True, help="R18-Rd100 thread settings.")
@click.option("--no-wr50", is_flag=True, help="R18-Rd100 only.")
def table7(
    output, workdir, device, wait_idle, retries, quick, r18_batch_sizes, wr50_batch_sizes, threads, no_wr50
):
    """The paper's Table VII: R18-Rd100 and WR50-Rd550, fused vs backbone vs eager."""
    if quick:
        r18_batch_sizes = wr50_batch_sizes = "1,8"
    devices = parse_devices(device)
    with workspace(workdir, "padim-table7-") as models:
        settings = common(models, quick, wait_idle, retries)
        r18 = parse_int_list(r18_batch_sizes, name="--r18-batch-sizes")
        plans = [
            BenchConfig(
                backbones=["r18"],
                batch_sizes=r18,
                threads=parse_threads(threads),
                devices=devices,
                **settings,
            )
        ]
        if not no_wr50:
            wr50 = parse_int_list(wr50_batch_sizes, name="--wr50-batch-sizes")
            plans.append(
                BenchConfig(
                    backbones=["wr50"], batch_sizes=wr50, threads=["all"], devices=devices, **settings
                )
            )
            plans.append(
                BenchConfig(backbones=["wr50"], batch_sizes=[1], threads=["1"], devices=["cpu"], **settings)
            )
        notes = [
            f"WR50-Rd550: batch {wr50_batch_sizes} at every thread and batch 1 at 1 thread: every call reads "
            "the ~2.5 GB packed Sigma^-1, so larger batches are left out to keep the run short."
        ]
        bench(plans, output, "table7", "PaDiM Table VII reproduction (padim-edge)", [] if no_wr50 else notes)


@main.command("compact-head")
@timing_options
@click.option("--no-wr50", is_flag=True, help="R18-Rd100 only.")
def compact_head(output, workdir, device, wait_idle, retries, quick, no_wr50):
    """Float32 vs int8 head: R18-Rd100 and WR50-Rd550, 2 threads, batch 1."""
    with workspace(workdir, "padim-compact-head-") as models:
        plan = BenchConfig(
            backbones=["r18"] if no_wr50 else ["r18", "wr50"], head_precisions=["fp32", "int8"],
            batch_sizes=[1], threads=["2"], devices=parse_devices(device or "cpu"), eager=False,
            **common(models, quick, wait_idle, retries),
        )  # fmt: skip
        notes = ["Goals of the int8 head: fused / backbone alone <= 1.15x (R18-Rd100), <= 1.3x (WR50-Rd550)."]
        bench([plan], output, "compact_head_latency", "Compact head: float32 vs int8 Sigma^-1", notes)


@main.command("patchcore")
@timing_options
@click.option("--fit-frames", type=int, default=240, show_default=True, help="Synthetic frames per bank.")
def patchcore(output, workdir, device, wait_idle, retries, quick, fit_frames):
    """PatchCore R18 (coreset 0.1 / 0.01, fp32 / int8 bank) beside PaDiM R18-Rd100."""
    with workspace(workdir, "padim-patchcore-latency-") as models:
        settings = {**common(models, quick, wait_idle, retries), "devices": parse_devices(device or "cpu")}
        shared = {"backbones": ["r18"], "batch_sizes": [1, 8], "threads": ["2"], "eager": False, **settings}
        plans = [BenchConfig(**shared)]
        for coreset in (0.1, 0.01):
            plans.append(
                BenchConfig(
                    method="patchcore", coreset=coreset, fit_frames=fit_frames,
                    head_precisions=["fp32", "int8"], backbone=False, **shared,
                )
            )  # fmt: skip
        notes = [
            f"PatchCore banks: coreset of {fit_frames} synthetic frames' patch vectors (a category's size)."
        ]
        bench(plans, output, "patchcore_latency", "PatchCore beside PaDiM: latency", notes)


def fit_child(backbone: str, data: Path, count: int, batch_size: int) -> dict[str, Any]:
    """One fit, in this (fresh) process; returns its memory and time."""
    import torch

    from padim_edge.bench.system import peak_rss_mb, rss_mb
    from padim_edge.export.fit import fit
    from padim_edge.export.pipeline import build_module
    from padim_edge.images import list_images

    paths = list_images(data)[:count]
    if len(paths) < count:
        raise SystemExit(f"{data} has {len(paths)} images, {count} were asked for")
    model, _ = build_module(backbone, random_init=True)
    rss_built = rss_mb()
    start = time.perf_counter()
    fitted = fit(model, paths, batch_size=batch_size, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    return {
        "images": fitted.images,
        "fit_s": seconds,
        "images_per_s": fitted.images / seconds,
        "rss_after_build_mb": rss_built,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_fit_mb": rss_mb(),
        "accumulators_mb": (model.patches * model.config.dims * (model.config.dims + 1)) * 8 / 2**20,
        "torch_threads": torch.get_num_threads(),
    }


@main.command("fit-child", hidden=True)
@click.argument("backbone")
@click.argument("data", type=click.Path(path_type=Path))
@click.argument("count", type=int)
@click.argument("batch_size", type=int)
def fit_child_command(backbone: str, data: Path, count: int, batch_size: int) -> None:
    print(MARKER + json.dumps(fit_child(backbone, data, count, batch_size)), flush=True)


def render_fit_memory(result: dict[str, Any]) -> str:
    """Markdown report of the fit-memory runs."""
    runs, rss = result["runs"], ("peak_rss_mb", "rss_after_build_mb", "rss_after_fit_mb")
    body = [
        [str(r["images"]), *(f"{r[k]:.0f}" for k in rss),
         f"{r['accumulators_mb']:.0f}", f"{r['fit_s']:.1f}", f"{r['images_per_s']:.1f}"]
        for r in runs
    ]  # fmt: skip
    headers = [
        "Images",
        "Peak RSS MB",
        "RSS before fit MB",
        "RSS after fit MB",
        "Accumulators MB",
        "Fit s",
        "img/s",
    ]
    verdict = "PASS" if result["passed"] else "FAIL"
    return "\n".join(
        [
            *header(result, "Fit memory: peak RSS against the number of training images"),
            f"PaDiM {result['backbone']} (random-init), CPU, batch {result['batch_size']}, torch "
            f"{runs[0]['torch_threads']} threads; images: {result['data']}. Each fit in a fresh process "
            "(peak RSS: its VmHWM). The accumulators are sized by the model, not by the number of images.",
            "",
            *table(headers, body),
            "",
            f"**Peak RSS difference** ({runs[-1]['images']} vs {runs[0]['images']} images): "
            f"{result['difference']:+.1%} (target: less than {MAX_FIT_GROWTH:.0%}): **{verdict}**.",
            "",
        ]
    )


@main.command("fit-memory")
@output_options
@click.option("--backbone", type=click.Choice(["r18", "wr50", "mnv2"]), default="r18", show_default=True)
@click.option("--counts", default="100,700", show_default=True, help="Image counts, smallest first.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Images (default: see above).")
def fit_memory(output, workdir, backbone, counts, batch_size, data) -> None:
    """Peak RSS of PaDiM fits on a few vs many images, each in a fresh process."""
    numbers = parse_int_list(counts, name="--counts")
    stamp = Run()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    with workspace(workdir, "padim-fit-memory-") as work:
        if data is None and (TILES / "train" / "good").is_dir():
            data, source = (
                TILES / "train" / "good",
                "magnetic tile train/good (real grayscale tiles, sizes vary)",
            )
        elif data is None:
            data, source = synthetic_images(work / "frames", max(numbers)), "synthetic 256x256 RGB PNGs"
        else:
            source = str(data)
        runs = []
        for count in numbers:
            click.echo(f"fit on {count} images ({backbone}) in a fresh process ...", err=True)
            command = [
                sys.executable,
                __file__,
                "fit-child",
                backbone,
                str(data),
                str(count),
                str(batch_size),
            ]
            proc = subprocess.run(command, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
            if proc.returncode != 0 or not lines:
                raise click.ClickException(
                    f"fit on {count} images failed (exit {proc.returncode}): {proc.stderr[-2000:]}"
                )
            runs.append(json.loads(lines[-1][len(MARKER) :]))
    first, last = runs[0]["peak_rss_mb"], runs[-1]["peak_rss_mb"]
    difference = (last - first) / first
    result = stamp.stamp(
        {
            "backbone": backbone,
            "batch_size": batch_size,
            "data": source,
            "runs": runs,
            "difference": difference,
        }
    )
    result["passed"] = abs(difference) < MAX_FIT_GROWTH
    write_results(output, "fit_memory", result, render_fit_memory(result))


if __name__ == "__main__":
    main()
