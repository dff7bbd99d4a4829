"""Latency and memory suite: fixed sets of ``padim-bench`` runs (each configuration in a fresh process;
benchmarks/README.md says what a row is): ``table7`` (the paper's Table VII), ``compact-head`` (float32
vs int8 Sigma^-1), ``patchcore`` (PatchCore beside PaDiM); and ``fit-memory`` (peak RSS of a fit on 100
vs 700 images, goal within 10 %). Usage: ``python benchmarks/latency.py COMMAND [--quick] [--workdir DIR]``.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import harness as h

from padim_edge.bench import report
from padim_edge.bench.cli import parse_devices, parse_int_list, parse_threads
from padim_edge.bench.runner import BenchConfig, BenchResult, run_benchmark
from padim_edge.bench.timing import TimingPolicy

#: The bound on the peak-RSS difference between the two fits.
MAX_FIT_GROWTH = 0.10
MARKER = "FIT_MEMORY "
main = h.group("Latency and memory benchmarks (see the module docstring).")


def bench(plans: list[BenchConfig], output: Path, stem: str, title: str, notes: list[str]) -> None:
    """Run ``plans`` into one report ``<output>/<stem>.{json,md,png}``; exit 1 when a row failed."""
    start = time.perf_counter()
    result = functools.reduce(BenchResult.merge, map(run_benchmark, plans))  # run one after another
    result.notes.extend(notes)
    paths = report.write_all(result, output, stem=stem, title=title)
    click.echo("\n".join(report.summary_lines(result)), err=True)
    click.echo(f"{len(result.rows)} rows in {time.perf_counter() - start:.0f} s", err=True)
    click.echo("\n".join(map(str, paths.values())))
    if result.failures:
        sys.exit(1)


def timing_options(command: Any) -> Any:
    """The latency commands' options: timing policy, idle wait, devices, output."""
    for option in (
        click.option("--quick", is_flag=True, help="Shorter timing (50 calls / 1 s minimum, 5 s cap)."),
        click.option("--wait-idle", type=float, default=20.0, show_default=True, help="Wait for quiet, s."),
        click.option("--device", help="cpu,cuda,tensorrt (default: every one this onnxruntime build has)."),
    ):  # fmt: skip
        command = option(command)
    return h.output_options(command)


def common(workdir: Path, quick: bool, wait_idle: float) -> dict[str, Any]:
    """The BenchConfig settings every latency command shares."""
    reps, least, most = (50, 1.0, 5.0) if quick else (100, 2.0, 8.0)
    policy = TimingPolicy(min_reps=reps, min_seconds=least, max_seconds=most)
    return dict(policy=policy, workdir=workdir, wait_idle=wait_idle, retries=2, progress=True)


@main.command("table7")
@timing_options
@click.option("--no-wr50", is_flag=True, help="R18-Rd100 only.")
def table7(output, workdir, device, no_wr50, **timing):
    """The paper's Table VII: R18-Rd100 (1 / every thread, batch 1-32; --quick 1, 8) and WR50-Rd550
    (every thread, batch 1-8, and 1 thread, batch 1), fused vs backbone vs eager."""
    r18, wr50 = ([1, 8], [1, 8]) if timing["quick"] else ([1, 2, 4, 8, 16, 32], [1, 2, 4, 8])
    with h.workspace(workdir, "padim-table7-") as models:
        plan = functools.partial(BenchConfig, devices=parse_devices(device), **common(models, **timing))
        plans, notes = [plan(backbones=["r18"], batch_sizes=r18, threads=parse_threads("1,all"))], []
        if not no_wr50:
            plans.append(plan(backbones=["wr50"], batch_sizes=wr50, threads=["all"]))
            plans.append(plan(backbones=["wr50"], batch_sizes=[1], threads=["1"], devices=["cpu"]))
            notes.append(
                f"WR50-Rd550: batch {','.join(map(str, wr50))} at every thread and batch 1 at 1 thread: "
                "every call reads the ~2.5 GB packed Sigma^-1, so larger batches are left out (a short run)."
            )
        bench(plans, output, "table7", "PaDiM Table VII reproduction (padim-edge)", notes)


@main.command("compact-head")
@timing_options
@click.option("--no-wr50", is_flag=True, help="R18-Rd100 only.")
def compact_head(output, workdir, device, no_wr50, **timing):
    """Float32 vs int8 head: R18-Rd100 and WR50-Rd550, 2 threads, batch 1."""
    with h.workspace(workdir, "padim-compact-head-") as models:
        plan = BenchConfig(backbones=["r18"] if no_wr50 else ["r18", "wr50"], batch_sizes=[1], threads=["2"],
                           head_precisions=["fp32", "int8"], devices=parse_devices(device or "cpu"),
                           eager=False, **common(models, **timing))  # fmt: skip
        notes = ["Goals of the int8 head: fused / backbone alone <= 1.15x (R18-Rd100), <= 1.3x (WR50-Rd550)."]
        bench([plan], output, "compact_head_latency", "Compact head: float32 vs int8 Sigma^-1", notes)


