"""PatchCore latency through padim_edge.bench (rows like PaDiM's Table VII), part of benchmarks/patchcore.py.

* ``run_latency``: PatchCore R18 / WR50 at two coreset fractions, fitted on synthetic frames so that
  the bank has a realistic size, beside PaDiM R18-Rd100 / WR50-Rd550, all in one benchmark per round;
  several rounds, each measuring every model in turn (interleaved), summarised by the median of the
  rounds' p50s with their spread.
* ``run_curve``: the per-image cost against the bank size (and against dims), from graphs with random
  banks of chosen sizes (latency does not depend on the bank's values, only on its shape).
* ``cpu_time``: a contention-robust complement: process CPU time per image at ONE onnxruntime thread,
  models measured round-robin in one process. On a shared, oversubscribed machine wall times at 2
  threads stretch by whatever the other jobs take (and intra-op threads spin while descheduled); the
  CPU time a single-threaded call consumes is the work the model needs, close to its quiet 1-thread
  wall time.

Bank precision (``--head-precision`` for PatchCore) is a row option: ``bank_precisions`` adds, beside
each fp32 PatchCore model, its fp16 / int8 bank variant (rewritten from the float32 export by the
calibrate head job, labelled ``PatchCore-R18-d256-c0.01-m1882 int8-head``). Run on its own::

    python benchmarks/patchcore_latency.py --bank-precision fp32 --bank-precision int8    # R18 + WR50
    python benchmarks/patchcore_latency.py --backbones r18 --coresets 0.01 --batch-sizes 1 \
        --bank-precision fp32 --bank-precision int8 --rounds 1 --fit-frames 4 --reps 2 --no-padim \
        --wait-idle 0 -o /tmp/smoke.json                                               # smoke run
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import click
import numpy as np

from padim_edge import atomic
from padim_edge.bench.runner import BenchConfig, BenchResult, run_benchmark
from padim_edge.bench.timing import TimingPolicy
from padim_edge.export.padim.settings import HEAD_PRECISIONS


def _summarise(rounds: list[BenchResult]) -> list[dict[str, Any]]:
    """Median over rounds of each row's p50 ms/image, with the min-max spread and the rounds' bg CPU."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for result in rounds:
        for row in result.rows:
            groups[(row["model"], row["variant"], row["threads"], row["batch"])].append(row)
    out = []
    for (model, variant, threads, batch), rows in groups.items():
        p50 = [r["per_image_ms"]["p50"] for r in rows]
        out.append(
            {
                "model": model,
                "method": rows[0].get("method", "padim"),
                "bank_size": rows[0].get("bank_size"),
                "variant": variant,
                "threads": threads,
                "batch": batch,
                "ms_per_image_median": statistics.median(p50),
                "ms_per_image_min": min(p50),
                "ms_per_image_max": max(p50),
                "rounds": len(p50),
                "model_mb": (rows[0]["model_bytes"] or 0) / 1e6,
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
                "background_cpu_max": max(r.get("background_cpu") or 0.0 for r in rows),
            }
        )
    return out


def _fused_paths(result: BenchResult) -> list[dict[str, Any]]:
    """``{"model", "path"}`` of every fused model a benchmark timed (from its run settings)."""
    seen: dict[str, str] = {}
    for row in result.rows:
        if row["variant"] == "fused" and row.get("path"):
            seen.setdefault(row["model"], row["path"])
    return [{"model": m, "path": p} for m, p in seen.items()]


def _rounds(configs: list[BenchConfig], rounds: int) -> tuple[list[BenchResult], list[str]]:
    """Every config once per round, in order (so models interleave), ``rounds`` times."""
    results, notes = [], []
    for _ in range(rounds):
        merged: BenchResult | None = None
        for config in configs:
            part = run_benchmark(config)
            merged = part if merged is None else merged.merge(part)
        assert merged is not None
        results.append(merged)
        notes += [n for n in merged.notes if n not in notes]
    return results, notes


