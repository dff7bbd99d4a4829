"""Compatibility suite (docs/edge-targets.md has the method and the results): ``old-onnxruntime``, every
variant of one small model scored here and by ``padim_edge.runtime`` in a throwaway venv per old
onnxruntime (``~/.cache/padim-edge/venvs``); pass: max |d score| <= 1e-4 x the largest score, else exit 1.
Writes ``old_onnxruntime.{json,md}``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import harness as h
import numpy as np

from padim_edge.runtime import PadimModel

main = h.group("Compatibility benchmarks (see the module docstring).")
VENVS = Path.home() / ".cache" / "padim-edge" / "venvs"
#: Scores must agree to this fraction of the largest reference score.
RTOL = 1e-4
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
PY38 = "/root/.pyenv/versions/3.8.18/bin/python3.8"  # JetPack 5's Python
#: Throwaway environments: name -> (Python, pip requirements: an old onnxruntime, numpy, the core's Pillow).
ENVS = {
    f"ort-{v}-py3.11": (sys.executable, (f"onnxruntime=={v}", "numpy<2", "pillow"))
    for v in ("1.16.3", "1.17.3", "1.18.1")
}
ENVS["ort-1.16.3-py3.8"] = (PY38, ("onnxruntime==1.16.3", "numpy==1.24.4", "pillow"))
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
#: Why the default graph's FP16 variant differs on onnxruntime 1.16 (padim-check's ``float16-relu-cpu``).
FP16_ON_1_16 = (
    "FP16 of the default (opset-18) graph on onnxruntime 1.16: expected, not a fault of the file (1.16 drops "
    "fp32->fp16->fp32 Cast round trips on the CPU EPs, fixed in 1.17; GPU EPs are not affected). See "
    "docs/edge-targets.md."
)


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
    scores, ref = np.asarray(got["scores"], dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if scores.shape != ref.shape:
        return {"status": "error", "error": f"{scores.size} scores for {ref.size} frames"}
    worst = float(np.abs(scores - ref).max())
    relative = worst / max(float(np.abs(ref).max()), 1e-12)
    return {"status": "ok" if relative <= rtol else "differs", "max_abs": worst, "relative": relative}


def ensure_env(name: str) -> Path:
    """The environment's python, creating the venv (once) outside the repository."""
    (base, requirements), folder = ENVS[name], VENVS / name
    python, marker = folder / "bin" / "python", folder / ".padim-ready"
    if marker.is_file() and marker.read_text() == "\n".join(requirements):
        return python
    if not Path(base).is_file():
        raise FileNotFoundError(f"{base} not found (needed for {name})")
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([base, "-m", "venv", str(folder)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *requirements], check=True)
    marker.write_text("\n".join(requirements))
    return python


