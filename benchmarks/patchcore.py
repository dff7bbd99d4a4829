"""PatchCore in padim-edge: accuracy, latency beside PaDiM, cost per image vs bank size, fit cost.

Writes ``benchmarks/results/patchcore.{json,md,png}``. Parts (``--parts``, default all; a run updates
only its parts in an existing JSON, so parts can be re-run separately):

* ``accuracy``: magnetic tile (``../shared``), MobileNetV2 ImageNet weights, coreset 0.1 and 0.01: image
  AUROC, pixel AUROC, PRO of the exported graph through the runtime; the float64 reference of the same
  method; exact greedy vs the streaming bank; PaDiM on the same split in the same run.
* ``latency``: PatchCore R18 / WR50 at coreset 0.01 and 0.1 (random-init backbones, fitted on synthetic
  frames for realistic bank sizes) beside PaDiM R18-Rd100 / WR50-Rd550, CPU EP, 224, B=1 and B=8,
  through padim_edge.bench; rounds interleave the models; medians with min-max spread.
* ``curve``: R18 cost per image against the bank size (and the dims), plotted.
* ``fit``: greedy selection of ~190k vectors to 10 %; peak fit RSS on 200 vs 1000 images.

Usage::

    python benchmarks/patchcore.py                          # everything (~1 h on 2 busy cores)
    python benchmarks/patchcore.py --parts latency,curve --workdir /tmp/pc-models
    python benchmarks/patchcore.py --quick                  # smaller everything, for a smoke run
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from padim_edge import atomic
from padim_edge.export.padim.settings import HEAD_PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared"
TILES = SHARED / "data" / "magnetic_tile"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
PARTS = ("accuracy", "latency", "curve", "fit")
#: The issue's goals.
GOALS = {
    "graph_vs_reference_auroc": 0.005,
    "r18_c001_vs_padim_r18_b1": 2.0,
    "selection_190k_s": 90.0,
    "rss_1000_vs_200": 1.5,
}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--parts", default=",".join(PARTS), show_default=True, help="Comma-separated parts to run.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep / reuse the built latency models here (default: temporary).",
)
@click.option("--rounds", type=int, default=3, show_default=True, help="Latency rounds (interleaved).")
@click.option("--fit-frames", type=int, default=240, show_default=True, help="Synthetic frames per bank.")
@click.option("--baseline", is_flag=True, help="Also time the plain vectorised torch greedy loop (slow).")
@click.option(
    "--quick", is_flag=True, help="Small settings everywhere (smoke run; numbers not for the README)."
)
@click.option(
    "--bank-precision",
    "bank_precisions",
    type=click.Choice(HEAD_PRECISIONS),
    multiple=True,
    help="Latency part: PatchCore rows per bank precision (repeatable; default fp32). Accuracy of each "
    "bank precision: benchmarks/patchcore_bank.py.",
)
@click.option("--render-only", is_flag=True, help="Only re-render the markdown and plot from the JSON.")
def main(
    parts: str,
    output: Path,
    workdir: Path | None,
    rounds: int,
    fit_frames: int,
    baseline: bool,
    quick: bool,
    bank_precisions: tuple[str, ...],
    render_only: bool,
) -> None:
    """Run the PatchCore benchmark parts and write patchcore.{json,md,png}."""
    from patchcore_report import plot, render

    from padim_edge.bench.system import machine_info

    output.mkdir(parents=True, exist_ok=True)
    path = output / "patchcore.json"
    result = _load(path)
    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = set(chosen) - set(PARTS)
    if unknown:
        raise click.BadParameter(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    temporary = workdir is None
    models = Path(tempfile.mkdtemp(prefix="patchcore-bench-")) if temporary else workdir
    models.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/patchcore.py", *sys.argv[1:]])
    try:
        for part in [] if render_only else chosen:
            start = time.perf_counter()
            print(f"== {part}", file=sys.stderr, flush=True)
            section = run_part(
                part, models, rounds=rounds, fit_frames=fit_frames, baseline=baseline, quick=quick,
                bank_precisions=bank_precisions or ("fp32",),
            )  # fmt: skip
            section["seconds"] = time.perf_counter() - start
            section["command"] = command
            section["quick"] = quick
            section["machine"] = machine_info()
            section["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            result[part] = section
            atomic.write_text(path, json.dumps(result, indent=2, default=float))
    finally:
        if temporary:
            shutil.rmtree(models, ignore_errors=True)
    result["goals"] = GOALS
    atomic.write_text(path, json.dumps(result, indent=2, default=float))
    atomic.write_text(output / "patchcore.md", render(result))
    png = plot(result, output / "patchcore.png")
    for written in (path, output / "patchcore.md", png):
        if written is not None:
            print(written)


def run_part(
    part: str,
    workdir: Path,
    *,
    rounds: int,
    fit_frames: int,
    baseline: bool,
    quick: bool,
    bank_precisions: tuple[str, ...] = ("fp32",),
) -> dict:
    """One part's JSON section."""
    if part == "accuracy":
        from patchcore_accuracy import run_accuracy

        if not (TILES.is_dir() and WEIGHTS.is_file()):
            return {"skipped": f"needs {TILES} and {WEIGHTS}"}
        return run_accuracy(TILES, WEIGHTS, workdir, train_limit=60 if quick else None)
    if part == "latency":
        from patchcore_latency import run_latency

        if quick:
            return run_latency(
                workdir,
                backbones=("r18",),
                fit_frames=24,
                rounds=1,
                wait_idle=0.0,
                bank_precisions=bank_precisions,
            )
        return run_latency(workdir, fit_frames=fit_frames, rounds=rounds, bank_precisions=bank_precisions)
    if part == "curve":
        from patchcore_latency import run_curve

        if quick:
            return run_curve(workdir, banks=(500, 2000), dims_sweep=(128,), dims_bank=2000, rounds=1)
        return run_curve(workdir, rounds=max(1, rounds - 1))
    from patchcore_fit import run_memory, run_selection

    if not (TILES.is_dir() and WEIGHTS.is_file()):
        return {"skipped": f"needs {TILES} and {WEIGHTS}"}
    selection = run_selection(
        TILES, WEIGHTS, vectors=20_000 if quick else 190_000, repeats=1 if quick else 3, baseline=baseline,
        progress=True,
    )  # fmt: skip
    memory = run_memory(counts=(20, 100) if quick else (200, 1000), repeats=1 if quick else 2, progress=True)
    return {"selection": selection, "memory": memory}


if __name__ == "__main__":
    main()
