"""Fit memory does not grow with the number of images: peak RSS of a fit on 100 vs 700 images.

The fit streams images one batch at a time into per-patch float64 accumulators whose size is set by
the model (patches x dims x dims), so a fit on 700 images should peak within 10% of a fit on 100.
Each fit runs in a fresh Python process (its own peak RSS, VmHWM), on the CPU, with a random-init
backbone (memory does not depend on the weights).

Images: ``../shared/data/magnetic_tile/train/good`` (714 real tiles, grayscale JPEGs of varying
sizes) when it is there, else synthetic 256x256 RGB PNGs written to a temporary folder.

Usage::

    python benchmarks/fit_memory.py                        # R18-Rd100, 100 vs 700 images
    python benchmarks/fit_memory.py --backbone mnv2 --counts 50,700 --synthetic

Writes ``benchmarks/results/fit_memory.{json,md}``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np

from padim_edge import atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "magnetic_tile" / "train" / "good"
#: The issue's bound on the peak-RSS difference between the two fits.
MAX_DIFFERENCE = 0.10
MARKER = "FIT_MEMORY "


def child(backbone: str, data: Path, count: int, batch_size: int) -> dict[str, Any]:
    """One fit, in this (fresh) process; returns its memory and time."""
    import time

    import torch

    from padim_edge.bench.system import peak_rss_mb, rss_mb
    from padim_edge.export.fit import fit
    from padim_edge.export.pipeline import build_module
    from padim_edge.images import list_images

    paths = list_images(data)[:count]
    if len(paths) < count:
        raise SystemExit(f"{data} has {len(paths)} images, {count} were asked for")
    rss_imported = rss_mb()
    model, _ = build_module(backbone, random_init=True)
    rss_built = rss_mb()
    peak_built = peak_rss_mb()
    start = time.perf_counter()
    report = fit(model, paths, batch_size=batch_size, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    patches, dims = model.patches, model.config.dims
    return {
        "images": report.images,
        "fit_s": seconds,
        "images_per_s": report.images / seconds,
        "rss_after_imports_mb": rss_imported,
        "rss_after_build_mb": rss_built,
        "peak_rss_before_fit_mb": peak_built,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_fit_mb": rss_mb(),
        "accumulators_mb": (patches * dims * dims + patches * dims) * 8 / 2**20,
        "torch_threads": torch.get_num_threads(),
    }


def synthetic_images(folder: Path, count: int, size: int = 256) -> Path:
    """Write ``count`` random 256x256 RGB PNGs (smooth noise, so they compress like photos)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR)
        image.save(folder / f"{i:04d}.png")
    return folder


