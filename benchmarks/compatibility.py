"""Compatibility suite: old onnxruntime releases, and the TensorRT-target graph against the default one.

* ``old-onnxruntime``: builds every variant of one small model (ResNet-18 random-init, dims 24, resize
  72, crop 64: loading and arithmetic do not depend on the weights): the default graph, the same with a
  baked threshold, INT8 QDQ, FP16, INT8 QOperator, compact heads, ``--reduction orthogonal`` and its
  variants, a PatchCore model and its variants, and the TensorRT-target graph (``--target tensorrt
  --input-size 90x120``) with its variants. Scores fixed frames with the onnxruntime installed here
  (the reference), then, in a throwaway virtual environment per old runtime
  (``~/.cache/padim-edge/venvs``: onnxruntime 1.16.3, 1.17.3, 1.18.1 on this Python with numpy < 2,
  and 1.16.3 with numpy 1.24.4 on Python 3.8, JetPack 5's), runs ``padim_edge.runtime`` from this
  checkout on the same files and frames. Pass: max |d score| <= 1e-4 x the largest reference score.
  About 10 minutes the first time (venvs), then 3. Writes ``old_onnxruntime.{json,md}``; exits 1 when
  a cell is not ``ok``.
* ``tensorrt-profile``: MobileNetV2 with its ImageNet weights fitted once on the magnetic tile's
  ``train/good`` (dims 100, resize 256, crop 224), exported twice from the same module: the default
  graph and the TensorRT target (``--input-size 480x640``: resize + crop as constant MatMuls, opset
  17). Every test image, resized to 480x640, is scored by both on the CPU EP: max score and map
  difference, image and pixel AUROC (``sklearn``). About 10 minutes. Writes ``tensorrt_profile.{json,md}``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    ROOT,
    TILES,
    WEIGHTS,
    Run,
    header,
    output_options,
    require_shared,
    workspace,
    write_results,
)

VENVS = Path.home() / ".cache" / "padim-edge" / "venvs"
#: Scores must agree to this fraction of the largest reference score.
RTOL = 1e-4
TRT_SIZE = (90, 120)
#: padim-calibrate variants built from each base graph: every backbone variant; INT8 QOperator is
#: CPU-only (padim-check exempts it on TensorRT), so the TensorRT-target graph has the others.
VARIANTS_BY_TARGET = {
    "default": ("fp32-threshold", "int8-qdq", "fp16", "int8-qoperator"),
    "tensorrt": ("fp32-threshold", "int8-qdq", "fp16"),
    "orthogonal": ("int8-qdq", "int8-qoperator"),
}
#: Compact-head variants (PaDiM's Sigma^-1, PatchCore's bank): the int8 head is CPU-only as well.
HEAD_VARIANTS_BY_TARGET = {
    "default": ("head-fp16", "head-int8"),
    "tensorrt": ("head-fp16",),
    "patchcore": ("head-fp16", "head-int8", "int8-qoperator"),
    "orthogonal": ("head-int8",),
}


@dataclass(frozen=True)
class Env:
    """One throwaway environment: a Python and the pip requirements besides nothing else."""

    name: str
    python: str
    requirements: tuple[str, ...]


ENVS = {
    e.name: e
    for e in (
        Env("ort-1.16.3-py3.11", sys.executable, ("onnxruntime==1.16.3", "numpy<2")),
        Env("ort-1.17.3-py3.11", sys.executable, ("onnxruntime==1.17.3", "numpy<2")),
        Env("ort-1.18.1-py3.11", sys.executable, ("onnxruntime==1.18.1", "numpy<2")),
        Env(
            "ort-1.16.3-py3.8",
            "/root/.pyenv/versions/3.8.18/bin/python3.8",
            ("onnxruntime==1.16.3", "numpy==1.24.4"),
        ),
    )
}

#: Run inside each environment (Python 3.8 syntax): score every model on its frames, print JSON.
WORKER = r"""
import json, platform, sys
import numpy as np
import onnxruntime
from padim_edge.runtime import PadimModel
jobs = json.load(open(sys.argv[1]))
out = {"onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
       "numpy": np.__version__, "models": {}}
for name, job in jobs.items():
    try:
        model = PadimModel(job["model"], device="cpu")
        frames = np.load(job["frames"])
        out["models"][name] = {"scores": [p.score for p in model.predict(frames)]}
    except Exception as exc:
        out["models"][name] = {"error": "%s: %s" % (type(exc).__name__, str(exc)[:300])}
