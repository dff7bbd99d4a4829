"""Fidelity report: how closely a calibrated variant follows the model it was made from.

Every ``padim-calibrate --int8 / --fp16 / --head-precision`` run scores held-out defect-free frames with
the input model (the reference) and with the new variant, both through the torch-free runtime
(:mod:`padim_edge.calibration.scoring`), and reports:

* ``spearman``: Spearman rank correlation of the image scores (ties get average ranks). A variant that
  ranks normal frames differently from the reference will also move the boundary between normal and
  defective frames. Normal frames score close together, so this is a strict test.
* ``map_error_median`` / ``map_error_worst``: per-frame relative L2 error of the anomaly maps,
  ``||map_variant - map_reference|| / ||map_reference||``, median and worst over the frames.
* ``score_ratio_median``: median of ``score_variant / score_reference`` (a systematic scale change; a
  threshold chosen on the reference's scores would not fit the variant).
* ``image_auroc`` / ``pixel_auroc`` with ``--labeled ROOT``: ``[reference, variant]`` on its test images
  (:mod:`padim_edge.evaluation.metrics`, which needs scikit-learn and scipy).

Held-out frames, in order of preference: ``--validate DIR``; the ``test/good`` images of ``--labeled``;
for INT8 a part of ``--data`` that does not calibrate (:func:`split_data`); for FP16 and head variants,
which calibrate on nothing, ``--data`` itself. At most :data:`MAX_FRAMES`, spread evenly; INT8
calibration frames are never among them.

A report below :data:`MIN_SPEARMAN`, above :data:`MAX_MAP_ERROR` or losing more than
:data:`MAX_AUROC_DROP` image AUROC prints ``LOW FIDELITY``; with fewer than :data:`MIN_FRAMES` frames
it prints ``NO FIDELITY REPORT`` and how to get one. The figures are stored as JSON in the model's
``padim_edge.fidelity`` metadata (:attr:`padim_edge.metadata.ModelInfo.fidelity`). Needs numpy and
onnxruntime only (no torch, no scipy); the AUROC figures import the evaluation package when asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from padim_edge.calibration import int8, scoring
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.settings import (  # their home; importable from here too
    MAX_AUROC_DROP,
    MAX_FRAMES,
    MAX_MAP_ERROR,
    MIN_FRAMES,
    MIN_SPEARMAN,
    SOURCE_DATA,
    SOURCE_LABELED,
    SOURCE_SPLIT,
    SOURCE_VALIDATE,
)

if TYPE_CHECKING:
    from padim_edge.calibration.formats import Variant

HOW_TO_GET_ONE = (
    f"pass --validate DIR (at least {MIN_FRAMES} defect-free images that the model was not fitted on and "
    "INT8 did not calibrate on), or more --data images"
)


# --------------------------------------------------------------------------- the figures


def rankdata(values: np.ndarray | list[float]) -> np.ndarray:
    """1-based ranks of ``values`` with ties given their average rank (``scipy.stats.rankdata``'s default).

    Returns:
        float64 ranks, in the order of ``values``.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts).astype(np.float64)  # rank of the last copy of each distinct value
    return (upper - (counts - 1) / 2.0)[inverse.ravel()]


