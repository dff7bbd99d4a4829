"""INT8 benchmark (:mod:`int8_accuracy`), latency part: R18-Rd100 float32 vs INT8 variants, CPU EP.

Not run with ``--parts accuracy``; its section of the results JSON is then kept as it was.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from int8_report import pct
from int8_sets import CROP, DIMS, GENERATED, RESIZE, VARIANTS, fit_folder, log

LATENCY_MODELS = (
    "fp32",
    "int8-qoperator plain",
    "int8-qoperator default",
    "int8-qoperator refit + 2 float convs",
    "int8-qdq default",
)


def _backbone_cut(path: Path, out: Path) -> Path:
    """The graph from the preprocessed frames to the backbone's tapped maps."""
    import onnx

    from padim_edge import graph_names

    if out.is_file():
        return out
    nodes = onnx.load(str(path), load_external_data=False).graph.node
    start = [n for n in nodes if n.name.startswith(graph_names.PREPROCESS)][-1].output[0]
    produced = {o for n in nodes if n.name.startswith(graph_names.BACKBONE) for o in n.output}
    taps = sorted(
        {i for n in nodes if n.name.startswith(graph_names.REDUCE) for i in n.input if i in produced}
    )
    onnx.utils.extract_model(str(path), str(out), [start], taps)
    return out


def _session(path: Path) -> Callable[[np.ndarray], list[Any]]:
    """One CPU thread, the settings users get (:func:`padim_edge.runtime.session.open_session`)."""
    from padim_edge.runtime.session import open_session

    session = open_session(path, device="cpu", threads=1)
    name = session.get_inputs()[0].name
    return lambda feed: session.run(None, {name: feed})


def _time_calls(call, feed: np.ndarray, calls: int) -> tuple[float, float]:
    """(process CPU ms per call, median wall ms per call) after two warm-up calls."""
    for _ in range(2):
        call(feed)
    walls = []
    cpu = time.process_time()
    for _ in range(calls):
        t = time.perf_counter()
        call(feed)
        walls.append(time.perf_counter() - t)
    return 1e3 * (time.process_time() - cpu) / calls, 1e3 * statistics.median(walls)


def latency_models(workdir: Path, calibration_images: int) -> dict[str, Path]:
    """R18-Rd100 random-init fitted on 16 demo frames, and its INT8 variants."""
    from padim_edge.calibration.pipeline import calibrate
    from padim_edge.demo.dataset import make_demo_dataset
    from padim_edge.export.pipeline import run_export

    root = workdir / "data" / "demo"
    make_demo_dataset(root, seed=0, **GENERATED)
    here = workdir / f"latency-cal{calibration_images}"
    fit_dir, _ = fit_folder(root / "train" / "good", here / "fit", 16)
    models = {"fp32": here / "r18.onnx"}
    if not models["fp32"].is_file():
        log("latency: fitting + exporting r18 random-init")
        run_export(
            fit_dir, models["fp32"], backbone="r18", dims=DIMS, resize=RESIZE, crop=CROP,
            random_init=True, device="cpu", parity_images=0, progress=False,
        )  # fmt: skip
    for label, variant, refit, float_convs in VARIANTS:
        if label not in LATENCY_MODELS:
            continue
        out = here / f"r18-{label.replace(' ', '-')}.onnx"
        if not out.is_file():
            log(f"latency: calibrating {label}")
            calibrate(
                models["fp32"], out, variant=variant, data=root / "train" / "good",
                validate=root / "test" / "good", calibration_images=calibration_images, refit=refit,
                refit_data=fit_dir if refit is not False else None, float_convs=float_convs, device="cpu",
                progress=False,
            )  # fmt: skip
        models[label] = out
    return models


def run_latency(
    workdir: Path, *, rounds: int, calibration_images: int, wait_idle: float, quick: bool
) -> dict[str, Any]:
    """The latency part's JSON section (see the module docstring)."""
    from padim_edge.bench.system import BackgroundLoad, wait_for_idle
    from padim_edge.runtime import PadimModel

    models = latency_models(workdir, calibration_images)
    cuts = {k: _backbone_cut(p, p.with_name(p.stem + "-backbone.onnx")) for k, p in models.items()}
    rng = np.random.default_rng(0)
    batches = {b: rng.integers(0, 256, (b, CROP, CROP, 3), dtype=np.uint8) for b in (1, 8)}
    floats = {b: rng.standard_normal((b, 3, CROP, CROP)).astype(np.float32) for b in (1, 8)}
    calls = {1: 10, 8: 3} if quick else {1: 30, 8: 6}
    samples: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    background = []
    for round_ in range(rounds):
        wait_for_idle(timeout=wait_idle, log=log)
        load = BackgroundLoad()
        for label in models:  # interleaved: every model once per round, one session alive at a time
            for part in ("fused", "backbone"):
                if part == "fused":
                    model = PadimModel(models[label], device="cpu", threads=1)
                    call, feeds = model.run, batches
                else:
                    call, feeds = _session(cuts[label]), floats
                for batch, feed in feeds.items():
                    samples.setdefault((part, label, batch), []).append(_time_calls(call, feed, calls[batch]))
                del call
                gc.collect()
        background.append(load.fraction())
        log(f"latency: round {round_ + 1}/{rounds} done (other processes {pct(background[-1])})")
    rows = []
    for (part, label, batch), values in samples.items():
        cpu = [c for c, _ in values]
        wall = [w for _, w in values]
        rows.append(
            {
                "part": part,
                "variant": label,
                "batch": batch,
                "cpu_ms_median": statistics.median(cpu),
                "cpu_ms_min": min(cpu),
                "cpu_ms_max": max(cpu),
                "wall_ms_median": statistics.median(wall),
                "wall_ms_min": min(wall),
                "wall_ms_max": max(wall),
                "calls_per_round": calls[batch],
            }
        )
    base = {(r["part"], r["batch"]): r for r in rows if r["variant"] == "fp32"}
    for row in rows:
        ref = base[(row["part"], row["batch"])]
        row["cpu_speedup_vs_fp32"] = ref["cpu_ms_median"] / row["cpu_ms_median"]
        row["wall_speedup_vs_fp32"] = ref["wall_ms_median"] / row["wall_ms_median"]
    return {
        "model": f"r18 random-init, dims {DIMS}, resize {RESIZE}, crop {CROP}, frames {CROP}x{CROP}",
        "threads": 1,
        "rounds": rounds,
        "background_cpu": background,
        "file_mb": {k: p.stat().st_size / 1e6 for k, p in models.items()},
        "rows": sorted(
            rows, key=lambda r: (r["part"] != "fused", r["batch"], LATENCY_MODELS.index(r["variant"]))
        ),
    }