print("PADIM-RESULT " + json.dumps(out))
"""


def parse_worker_output(text: str) -> dict[str, object]:
    """The JSON the worker printed on its ``PADIM-RESULT`` line.

    Raises:
        ValueError: No such line (the worker crashed before it: the text says why).
    """
    for line in reversed(text.splitlines()):
        if line.startswith("PADIM-RESULT "):
            return json.loads(line[len("PADIM-RESULT ") :])
    raise ValueError(f"the worker printed no result; its output ended with: {text.strip()[-500:]}")


def compare(reference: list[float], got: dict[str, object], rtol: float = RTOL) -> dict[str, object]:
    """One table cell: ``ok`` / ``differs`` / ``error`` with the worst score difference."""
    if "error" in got:
        return {"status": "error", "error": got["error"]}
    scores = np.asarray(got["scores"], dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if scores.shape != ref.shape:
        return {"status": "error", "error": f"{scores.size} scores for {ref.size} frames"}
    worst = float(np.abs(scores - ref).max())
    scale = float(np.abs(ref).max())
    relative = worst / max(scale, 1e-12)
    return {"status": "ok" if relative <= rtol else "differs", "max_abs": worst, "relative": relative}


def ensure_env(env: Env) -> Path:
    """The environment's python, creating the venv (once) outside the repository."""
    folder = VENVS / env.name
    python = folder / "bin" / "python"
    marker = folder / ".padim-ready"
    if marker.is_file() and marker.read_text() == "\n".join(env.requirements):
        return python
    if not Path(env.python).is_file():
        raise FileNotFoundError(f"{env.python} not found (needed for {env.name})")
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([env.python, "-m", "venv", str(folder)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *env.requirements],
        check=True,
    )
    marker.write_text("\n".join(env.requirements))
    return python


def run_env(python: Path, jobs: Path) -> dict[str, object]:
    """Run the worker in an environment, with this checkout on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [str(python), "-c", WORKER, str(jobs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    return parse_worker_output(done.stdout + done.stderr)


def build_variants(work: Path) -> dict[str, dict[str, str]]:
    """Export and calibrate every variant; returns ``name -> {model, frames}``."""
    from padim_edge.calibration.pipeline import calibrate
    from padim_edge.export.pipeline import run_export
    from tests.conftest import SMALL, write_images

    train, held = work / "train", work / "held"
    write_images(train, 12, sizes=[(80, 96), (64, 64), (100, 90)])
    write_images(held, 12, seed=3, sizes=[(80, 96), (70, 70)])
    rng = np.random.default_rng(0)
    frames_any, frames_fixed = work / "frames-any.npy", work / "frames-fixed.npy"
    np.save(frames_any, rng.integers(0, 256, (6, 80, 96, 3), dtype=np.uint8))
    np.save(frames_fixed, rng.integers(0, 256, (6, *TRT_SIZE, 3), dtype=np.uint8))
    base = {
        "default": work / "model.onnx",
        "tensorrt": work / "model-trt.onnx",
        "patchcore": work / "model-patchcore.onnx",
        "orthogonal": work / "model-orthogonal.onnx",
    }
    run_export(train, base["default"], parity_images=2, progress=False, **SMALL)
    run_export(train, base["patchcore"], parity_images=2, progress=False, method="patchcore", **SMALL)
    run_export(train, base["orthogonal"], parity_images=2, progress=False, reduction="orthogonal", **SMALL)
    run_export(
        train,
        base["tensorrt"],
        parity_images=2,
        progress=False,
        target="tensorrt",
        input_size=TRT_SIZE,
        **SMALL,
    )
    jobs = {}
    for target, source in base.items():
        frames = str(frames_fixed if target == "tensorrt" else frames_any)
        prefix = "" if target == "default" else f"{target} "
        jobs[f"{prefix}fp32".strip()] = {"model": str(source), "frames": frames}
        for variant in (*VARIANTS_BY_TARGET.get(target, ()), *HEAD_VARIANTS_BY_TARGET[target]):
            out = source.with_name(f"{source.stem}-{variant}.onnx")
            extra = {"target_fpr": 0.1} if variant == "fp32-threshold" else {}
            calibrate(source, out, variant=variant, data=held, calibration_images=6, progress=False, **extra)
            jobs[f"{prefix}{variant}"] = {"model": str(out), "frames": frames}
    return jobs


def reference_scores(jobs: dict[str, dict[str, str]]) -> dict[str, list[float]]:
    """Scores with the onnxruntime installed here."""
    from padim_edge.runtime import PadimModel

    return {
        name: [p.score for p in PadimModel(job["model"], device="cpu").predict(np.load(job["frames"]))]
        for name, job in jobs.items()
    }


#: Why an opset-18 FP16 graph differs on onnxruntime 1.16 (padim-check's note ``float16-relu-cpu``).
FP16_ON_1_16 = (
    "FP16 of the default (opset-18) graph on onnxruntime 1.16: expected, not a fault of the file. The x86 "
    "CPU EPs have no float16 Conv/Relu kernels and run them in float32 behind Casts; 1.16 also drops lossy "
    "fp32->fp16->fp32 Cast round trips (onnxruntime #8787, fixed in 1.17 by PR #17953), while >= 1.17 "
    "runs an opset-18 float16 Relu as its function body (a float16 Max), rounding activations there. "
    "ONNX defines that body for opset 18 only, so on the opset-17 TensorRT-target FP16 graph every release "
    "runs Relu in float32 and the scores agree. GPU EPs are not affected. "
    "See docs/edge-targets.md."
)


RESIZE, CROP = 256, 224
SIZE = (480, 640)


def test_set() -> tuple[list[Path], np.ndarray, list[Path | None]]:
    """Test images, their labels (defect = True) and mask files (``None`` for good images)."""
    from padim_edge.images import list_images

    paths, labels, masks = [], [], []
    for folder in sorted((TILES / "test").iterdir()):
        for image in list_images(folder):
            paths.append(image)
            labels.append(folder.name != "good")
            masks.append(
                None
                if folder.name == "good"
                else TILES / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            )
    return paths, np.array(labels), masks


def model_mask(path: Path | None, geometry: Any) -> np.ndarray:
    """A mask in the model's view of a frame resized to :data:`SIZE` (``geometry``: a ``Geometry``)."""
    from PIL import Image

    if path is None:
        return np.zeros((CROP, CROP), dtype=bool)
    with Image.open(path) as image:
        resized = image.convert("L").resize((SIZE[1], SIZE[0]), Image.Resampling.NEAREST)
    return geometry.mask_view(np.asarray(resized))


