"""Measurements behind ``benchmarks/compact_head.py``: interleaved latency, load RSS, accuracy, op choice.

Kept apart from the report so each piece can be read on its own. Everything runs the exported ONNX
through the runtime's own session factory (what you deploy is what you measure); the RSS probe runs in
a fresh process (``python benchmarks/compact_head_parts.py --rss-probe MODEL``) so its high-water mark
is that model's alone.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Intra-op threads of every session (the issue's setting; ``--threads`` changes it).
THREADS = 2
Runner = tuple[Callable[[], object], Callable[[], None]]


def _status() -> dict[str, float]:
    """VmRSS / VmHWM of this process, MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


# ----------------------------------------------------------------------------------------- latency


def make_batch(batch: int, size: int = 224) -> np.ndarray:
    """Random uint8 frames ``[batch, size, size, 3]`` (the values do not change the work done)."""
    return np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)


def open_fused(path: Path, batch: np.ndarray) -> Runner:
    """The fused graph through :class:`padim_edge.runtime.PadimModel` (the product's session options)."""
    from padim_edge.runtime import PadimModel

    model = PadimModel(path, device="cpu", threads=THREADS)
    return (lambda: model.run(batch)), (lambda: None)


def open_backbone(path: Path, batch: np.ndarray) -> Runner:
    """The backbone-alone graph through the runtime's session factory."""
    from padim_edge.graph_names import INPUT
    from padim_edge.runtime.session import open_session

    session = open_session(path, device="cpu", threads=THREADS)
    return (lambda: session.run(None, {INPUT: batch})), (lambda: None)