def run_env(python: Path, jobs: Path) -> dict[str, object]:
    """Run the worker in an environment, with this checkout on ``PYTHONPATH``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(h.ROOT)
    command = [str(python), "-c", WORKER, str(jobs)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    return parse_worker_output(done.stdout + done.stderr)


def build_variants(work: Path) -> dict[str, dict[str, str]]:
    """Export and calibrate every variant; returns ``name -> {model, frames}``."""
    from padim_edge.calibration.pipeline import calibrate
    from padim_edge.export.pipeline import run_export
    from tests.conftest import SMALL, TRT_SIZE, write_images

    train, held = work / "train", work / "held"
    write_images(train, 12, sizes=[(80, 96), (64, 64), (100, 90)])
    write_images(held, 12, seed=3, sizes=[(80, 96), (70, 70)])
    rng = np.random.default_rng(0)
    frames = {"any": work / "frames-any.npy", "fixed": work / "frames-fixed.npy"}
    np.save(frames["any"], rng.integers(0, 256, (6, 80, 96, 3), dtype=np.uint8))
    np.save(frames["fixed"], rng.integers(0, 256, (6, *TRT_SIZE, 3), dtype=np.uint8))
    options = {
        "default": ("model.onnx", {}),
        "tensorrt": ("model-trt.onnx", {"target": "tensorrt", "input_size": TRT_SIZE}),
        "patchcore": ("model-patchcore.onnx", {"method": "patchcore"}),
        "orthogonal": ("model-orthogonal.onnx", {"reduction": "orthogonal"}),
    }
    jobs = {}
    for target, (file, extra) in options.items():
        source = work / file
        run_export(train, source, parity_images=2, progress=False, **extra, **SMALL)
        fixed = str(frames["fixed" if target == "tensorrt" else "any"])
        prefix = "" if target == "default" else f"{target} "
        jobs[f"{prefix}fp32"] = {"model": str(source), "frames": fixed}
        for variant in (*VARIANTS_BY_TARGET.get(target, ()), *HEAD_VARIANTS_BY_TARGET[target]):
            out = source.with_name(f"{source.stem}-{variant}.onnx")
            extra = {"target_fpr": 0.1} if variant == "fp32-threshold" else {}
            calibrate(source, out, variant=variant, data=held, calibration_images=6, progress=False, **extra)
            jobs[f"{prefix}{variant}"] = {"model": str(out), "frames": fixed}
    return jobs


def markdown(result: dict[str, Any]) -> str:
    """The old-onnxruntime table."""
    envs, ref = result["envs"], result["reference"]

    def cell(c: dict[str, Any]) -> str:
        return f"error: {c['error'][:80]}" if "error" in c else f"{c['status']} ({c['relative']:.1e})"

    body = [[name, f"{v['opset']} / {v['ir_version']}", *(cell(e["cells"][name]) for e in envs)]
            for name, v in result["variants"].items()]  # fmt: skip
    headers = ["variant", "opset / IR", *(f"{e['onnxruntime']} (py {e['python']})" for e in envs)]
    lines = [
        *h.header(result, "Old onnxruntime releases: do they load our models, with the same scores?"),
        f"Reference: onnxruntime {ref['onnxruntime']} on Python {ref['python']}. Cells: max |d score| "
        f"relative to the largest reference score (pass: <= {RTOL:g}).",
        "",
        *h.table(headers, body),
    ]
    if any(e["onnxruntime"].startswith("1.16.") and c["status"] == "differs"
           for e in envs for name, c in e["cells"].items() if "fp16" in name):  # fmt: skip
        lines += ["", FP16_ON_1_16]
    return "\n".join(lines) + "\n"


@main.command("old-onnxruntime")
@h.output_options
@click.option("--envs", "names", multiple=True, type=click.Choice(list(ENVS)), help="Default: all.")
def old_onnxruntime(output: Path, workdir: Path | None, names: tuple[str, ...]) -> None:
    """Build every variant, score it here and in each old onnxruntime, write the table."""
    import onnx
    import onnxruntime

    sys.path.insert(0, str(h.ROOT))
    stamp, variants = h.Run(), {}
    with h.workspace(workdir, "padim-old-ort-") as work:
        jobs = build_variants(work)
        (work / "jobs.json").write_text(json.dumps(jobs))
        reference = {}
        for name, job in jobs.items():
            predictions = PadimModel(job["model"], device="cpu").predict(np.load(job["frames"]))
            reference[name] = [p.score for p in predictions]
            proto = onnx.load(job["model"], load_external_data=False)
            opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
            variants[name] = {"opset": opset, "ir_version": proto.ir_version}
        python = {"onnxruntime": onnxruntime.__version__, "python": sys.version.split()[0]}
        result: dict[str, Any] = {"reference": python, "rtol": RTOL, "variants": variants, "envs": []}
        for name in names or ENVS:
            h.log(f"{name}: preparing")
            out = run_env(ensure_env(name), work / "jobs.json")
            cells = {n: compare(reference[n], out["models"].get(n, {"error": "not run"})) for n in jobs}
            versions = {k: out[k] for k in ("onnxruntime", "python", "numpy")}
            result["envs"].append({"name": name, **versions, "cells": cells})
            h.log(f"{name}: " + ", ".join(f"{k} {v['status']}" for k, v in cells.items()))
    h.write_results(output, "old_onnxruntime", stamp.stamp(result), markdown(result))
    sys.exit(1 if any(c["status"] != "ok" for e in result["envs"] for c in e["cells"].values()) else 0)


if __name__ == "__main__":
    main()