def fit_and_export(work: Path) -> dict[str, Path]:
    """Fit once, export the default and the TensorRT-target graphs from the same module."""
    from padim_edge.export.pipeline import build_module, export, fit
    from padim_edge.images import list_images, load_image

    paths = {"default": work / "mnv2.onnx", "tensorrt": work / "mnv2-trt-480x640.onnx"}
    if all(p.exists() for p in paths.values()):
        return paths
    model, weights = build_module("mnv2", dims=100, resize=RESIZE, crop=CROP, weights_file=WEIGHTS)
    train = list_images(TILES / "train" / "good")
    report = fit(model, train, batch_size=16, device="cpu", progress=True)
    sample = [load_image(p) for p in train[:4]]
    for target, out in paths.items():
        export(
            model,
            out,
            weights=weights,
            train_images=report.images,
            parity_images=sample,
            input_size=SIZE if target == "tensorrt" else None,
        )
    return paths


def score(model: Any, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and maps of frames, 8 at a time."""
    scores, maps = [], []
    for lo in range(0, len(frames), 8):
        for p in model.predict(frames[lo : lo + 8]):
            scores.append(p.score)
            maps.append(p.anomaly_map)
    return np.array(scores, dtype=np.float32), np.stack(maps)


def markdown(result: dict[str, Any]) -> str:
    """The old-onnxruntime table."""
    envs = result["envs"]
    lines = [
        *header(result, "Old onnxruntime releases: do they load our models, with the same scores?"),
        f"Reference: onnxruntime {result['reference']['onnxruntime']} on Python "
        f"{result['reference']['python']}. "
        f"Cells: max |d score| relative to the largest reference score (pass: <= {RTOL:g}).",
        "",
        "| variant | opset / IR | "
        + " | ".join(f"{e['onnxruntime']} (py {e['python']})" for e in envs)
        + " |",
        "|---|---|" + "---|" * len(envs),
    ]
    for name, info in result["variants"].items():
        cells = []
        for env in envs:
            cell = env["cells"][name]
            if cell["status"] == "error":
                cells.append(f"error: {cell['error'][:80]}")
            else:
                cells.append(f"{cell['status']} ({cell['relative']:.1e})")
        lines.append(f"| {name} | {info['opset']} / {info['ir_version']} | " + " | ".join(cells) + " |")
    if any(
        env["onnxruntime"].startswith("1.16.") and env["cells"][name]["status"] == "differs"
        for env in envs
        for name in result["variants"]
        if "fp16" in name
    ):
        lines += ["", FP16_ON_1_16]
    return "\n".join(lines) + "\n"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Compatibility benchmarks (see the module docstring)."""


@main.command("old-onnxruntime")
@output_options
@click.option("--envs", "names", multiple=True, type=click.Choice(list(ENVS)), help="Default: all.")
def old_onnxruntime(output: Path, workdir: Path | None, names: tuple[str, ...]) -> None:
    """Build every variant, score it here and in each old onnxruntime, write the table."""
    import onnx
    import onnxruntime

    sys.path.insert(0, str(ROOT))
    stamp = Run()
    with workspace(workdir, "padim-old-ort-") as work:
        jobs = build_variants(work)
        jobs_file = work / "jobs.json"
        jobs_file.write_text(json.dumps(jobs))
        reference = reference_scores(jobs)
        variants = {}
        for name, job in jobs.items():
            proto = onnx.load(job["model"], load_external_data=False)
            opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
            variants[name] = {"opset": opset, "ir_version": proto.ir_version}
        result: dict[str, Any] = {
            "reference": {"onnxruntime": onnxruntime.__version__, "python": sys.version.split()[0]},
            "rtol": RTOL,
            "variants": variants,
            "envs": [],
        }
        for env in [ENVS[n] for n in (names or ENVS)]:
            click.echo(f"{env.name}: preparing", err=True)
            out = run_env(ensure_env(env), jobs_file)
            cells = {
                name: compare(reference[name], out["models"].get(name, {"error": "not run"})) for name in jobs
            }
            result["envs"].append(
                {"name": env.name, **{k: out[k] for k in ("onnxruntime", "python", "numpy")}, "cells": cells}
            )
            click.echo(f"{env.name}: " + ", ".join(f"{k} {v['status']}" for k, v in cells.items()), err=True)
    stamp.stamp(result)
    write_results(output, "old_onnxruntime", result, markdown(result))
    bad = [e["name"] for e in result["envs"] for c in e["cells"].values() if c["status"] != "ok"]
    sys.exit(1 if bad else 0)


@main.command("tensorrt-profile")
@output_options
def tensorrt_profile(output: Path, workdir: Path | None) -> None:
    """Fit, export both targets, score the resized test set with both, write the comparison."""
    from sklearn.metrics import roc_auc_score

    from padim_edge.geometry import Geometry
    from padim_edge.images import load_image, resize_frame
    from padim_edge.runtime import PadimModel

    require_shared(TILES, WEIGHTS)
    stamp = Run()
    with workspace(workdir, "padim-trt-profile-") as work:
        started = time.perf_counter()
        models = fit_and_export(work)
        fit_s = time.perf_counter() - started
        paths, labels, mask_paths = test_set()
        frames = [resize_frame(load_image(p), SIZE) for p in paths]
        geometry = Geometry(RESIZE, CROP)
        truth = np.stack([model_mask(m, geometry) for m in mask_paths]).reshape(-1)
        rows, outputs = {}, {}
        for target, path in models.items():
            runtime = PadimModel(path, device="cpu")
            started = time.perf_counter()
            scores, maps = score(runtime, frames)
            outputs[target] = (scores, maps)
            rows[target] = {
                "file": path.name,
                "opset": runtime.info.get("opset"),
                "ir_version": runtime.info.get("ir_version"),
                "image_auroc": float(roc_auc_score(labels, scores)),
                "pixel_auroc": float(roc_auc_score(truth, maps.reshape(-1))),
                "score_seconds": time.perf_counter() - started,
            }
            click.echo(
                f"{target}: image AUROC {rows[target]['image_auroc']:.4f}, "
                f"pixel {rows[target]['pixel_auroc']:.4f}"
            )
    (a, map_a), (b, map_b) = outputs["default"], outputs["tensorrt"]
    result = stamp.stamp(
        {
            "model": "mnv2 (ImageNet weights), dims 100, resize 256, crop 224, fitted on all of train/good",
            "frames": f"every test/ image resized to {SIZE[0]}x{SIZE[1]} (Pillow bilinear), both graphs",
            "test_images": len(paths),
            "defect_images": int(labels.sum()),
            "fit_export_seconds": fit_s,
            "rows": rows,
            "max_abs_score": float(np.abs(a - b).max()),
            "max_score": float(a.max()),
            "relative_score": float(np.abs(a - b).max() / a.max()),
            "max_abs_map": float(np.abs(map_a - map_b).max()),
            "image_auroc_delta": rows["tensorrt"]["image_auroc"] - rows["default"]["image_auroc"],
            "pixel_auroc_delta": rows["tensorrt"]["pixel_auroc"] - rows["default"]["pixel_auroc"],
        }
    )
    md = [
        *header(result, "TensorRT-target graph vs default graph (magnetic tile, MobileNetV2)"),
        f"{result['model']}; {result['frames']}; {len(paths)} test images "
        f"({result['defect_images']} defective); CPU EP.",
        "",
        "| graph | opset / IR | image AUROC | pixel AUROC |",
        "|---|---|---|---|",
        *(
            f"| {t} ({r['file']}) | {r['opset']} / {r['ir_version']} | {r['image_auroc']:.4f} | "
            f"{r['pixel_auroc']:.4f} |"
            for t, r in rows.items()
        ),
        "",
        f"max |d score| = {result['max_abs_score']:.3g} ({result['relative_score']:.2e} of the max score "
        f"{result['max_score']:.3f}); max |d map| = {result['max_abs_map']:.3g}; AUROC change image "
        f"{result['image_auroc_delta']:+.4f}, pixel {result['pixel_auroc_delta']:+.4f}.",
    ]
    write_results(output, "tensorrt_profile", result, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