@main.command("patchcore")
@timing_options
@click.option("--fit-frames", type=int, default=240, show_default=True, help="Synthetic frames per bank.")
def patchcore(output, workdir, device, fit_frames, **timing):
    """PatchCore R18 (coreset 0.1 / 0.01, fp32 / int8 bank) beside PaDiM R18-Rd100."""
    with h.workspace(workdir, "padim-patchcore-latency-") as models:
        settings = {**common(models, **timing), "devices": parse_devices(device or "cpu")}
        shared = {"backbones": ["r18"], "batch_sizes": [1, 8], "threads": ["2"], "eager": False, **settings}
        plans = [BenchConfig(**shared)] + [
            BenchConfig(method="patchcore", coreset=coreset, fit_frames=fit_frames,
                        head_precisions=["fp32", "int8"], backbone=False, **shared)
            for coreset in (0.1, 0.01)
        ]  # fmt: skip
        note = f"PatchCore banks: coreset of {fit_frames} synthetic frames' patch vectors (a category's size)"
        bench(plans, output, "patchcore_latency", "PatchCore beside PaDiM: latency", [note])


@main.command("fit-child", hidden=True)
@click.argument("backbone")
@click.argument("data", type=click.Path(path_type=Path))
@click.argument("count", type=int)
@click.argument("batch_size", type=int)
def fit_child(backbone: str, data: Path, count: int, batch_size: int) -> None:
    """One fit, in this (fresh) process; prints its memory and time after :data:`MARKER`."""
    import torch

    from padim_edge.bench.system import peak_rss_mb, rss_mb
    from padim_edge.export.fit import fit
    from padim_edge.export.pipeline import build_module
    from padim_edge.images import list_images

    paths = list_images(data)[:count]
    if len(paths) < count:
        raise SystemExit(f"{data} has {len(paths)} images, {count} were asked for")
    model, _ = build_module(backbone, random_init=True)
    rss_built, start = rss_mb(), time.perf_counter()
    fitted = fit(model, paths, batch_size=batch_size, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    print(MARKER + json.dumps({
        "images": fitted.images, "fit_s": seconds, "images_per_s": fitted.images / seconds,
        "rss_after_build_mb": rss_built, "peak_rss_mb": peak_rss_mb(), "rss_after_fit_mb": rss_mb(),
        "accumulators_mb": (model.patches * model.config.dims * (model.config.dims + 1)) * 8 / 2**20,
        "torch_threads": torch.get_num_threads(),
    }), flush=True)  # fmt: skip


def render_fit_memory(result: dict[str, Any]) -> str:
    """Markdown report of the fit-memory runs."""
    runs, keys = result["runs"], ("peak_rss_mb", "rss_after_build_mb", "rss_after_fit_mb", "accumulators_mb")
    body = [[r["images"], *(f"{r[k]:.0f}" for k in keys), f"{r['fit_s']:.1f}", f"{r['images_per_s']:.1f}"]
            for r in runs]  # fmt: skip
    headers = ["Images", "Peak RSS MB", "RSS before fit MB", "RSS after fit MB", "Accumulators MB", "Fit s"]
    return "\n".join([
        *h.header(result, "Fit memory: peak RSS against the number of training images"),
        f"PaDiM {result['backbone']} (random-init), CPU, batch {result['batch_size']}, torch "
        f"{runs[0]['torch_threads']} threads; images: {result['data']}. Each fit in a fresh process "
        "(peak RSS: its VmHWM). The accumulators are sized by the model, not by the number of images.",
        "",
        *h.table([*headers, "img/s"], body),
        "",
        f"**Peak RSS difference** ({runs[-1]['images']} vs {runs[0]['images']} images): "
        f"{result['difference']:+.1%} (target: less than {MAX_FIT_GROWTH:.0%}): "
        f"**{'PASS' if result['passed'] else 'FAIL'}**.",
        "",
    ])  # fmt: skip


@main.command("fit-memory")
@click.option("--backbone", type=click.Choice(["r18", "wr50", "mnv2"]), default="r18", show_default=True)
@click.option("--counts", default="100,700", show_default=True, help="Image counts, smallest first.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Images (default: the tiles).")
@h.measurement("fit_memory", render_fit_memory)
def fit_memory(work, backbone, counts, batch_size, data) -> dict[str, Any]:
    """Peak RSS of PaDiM fits on a few vs many images, each in a fresh process."""
    numbers, tiles, runs = parse_int_list(counts, name="--counts"), h.TILES / "train" / "good", []
    pythonpath = os.pathsep.join(filter(None, (str(h.ROOT), os.environ.get("PYTHONPATH"))))
    env = {**os.environ, "PYTHONPATH": pythonpath}
    source = str(data)
    if data is None and tiles.is_dir():
        data, source = tiles, "magnetic tile train/good (real grayscale tiles, sizes vary)"
    elif data is None:
        data, source = h.synthetic_images(work / "frames", max(numbers)), "synthetic 256x256 RGB PNGs"
    for count in numbers:
        h.log(f"fit on {count} images ({backbone}) in a fresh process ...")
        command = [sys.executable, __file__, "fit-child", backbone, str(data), str(count), str(batch_size)]
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
        if proc.returncode != 0 or not lines:
            raise click.ClickException(
                f"fit on {count} images: exit {proc.returncode}: {proc.stderr[-2000:]}"
            )
        runs.append(json.loads(lines[-1][len(MARKER) :]))
    difference = (runs[-1]["peak_rss_mb"] - runs[0]["peak_rss_mb"]) / runs[0]["peak_rss_mb"]
    return {"backbone": backbone, "batch_size": batch_size, "data": source, "runs": runs,
            "difference": difference, "passed": abs(difference) < MAX_FIT_GROWTH}  # fmt: skip


if __name__ == "__main__":
    main()
