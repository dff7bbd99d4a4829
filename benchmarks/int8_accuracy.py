"""Issue 12: does INT8 lose accuracy, on which data, and does the fidelity report see it coming?

Two parts (``--parts``, default both; a run replaces only its parts in an existing JSON):

* ``accuracy``: on three MVTec-layout sets with different statistics (magnetic tile from
  ``$PADIM_EDGE_SHARED/data``, skipped with a message when absent; the procedural woven-fabric demo
  set; the dark, low-contrast texture set; the last two generated into ``--workdir``), PaDiM MobileNetV2
  with the real ImageNet weights (dims 100, resize 256, crop 224) is fitted on ``train/good`` (at most
  ``--max-train`` images, an even spread) and exported. ``padim_edge.calibration.calibrate`` then makes
  seven variants: ``int8-qoperator`` and ``int8-qdq`` each *plain* (``refit=False, float_convs=0``, the
  behaviour before issue 12), *default* (what ``--int8`` does now: Gaussians refitted on the INT8
  backbone's embeddings of the fit's own images, every conv int8) and *refit + 2 float convs* (the
  other lever measured: the first two convs stay float32), and ``fp16``. Calibration frames come
  from ``train/good`` (``--calibration-images``), the fidelity report's frames from ``test/good``. Each
  model and the float32 one are scored on the test split (at most ``--max-test`` images, an even spread)
  through the torch-free runtime with padim-eval's code (``predict_category``; image AUROC, pixel
  AUROC, PRO over all test images). Per variant: the AUROCs, their deltas vs float32, the fidelity
  report (Spearman, median map error, median score ratio, LOW flag) and the calibration time.
* ``latency``: R18-Rd100 random-init (latency does not depend on the weights) fitted on 16 demo frames;
  float32 vs ``int8-qoperator`` plain / default / refit + 2 float convs and ``int8-qdq`` default, batch
  1 and 8, ONE onnxruntime thread, end to end (``PadimModel.run`` on random 224x224 uint8 frames) and
  the backbone cut (``onnx.utils.extract_model`` from the preprocessed frames to the tapped maps).
  Models are timed in interleaved rounds, one session alive at a time; per round the mean process CPU
  time per call and the median wall time per call; the report gives the median of the rounds with their
  min-max. CPU time is the steady figure on a busy shared machine (wall time stretches with the other
  jobs).

Goals (issue 12): each INT8 method's image and pixel AUROC within 0.01 of float32 on every set; the
INT8 end-to-end speed-up (default) within :data:`SPEEDUP_TOLERANCE` of the plain one at batch 1 and 8
(a refit only changes constants; float convs would change the graph); the fidelity Spearman shown
beside the AUROC loss for every set and method, with the rank correlation between them across rows.

Usage::

    python benchmarks/int8_accuracy.py                               # everything, defaults
    python benchmarks/int8_accuracy.py --parts accuracy --workdir /tmp/int8work   # reuse models
    python benchmarks/int8_accuracy.py --quick --output /tmp/int8smoke --workdir /tmp/int8smokework

Runtime on 2 shared cores: ``--quick`` about 2.5 minutes (measured: accuracy 122 s, latency 29 s);
the full run (200 train, all test images, 100 calibration frames, 5 rounds) is estimated at 15-25
minutes: 15 calibrations (fit-size refits, 100 calibration frames, 2 x 50 fidelity frames each), three
200-image fits, 18 evaluations (about 17 s per model on the magnetic tile's 630 test images, most of
it PRO) and five latency rounds of about 40 s plus the idle waits. Models, generated sets and per-variant
calibration records in ``--workdir`` are reused on the next run with the same settings.

Writes ``<output>/int8_accuracy.json`` and ``<output>/int8_accuracy.md`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import gc
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: The project's ``../shared`` folder (``PADIM_EDGE_SHARED`` overrides it, as in the tests).
SHARED = Path(os.environ.get("PADIM_EDGE_SHARED") or ROOT.parent / "shared")
TILES = SHARED / "data" / "magnetic_tile"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
PARTS = ("accuracy", "latency")
SETS = ("magnetic_tile", "demo", "dark_texture")
RESIZE, CROP, DIMS = 256, 224, 100
#: Sizes of the two generated sets (the dark texture set's defaults; the demo set made as large).
GENERATED = {"train": 200, "test_good": 60, "test_defect_per_type": 40}
#: (label, calibrate variant, refit, float_convs); ``None``: the variant's default / not applicable.
VARIANTS = (
    ("int8-qoperator plain", "int8-qoperator", False, 0),
    ("int8-qoperator default", "int8-qoperator", None, None),
    ("int8-qoperator refit + 2 float convs", "int8-qoperator", True, 2),
    ("int8-qdq plain", "int8-qdq", False, 0),
    ("int8-qdq default", "int8-qdq", None, None),
    ("int8-qdq refit + 2 float convs", "int8-qdq", True, 2),
    ("fp16", "fp16", None, None),
)
LATENCY_MODELS = (
    "fp32",
    "int8-qoperator plain",
    "int8-qoperator default",
    "int8-qoperator refit + 2 float convs",
    "int8-qdq default",
)
#: Issue 12's accuracy goal: |INT8 AUROC - float32 AUROC| at most this, image and pixel, every set.
MAX_AUROC_DELTA = 0.01
#: "Speed-up unchanged": the default variant's end-to-end speed-up at least (1 - this) x the plain one's.
SPEEDUP_TOLERANCE = 0.05

_START = time.perf_counter()


def log(message: str) -> None:
    """A progress line with the seconds since the start (stderr)."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def even_spread(items: list, limit: int | None) -> list:
    """At most ``limit`` of ``items``, evenly spread (all of them when ``limit`` is None or larger)."""
    if limit is None or limit >= len(items):
        return list(items)
    index = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in index]