def run_latency(
    workdir: Path,
    *,
    backbones: tuple[str, ...] = ("r18", "wr50"),
    coresets: tuple[float, ...] = (0.01, 0.1),
    batch_sizes: tuple[int, ...] = (1, 8),
    fit_frames: int = 240,
    threads: str = "2",
    rounds: int = 3,
    policy: TimingPolicy | None = None,
    padim: bool = True,
    wait_idle: float = 20.0,
    progress: bool = True,
    bank_precisions: tuple[str, ...] = ("fp32",),
    cpu_calls: int = 6,
) -> dict[str, Any]:
    """PatchCore vs PaDiM latency rows (see the module docstring); returns the JSON section.

    ``bank_precisions``: PatchCore rows per bank precision (``fp32``, ``fp16``, ``int8``).
    """
    policy = policy or TimingPolicy(warmup=2, min_reps=20, min_seconds=1.0, max_seconds=6.0, floor_reps=5)
    common = {
        "batch_sizes": list(batch_sizes),
        "threads": [threads],
        "devices": ["cpu"],
        "policy": policy,
        "eager": False,
        "workdir": workdir,
        "wait_idle": wait_idle,
        "retries": 1,
        "progress": progress,
    }
    configs = []
    for backbone in backbones:
        if padim:
            configs.append(BenchConfig(backbones=[backbone], fit_frames=8, **common))
        for coreset in coresets:
            configs.append(
                BenchConfig(
                    backbones=[backbone],
                    method="patchcore",
                    coreset=coreset,
                    fit_frames=fit_frames,
                    head_precisions=list(bank_precisions),
                    **common,
                )
            )
    results, notes = _rounds(configs, rounds)
    fused = {r["model"]: Path(r["path"]) for r in _fused_paths(results[-1])}
    return {
        "cpu_time": cpu_time(fused, batch_sizes=batch_sizes, rounds=rounds, calls=cpu_calls),
        "fit_frames_patchcore": fit_frames,
        "bank_precisions": list(bank_precisions),
        "fit_frames_padim": 8,
        "threads": threads,
        "policy": policy.to_dict(),
        "rounds": rounds,
        "rows": _summarise(results),
        "notes": notes,
        "raw_rows": [row for result in results for row in result.rows],
    }


