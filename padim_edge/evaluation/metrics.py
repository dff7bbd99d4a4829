"""Anomaly-detection metrics: image AUROC, pixel AUROC and PRO (MVTec AD definitions).

* Image AUROC: ROC of the image scores, good images negative, defect images positive.
* Pixel AUROC: ROC of every test pixel's anomaly value against its ground-truth mask (pixels of good
  images are all normal).
* PRO (per-region overlap, Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021): for a
  sweep of thresholds, the PRO is the mean over every connected component of the ground truth (over all
  images) of the fraction of the component's pixels at or above the threshold; the x axis is the pixel
  false-positive rate on defect-free pixels. The curve is integrated with the trapezoid rule over FPR in
  ``[0, max_fpr]`` (the point at ``max_fpr`` interpolated) and divided by ``max_fpr``. Components use
  8-connectivity, as the MVTec AD evaluation code does.

ROC curves come from scikit-learn, connected components from :func:`scipy.ndimage.label`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage
from sklearn.metrics import auc, roc_auc_score, roc_curve

if TYPE_CHECKING:
    from padim_edge.evaluation.dataset import CategoryPredictions

#: Default FPR limit of the PRO integral (MVTec AD's 30 %).
PRO_MAX_FPR = 0.3
#: Default number of thresholds of the PRO sweep (``None`` in :func:`pro_curve` means every score).
PRO_THRESHOLDS = 2000
#: 8-connectivity in the image plane, no connection between the images of a stack.
_STRUCTURE_8 = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE_8[1] = True
#: Images processed at once by the PRO sweep (bounds the temporary memory).
_CHUNK = 64
#: At most this many normal pixels are used to place the PRO thresholds.
_SAMPLE = 1_000_000


def _as_stack(values: np.ndarray | Sequence[np.ndarray], name: str, dtype: type) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise ValueError(f"{name} must be [N, H, W] (or one [H, W]), got shape {list(array.shape)}")
    return array


def _check_pixels(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    maps = _as_stack(maps, "anomaly maps", np.float32)
    masks = _as_stack(masks, "masks", bool)
    if maps.shape != masks.shape:
        raise ValueError(f"anomaly maps {list(maps.shape)} and masks {list(masks.shape)} differ in shape")
    return maps, masks


def image_auroc(scores: np.ndarray | Sequence[float], labels: np.ndarray | Sequence[bool]) -> float:
    """Area under the ROC curve of image scores.

    Args:
        scores: One anomaly score per image (higher = more anomalous).
        labels: ``True`` for defect images, ``False`` for good ones.

    Returns:
        The AUROC in ``[0, 1]``, or ``nan`` when only one class is present.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, scores))


def pixel_auroc(anomaly_maps: np.ndarray, masks: np.ndarray) -> float:
    """Area under the ROC curve of every pixel's anomaly value against the ground-truth masks.

    Args:
        anomaly_maps: ``float [N, H, W]`` maps.
        masks: ``bool [N, H, W]`` ground truth (all ``False`` for good images).

    Returns:
        The AUROC, or ``nan`` when the pixels are all normal or all anomalous.
    """
    maps, masks = _check_pixels(anomaly_maps, masks)
    if masks.all() or not masks.any():
        return float("nan")
    return float(roc_auc_score(masks.ravel(), maps.ravel()))


@dataclass(frozen=True)
class RocCurve:
    """A ROC curve (thinned for plotting) and its exact area.

    Attributes:
        fpr: False-positive rates, non-decreasing (empty when only one class is present).
        tpr: True-positive rates.
        auroc: Area under the full (unthinned) curve; ``nan`` when only one class is present.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    auroc: float


def roc(
    scores: np.ndarray | Sequence[float],
    labels: np.ndarray | Sequence[bool],
    *,
    max_points: int | None = 2000,
) -> RocCurve:
    """ROC curve of scores against labels (scikit-learn) with its AUROC, from a single sort.

    Works for image scores and for pixels (pass ``maps.ravel()`` and ``masks.ravel()``). The returned
    points are thinned to at most ``max_points`` for plotting; the AUROC is computed before thinning.
    """
    scores = np.asarray(scores).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if labels.all() or not labels.any():
        return RocCurve(np.empty(0), np.empty(0), float("nan"))
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=True)
    area = float(auc(fpr, tpr))
    if max_points is not None and fpr.size > max_points:
        keep = np.unique(np.linspace(0, fpr.size - 1, max_points).round().astype(np.intp))
        fpr, tpr = fpr[keep], tpr[keep]
    return RocCurve(fpr, tpr, area)


def _pro_weights(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Per-pixel PRO weight ``1 / component size`` (0 outside the ground truth) and the component count."""
    labels, count = ndimage.label(masks, structure=_STRUCTURE_8)
    if count == 0:
        return np.zeros(masks.shape, dtype=np.float64), 0
    sizes = np.bincount(labels.ravel()).astype(np.float64)
    inverse = np.zeros_like(sizes)
    inverse[1:] = 1.0 / sizes[1:]
    return inverse[labels], count