def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


# --------------------------------------------------------------------------- data sets


def prepare_set(name: str, workdir: Path) -> tuple[Path | None, str]:
    """The set's MVTec root, or ``(None, why it is skipped)``."""
    if name == "magnetic_tile":
        if not (TILES / "train" / "good").is_dir():
            return None, f"{TILES} not found (set PADIM_EDGE_SHARED to the project's shared folder)"
        return TILES, "magnetic tile (real photos; shared data)"
    root = workdir / "data" / name
    if name == "demo":
        from padim_edge.demo.dataset import make_demo_dataset

        make_demo_dataset(root, seed=0, **GENERATED)
        return root, "procedural woven fabric (padim_edge.demo), seed 0"
    from padim_edge.demo.dark_texture import make_dark_texture
    from padim_edge.extras import MissingExtraError

    try:
        make_dark_texture(root, seed=0, **GENERATED)
    except MissingExtraError as exc:
        return None, f"dark texture set not generated: {exc}"
    return root, "dark low-contrast texture (padim_edge.demo.dark_texture), seed 0"


def fit_folder(train: Path, out: Path, limit: int | None) -> tuple[Path, int]:
    """``train`` itself, or a folder of symlinks to an even spread of at most ``limit`` of its images."""
    from padim_edge.images import list_images

    images = list_images(train)
    chosen = even_spread(images, limit)
    if len(chosen) == len(images):
        return train, len(images)
    if out.is_dir() and sorted(p.name for p in out.iterdir()) != sorted(p.name for p in chosen):
        shutil.rmtree(out)
    if not out.is_dir():
        out.mkdir(parents=True)
        for path in chosen:
            (out / path.name).symlink_to(path.resolve())
    return out, len(chosen)


# --------------------------------------------------------------------------- accuracy


def evaluate(model_path: Path, root: Path, max_test: int | None) -> dict[str, Any]:
    """padim-eval's numbers (overall image AUROC, pixel AUROC, PRO) and the image scores."""
    from padim_edge.datasets import load_category
    from padim_edge.evaluation.metrics import image_auroc, pixel_auroc
    from padim_edge.evaluation.predictions import predict_category
    from padim_edge.evaluation.pro import pro_score
    from padim_edge.runtime import PadimModel

    category = load_category(root)
    category = dataclasses.replace(category, samples=tuple(even_spread(list(category.samples), max_test)))
    started = time.perf_counter()
    model = PadimModel(model_path, device="cpu")
    predictions = predict_category(model, category, batch_size=8)
    seconds = time.perf_counter() - started
    row = {
        "image_auroc": _finite(image_auroc(predictions.scores, predictions.labels)),
        "pixel_auroc": None,
        "pro": None,
        "score_seconds": seconds,
        "test_images": int(predictions.labels.size),
        "defect_images": int(predictions.labels.sum()),
        "file_mb": model_path.stat().st_size / 1e6,
    }
    if predictions.masks is not None:
        row["pixel_auroc"] = _finite(pixel_auroc(predictions.maps, predictions.masks))
        row["pro"] = _finite(pro_score(predictions.maps, predictions.masks))
    scores = predictions.scores
    del predictions, model
    gc.collect()
    return {"row": row, "scores": scores}


