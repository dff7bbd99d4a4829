"""INT8 benchmark (:mod:`int8_accuracy`), accuracy part: fit, calibrate the variants, score them all."""

from __future__ import annotations

import dataclasses
import gc
import json
import time
from pathlib import Path
from typing import Any

from int8_report import num
from int8_sets import (
    CROP,
    DIMS,
    RESIZE,
    VARIANTS,
    WEIGHTS,
    even_spread,
    finite,
    log,
    prepare_fit,
)

from padim_edge.atomic import write_json


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
        "image_auroc": finite(image_auroc(predictions.scores, predictions.labels)),
        "pixel_auroc": None,
        "pro": None,
        "score_seconds": seconds,
        "test_images": int(predictions.labels.size),
        "defect_images": int(predictions.labels.sum()),
        "file_mb": model_path.stat().st_size / 1e6,
    }
    if predictions.masks is not None:
        row["pixel_auroc"] = finite(pixel_auroc(predictions.maps, predictions.masks))
        row["pro"] = finite(pro_score(predictions.maps, predictions.masks))
    scores = predictions.scores
    del predictions, model
    gc.collect()
    return {"row": row, "scores": scores}


def refresh_fidelity(fp32: Path, variant: Path, root: Path) -> dict[str, Any] | None:
    """An existing variant's fidelity report on ``test/good``, as ``calibrate(validate=...)`` makes it."""
    from padim_edge.calibration import fidelity
    from padim_edge.images import list_images

    plan = fidelity.plan_frames(
        measure=True, calibrates=False, data_paths=None, calibration_count=2,
        validate_paths=list_images(root / "test" / "good"),
    )  # fmt: skip
    report = fidelity.measure(
        fp32,
        variant,
        plan,
        reference=f"{fp32.name} (fp32 backbone / fp32 head)",
        device="cpu",
        progress=False,
    )
    return None if report is None else report.record()


def relimit(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its stored fidelity figures judged against today's limits (``low`` and the limits)."""
    from padim_edge.calibration.fidelity import Fidelity

    if row.get("fidelity"):
        row["fidelity"] = Fidelity.from_record(row["fidelity"]).record()
    return row


def make_variant(
    fp32: Path, out: Path, variant: str, refit: bool | None, float_convs: int | None, *,
    root: Path, fit_dir: Path, calibration_images: int,
) -> dict[str, Any]:  # fmt: skip
    """Calibrate one variant (or reuse it and its record from an earlier run in the same workdir)."""
    from padim_edge.calibration.pipeline import calibrate

    record_path = out.with_suffix(".calibration.json")
    if out.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        fid = record.get("fidelity") or {}
        if fid and "synthetic_image_auroc" not in fid:  # made before the synthetic-defect figures
            log(f"{out.name}: re-measuring the fidelity report (synthetic-defect figures)")
            record["fidelity"] = refresh_fidelity(fp32, out, root)
            record["fidelity_refreshed"] = True
            write_json(record_path, record)
        return relimit({**record, "reused": True})
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
    write_json(record_path, record)
    return record


def accuracy_set(
    name: str, workdir: Path, *, max_train: int | None, max_test: int | None, calibration_images: int
) -> dict[str, Any]:
    """One data set's section: fit, five variants, evaluation of all six models."""
    from padim_edge.calibration.fidelity import spearman
    from padim_edge.export.pipeline import run_export

    started = time.perf_counter()
    log(f"{name}: preparing the data")
    folder = f"{name}-train{max_train or 'all'}-cal{calibration_images}"
    ready, description = prepare_fit(name, workdir, folder=folder, max_train=max_train)
    if ready is None:
        return {"skipped": description}
    root, here, fit_dir, train_images = ready
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
        row["test_score_spearman"] = finite(spearman(reference["scores"], result["scores"]))
        rows[label] = row
        fid = row.get("fidelity") or {}
        log(
            f"{name}: {label}: image {row['image_auroc']:.4f} ({row['image_auroc_delta']:+.4f}), "
            f"pixel {num(row['pixel_auroc'])} ({num(row['pixel_auroc_delta'], '+.4f')}), "
            f"Spearman {num(fid.get('spearman'))}"
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