def _pro_curve_exact(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct threshold: one sort of all pixels (the MVTec AD reference algorithm)."""
    pro_weight, regions = _pro_weights(masks)
    normal = ~masks
    scores = maps.ravel()
    order = np.argsort(scores, kind="stable")[::-1]
    sorted_scores = scores[order]
    fp = np.cumsum(normal.ravel()[order], dtype=np.float64) / normal.sum()
    pro = np.cumsum(pro_weight.ravel()[order]) / regions
    last_of_ties = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    return np.concatenate([[0.0], fp[last_of_ties]]), np.concatenate([[0.0], pro[last_of_ties]])


def _pro_thresholds(maps: np.ndarray, masks: np.ndarray, count: int, fpr_limit: float) -> np.ndarray:
    """Thresholds spaced evenly in FPR over ``[0, fpr_limit]`` (quantiles of the normal pixels)."""
    normal_max = -np.inf
    samples = []
    step = max(1, int(np.ceil((~masks).sum() / _SAMPLE)))
    for start in range(0, maps.shape[0], _CHUNK):
        values = maps[start : start + _CHUNK][~masks[start : start + _CHUNK]]
        if values.size:
            normal_max = max(normal_max, float(values.max()))
            samples.append(values[::step])
    sample = np.concatenate(samples).astype(np.float64)
    top_level = min(1.0, fpr_limit * 1.05 + 2.0 / count)
    levels = np.linspace(0.0, top_level, count)
    thresholds = np.quantile(sample, 1.0 - levels)
    # Just above the highest normal value: the PRO reached at FPR exactly 0.
    above = np.nextafter(np.float32(normal_max), np.float32(np.inf))
    return np.unique(np.append(thresholds.astype(np.float32), above))


def pro_curve(
    anomaly_maps: np.ndarray,
    masks: np.ndarray,
    *,
    num_thresholds: int | None = PRO_THRESHOLDS,
    fpr_limit: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve: per-region overlap against pixel FPR, for a sweep of thresholds.

    A pixel is "above" a threshold when its value is ``>=`` the threshold. The curve starts at
    ``(0, 0)`` (threshold above every value) and ends at ``(1, 1)`` (threshold below every value).

    Args:
        anomaly_maps: ``float [N, H, W]`` maps of every image considered (good and defect).
        masks: ``bool [N, H, W]`` ground truth. Components are 8-connected and never span two images.
        num_thresholds: ``None``: every distinct value is a threshold (exact; sorts all pixels, so memory
            grows with the pixel count). An integer: about this many thresholds spaced evenly in FPR over
            ``[0, fpr_limit]`` (placed at quantiles of the defect-free pixels); FPR and PRO are exact at
            each threshold, and memory stays bounded (images are processed in chunks).
        fpr_limit: Part of the FPR axis the thresholds cover when ``num_thresholds`` is an integer.

    Returns:
        ``(fpr, pro)``, both non-decreasing ``float64`` arrays.

    Raises:
        ValueError: Shapes differ, or there is no ground-truth region or no defect-free pixel.
    """
    maps, masks = _check_pixels(anomaly_maps, masks)
    if not masks.any():
        raise ValueError("PRO needs at least one ground-truth region (every mask is empty)")
    if masks.all():
        raise ValueError("PRO needs defect-free pixels (every mask pixel is set)")
    if num_thresholds is None:
        return _pro_curve_exact(maps, masks)
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be >= 2, got {num_thresholds}")

    thresholds = _pro_thresholds(maps, masks, num_thresholds, fpr_limit)
    bins = thresholds.size + 1
    fp_hist = np.zeros(bins, dtype=np.float64)
    pro_hist = np.zeros(bins, dtype=np.float64)
    regions = 0
    for start in range(0, maps.shape[0], _CHUNK):
        chunk_maps, chunk_masks = maps[start : start + _CHUNK], masks[start : start + _CHUNK]
        weights, count = _pro_weights(chunk_masks)
        regions += count
        # Number of thresholds <= value: the pixel is above thresholds[0 .. index - 1].
        index = np.searchsorted(thresholds, chunk_maps.ravel(), side="right")
        normal = ~chunk_masks.ravel()
        fp_hist += np.bincount(index[normal], minlength=bins)
        pro_hist += np.bincount(index, weights=weights.ravel(), minlength=bins)
    # Pixels >= thresholds[j] are those with index > j; reversed cumulative sums list them from the
    # highest threshold down (FPR ascending).
    fp_above = np.cumsum(fp_hist[::-1])[:-1] / fp_hist.sum()
    pro_above = np.cumsum(pro_hist[::-1])[:-1] / regions
    return (
        np.concatenate([[0.0], fp_above, [1.0]]),
        np.concatenate([[0.0], pro_above, [1.0]]),
    )


def trapezoid_area(x: np.ndarray, y: np.ndarray, x_max: float | None = None) -> float:
    """Trapezoid-rule area under ``y(x)`` for non-decreasing ``x``, up to ``x_max`` (interpolated there)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    correction = 0.0
    if x_max is not None:
        after = int(np.searchsorted(x, x_max, side="right"))
        if 0 < after < x.size and x[after - 1] < x_max:
            x0, x1, y0, y1 = x[after - 1], x[after], y[after - 1], y[after]
            y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
            correction = 0.5 * (y0 + y_at) * (x_max - x0)
        x, y = x[:after], y[:after]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)) + correction)


def pro_score(
    anomaly_maps: np.ndarray,
    masks: np.ndarray,
    *,
    max_fpr: float = PRO_MAX_FPR,
    num_thresholds: int | None = PRO_THRESHOLDS,
) -> float:
    """Normalised area under the PRO curve up to ``max_fpr`` (MVTec AD's AU-PRO at 30 % FPR).

    Args:
        anomaly_maps: ``float [N, H, W]`` maps of every image considered (good and defect).
        masks: ``bool [N, H, W]`` ground truth.
        max_fpr: Upper FPR limit of the integral; the area is divided by it, so 1.0 is perfect.
        num_thresholds: See :func:`pro_curve` (``None``: exact).

    Returns:
        The score in ``[0, 1]``, or ``nan`` when there is no ground-truth region or no normal pixel.
    """
    if not 0.0 < max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in (0, 1], got {max_fpr}")
    maps, masks = _check_pixels(anomaly_maps, masks)
    if masks.all() or not masks.any():
        return float("nan")
    fpr, pro = pro_curve(maps, masks, num_thresholds=num_thresholds, fpr_limit=max_fpr)
    return trapezoid_area(fpr, pro, max_fpr) / max_fpr


@dataclass(frozen=True)
class Confusion:
    """Image-level decisions at a threshold compared with the ground truth.

    Attributes:
        threshold: The decision threshold (the model's).
        tp: Defect images flagged anomalous.
        fp: Good images flagged anomalous.
        tn: Good images passed.
        fn: Defect images passed.
    """

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float:
        """``tp / (tp + fp)``; ``nan`` when nothing was flagged."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        """``tp / (tp + fn)``; ``nan`` when there is no defect image."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def accuracy(self) -> float:
        """Fraction of images decided right."""
        total = self.tp + self.fp + self.tn + self.fn
        return (self.tp + self.tn) / total if total else float("nan")

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.threshold, self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn
        )

    def to_dict(self) -> dict[str, float | int | None]:
        """Counts and rates; ``nan`` rates become ``None`` (JSON-safe)."""
        return {
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "precision": _finite_or_none(self.precision),
            "recall": _finite_or_none(self.recall),
            "accuracy": _finite_or_none(self.accuracy),
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def confusion(
    decisions: np.ndarray | Sequence[bool], labels: np.ndarray | Sequence[bool], threshold: float
) -> Confusion:
    """Count TP / FP / TN / FN of image decisions (``True`` = flagged anomalous) against labels."""
    decisions = np.asarray(decisions, dtype=bool).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if decisions.shape != labels.shape:
        raise ValueError(f"{decisions.size} decisions but {labels.size} labels")
    return Confusion(
        threshold=float(threshold),
        tp=int(np.sum(decisions & labels)),
        fp=int(np.sum(decisions & ~labels)),
        tn=int(np.sum(~decisions & ~labels)),
        fn=int(np.sum(~decisions & labels)),
    )


# --- Rows of the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsRow:
    """Metrics over a set of test images.

    Attributes:
        name: Defect type, ``"overall"``, a category name or ``"mean"``.
        images: Images counted.
        good: Defect-free images among them.
        defective: Defect images among them.
        image_auroc: Image-level AUROC (``nan`` if undefined).
        pixel_auroc: Pixel-level AUROC (``nan`` if undefined).
        pro: Normalised PRO area up to :data:`PRO_MAX_FPR` (``nan`` if undefined).
    """

    name: str
    images: int
    good: int
    defective: int
    image_auroc: float
    pixel_auroc: float
    pro: float

    def to_dict(self) -> dict[str, str | int | float | None]:
        """Plain values; ``nan`` becomes ``None`` (JSON-safe)."""
        return {
            "name": self.name,
            "images": self.images,
            "good": self.good,
            "defective": self.defective,
            "image_auroc": _finite_or_none(self.image_auroc),
            "pixel_auroc": _finite_or_none(self.pixel_auroc),
            "pro": _finite_or_none(self.pro),
        }


@dataclass(frozen=True)
class CategoryResult:
    """Everything measured on one category.

    Attributes:
        name: Category name.
        overall: Metrics over every test image.
        per_defect: One row per defect type (that defect's images plus every good image).
        confusion: Decisions at the model's threshold, when it carries one.
        image_roc: Image-level ROC curve (overall).
        pixel_roc: Pixel-level ROC curve (overall).
    """

    name: str
    overall: MetricsRow
    per_defect: tuple[MetricsRow, ...]
    confusion: Confusion | None
    image_roc: RocCurve
    pixel_roc: RocCurve


def evaluate_category(
    predictions: CategoryPredictions,
    *,
    max_fpr: float = PRO_MAX_FPR,
    num_thresholds: int | None = PRO_THRESHOLDS,
) -> CategoryResult:
    """Compute the overall and per-defect rows (and the confusion matrix) of one category.

    Args:
        predictions: Output of :func:`padim_edge.evaluation.dataset.predict_category`.
        max_fpr: FPR limit of the PRO integral.
        num_thresholds: Thresholds of the PRO sweep (see :func:`pro_curve`).
    """
    scores, labels = predictions.scores, predictions.labels
    maps, masks = predictions.maps, predictions.masks
    defects = np.asarray(predictions.defects)
    good = ~labels

    image_curve = roc(scores, labels)
    pixel_curve = roc(maps.reshape(-1), masks.reshape(-1))
    overall = MetricsRow(
        name="overall",
        images=int(labels.size),
        good=int(good.sum()),
        defective=int(labels.sum()),
        image_auroc=image_curve.auroc,
        pixel_auroc=pixel_curve.auroc,
        pro=pro_score(maps, masks, max_fpr=max_fpr, num_thresholds=num_thresholds),
    )
    rows = []
    for defect in sorted(set(defects[labels].tolist())):
        subset = good | (defects == defect)
        rows.append(
            MetricsRow(
                name=defect,
                images=int(subset.sum()),
                good=int(good.sum()),
                defective=int((defects == defect).sum()),
                image_auroc=image_auroc(scores[subset], labels[subset]),
                pixel_auroc=pixel_auroc(maps[subset], masks[subset]),
                pro=pro_score(maps[subset], masks[subset], max_fpr=max_fpr, num_thresholds=num_thresholds),
            )
        )
    matrix = None
    if predictions.threshold is not None and predictions.decisions is not None:
        matrix = confusion(predictions.decisions, labels, predictions.threshold)
    return CategoryResult(
        name=predictions.category.name,
        overall=overall,
        per_defect=tuple(rows),
        confusion=matrix,
        image_roc=image_curve,
        pixel_roc=pixel_curve,
    )


def mean_row(rows: Sequence[MetricsRow], name: str = "mean") -> MetricsRow:
    """Average of several rows' metrics (the MVTec AD tables' mean over categories); counts are summed.

    A metric undefined (``nan``) in some rows is averaged over the others.
    """

    def mean(values: list[float]) -> float:
        finite = [v for v in values if np.isfinite(v)]
        return float(np.mean(finite)) if finite else float("nan")

    return MetricsRow(
        name=name,
        images=sum(r.images for r in rows),
        good=sum(r.good for r in rows),
        defective=sum(r.defective for r in rows),
        image_auroc=mean([r.image_auroc for r in rows]),
        pixel_auroc=mean([r.pixel_auroc for r in rows]),
        pro=mean([r.pro for r in rows]),
    )
