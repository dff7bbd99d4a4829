"""Accuracy benchmarks: score a model on a test split, and make (or reuse) a calibrated variant of it.

Used by :mod:`accuracy` (``int8``, ``patchcore-int8``) and :mod:`fidelity_verdicts`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import time
from pathlib import Path
from typing import Any

from harness import even_spread, finite, log

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
