"""The fidelity report's labelled figures: image and pixel AUROC of both models on ``--labeled ROOT``."""

from __future__ import annotations

import math
from pathlib import Path

from tqdm import tqdm

from padim_edge.calibration import scoring
from padim_edge.calibration.errors import CalibrationError


def labeled_auroc(
    reference: scoring.FrameModel, variant: scoring.FrameModel, root: Path, *, progress: bool
) -> tuple[tuple[float, float] | None, tuple[float, float] | None, list[str]]:
    """Image and pixel AUROC of both models on an MVTec-layout category (:mod:`padim_edge.evaluation`).

    Returns:
        ``(image, pixel, notes)``: ``(reference, variant)`` pairs, ``None`` where not available (pixel:
        no ``ground_truth/``; either: scikit-learn / scipy missing, which ``notes`` says).
    """
    try:
        from padim_edge.evaluation.metrics import image_auroc, pixel_auroc
        from padim_edge.evaluation.predictions import PredictionError, predict_category
    except ImportError as exc:
        return None, None, [f"no AUROC in the fidelity report: it needs padim-edge[eval] ({exc})"]
    from padim_edge.datasets import DatasetError, load_category
    from padim_edge.images import ImageError

    try:
        category = load_category(root, masks="auto")
    except DatasetError as exc:
        raise CalibrationError(f"--labeled: {exc}") from exc
    results = []
    for name, model in (("reference", reference), ("variant", variant)):
        total = len(category.samples)
        with tqdm(total=total, desc=f"AUROC {name}", unit="img", disable=not progress, leave=False) as bar:
            try:
                results.append(predict_category(model, category, progress=bar.update))
            except (ImageError, DatasetError) as exc:
                raise CalibrationError(f"--labeled: {exc}") from exc
            except PredictionError as exc:
                return None, None, [f"no AUROC in the fidelity report: {exc}"]
    image = tuple(image_auroc(r.scores, r.labels) for r in results)
    pixel = None
    if all(r.masks is not None for r in results):
        pixel = tuple(pixel_auroc(r.maps, r.masks) for r in results)
    notes = []
    if not all(math.isfinite(v) for v in image):
        notes.append("image AUROC undefined on --labeled (one class only)")
    return (
        image if all(math.isfinite(v) for v in image) else None,  # type: ignore[return-value]
        pixel if pixel and all(math.isfinite(v) for v in pixel) else None,  # type: ignore[return-value]
        notes,
    )