def spearman(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    """Spearman rank correlation: Pearson correlation of the average-tie ranks.

    Returns:
        A value in ``[-1, 1]``, or ``nan`` when either side is constant (or has fewer than 2 values).

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    ra, rb = rankdata(a), rankdata(b)
    if ra.shape != rb.shape:
        raise ValueError(f"{ra.size} and {rb.size} values: spearman needs pairs")
    if ra.size < 2:
        return float("nan")
    da, db = ra - ra.mean(), rb - rb.mean()
    denominator = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    if denominator == 0.0:
        return float("nan")
    return max(-1.0, min(1.0, float(np.dot(da, db)) / denominator))


def map_error(reference: np.ndarray, variant: np.ndarray) -> float:
    """Relative L2 error of one anomaly map: ``||variant - reference|| / ||reference||`` (float64)."""
    reference = np.asarray(reference, dtype=np.float64)
    variant = np.asarray(variant, dtype=np.float64)
    if reference.shape != variant.shape:
        raise ValueError(f"anomaly maps of shape {reference.shape} and {variant.shape}")
    norm = float(np.linalg.norm(reference))
    return float(np.linalg.norm(variant - reference)) / max(norm, np.finfo(np.float64).tiny)


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass
class Fidelity:
    """One variant compared with its reference.

    Attributes:
        reference: The reference model: ``<file name> (<backbone> backbone / <head> head)``.
        source: Where the held-out frames came from (``SOURCE_*``).
        frames: Held-out frames compared.
        device: The onnxruntime provider the variant ran on.
        spearman: Rank correlation of the image scores (``None``: undefined, constant scores).
        map_error_median: Median per-frame relative L2 error of the anomaly maps.
        map_error_worst: Largest of them.
        score_ratio_median: Median of ``score_variant / score_reference``.
        image_auroc: ``(reference, variant)`` image AUROC on ``--labeled``, else ``None``.
        pixel_auroc: ``(reference, variant)`` pixel AUROC on ``--labeled`` (with masks), else ``None``.
        nonfinite_frames: Frames whose variant score or map holds NaN / inf (left out of the figures).
        error: Why the variant could not be measured (it could not run on the device), else ``None``.
        notes: Caveats that do not make it low (e.g. AUROC not available).
    """

    reference: str
    source: str
    frames: int
    device: str = ""
    spearman: float | None = None
    map_error_median: float | None = None
    map_error_worst: float | None = None
    score_ratio_median: float | None = None
    image_auroc: tuple[float, float] | None = None
    pixel_auroc: tuple[float, float] | None = None
    nonfinite_frames: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """The figures past their limits, one phrase each (empty: not low)."""
        if self.error is not None:
            return []
        found = []
        if self.nonfinite_frames:
            found.append(f"NaN / inf scores or maps on {self.nonfinite_frames} of {self.frames} frames")
        if self.spearman is None:
            found.append("Spearman undefined (constant image scores)")
        elif self.spearman < MIN_SPEARMAN:
            found.append(f"Spearman {self.spearman:.4f} < {MIN_SPEARMAN} (image-score ranking)")
        if self.map_error_median is not None and self.map_error_median > MAX_MAP_ERROR:
            found.append(f"median anomaly-map error {self.map_error_median:.3f} > {MAX_MAP_ERROR}")
        if self.image_auroc is not None and self.image_auroc[0] - self.image_auroc[1] > MAX_AUROC_DROP:
            before, after = self.image_auroc
            found.append(f"image AUROC {before:.4f} -> {after:.4f} (drop > {MAX_AUROC_DROP})")
        return found

    @property
    def low(self) -> bool | None:
        """Whether a figure is past its limit (``None`` when the variant could not be measured)."""
        return None if self.error is not None else bool(self.problems)

    def record(self) -> dict[str, Any]:
        """The JSON stored in the ``padim_edge.fidelity`` metadata key."""

        def pair(values: tuple[float, float] | None) -> list[float | None] | None:
            return None if values is None else [_round(v) for v in values]

        return {
            "reference": self.reference,
            "source": self.source,
            "frames": self.frames,
            "device": self.device,
            "spearman": _round(self.spearman),
            "map_error_median": _round(self.map_error_median),
            "map_error_worst": _round(self.map_error_worst),
            "score_ratio_median": _round(self.score_ratio_median),
            "image_auroc": pair(self.image_auroc),
            "pixel_auroc": pair(self.pixel_auroc),
            "nonfinite_frames": self.nonfinite_frames,
            "min_spearman": MIN_SPEARMAN,
            "max_map_error": MAX_MAP_ERROR,
            "low": self.low,
            "error": self.error,
        }

    def warnings(self, variant: str) -> list[str]:
        """``LOW FIDELITY`` / ``NO FIDELITY REPORT`` lines for the user, and the notes."""
        where = f"{variant} vs {self.reference} on {self.frames} frames ({self.source})"
        lines = list(self.notes)
        if self.error is not None:
            lines.append(f"NO FIDELITY REPORT: {where}: {self.error}")
        elif self.problems:
            lines.append(
                f"LOW FIDELITY: {where}: {'; '.join(self.problems)}. This variant does not score like "
                "the model it was made from and may miss defects that one finds: check it on labelled "
                "images (--labeled ROOT, or padim-eval) before deploying it"
            )
        return lines


def _round(value: float | None) -> float | None:
    value = _finite(value)
    return None if value is None else round(value, 6)


def summarise(
    reference_scores: np.ndarray, variant_scores: np.ndarray, errors: np.ndarray
) -> dict[str, float | int | None]:
    """The normal-frame figures from paired scores and per-frame map errors.

    Frames with a non-finite variant score or map error are counted (``nonfinite_frames``) and left out.
    """
    reference_scores = np.asarray(reference_scores, dtype=np.float64)
    variant_scores = np.asarray(variant_scores, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    finite = np.isfinite(variant_scores) & np.isfinite(errors) & np.isfinite(reference_scores)
    reference_scores, variant_scores, errors = (
        reference_scores[finite],
        variant_scores[finite],
        errors[finite],
    )
    positive = reference_scores > 0
    ratios = variant_scores[positive] / reference_scores[positive]
    return {
        "spearman": _finite(spearman(reference_scores, variant_scores)),
        "map_error_median": float(np.median(errors)) if errors.size else None,
        "map_error_worst": float(errors.max()) if errors.size else None,
        "score_ratio_median": float(np.median(ratios)) if ratios.size else None,
        "nonfinite_frames": int(np.count_nonzero(~finite)),
    }


# --------------------------------------------------------------------------- which frames


def applies(variant: Variant) -> bool:
    """Whether a variant gets a fidelity report: it changes the backbone's or the head's arithmetic."""
    return variant.precision is not None or variant.head_precision is not None


def spread(paths: list[Path], count: int) -> list[Path]:
    """At most ``count`` of ``paths``, spread evenly (all of them when there are fewer)."""
    if len(paths) <= count:
        return list(paths)
    picks = np.unique(np.linspace(0, len(paths) - 1, count).round().astype(int))
    return [paths[i] for i in picks]


def split_data(paths: list[Path], count: int, *, hold_out: bool) -> tuple[list[Path], list[Path], list[str]]:
    """Split ``--data`` into INT8 calibration frames and held-out frames for the fidelity report.

    With enough images the calibration frames are the even spread of ``count`` that
    :func:`padim_edge.calibration.int8.pick_calibration_images` picks, and every other image is held
    out. With fewer than ``count + MIN_FRAMES``, ``max(MIN_FRAMES, n // 5)`` images (an even spread) are
    held out and the rest calibrate, with a warning; with too few for both, all calibrate and none are
    held out.

    Returns:
        ``(calibration, held_out, warnings)``; the two lists never share a file.

    Raises:
        CalibrationError: Fewer than 2 images, or ``count`` below 2 (as for INT8 calibration).
    """
    calibration = int8.pick_calibration_images(paths, count)
    if not hold_out:
        return calibration, [], []
    if len(paths) >= count + MIN_FRAMES:
        chosen = set(calibration)
        return calibration, [p for p in paths if p not in chosen], []
    held_count = max(MIN_FRAMES, len(paths) // 5)
    if len(paths) - held_count < 2:
        return calibration, [], []  # the report's own NO FIDELITY REPORT warning says why
    held = spread(paths, held_count)
    kept = set(held)
    calibration = [p for p in paths if p not in kept]
    return (
        calibration,
        held,
        [
            f"--data has {len(paths)} images, fewer than the {count} INT8 calibration frames plus "
            f"{MIN_FRAMES} held-out frames asked for: {len(calibration)} calibrate and {len(held)} are held "
            "out for the fidelity report (pass more images, or --validate DIR for the report)"
        ],
    )


@dataclass
class FramePlan:
    """The frames a calibration run uses.

    Attributes:
        calibration: INT8 calibration frames.
        frames: Held-out normal frames for the fidelity report (empty: no report).
        source: Where ``frames`` came from.
        measure: Whether this variant gets a fidelity report at all (it changes the arithmetic).
        candidates: Held-out frames available before the :data:`MAX_FRAMES` cap.
        warnings: Caveats about the split.
    """

    calibration: list[Path]
    frames: list[Path]
    source: str
    measure: bool
    candidates: int = 0
    warnings: list[str] = field(default_factory=list)


def plan_frames(
    *,
    measure: bool,
    calibrates: bool,
    data_paths: list[Path] | None,
    calibration_count: int,
    validate_paths: list[Path] | None = None,
    labeled_normal: list[Path] | None = None,
) -> FramePlan:
    """Choose the INT8 calibration frames and the held-out frames (see the module docstring).

    Args:
        measure: The variant changes the arithmetic (INT8 / FP16 / head precision): make a report.
        calibrates: The variant calibrates on ``data_paths`` (INT8).
        data_paths: The ``--data`` images, or ``None``.
        calibration_count: Most INT8 calibration frames.
        validate_paths: The ``--validate`` images, or ``None``.
        labeled_normal: The ``test/good`` images of ``--labeled``, or ``None``.

    Raises:
        CalibrationError: As :func:`split_data`.
    """
    calibration: list[Path] = []
    held: list[Path] = []
    warnings: list[str] = []
    if calibrates:
        if data_paths is None:
            raise CalibrationError("INT8 calibrates on normal images: pass --data DIR")
        hold_out = measure and validate_paths is None and labeled_normal is None
        calibration, held, warnings = split_data(data_paths, calibration_count, hold_out=hold_out)
    if not measure:
        return FramePlan(calibration, [], "", measure=False)
    if validate_paths is not None:
        candidates, source = validate_paths, SOURCE_VALIDATE
    elif labeled_normal is not None:
        candidates, source = labeled_normal, SOURCE_LABELED
    elif calibrates:
        candidates, source = held, SOURCE_SPLIT
    else:
        candidates, source = list(data_paths or []), SOURCE_DATA
    used = {p.resolve() for p in calibration}
    overlap = [p for p in candidates if p.resolve() in used]
    if overlap:
        warnings.append(
            f"{len(overlap)} of the {source} frames are INT8 calibration frames too; they are left out of "
            "the fidelity report (a variant is always closest to the reference on its calibration frames)"
        )
        candidates = [p for p in candidates if p.resolve() not in used]
    return FramePlan(
        calibration,
        spread(candidates, MAX_FRAMES),
        source,
        measure=True,
        candidates=len(candidates),
        warnings=warnings,
    )


def no_report_warning(plan: FramePlan, variant: str) -> str:
    """``NO FIDELITY REPORT``: why, and how to get one."""
    found = len(plan.frames)
    where = f" ({plan.source})" if plan.source else ""
    return (
        f"NO FIDELITY REPORT: the {variant} model was not compared with the model it was made from: "
        f"{found} held-out normal frame{'s' if found != 1 else ''}{where}, at least {MIN_FRAMES} needed; "
        + HOW_TO_GET_ONE
    )


# --------------------------------------------------------------------------- measuring


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
    except CalibrationError:
        raise
    except Exception as exc:  # onnxruntime: e.g. no kernel for a float16 op on this EP
        report.error = f"the variant failed on --device {device}: {str(exc)[:300]}"
        return report
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
