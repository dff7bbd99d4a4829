"""One benchmark job, in this process or in a fresh one (``python -m padim_edge.bench.worker``).

Two kinds of job, both described by a JSON-able dict:

* ``measure``: open one model with one engine, device and thread count, then time every batch size
  of the sweep in ascending order. Engines: ``ort`` (the fused graph through
  :class:`padim_edge.runtime.PadimModel`, or the backbone-alone graph through an onnxruntime session
  opened with the same options) and ``torch`` (the method's PyTorch eager module). Only the
  ``torch`` engine imports torch, so an onnxruntime worker's RSS is that of a torch-free process.
* ``prepare``: build and export the models a run compares (see :mod:`padim_edge.bench.artifacts`).
* ``head``: rewrite a model's head to another precision (torch-free, :mod:`padim_edge.calibration.head`).

In a subprocess each result goes to stdout as one line ``PADIM_BENCH <json>`` as soon as it exists,
so that a worker killed part-way (out of memory) still reports the batch sizes it finished.
Progress goes to stderr.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from padim_edge.bench.config import CONTENDED
from padim_edge.bench.system import BackgroundLoad, peak_rss_mb, rss_mb
from padim_edge.bench.timing import TimingPolicy, summarize, time_calls
from padim_edge.devices import CPU_DEVICES
from padim_edge.graph_names import INPUT as INPUT_NAME
from padim_edge.naming import data_file

#: Prefix of the result lines a subprocess worker prints on stdout.
MARKER = "PADIM_BENCH "

Emit = Callable[[dict[str, Any]], None]


def log(message: str) -> None:
    """Progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def files_bytes(path: str | Path) -> int:
    """Size of a model on disk: the file plus its ``<name>.data`` external-data file when there is one."""
    path = Path(path)
    data = data_file(path)
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def make_frames(batch: int, frame: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Random uint8 RGB frames ``[batch, H, W, 3]`` (the values do not change the work done)."""
    height, width = frame
    return np.random.default_rng(seed).integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


def tensorrt_options(spec: dict[str, Any]) -> dict[str, object] | None:
    """The TensorRT EP options of a ``measure`` job's onnxruntime session (``None``: not on TensorRT).

    The same builder as :class:`padim_edge.runtime.PadimModel` (engine and timing caches, profile,
    workspace, precision flags from the file's metadata), so the backbone-alone rows run as users would.
    """
    from padim_edge.runtime.tensorrt import options_for_file

    return options_for_file(spec["path"], spec["device"])


def _open_ort(spec: dict[str, Any]) -> tuple[Callable[[np.ndarray], object], dict[str, Any]]:
    """Open an onnxruntime model; returns (run, facts)."""
    from padim_edge.runtime import PadimModel
    from padim_edge.runtime.session import open_session

    threads = spec["threads"] if spec["device"] in CPU_DEVICES else None
    if spec["variant"] == "fused":
        model = PadimModel(spec["path"], device=spec["device"], threads=threads)
        facts = {"precision": model.info.precision, "head_precision": model.info.head_precision}
        return model.run, {"providers": model.providers, **facts}
    session = open_session(
        spec["path"], device=spec["device"], threads=threads, tensorrt=tensorrt_options(spec)
    )
    got = list(session.get_providers())

    def run(batch: np.ndarray) -> object:
        return session.run(None, {INPUT_NAME: batch})

    return run, {"providers": got, "precision": "fp32"}


def _open_torch(spec: dict[str, Any]) -> tuple[Callable[[np.ndarray], object], dict[str, Any]]:
    """Build the PyTorch eager module; returns (run, facts)."""
    import torch

    from padim_edge.export.methods import get_method
    from padim_edge.export.pipeline import build_module

    device = torch.device("cuda" if spec["device"] == "cuda" else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(spec["threads"])
        with contextlib.suppress(RuntimeError):  # already set in this process (in-process runs)
            torch.set_num_interop_threads(1)
    module_spec = spec["module"]
    row = get_method(module_spec.get("method", "padim"))
    model, _ = build_module(
        module_spec["backbone"],
        method=row.name,
        dims=module_spec["dims"],
        resize=module_spec["resize"],
        crop=module_spec["crop"],
        seed=module_spec["seed"],
        coreset=module_spec.get("coreset"),
        reduction=module_spec.get("reduction"),
        random_init=True,
    )
    state_path = spec.get("path")
    if state_path:
        row.load_state(model, torch.load(state_path, map_location="cpu", weights_only=True))
    else:  # --model files: no fitted torch twin; same shapes, value-free constants (latency is value-free)
        row.placeholder(model, module_spec)
    model = model.to(device).eval()

    def run(batch: np.ndarray) -> object:
        with torch.inference_mode():
            maps, scores = model(torch.from_numpy(batch).to(device))
            return maps.cpu().numpy(), scores.cpu().numpy()

    provider = f"torch-{device.type}"
    return run, {"providers": [provider], "precision": "fp32"}


def measure(spec: dict[str, Any], emit: Emit | None = None) -> dict[str, Any]:
    """Run a ``measure`` job: open the model once, then time every batch size.

    Args:
        spec: ``engine`` (``ort`` | ``torch``), ``variant`` (``fused`` | ``backbone`` | ``eager``), ``path``
            (model file, or the torch state file / ``None``), ``device``, ``threads``, ``batch_sizes``,
            ``frame`` ``[H, W]``, ``policy`` (:class:`TimingPolicy` fields), ``module`` (torch only:
            backbone, dims, resize, crop, seed), ``scope`` (``subprocess`` | ``process``).
        emit: Called with each result record as soon as it exists (``kind`` = ``load`` or ``point``).

    Returns:
        ``{"load": {...}, "points": [...], "error": str | None}``.
    """
    emit = emit or (lambda record: None)
    policy = TimingPolicy(**spec["policy"])
    frame = tuple(spec["frame"])
    name = f"{spec['variant']} {spec['device']} threads={spec['threads_label']}"
    # Import the engine first: load time and the RSS baseline exclude the import itself.
    if spec["engine"] == "torch":
        import torch

        importlib.import_module("padim_edge.export.pipeline")  # torchvision & co.

        opener, engine, version = _open_torch, "torch", torch.__version__
    elif spec["engine"] == "openvino":  # PadimModel(device="openvino"): the same opener, OpenVINO's version
        import openvino

        importlib.import_module("padim_edge.runtime")

        opener, engine, version = _open_ort, "openvino", openvino.get_version().split("-")[0]
    else:
        import onnxruntime as ort

        importlib.import_module("padim_edge.runtime")

        opener, engine, version = _open_ort, "onnxruntime", ort.__version__
    rss_before = rss_mb()
    start = time.perf_counter()
    try:
        run, facts = opener(spec)
    except Exception as exc:  # missing file, provider that cannot start: a note, not a crash
        error = f"load: {type(exc).__name__}: {str(exc).strip()[:300]}"
        emit({"kind": "error", "error": error})
        log(f"  {name}: FAILED to load ({error})")
        return {"load": None, "points": [], "error": error}
    load = {
        "kind": "load",
        "engine": engine,
        "engine_version": version,
        "load_s": time.perf_counter() - start,
        "rss_before_load_mb": rss_before,
        "rss_after_load_mb": rss_mb(),
        "peak_rss_after_load_mb": peak_rss_mb(),
        "first_call_s": None,
        **facts,
    }
    # Cold start: the first call pays lazy work (memory-mapped external data paged in, kernels picked).
    smallest = make_frames(min(spec["batch_sizes"]), frame)
    try:
        first = time.perf_counter()
        run(smallest)
        load["first_call_s"] = time.perf_counter() - first
    except Exception as exc:
        error = f"first call: {type(exc).__name__}: {str(exc).strip()[:300]}"
        emit(load)
        emit({"kind": "error", "error": error})
        log(f"  {name}: FAILED ({error})")
        return {"load": load, "points": [], "error": error}
    emit(load)
    result: dict[str, Any] = {"load": load, "points": [], "error": None}
    for batch in sorted(spec["batch_sizes"]):
        frames = make_frames(batch, frame)
        background = BackgroundLoad()
        try:
            times = time_calls(lambda frames=frames: run(frames), policy)
        except Exception as exc:  # out of memory on a big batch, a provider failing on a shape
            result["error"] = f"batch {batch}: {type(exc).__name__}: {str(exc).strip()[:300]}"
            emit({"kind": "error", "error": result["error"]})
            log(f"  {name} batch {batch}: FAILED ({result['error']}); larger batches skipped")
            break
        summary = summarize(times)
        point = {
            "kind": "point",
            "batch": batch,
            "latency_s": summary.to_dict(),
            "peak_rss_mb": peak_rss_mb(),
            "rss_mb": rss_mb(),
            "background_cpu": background.fraction(),
        }
        emit(point)
        result["points"].append(point)
        busy = point["background_cpu"]
        log(
            f"  {name} batch {batch:>3}: p50 {summary.p50 * 1e3:9.2f} ms  "
            f"({summary.p50 / batch * 1e3:8.2f} ms/img, {summary.reps} reps"
            + ("" if busy is None else f", bg CPU {busy:.0%}")
            + (" † contended)" if busy is not None and busy > CONTENDED else ")")
        )
    return result


def run_job(spec: dict[str, Any], *, isolate: bool, timeout: float | None = None) -> dict[str, Any]:
    """Run a job here (``isolate=False``) or in a fresh Python process and collect its result.

    A subprocess that dies (killed for memory, crashed) still returns what it reported before
    dying, with ``error`` saying how it ended.
    """
    if not isolate:
        if spec.get("job") in ("prepare", "head"):
            return prepare_job(spec)
        return measure(dict(spec, scope="process"))
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, "-m", "padim_edge.bench.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        out, _ = proc.communicate(json.dumps(dict(spec, scope="subprocess")), timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    records = [json.loads(line[len(MARKER) :]) for line in out.splitlines() if line.startswith(MARKER)]
    final = next((r for r in records if r.get("kind") == "result"), None)
    if final is not None and proc.returncode == 0:
        return final["result"]
    if spec.get("job") in ("prepare", "head"):
        raise RuntimeError(
            f"preparing the models failed (worker exit code {proc.returncode}); see stderr above"
        )
    load = next((r for r in records if r.get("kind") == "load"), None)
    points = [r for r in records if r.get("kind") == "point"]
    errors = [r["error"] for r in records if r.get("kind") == "error"]
    how = "killed (out of memory?)" if proc.returncode in (-9, 137) else f"exit code {proc.returncode}"
    error = errors[0] if errors else f"worker {how} after {len(points)} batch size(s)"
    return {"load": load, "points": points, "error": error}


def prepare_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Run a ``prepare`` job (imports torch) or a ``head`` job (torch-free)."""
    if spec.get("job") == "head":
        from padim_edge.calibration.pipeline import calibrate

        report = calibrate(
            spec["source"], spec["output"], variant=f"head-{spec['precision']}", progress=False
        )
        return {"files": [str(f) for f in report.files]}
    from padim_edge.bench.artifacts import prepare

    return prepare(**spec["args"]).to_dict()


def main() -> None:
    """Subprocess entry: read one JSON job on stdin, print ``PADIM_BENCH`` lines on stdout."""
    spec = json.loads(sys.stdin.read())

    def emit(record: dict[str, Any]) -> None:
        print(MARKER + json.dumps(record), flush=True)

    result = prepare_job(spec) if spec.get("job") in ("prepare", "head") else measure(spec, emit)
    emit({"kind": "result", "result": result})


if __name__ == "__main__":
    main()
