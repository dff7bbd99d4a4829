"""Scoring a variant beside its reference: the figures of the fidelity report (numpy + onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from padim_edge.calibration import scoring
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.fidelity import stats, synthetic_defects
from padim_edge.calibration.fidelity.figures import finite, map_error, summarise
from padim_edge.calibration.fidelity.frames import FramePlan
from padim_edge.calibration.fidelity.labeled import labeled_auroc
from padim_edge.calibration.fidelity.report import Fidelity, SyntheticFigures
from padim_edge.calibration.settings import MIN_FRAMES
from padim_edge.images import ImageError, iter_batches


def _compare_frames(
    reference: scoring.FrameModel, variant: scoring.FrameModel, frames: list[Path], *, progress: bool
) -> dict[str, float | int | None]:
    ref_scores, var_scores, errors = [], [], []
    for _, (ref, var) in scoring.iter_predictions(
        [reference, variant], frames, progress=progress, desc="fidelity"
    ):
        ref_scores.append(ref.score)
        var_scores.append(var.score)
        errors.append(map_error(ref.anomaly_map, var.anomaly_map))
    return summarise(np.array(ref_scores), np.array(var_scores), np.array(errors))


def synthetic_figures(
    reference: scoring.FrameModel, variant: scoring.FrameModel, frames: list[Path]
) -> SyntheticFigures:
    """Both models on the synthetic-defect set of ``frames``: the AUROCs, their drop intervals, separation.

    Raises:
        CalibrationError: An image cannot be decoded.
    """
    try:
        images = [image for batch in iter_batches(frames, 8) for _, image in batch]
    except ImageError as exc:
        raise CalibrationError(str(exc)) from exc
    synthetic = synthetic_defects.make_set(images, synthetic_defects.crop_of(reference))
    (ref_scores, ref_maps), (var_scores, var_maps) = (
        synthetic_defects.predict(model, synthetic) for model in (reference, variant)
    )
    ref_image, ref_pixel = synthetic_defects.aurocs(ref_scores, ref_maps, synthetic)
    var_image, var_pixel = synthetic_defects.aurocs(var_scores, var_maps, synthetic)
    figures = SyntheticFigures(
        image=(ref_image, var_image) if all(finite(v) is not None for v in (ref_image, var_image)) else None,
        pixel=(ref_pixel, var_pixel) if all(finite(v) is not None for v in (ref_pixel, var_pixel)) else None,
    )
    if not (np.isfinite(var_scores).all() and np.isfinite(var_maps).all()):
        return figures  # counted as NaN / inf frames by the normal-frame pass
    count = len(synthetic.clean)
    reference_low: list[float | None] = [None, None]
    if figures.image is not None:
        interval = stats.image_interval(
            (ref_scores[:count], ref_scores[count:]), (var_scores[:count], var_scores[count:])
        )
        figures.image_drop, reference_low[0] = (interval.low, interval.high), interval.reference_low
    masks = synthetic_defects.all_masks(synthetic)
    if figures.pixel is not None:
        interval = stats.pixel_interval(ref_maps, var_maps, masks, exact=figures.pixel)
        figures.pixel_drop, reference_low[1] = (interval.low, interval.high), interval.reference_low
    figures.reference_low = (reference_low[0], reference_low[1])
    figures.separation = stats.separation(ref_maps, var_maps, masks)
    return figures


def measure(
    reference_path: Path,
    variant_path: Path,
    plan: FramePlan,
    *,
    reference: str,
    labeled: Path | None = None,
    device: str = "auto",
    threads: int | None = None,
    progress: bool = True,
) -> Fidelity | None:
    """Compare ``variant_path`` with ``reference_path`` on ``plan.frames`` (and ``labeled``).

    Args:
        reference_path: The input model.
        variant_path: The variant, saved (without its threshold outputs; they do not change scores).
        plan: From :func:`plan_frames`.
        reference: How the report names the reference.
        labeled: MVTec-layout root for the AUROC figures, or ``None``.
        device: Where both models run.
        threads: onnxruntime intra-op threads.
        progress: Show progress bars.

    Returns:
        The report; ``None`` when there are fewer than :data:`MIN_FRAMES` frames. A variant that cannot
        run on ``device`` gives a report with ``error`` set, not an exception.

    Raises:
        CalibrationError: The reference cannot run, or an image cannot be read.
    """
    if not plan.measure or len(plan.frames) < MIN_FRAMES:
        return None
    report = Fidelity(reference=reference, source=plan.source, frames=len(plan.frames))
    ref_model = scoring.open_model(reference_path, device=device, threads=threads)
    try:
        var_model = scoring.open_model(variant_path, device=device, threads=threads)
    except CalibrationError as exc:
        report.error = f"the variant cannot run on --device {device}: {str(exc)[:300]}"
        return report
    report.device = var_model.providers[0] if var_model.providers else device
    try:
        figures = _compare_frames(ref_model, var_model, plan.frames, progress=progress)
        synthetic = synthetic_figures(ref_model, var_model, plan.frames)
    except CalibrationError:
        raise
    except Exception as exc:  # onnxruntime: e.g. no kernel for a float16 op on this EP
        report.error = f"the variant failed on --device {device}: {str(exc)[:300]}"
        return report
    report.take(synthetic)
    report.spearman = figures["spearman"]
    report.map_error_median = figures["map_error_median"]
    report.map_error_worst = figures["map_error_worst"]
    report.score_ratio_median = figures["score_ratio_median"]
    report.nonfinite_frames = int(figures["nonfinite_frames"] or 0)
    if labeled is not None:
        report.image_auroc, report.pixel_auroc, notes = labeled_auroc(
            ref_model, var_model, labeled, progress=progress
        )
        report.notes += notes
    return report