def interleaved(
    openers: dict[str, Callable[[], Runner]], *, rounds: int, reps: int, warmup: int = 3, log=print
) -> dict[str, Any]:
    """Time every model ``reps`` calls per round, models in a rotating order, one session alive at a time.

    onnxruntime's idle intra-op threads spin, so two open sessions would steal each other's cores: each
    model is opened, warmed up, timed and dropped in turn. Per round and model the median call time is
    kept, with the share of the CPU other processes used meanwhile.

    Besides wall time, the process CPU time per call is kept: at 1 thread it is the work done whatever
    the machine's load (a contended wall time also holds the time spent waiting for a core).

    Returns:
        ``{"ms": {name: [round medians]}, "cpu_ms": {...}, "background": {name: [shares]},
        "order": [[names]]}``.
    """
    from padim_edge.bench.system import BackgroundLoad

    names = list(openers)
    out: dict[str, Any] = {"ms": {n: [] for n in names}, "cpu_ms": {n: [] for n in names}}
    out.update(background={n: [] for n in names}, order=[])
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        out["order"].append(order)
        for name in order:
            run, close = openers[name]()
            for _ in range(warmup):
                run()
            load = BackgroundLoad()
            times, cpu = [], []
            for _ in range(reps):
                start, start_cpu = time.perf_counter(), time.process_time()
                run()
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            out["ms"][name].append(statistics.median(times) * 1e3)
            out["cpu_ms"][name].append(statistics.median(cpu) * 1e3)
            out["background"][name].append(load.fraction())
            close()
            del run, close
            gc.collect()
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {out['ms'][n][-1]:.1f}" for n in names))
    return out


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and the interquartile range of per-round values."""
    q1, _, q3 = np.percentile(values, [25, 50, 75])
    return {
        "median": float(np.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "iqr": [float(q1), float(q3)],
        "n": len(values),
    }


def ratio(timing: dict[str, Any], a: str, b: str) -> dict[str, float]:
    """``a / b`` per round (both measured in the same round), summarised."""
    return spread([x / y for x, y in zip(timing["ms"][a], timing["ms"][b], strict=True)])


# ---------------------------------------------------------------------------------------- load RSS


def rss_probe(path: str, config: dict[str, str]) -> dict[str, float]:
    """Open ``path`` like the runtime does (plus ``config`` session entries), run one 224 frame; RSS in MB."""
    import onnxruntime as ort

    from padim_edge.graph_names import INPUT
    from padim_edge.runtime.session import open_session, session_options

    before = _status()
    start = time.perf_counter()
    if config:
        options = session_options(THREADS)
        for key, value in config.items():
            options.add_session_config_entry(key, value)
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    else:
        session = open_session(path, device="cpu", threads=THREADS)
    load_s = time.perf_counter() - start
    loaded = _status()
    frame = np.random.default_rng(0).integers(0, 256, (1, 224, 224, 3), dtype=np.uint8)
    session.run(None, {INPUT: frame})
    ran = _status()
    return {
        "rss_before_mb": before["VmRSS"],
        "rss_after_load_mb": loaded["VmRSS"],
        "peak_after_load_mb": loaded["VmHWM"],
        "rss_after_run_mb": ran["VmRSS"],
        "peak_after_run_mb": ran["VmHWM"],
        "load_s": load_s,
    }


def measure_rss(path: Path, config: dict[str, str] | None = None) -> dict[str, Any]:
    """:func:`rss_probe` in a fresh process (its VmHWM is this model's alone)."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    )
    args = [sys.executable, __file__, "--rss-probe", str(path)]
    for key, value in (config or {}).items():
        args += ["--config", f"{key}={value}"]
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------- accuracy


def evaluate(path: Path, data: Path) -> dict[str, Any]:
    """Image / pixel AUROC and PRO (padim_edge.evaluation) plus the image scores, on every test image."""
    from padim_edge.datasets import load_category
    from padim_edge.evaluation.metrics import evaluate_category
    from padim_edge.evaluation.predictions import predict_category
    from padim_edge.runtime import PadimModel

    category = load_category(data)
    predictions = predict_category(PadimModel(path, device="cpu", threads=THREADS), category)
    result = evaluate_category(predictions)
    return {
        "overall": result.overall.to_dict(),
        "per_defect": [row.to_dict() for row in result.per_defect],
        "scores": predictions.scores.tolist(),
        "defects": list(predictions.defects),
    }


def rank_agreement(reference: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """Spearman rank correlation of image scores, per test set (``good``, each defect) and over all."""
    from scipy.stats import spearmanr

    a, b = np.asarray(reference["scores"]), np.asarray(other["scores"])
    defects = np.asarray(reference["defects"])
    out = {"all": float(spearmanr(a, b).statistic)}
    for name in sorted(set(defects.tolist())):
        subset = defects == name
        out[name] = float(spearmanr(a[subset], b[subset]).statistic)
    return out


# ------------------------------------------------------------------------------- head op choice


def padim_like_gaussians(patches: int, dims: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per-patch means and inverse covariances fitted like PaDiM's (``2 d`` samples + 0.01 I, float64)."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=(patches, dims))
    inverse = np.empty((patches, dims, dims))
    for p in range(patches):
        samples = rng.normal(size=(2 * dims, dims)) * rng.uniform(0.2, 3.0, size=(1, dims))
        inverse[p] = np.linalg.inv(np.cov(samples, rowvar=False) + 0.01 * np.eye(dims))
    return mean, inverse


def head_op_choice(*, grid: int, dims: int, rounds: int, reps: int, log=print) -> dict[str, Any]:
    """The head alone (embedding in, distances out) in each precision / int8 activation mode.

    Relative error of the squared distances against float64 on PaDiM-like Gaussians, and batch-1
    latency through onnxruntime's CPU EP at :data:`THREADS` threads, interleaved.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from padim_edge.export.padim.graph_head import head_nodes, iter_packed_blocks
    from padim_edge.runtime.session import session_options

    patches = grid * grid
    mean, inverse = padim_like_gaussians(patches, dims)
    rng = np.random.default_rng(1)
    scale = np.sqrt(1.0 / np.einsum("pdd->pd", inverse))  # per-channel spread of each patch
    x = rng.normal(size=(1, patches, dims)) * scale * rng.choice([1.0, 1.0, 3.0], size=(1, patches, 1))
    embedding = (x + mean).transpose(0, 2, 1).reshape(1, dims, grid, grid).astype(np.float32)
    delta = embedding.reshape(1, dims, -1).transpose(0, 2, 1).astype(np.float64) - mean.astype(np.float32)
    exact = np.einsum("npd,pde,npe->np", delta, inverse, delta).ravel()
    cases = {
        "fp32": ("fp32", "row"),
        "int8 row (default)": ("int8", "row"),
        "int8 tensor (DQL)": ("int8", "tensor"),
    }
    cases["fp16"] = ("fp16", "row")
    sessions, errors = {}, {}
    for name, (precision, activation) in cases.items():
        nodes, inits, distance = head_nodes(
            "embedding", mean.astype(np.float32), iter_packed_blocks(inverse, 3), grid=grid,
            precision=precision, activation=activation,
        )  # fmt: skip
        graph = helper.make_graph(
            nodes, "head",
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", dims, grid, grid])],
            [helper.make_tensor_value_info(distance, TensorProto.FLOAT, ["N", grid, grid])], inits,
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
        sessions[name] = model
        session = ort.InferenceSession(model, session_options(THREADS), providers=["CPUExecutionProvider"])
        got = session.run(None, {"embedding": embedding})[0].astype(np.float64).ravel() ** 2
        relative = np.abs(got - exact) / exact
        errors[name] = {
            "median": float(np.median(relative)),
            "p99": float(np.percentile(relative, 99)),
            "max": float(relative.max()),
            "panel_bytes": int(
                sum(len(t.raw_data) for t in inits if t.name.startswith("padim_head/inv_cov"))
            ),
        }
        del session
        onnx.checker.check_model(onnx.load_from_string(model))

    def opener(model: bytes) -> Callable[[], Runner]:
        def open_() -> Runner:
            session = ort.InferenceSession(
                model, session_options(THREADS), providers=["CPUExecutionProvider"]
            )
            return (lambda: session.run(None, {"embedding": embedding})), (lambda: None)

        return open_

    timing = interleaved({n: opener(m) for n, m in sessions.items()}, rounds=rounds, reps=reps, log=log)
    return {"grid": grid, "dims": dims, "blocks": 3, "errors": errors, "timing": timing}


def main() -> None:
    """``--rss-probe MODEL [--config key=value ...]``: print one JSON line of :func:`rss_probe`."""
    args = sys.argv[1:]
    if not args or args[0] != "--rss-probe":
        raise SystemExit("usage: compact_head_parts.py --rss-probe MODEL [--config key=value ...]")
    config = dict(a.split("=", 1) for a in args[3::2]) if len(args) > 2 else {}
    print(json.dumps(rss_probe(args[1], config)))


if __name__ == "__main__":
    main()