def run_child(backbone: str, data: Path, count: int, batch_size: int) -> dict[str, Any]:
    """Run :func:`child` in a fresh interpreter and return its result."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, __file__, "--child", "--backbone", backbone, "--data", str(data)]
    command += ["--counts", str(count), "--batch-size", str(batch_size)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"fit on {count} images failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len(MARKER) :])


def render(result: dict[str, Any]) -> str:
    """Markdown report."""
    from padim_edge.bench.report import machine_line

    runs = result["runs"]
    lines = [
        "# Fit memory: peak RSS against the number of training images",
        "",
        f"**Machine:** {machine_line(result['machine'])}.",
        "",
        f"**Fit:** PaDiM {result['model']} (random-init backbone), CPU, batch size {result['batch_size']}, "
        f"torch {runs[0]['torch_threads']} threads; images: {result['data']['source']} "
        f"({result['data']['description']}). Each fit in a fresh process; peak RSS = its VmHWM.",
        "",
        "| Images | Peak RSS MB | RSS before fit MB | RSS after fit MB | Accumulators MB | Fit s | img/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['images']} | {run['peak_rss_mb']:.0f} | {run['rss_after_build_mb']:.0f} | "
            f"{run['rss_after_fit_mb']:.0f} | {run['accumulators_mb']:.0f} | {run['fit_s']:.1f} | "
            f"{run['images_per_s']:.1f} |"
        )
    diff = result["difference"]
    verdict = "PASS" if result["passed"] else "FAIL"
    lines += [
        "",
        f"**Peak RSS difference** ({runs[-1]['images']} vs {runs[0]['images']} images): "
        f"{diff:+.1%} (target: less than {MAX_DIFFERENCE:.0%}) — **{verdict}**.",
        "",
        "The accumulators (per-patch float64 mean and scatter matrix) are sized by the model, not by the "
        "number of images; images are decoded one batch at a time.",
        "",
    ]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--backbone",
    type=click.Choice(["r18", "wr50", "mnv2"]),
    default="r18",
    show_default=True,
    help="Backbone (paper channel count). wr50 needs ~8 GB of accumulators and minutes per fit.",
)
@click.option(
    "--counts", default="100,700", show_default=True, help="Image counts to compare, smallest first."
)
@click.option("--batch-size", type=int, default=16, show_default=True, help="Images per forward pass.")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Folder of training images (default: {SHARED_TRAIN} when present, else synthetic).",
)
@click.option(
    "--synthetic", is_flag=True, help="Use synthetic 256x256 frames even when the shared data is there."
)
@click.option(
    "--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True
)
@click.option("--child", "is_child", is_flag=True, hidden=True)
def main(
    backbone: str,
    counts: str,
    batch_size: int,
    data: Path | None,
    synthetic: bool,
    output: Path,
    is_child: bool,
) -> None:
    """Peak RSS of PaDiM fits on a few vs many images, each in a fresh process."""
    numbers = [int(c) for c in counts.split(",") if c.strip()]
    if is_child:
        assert data is not None
        print(MARKER + json.dumps(child(backbone, data, numbers[0], batch_size)), flush=True)
        return
    from padim_edge.bench.artifacts import paper_name
    from padim_edge.bench.system import machine_info

    with tempfile.TemporaryDirectory(prefix="padim-fit-memory-") as tmp:
        if data is None and not synthetic and SHARED_TRAIN.is_dir():
            data = SHARED_TRAIN
            described = {
                "source": "../shared/data/magnetic_tile/train/good",
                "description": "real grayscale tiles, sizes vary",
            }
        elif data is None:
            click.echo(f"writing {max(numbers)} synthetic 256x256 frames", err=True)
            data = synthetic_images(Path(tmp) / "frames", max(numbers))
            described = {"source": "synthetic", "description": "random smooth 256x256 RGB PNGs"}
        else:
            described = {"source": str(data), "description": "given folder"}
        available_images = sum(1 for p in Path(data).iterdir() if p.is_file())
        runs = []
        for count in numbers:
            click.echo(f"fit on {count} images ({backbone}) in a fresh process ...", err=True)
            run = run_child(backbone, data, count, batch_size)
            click.echo(f"  peak RSS {run['peak_rss_mb']:.0f} MB, {run['fit_s']:.1f} s", err=True)
            runs.append(run)
    first, last = runs[0]["peak_rss_mb"], runs[-1]["peak_rss_mb"]
    difference = (last - first) / first
    dims = {"r18": 100, "wr50": 550, "mnv2": 100}[backbone]
    result = {
        "machine": machine_info(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": paper_name(backbone, dims),
        "backbone": backbone,
        "batch_size": batch_size,
        "data": {**described, "images_available": available_images},
        "runs": runs,
        "difference": difference,
        "max_difference": MAX_DIFFERENCE,
        "passed": abs(difference) < MAX_DIFFERENCE,
    }
    output.mkdir(parents=True, exist_ok=True)
    atomic.write_json(output / "fit_memory.json", result, indent=1)
    atomic.write_text(output / "fit_memory.md", render(result))
    verdict = "PASS" if result["passed"] else "FAIL"
    click.echo(f"peak RSS {first:.0f} MB -> {last:.0f} MB ({difference:+.1%}): {verdict}", err=True)
    click.echo(str(output / "fit_memory.json"))
    click.echo(str(output / "fit_memory.md"))


if __name__ == "__main__":
    main()