def make_variant(
    fp32: Path, out: Path, variant: str, refit: bool | None, float_convs: int | None, *,
    root: Path, fit_dir: Path, calibration_images: int,
) -> dict[str, Any]:  # fmt: skip
    """Calibrate one variant (or reuse it and its record from an earlier run in the same workdir)."""
    from padim_edge.calibration.pipeline import calibrate

    record_path = out.with_suffix(".calibration.json")
    if out.is_file() and record_path.is_file():
        return {**json.loads(record_path.read_text()), "reused": True}
    options: dict[str, Any] = {}
    if variant != "fp16":
        options = {"refit": refit, "float_convs": float_convs}
        if refit is not False:  # None: the default, which refits
            options["refit_data"] = fit_dir
    report = calibrate(
        fp32, out, variant=variant, data=root / "train" / "good", validate=root / "test" / "good",
        calibration_images=calibration_images, device="cpu", progress=False, **options,
    )  # fmt: skip
    record = {
        "calibration_seconds": report.seconds,
        "calibration_images": report.calibration_images,
        "refit": refit,
        "float_convs": float_convs,
        "fidelity": None if report.fidelity is None else report.fidelity.record(),
        "warnings": list(report.warnings),
    }
    record_path.write_text(json.dumps(record, indent=2))
    return record


def accuracy_set(
    name: str, workdir: Path, *, max_train: int | None, max_test: int | None, calibration_images: int
) -> dict[str, Any]:
    """One data set's section: fit, five variants, evaluation of all six models."""
    from padim_edge.calibration.fidelity import spearman
    from padim_edge.export.pipeline import run_export

    started = time.perf_counter()
    log(f"{name}: preparing the data")
    root, description = prepare_set(name, workdir)
    if root is None:
        log(f"{name}: SKIPPED: {description}")
        return {"skipped": description}
    here = workdir / f"{name}-train{max_train or 'all'}-cal{calibration_images}"
    here.mkdir(parents=True, exist_ok=True)
    fit_dir, train_images = fit_folder(root / "train" / "good", here / "fit", max_train)
    fp32 = here / "mnv2.onnx"
    fit_s = None
    if not fp32.is_file():
        log(f"{name}: fitting + exporting mnv2 on {train_images} images")
        t = time.perf_counter()
        run_export(
            fit_dir, fp32, backbone="mnv2", dims=DIMS, resize=RESIZE, crop=CROP, weights_file=WEIGHTS,
            device="cpu", parity_images=2, progress=False,
        )  # fmt: skip
        fit_s = time.perf_counter() - t
    log(f"{name}: scoring fp32")
    reference = evaluate(fp32, root, max_test)
    rows: dict[str, dict[str, Any]] = {"fp32": {"variant": "fp32", **reference["row"]}}
    for label, variant, refit, float_convs in VARIANTS:
        out = here / f"mnv2-{label.replace(' ', '-')}.onnx"
        log(f"{name}: calibrating {label}")
        try:
            record = make_variant(
                fp32, out, variant, refit, float_convs, root=root, fit_dir=fit_dir,
                calibration_images=calibration_images,
            )  # fmt: skip
        except Exception as exc:  # a variant that cannot be built is a result, not a crash
            log(f"{name}: {label} FAILED to build: {exc}")
            rows[label] = {"variant": variant, "error": f"build: {type(exc).__name__}: {exc}"}
            continue
        log(f"{name}: scoring {label}")
        try:
            result = evaluate(out, root, max_test)
        except Exception as exc:  # e.g. fp16 on an EP without float16 kernels
            log(f"{name}: {label} FAILED to run: {exc}")
            rows[label] = {"variant": variant, **record, "error": f"run: {type(exc).__name__}: {exc}"}
            continue
        row = {"variant": variant, **record, **result["row"]}
        for key in ("image_auroc", "pixel_auroc", "pro"):
            a, b = row[key], rows["fp32"][key]
            row[f"{key}_delta"] = None if a is None or b is None else a - b
        row["test_score_spearman"] = _finite(spearman(reference["scores"], result["scores"]))
        rows[label] = row
        fid = row.get("fidelity") or {}
        log(
            f"{name}: {label}: image {row['image_auroc']:.4f} ({row['image_auroc_delta']:+.4f}), "
            f"pixel {_num(row['pixel_auroc'])} ({_num(row['pixel_auroc_delta'], '+.4f')}), "
            f"Spearman {_num(fid.get('spearman'))}"
        )
    return {
        "description": description,
        "root": str(root),
        "train_images": train_images,
        "train_available": len(list((root / "train" / "good").iterdir())),
        "test_images": reference["row"]["test_images"],
        "defect_images": reference["row"]["defect_images"],
        "calibration_images": calibration_images,
        "fit_export_seconds": fit_s,
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }


