"""Issue 9's goals table: the compact (int8 / fp16) Mahalanobis head, CPU EP, 2 threads, 224x224.

Sections (each can be skipped; models are kept in ``--workdir`` and reused):

* ``r18``: R18-Rd100, random-init (latency does not depend on the weights), Gaussians fitted on 8
  synthetic frames (:func:`padim_edge.bench.artifacts.prepare`). Variants from ``padim-calibrate``'s
  library: ``head-int8``, ``head-fp16``, ``int8-qoperator`` (calibrated on 20 synthetic frames) and
  ``int8-qoperator+head-int8``. Batch 1, end to end through the runtime, against the backbone alone.
* ``wr50``: WR50-Rd550, random-init, exported by the same exporter with synthetic Gaussians (a fit
  would hold 7.6 GB of float64 statistics; the values do not change latency or memory); its int8 head
  with 6 column blocks (``--head-blocks 6``, the goal rows) and with the default 3: file sizes,
  batch-1 latency of the int8 head against the backbone alone, and peak RSS of a fresh process opening
  each head precision (inline and external data, with and without session options that could avoid
  copies of initializers).
* ``accuracy``: MobileNetV2 with its real ImageNet weights, fitted on ``magnetic_tile/train/good``
  (dims 100, 256 -> 224), float32 head vs int8 / fp16 heads rewritten from it: image / pixel AUROC and
  PRO (:mod:`padim_edge.evaluation`), Spearman rank correlation of the image scores per test set.
* ``ops``: the head alone at R18-Rd100 size on PaDiM-like random Gaussians: error against float64 and
  latency of fp32, int8 (per-row 7-bit, the default), int8 with DynamicQuantizeLinear, fp16. The
  measurement behind the choice of the int8 layout.

Timing is interleaved: every round opens each model in turn (one session alive at a time: idle
onnxruntime threads spin), warms it up, times ``--reps`` calls and closes it; ratios are taken within
a round, and the median and range over ``--rounds`` rounds are reported, with the CPU share other
processes used meanwhile. The machine, versions and settings go into the output.

Usage::

    python benchmarks/compact_head.py --workdir /tmp/compact-head          # everything (~1 h on 2 cores)
    python benchmarks/compact_head.py --skip-wr50 --skip-accuracy --rounds 5

Writes ``benchmarks/results/compact_head.json`` and ``compact_head.md``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compact_head_parts as parts
from compact_head_report import GOALS, goals, render

from padim_edge.bench.artifacts import prepare, synthetic_frames
from padim_edge.bench.system import machine_info
from padim_edge.bench.worker import files_bytes
from padim_edge.calibration.pipeline import calibrate
from padim_edge.onnx_files import data_file, save_model

RESULTS = Path(__file__).resolve().parent / "results"
#: The project's ``../shared`` folder (``PADIM_EDGE_SHARED`` overrides it, as in the tests).
SHARED = Path(os.environ.get("PADIM_EDGE_SHARED") or Path(__file__).resolve().parents[2] / "shared")
MAGNETIC_TILE = SHARED / "data" / "magnetic_tile"
MNV2_WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
#: Session config entries tried against the load-time peak (onnxruntime names).
SESSION_CONFIGS: dict[str, dict[str, str]] = {
    "runtime default": {},
    "no prepacking": {"session.disable_prepacking": "1"},
    "device allocator for initializers": {"session.use_device_allocator_for_initializers": "1"},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _variant(source: Path, variant: str, *, tag: str = "", **kwargs: Any) -> Path:
    """``padim-calibrate`` variant of ``source`` beside it (made once)."""
    out = source.with_name(f"{source.stem}-{variant.replace('+', '-')}{tag}.onnx")
    if not out.is_file():
        log(f"  making {out.name}")
        calibrate(source, out, variant=variant, progress=False, **kwargs)
    return out


def _calibration_frames(folder: Path, count: int = 20) -> Path:
    if not folder.is_dir() or len(list(folder.glob("*.png"))) < count:
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(synthetic_frames(count, 256, seed=3)):
            Image.fromarray(frame).save(folder / f"frame_{i:03d}.png")
    return folder


def _other_storage(path: Path) -> Path:
    """The same model saved the other way (inline <-> external data), for the load-RSS comparison."""
    import onnx

    inline = not data_file(path).exists()
    other = path.with_name(f"{path.stem}-{'external' if inline else 'inline'}.onnx")
    if not other.is_file():
        save_model(onnx.load(str(path)), other, external_data="always" if inline else "never")
    return other


def r18_section(workdir: Path, *, rounds: int, reps: int) -> dict[str, Any]:
    art = prepare("r18", str(workdir), eager=False)
    fused, backbone = Path(art.fused), Path(art.backbone_graph)
    frames = _calibration_frames(workdir / "calibration_frames")
    int8 = _variant(fused, "int8-qoperator", data=frames)
    models = {
        "fp32": fused,
        "fp32 + int8 head": _variant(fused, "head-int8"),
        "fp32 + fp16 head": _variant(fused, "head-fp16"),
        "int8 backbone": int8,
        "int8 backbone + int8 head": _variant(fused, "int8-qoperator+head-int8", data=frames),
    }
    batch = parts.make_batch(1)
    openers = {"backbone alone": lambda: parts.open_backbone(backbone, batch)}
    openers.update({name: (lambda p=path: parts.open_fused(p, batch)) for name, path in models.items()})
    log(f"R18-Rd100: {rounds} rounds x {reps} calls, batch 1")
    timing = parts.interleaved(openers, rounds=rounds, reps=reps, log=log)
    return {
        "label": art.label,
        "bytes": {name: files_bytes(p) for name, p in {**models, "backbone alone": backbone}.items()},
        "timing": timing,
        "ms": {name: parts.spread(values) for name, values in timing["ms"].items()},
    }


def wr50_models(workdir: Path) -> tuple[Path, Path]:
    """WR50-Rd550 at 224, random-init, through the exporter, with synthetic Gaussians instead of a fit.

    A fit (even on 8 frames) holds 7.6 GB of float64 scatter matrices and inverts 3136 550x550
    matrices; latency, file size and load memory do not depend on the values, so the Gaussians here
    are ``mean ~ N(0, 1)`` and ``Sigma^-1 = I + B B^T / 8`` with ``B`` ``[550, 8]`` random per patch
    (dense and symmetric positive definite like a fitted one). Peak memory about 8 GB.
    """
    import torch

    from padim_edge.export.exporter import trace_features
    from padim_edge.export.pipeline import build_module, export

    folder = workdir / "wr50-d550-synthetic"
    fused, backbone = folder / "padim.onnx", folder / "backbone.onnx"
    if fused.is_file() and backbone.is_file():
        return fused, backbone
    folder.mkdir(parents=True, exist_ok=True)
    log("WR50-Rd550: building (random-init backbone, synthetic Gaussians)")
    model, weights = build_module("wr50", dims=550, resize=256, crop=224, random_init=True)
    generator = torch.Generator().manual_seed(0)
    factors = torch.randn(model.patches, 550, 8, generator=generator)
    inverse = torch.baddbmm(
        torch.eye(550).expand(model.patches, 550, 550), factors, factors.transpose(1, 2), alpha=1 / 8
    )
    model.set_gaussians(torch.randn(model.patches, 550, generator=generator), inverse)
    del factors, inverse
    save_model(trace_features(model, reduce=False), backbone)
    export(model, fused, weights=weights, train_images=0)
    return fused, backbone


def wr50_section(workdir: Path, *, rounds: int, reps: int, rss: bool) -> dict[str, Any]:
    fused, backbone = wr50_models(workdir)
    int8 = _variant(fused, "head-int8", tag="-6blocks", head_blocks=6)
    models = {
        "fp32": fused,
        "fp32 + int8 head": int8,
        "fp32 + int8 head, 3 blocks": _variant(fused, "head-int8"),
        "fp32 + fp16 head": _variant(fused, "head-fp16"),
    }
    out: dict[str, Any] = {
        "label": "WR50-Rd550",
        "gaussians": "synthetic: Sigma^-1 = I + B B^T / 8, B [550, 8] per patch (see wr50_models)",
        "bytes": {name: files_bytes(p) for name, p in {**models, "backbone alone": backbone}.items()},
        "files": {
            name: [p.name for p in (path, data_file(path)) if p.exists()] for name, path in models.items()
        },
    }
    batch = parts.make_batch(1)
    openers = {"backbone alone": lambda: parts.open_backbone(backbone, batch)}
    for name in ("fp32 + int8 head", "fp32 + int8 head, 3 blocks", "fp32"):
        openers[name] = lambda path=models[name]: parts.open_fused(path, batch)
    log(f"WR50-Rd550: {rounds} rounds x {reps} calls, batch 1")
    timing = parts.interleaved(openers, rounds=rounds, reps=reps, warmup=2, log=log)
    out["timing"] = timing
    out["ms"] = {name: parts.spread(values) for name, values in timing["ms"].items()}
    if rss:
        probes = []
        stored = dict(models)
        for name in ("fp32 + int8 head", "fp32 + fp16 head"):  # int8: 6 blocks, the WR50-Rd550 choice
            other = _other_storage(models[name])
            stored[f"{name} ({'external data' if data_file(other).exists() else 'inline'})"] = other
        for name, path in stored.items():
            for config_name, config in SESSION_CONFIGS.items():
                log(f"  peak RSS: {name} ({path.name}), {config_name}")
                result = parts.measure_rss(path, config)
                probes.append(
                    {
                        "model": name,
                        "file": path.name,
                        "external_data": data_file(path).exists(),
                        "bytes": files_bytes(path),
                        "session": config_name,
                        **result,
                    }
                )
        out["rss"] = probes
    return out


def accuracy_section(workdir: Path, data: Path, weights: Path) -> dict[str, Any]:
    from padim_edge.export.pipeline import run_export

    fp32 = workdir / "mnv2-rd100-magnetic-tile.onnx"
    if not fp32.is_file():
        log("MobileNetV2 (ImageNet weights): fitting on magnetic_tile/train/good")
        run_export(
            data / "train" / "good", fp32, backbone="mnv2", weights_file=weights, device="cpu", progress=False
        )
    models = {"fp32": fp32, "int8": _variant(fp32, "head-int8"), "fp16": _variant(fp32, "head-fp16")}
    results = {}
    for name, path in models.items():
        log(f"  evaluating the {name} head on {data / 'test'}")
        results[name] = parts.evaluate(path, data)
    agreement = {name: parts.rank_agreement(results["fp32"], results[name]) for name in ("int8", "fp16")}
    return {"data": str(data), "weights": weights.name, "metrics": results, "spearman": agreement}


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Keep / reuse models here.")
@click.option(
    "--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True
)
@click.option("--rounds", type=int, default=7, show_default=True, help="Interleaved rounds (R18-Rd100, ops).")
@click.option("--reps", type=int, default=30, show_default=True, help="Timed calls per model and round.")
@click.option("--wr50-rounds", type=int, default=5, show_default=True)
@click.option("--wr50-reps", type=int, default=5, show_default=True)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help=f"magnetic_tile root (default: {MAGNETIC_TILE}).",
)
@click.option(
    "--weights", type=click.Path(path_type=Path), default=None, help="MobileNetV2 ImageNet weights."
)
@click.option("--name", default="compact_head", show_default=True, help="File stem of the outputs.")
@click.option("--threads", type=int, default=2, show_default=True, help="Intra-op threads (the goals: 2).")
@click.option("--skip-r18", is_flag=True)
@click.option("--skip-wr50", is_flag=True)
@click.option("--skip-rss", is_flag=True)
@click.option("--skip-accuracy", is_flag=True)
@click.option("--skip-ops", is_flag=True)
def main(
    workdir: Path | None, output: Path, rounds: int, reps: int, wr50_rounds: int, wr50_reps: int,
    data: Path | None, weights: Path | None, name: str, threads: int, skip_r18: bool, skip_wr50: bool,
    skip_rss: bool, skip_accuracy: bool, skip_ops: bool,
) -> None:  # fmt: skip
    """Run the compact-head benchmark and write compact_head.{json,md}."""
    data, weights = data or MAGNETIC_TILE, weights or MNV2_WEIGHTS
    parts.THREADS = threads
    temporary = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="padim-compact-head-")) if temporary else workdir
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "started": started, "threads": parts.THREADS, "frame": "224x224", "batch": 1, "rounds": rounds,
            "reps": reps, "wr50_rounds": wr50_rounds, "wr50_reps": wr50_reps, "device": "cpu",
            "command": " ".join(sys.argv),
        },
        "goals_spec": GOALS,
    }  # fmt: skip
    try:
        if not skip_ops:
            log("head op choice (R18-Rd100 size)")
            result["ops"] = parts.head_op_choice(grid=56, dims=100, rounds=rounds, reps=reps, log=log)
        if not skip_r18:
            result["r18"] = r18_section(workdir, rounds=rounds, reps=reps)
        if not skip_wr50:
            result["wr50"] = wr50_section(workdir, rounds=wr50_rounds, reps=wr50_reps, rss=not skip_rss)
        if not skip_accuracy:
            if data.is_dir() and weights.is_file():
                result["accuracy"] = accuracy_section(workdir, data, weights)
            else:
                result["accuracy"] = {"skipped": f"needs {data} and {weights}"}
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    result["settings"]["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    result["goals"] = goals(result)
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{name}.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    (output / f"{name}.md").write_text(render(result))
    for row in result["goals"]:
        log(f"{row['goal']}: {row['measured']} ({row['target']}) {row['result']}")
    print(output / f"{name}.md")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