def curve_models(
    workdir: Path, *, backbone: str, dims: int, banks: tuple[int, ...], train_vectors: int
) -> list[Path]:
    """Exported PatchCore graphs with random banks of the given sizes (random-init backbone)."""
    from padim_edge.export.patchcore.model import BankInfo
    from padim_edge.export.pipeline import build_module, export

    paths = []
    for rows in banks:
        path = workdir / f"curve-{backbone}-d{dims}-m{rows}.onnx"
        if not path.is_file():
            model, weights = build_module(
                backbone, method="patchcore", dims=dims, random_init=True, coreset=rows / train_vectors
            )
            bank = np.random.default_rng(rows).standard_normal((rows, dims)).astype(np.float32)
            b = min(model.config.neighbours, rows)
            table = (np.arange(rows)[:, None] + np.arange(b)[None, :]) % rows
            model.set_bank(bank, table, info=BankInfo(train_vectors, {"mode": "random bank (latency only)"}))
            export(model, path, weights=weights, train_images=train_vectors // model.patches)
        paths.append(path)
    return paths


def run_curve(
    workdir: Path,
    *,
    banks: tuple[int, ...] = (500, 1000, 2000, 5000, 10_000, 20_000, 40_000),
    dims_sweep: tuple[int, ...] = (128, 384),
    dims_bank: int = 20_000,
    batch_sizes: tuple[int, ...] = (1, 8),
    threads: str = "2",
    rounds: int = 2,
    policy: TimingPolicy | None = None,
    wait_idle: float = 20.0,
    progress: bool = True,
) -> dict[str, Any]:
    """R18 PatchCore cost per image against the bank size (dims 256) and the dims (fixed bank)."""
    policy = policy or TimingPolicy(warmup=2, min_reps=20, min_seconds=1.0, max_seconds=4.0, floor_reps=5)
    train_vectors = 240 * 784
    models = curve_models(workdir, backbone="r18", dims=256, banks=banks, train_vectors=train_vectors)
    for dims in dims_sweep:
        models += curve_models(
            workdir, backbone="r18", dims=dims, banks=(dims_bank,), train_vectors=train_vectors
        )
    config = BenchConfig(
        backbones=[],
        models=models,
        batch_sizes=list(batch_sizes),
        threads=[threads],
        devices=["cpu"],
        policy=policy,
        eager=False,
        backbone=False,  # the backbone-alone rows come from the latency part (same graph for every bank)
        workdir=workdir,
        wait_idle=wait_idle,
        retries=1,
        progress=progress,
    )
    results, notes = _rounds([config], rounds)
    labels = {r["model"]: Path(r["path"]) for r in _fused_paths(results[-1])}
    return {
        "cpu_time": cpu_time(labels, batch_sizes=batch_sizes, rounds=rounds),
        "backbone": "r18",
        "threads": threads,
        "policy": policy.to_dict(),
        "rounds": rounds,
        "banks": list(banks),
        "dims_sweep": {"dims": [*dims_sweep, 256], "bank_size": dims_bank},
        "rows": _summarise(results),
        "notes": notes,
    }


def cpu_time(
    models: dict[str, Path], *, batch_sizes: tuple[int, ...] = (1, 8), calls: int = 6, rounds: int = 3
) -> list[dict[str, Any]]:
    """CPU ms per image of each model at one thread (median over rounds of the mean of ``calls`` calls).

    Each round opens every model in turn (one at a time, so memory stays that of one model), warms it
    up, and times ``calls`` calls per batch size with ``time.process_time`` (and the wall clock).
    """
    from padim_edge.bench.worker import make_frames
    from padim_edge.runtime import PadimModel

    samples: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for round_ in range(rounds):
        for label, path in models.items():
            model = PadimModel(path, device="cpu", threads=1)
            for batch in batch_sizes:
                frames = make_frames(batch, (224, 224))
                model.run(frames)
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(calls):
                    model.run(frames)
                samples[(label, batch)].append(
                    (
                        (time.process_time() - cpu) / calls / batch,
                        (time.perf_counter() - wall) / calls / batch,
                    )
                )
            print(f"cpu time round {round_ + 1}: {label} done", file=sys.stderr, flush=True)
            del model
    out = []
    for (label, batch), values in samples.items():
        cpu_ms = [1e3 * c for c, _ in values]
        out.append(
            {
                "model": label,
                "batch": batch,
                "cpu_ms_per_image_median": statistics.median(cpu_ms),
                "cpu_ms_per_image_min": min(cpu_ms),
                "cpu_ms_per_image_max": max(cpu_ms),
                "wall_ms_per_image_median": statistics.median(1e3 * w for _, w in values),
                "rounds": len(values),
                "calls": calls,
            }
        )
    return out


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--backbones", default="r18,wr50", show_default=True, help="Comma-separated backbones.")
@click.option("--coresets", default="0.01,0.1", show_default=True, help="Comma-separated coreset fractions.")
@click.option("--batch-sizes", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option(
    "--bank-precision",
    "bank_precisions",
    type=click.Choice(HEAD_PRECISIONS),
    multiple=True,
    help="PatchCore bank precision rows (repeatable; default fp32 only). E.g. --bank-precision fp32 "
    "--bank-precision int8 times each PatchCore model with its float32 and its int8 bank side by side.",
)
@click.option("--rounds", type=int, default=3, show_default=True, help="Interleaved rounds.")
@click.option("--fit-frames", type=int, default=240, show_default=True, help="Synthetic frames per bank.")
@click.option("--threads", default="2", show_default=True, help="onnxruntime intra-op threads.")
@click.option(
    "--reps", type=int, help="Timed calls per point (default: the policy's 20+; 2 for a smoke run)."
)
@click.option("--no-padim", is_flag=True, help="Skip the PaDiM rows.")
@click.option(
    "--wait-idle", type=float, default=20.0, show_default=True, help="Seconds to wait for a quiet CPU."
)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), help="Keep / reuse the models here."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(__file__).resolve().parent / "results" / "patchcore_latency.json",
    show_default=True,
)
def main(
    backbones: str,
    coresets: str,
    batch_sizes: str,
    bank_precisions: tuple[str, ...],
    rounds: int,
    fit_frames: int,
    threads: str,
    reps: int | None,
    no_padim: bool,
    wait_idle: float,
    workdir: Path | None,
    output: Path,
) -> None:
    """PatchCore latency rows beside PaDiM's (the latency part of benchmarks/patchcore.py), as JSON.

    \b
    Bank precisions as rows (each PatchCore model timed with each bank):
      python benchmarks/patchcore_latency.py --bank-precision fp32 --bank-precision fp16 \\
          --bank-precision int8
    Smoke run (tiny reps, not for numbers):
      python benchmarks/patchcore_latency.py --backbones r18 --coresets 0.01 --batch-sizes 1 \\
          --bank-precision fp32 --bank-precision int8 --rounds 1 --fit-frames 4 --reps 2 \\
          --no-padim --wait-idle 0 -o /tmp/smoke.json
    """
    import tempfile

    policy = None
    if reps is not None:
        policy = TimingPolicy(warmup=1, min_reps=reps, min_seconds=0.0, max_seconds=60.0, floor_reps=reps)
    with tempfile.TemporaryDirectory(prefix="patchcore-latency-") as scratch:
        section = run_latency(
            workdir or Path(scratch),
            backbones=tuple(b for b in backbones.split(",") if b),
            coresets=_floats(coresets),
            batch_sizes=tuple(int(b) for b in batch_sizes.split(",") if b),
            fit_frames=fit_frames,
            threads=threads,
            rounds=rounds,
            policy=policy,
            padim=not no_padim,
            wait_idle=wait_idle,
            bank_precisions=tuple(bank_precisions) or ("fp32",),
            cpu_calls=reps or 6,
        )
    print(atomic.write_json(output, section, indent=1))


if __name__ == "__main__":
    main()