def run_accuracy(
    workdir: Path, *, sets: tuple[str, ...], max_train: int | None, max_test: int | None,
    calibration_images: int,
) -> dict[str, Any]:  # fmt: skip
    """The accuracy part's JSON section."""
    return {
        "model": f"mnv2 (ImageNet weights {WEIGHTS.name}), dims {DIMS}, resize {RESIZE}, crop {CROP}",
        "max_train": max_train,
        "max_test": max_test,
        "calibration_images": calibration_images,
        "sets": {
            name: accuracy_set(
                name, workdir, max_train=max_train, max_test=max_test, calibration_images=calibration_images
            )
            for name in sets
        },
    }


# --------------------------------------------------------------------------- latency


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


def _session(path: Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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
        log(f"latency: round {round_ + 1}/{rounds} done (other processes {_pct(background[-1])})")
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


# --------------------------------------------------------------------------- report


def _num(value: Any, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"


def _table(headers: list[str], body: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *["| " + " | ".join(row) + " |" for row in body],
    ]


def _head(section: dict[str, Any]) -> list[str]:
    from padim_edge.bench.markdown import machine_line

    quick = " **(quick smoke settings: not the numbers to quote)**" if section.get("quick") else ""
    machine = machine_line(section["machine"]) if "machine" in section else "unknown"
    return [
        f"**Machine:** {machine}.{quick}",
        f"**Command:** `{section.get('command', '?')}` (finished {section.get('finished', '?')}, "
        f"{section.get('seconds', 0):.0f} s).",
        "",
    ]


def _with_delta(row: dict[str, Any], key: str) -> str:
    if row.get(key) is None:
        return "-"
    delta = row.get(f"{key}_delta")
    return f"{row[key]:.4f}" + ("" if delta is None else f" ({delta:+.4f})")


def _low(fid: dict[str, Any]) -> str:
    if not fid:
        return "no report"
    return {True: "**LOW**", False: "no", None: "not measured"}[fid.get("low")]


def _fidelity_rows(acc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (set, variant) with a fidelity report and AUROC deltas."""
    out = []
    for name, section in acc["sets"].items():
        for label, row in section.get("rows", {}).items():
            fid = row.get("fidelity") or {}
            if label == "fp32" or fid.get("spearman") is None or row.get("image_auroc_delta") is None:
                continue
            out.append(
                {
                    "set": name,
                    "variant": label,
                    "spearman": fid["spearman"],
                    "map_error_median": fid.get("map_error_median"),
                    "low": fid.get("low"),
                    "image_loss": abs(row["image_auroc_delta"]),
                    "pixel_loss": None
                    if row.get("pixel_auroc_delta") is None
                    else abs(row["pixel_auroc_delta"]),
                }
            )
    return sorted(out, key=lambda r: r["spearman"])


def _rank_corr(rows: list[dict[str, Any]], a: str, b: str) -> float | None:
    from padim_edge.calibration.fidelity import spearman

    pairs = [(r[a], r[b]) for r in rows if r.get(a) is not None and r.get(b) is not None]
    if len(pairs) < 3:
        return None
    return _finite(spearman([p[0] for p in pairs], [p[1] for p in pairs]))


def fidelity_correlation(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Rank correlations across (set, variant) rows: fidelity figure vs |AUROC delta|."""
    return {
        "spearman_vs_image": _rank_corr(rows, "spearman", "image_loss"),
        "spearman_vs_pixel": _rank_corr(rows, "spearman", "pixel_loss"),
        "map_error_vs_image": _rank_corr(rows, "map_error_median", "image_loss"),
        "map_error_vs_pixel": _rank_corr(rows, "map_error_median", "pixel_loss"),
    }


def accuracy_goals(acc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (set, INT8 variant): both |deltas| <= MAX_AUROC_DELTA."""
    goals = []
    for name, section in acc["sets"].items():
        for label, row in section.get("rows", {}).items():
            if not label.startswith("int8"):
                continue
            deltas = [row.get("image_auroc_delta"), row.get("pixel_auroc_delta")]
            if row.get("error") or deltas[0] is None:
                verdict = "FAIL" if row.get("error") else "-"
            else:
                verdict = "PASS" if all(d is None or abs(d) <= MAX_AUROC_DELTA for d in deltas) else "FAIL"
            goals.append({"set": name, "variant": label, "deltas": deltas, "result": verdict})
    return goals


def latency_goals(lat: dict[str, Any]) -> list[dict[str, Any]]:
    """Fixed vs plain end-to-end speed-up (CPU time), per format with a plain row and batch."""
    rows = {(r["part"], r["variant"], r["batch"]): r for r in lat["rows"]}
    goals = []
    for batch in (1, 8):
        plain = rows.get(("fused", "int8-qoperator plain", batch))
        fixed = rows.get(("fused", "int8-qoperator default", batch))
        if plain is None or fixed is None:
            continue
        ratio = fixed["cpu_speedup_vs_fp32"] / plain["cpu_speedup_vs_fp32"]
        goals.append(
            {
                "batch": batch,
                "plain": plain["cpu_speedup_vs_fp32"],
                "fixed": fixed["cpu_speedup_vs_fp32"],
                "ratio": ratio,
                "result": "PASS" if ratio >= 1 - SPEEDUP_TOLERANCE else "FAIL",
            }
        )
    return goals


def render_accuracy(acc: dict[str, Any]) -> list[str]:
    out = [f"## Accuracy: {acc['model']}", "", *_head(acc)]
    tests = "all" if acc["max_test"] is None else f"at most {acc['max_test']} (an even spread of the)"
    out += [
        "Each set: fit on `train/good` (an even spread of at most "
        f"{acc['max_train'] or 'all'} images), INT8 calibrated on {acc['calibration_images']} `train/good` "
        "frames, fidelity report on `test/good` (at most 50 frames), metrics by padim-eval's code on "
        f"{tests} test images through the runtime (CPU EP). *plain*: `refit=False, float_convs=0` "
        "(before issue 12); *default*: what `--int8` does now (Gaussians refitted on the INT8 "
        "backbone's embeddings of the fit's own images; the same graph as plain, new constants); "
        "*refit + 2 float convs*: the other lever (the first two convs stay float32).",
        "",
    ]
    for name, section in acc["sets"].items():
        out += [f"### {name}", ""]
        if "skipped" in section:
            out += [f"Skipped: {section['skipped']}", ""]
            continue
        out += [
            f"{section['description']}: fitted on {section['train_images']} of {section['train_available']} "
            f"train/good images; {section['test_images']} test images ({section['defect_images']} "
            "defective).",
            "",
        ]
        body = []
        for label, row in section["rows"].items():
            fid = row.get("fidelity") or {}
            if row.get("error"):
                body.append([label, f"error: {row['error']}", "", "", "", "", "", ""])
                continue
            body.append(
                [
                    label,
                    _with_delta(row, "image_auroc"),
                    _with_delta(row, "pixel_auroc"),
                    _with_delta(row, "pro"),
                    _num(fid.get("spearman")),
                    _num(fid.get("map_error_median"), ".3f"),
                    _num(fid.get("score_ratio_median"), ".3f"),
                    "" if label == "fp32" else _low(fid),
                    "" if label == "fp32" else _num(row.get("calibration_seconds"), ".0f"),
                ]
            )
        out += _table(
            [
                "variant", "image AUROC (Δ)", "pixel AUROC (Δ)", "PRO (Δ)", "Spearman", "median map error",
                "median score ratio", "LOW?", "calibration s",
            ],
            body,
        )  # fmt: skip
        out.append("")
    return out


def render_goals(result: dict[str, Any]) -> list[str]:
    out = ["## Goals (issue 12)", ""]
    body = []
    if "accuracy" in result:
        for goal in accuracy_goals(result["accuracy"]):
            image, pixel = goal["deltas"]
            body.append(
                [
                    f"{goal['variant']}, {goal['set']}: \\|Δ image\\|, \\|Δ pixel\\| AUROC",
                    f"{_num(image, '+.4f')}, {_num(pixel, '+.4f')}",
                    f"<= {MAX_AUROC_DELTA}",
                    goal["result"]
                    if "default" in goal["variant"]
                    else f"{goal['result']} ({'lever' if 'float convs' in goal['variant'] else 'reference'})",
                ]
            )
    if "latency" in result:
        for goal in latency_goals(result["latency"]):
            body.append(
                [
                    f"int8-qoperator end-to-end speed-up vs fp32, batch {goal['batch']}: default / plain",
                    f"{goal['fixed']:.2f}x / {goal['plain']:.2f}x = {goal['ratio']:.3f}",
                    f">= {1 - SPEEDUP_TOLERANCE:.2f}",
                    goal["result"],
                ]
            )
    out += _table(["goal", "measured", "target", "result"], body)
    out += [
        "",
        "The goal is on the *default* rows (what `padim-calibrate --int8` does now); *plain* rows are the "
        "behaviour before issue 12, shown for reference. Speed-ups are process CPU time at one thread.",
        "",
    ]
    return out


def render_fidelity(acc: dict[str, Any]) -> list[str]:
    rows = _fidelity_rows(acc)
    out = ["## Does the fidelity report's Spearman predict the AUROC loss?", ""]
    if not rows:
        return [*out, "No rows with both a fidelity report and AUROCs.", ""]
    body = [
        [
            r["set"], r["variant"], f"{r['spearman']:.4f}", _num(r["map_error_median"], ".3f"),
            _low({"low": r["low"]}), f"{r['image_loss']:.4f}", _num(r["pixel_loss"]),
        ]
        for r in rows
    ]  # fmt: skip
    out += _table(
        ["set", "variant", "Spearman", "median map error", "LOW?", "\\|Δ image\\|", "\\|Δ pixel\\|"], body
    )
    corr = fidelity_correlation(rows)
    out += [
        "",
        f"Rank correlation across these {len(rows)} rows (a predictor of loss: Spearman correlates "
        "*negatively* with the loss, map error positively): Spearman vs \\|Δ image\\| "
        f"{_num(corr['spearman_vs_image'], '+.3f')}, vs \\|Δ pixel\\| "
        f"{_num(corr['spearman_vs_pixel'], '+.3f')}; "
        f"median map error vs \\|Δ image\\| {_num(corr['map_error_vs_image'], '+.3f')}, vs \\|Δ pixel\\| "
        f"{_num(corr['map_error_vs_pixel'], '+.3f')}.",
        "",
    ]
    return out


def render_latency(lat: dict[str, Any]) -> list[str]:
    out = [f"## Latency: {lat['model']}", "", *_head(lat)]
    out += [
        f"One onnxruntime thread, CPU EP; {lat['rounds']} interleaved rounds (every model once per round, "
        "one session alive at a time). Per round: process CPU time per call (mean) and wall time per call "
        "(median); the table gives the median over rounds with [min-max]. `fused` = `PadimModel.run` on "
        "uint8 frames; `backbone` = the same graph cut from the preprocessed frames to the tapped maps. "
        f"Other processes' CPU share per round: {', '.join(_pct(b) for b in lat['background_cpu'])}.",
        "",
    ]
    body = [
        [
            r["part"],
            str(r["batch"]),
            r["variant"],
            f"{r['cpu_ms_median']:.1f} [{r['cpu_ms_min']:.1f}-{r['cpu_ms_max']:.1f}]",
            f"{r['cpu_speedup_vs_fp32']:.2f}x",
            f"{r['wall_ms_median']:.1f} [{r['wall_ms_min']:.1f}-{r['wall_ms_max']:.1f}]",
            f"{r['wall_speedup_vs_fp32']:.2f}x",
        ]
        for r in lat["rows"]
    ]
    out += _table(
        ["part", "batch", "variant", "CPU ms / call", "CPU speed-up", "wall ms / call", "wall speed-up"], body
    )
    sizes = ", ".join(f"{k} {v:.1f} MB" for k, v in lat["file_mb"].items())
    return [*out, "", f"Files: {sizes}.", ""]


def render(result: dict[str, Any]) -> str:
    lines = ["# INT8 vs float32: accuracy on three data sets, fidelity report, latency (issue 12)", ""]
    lines += [
        "Produced by `benchmarks/int8_accuracy.py` (its docstring says what is measured and how).",
        "",
    ]
    lines += render_goals(result)
    if "accuracy" in result:
        lines += render_accuracy(result["accuracy"])
        lines += render_fidelity(result["accuracy"])
    if "latency" in result:
        lines += render_latency(result["latency"])
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--parts", default=",".join(PARTS), show_default=True, help="Comma-separated parts to run.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path),
    help="Keep / reuse generated sets, models and calibration records here (default: temporary).",
)  # fmt: skip
@click.option("--sets", default=",".join(SETS), show_default=True, help="Comma-separated data sets.")
@click.option("--max-train", type=click.IntRange(min=2), default=200, show_default=True, help="Fit images.")
@click.option("--max-test", type=click.IntRange(min=2), default=None, help="Test images (default: all).")
@click.option("--calibration-images", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True, help="Latency rounds.")
@click.option(
    "--wait-idle", type=float, default=20.0, show_default=True,
    help="Before each latency round, wait up to this many seconds for other processes to leave the CPU.",
)  # fmt: skip
@click.option("--quick", is_flag=True, help="Smoke run: 30 train, 40 test, 20 calibration images, 1 round.")
def main(
    parts: str,
    output: Path,
    workdir: Path | None,
    sets: str,
    max_train: int,
    max_test: int | None,
    calibration_images: int,
    rounds: int,
    wait_idle: float,
    quick: bool,
) -> None:
    """Measure INT8 (plain / default / float convs) and FP16 accuracy on three sets, and INT8 latency."""
    from padim_edge.bench.system import machine_info

    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = set(chosen) - set(PARTS)
    if unknown:
        raise click.BadParameter(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    names = tuple(s.strip() for s in sets.split(",") if s.strip())
    if set(names) - set(SETS):
        raise click.BadParameter(
            f"unknown sets {sorted(set(names) - set(SETS))}; choose from {', '.join(SETS)}"
        )
    if not WEIGHTS.is_file() and "accuracy" in chosen:
        raise click.ClickException(f"needs {WEIGHTS} (set PADIM_EDGE_SHARED to the project's shared folder)")
    if quick:
        max_train, max_test, calibration_images, rounds, wait_idle = 30, 40, 20, 1, 0.0
    output.mkdir(parents=True, exist_ok=True)
    path = output / "int8_accuracy.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    temporary = workdir is None
    work = Path(tempfile.mkdtemp(prefix="padim-int8-bench-")) if temporary else workdir
    work.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/int8_accuracy.py", *sys.argv[1:]])
    try:
        for part in chosen:
            started = time.perf_counter()
            log(f"== {part}")
            if part == "accuracy":
                section = run_accuracy(
                    work, sets=names, max_train=max_train, max_test=max_test,
                    calibration_images=calibration_images,
                )  # fmt: skip
            else:
                section = run_latency(
                    work,
                    rounds=rounds,
                    calibration_images=calibration_images,
                    wait_idle=wait_idle,
                    quick=quick,
                )
            section.update(
                seconds=time.perf_counter() - started,
                command=command,
                quick=quick,
                machine=machine_info(),
                finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            )
            result[part] = section
            path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    result["goals"] = {
        "max_auroc_delta": MAX_AUROC_DELTA,
        "speedup_tolerance": SPEEDUP_TOLERANCE,
        "accuracy": accuracy_goals(result["accuracy"]) if "accuracy" in result else [],
        "latency": latency_goals(result["latency"]) if "latency" in result else [],
        "fidelity_rows": _fidelity_rows(result["accuracy"]) if "accuracy" in result else [],
        "fidelity_correlation": (
            fidelity_correlation(_fidelity_rows(result["accuracy"])) if "accuracy" in result else {}
        ),
    }
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    (output / "int8_accuracy.md").write_text(render(result))
    log(f"wrote {path} and {output / 'int8_accuracy.md'}")


if __name__ == "__main__":
    main()
