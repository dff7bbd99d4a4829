"""Anomaly-detection metrics: image AUROC, pixel AUROC, the confusion matrix, and per-category rows.

* Image AUROC: ROC of the image scores, good images negative, defect images positive.
* Pixel AUROC: ROC of every test pixel's anomaly value against its ground-truth mask (pixels of good
  images are all normal). Undefined (``nan``) for an image-level category without masks.
* PRO: see :mod:`padim_edge.evaluation.pro`.

ROC curves come from scikit-learn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sklearn.metrics import auc, roc_auc_score, roc_curve

if TYPE_CHECKING:
    from padim_edge.evaluation.predictions import CategoryPredictions

from padim_edge.evaluation.pro import PRO_MAX_FPR, PRO_THRESHOLDS, check_pixels, pro_score

__all__ = ["PRO_MAX_FPR", "CategoryResult", "Confusion", "MetricsRow", "RocCurve", "evaluate_category"]


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
    maps, masks = check_pixels(anomaly_maps, masks)
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
        pixel_roc: Pixel-level ROC curve (overall); empty for an image-level category.
        has_masks: Whether the category has ground-truth masks (else pixel AUROC and PRO are ``nan``).
        warnings: Ground truth that is likely wrong (see ``CategoryPredictions.warnings``).
    """

    name: str
    overall: MetricsRow
    per_defect: tuple[MetricsRow, ...]
    confusion: Confusion | None
    image_roc: RocCurve
    pixel_roc: RocCurve
    has_masks: bool = True
    warnings: tuple[str, ...] = ()


def evaluate_category(
    predictions: CategoryPredictions,
    *,
    max_fpr: float = PRO_MAX_FPR,
    num_thresholds: int | None = PRO_THRESHOLDS,
) -> CategoryResult:
    """Compute the overall and per-defect rows (and the confusion matrix) of one category.

    Args:
        predictions: Output of :func:`padim_edge.evaluation.predictions.predict_category`.
        max_fpr: FPR limit of the PRO integral.
        num_thresholds: Thresholds of the PRO sweep (see :func:`pro_curve`).
    """
    scores, labels = predictions.scores, predictions.labels
    maps, masks = predictions.maps, predictions.masks
    defects = np.asarray(predictions.defects)
    good = ~labels
    nan = float("nan")

    def pixel_metrics(subset: np.ndarray) -> tuple[float, float]:
        if masks is None:  # image-level category: no ground truth for pixels
            return nan, nan
        return (
            pixel_auroc(maps[subset], masks[subset]),
            pro_score(maps[subset], masks[subset], max_fpr=max_fpr, num_thresholds=num_thresholds),
        )

    image_curve = roc(scores, labels)
    empty = RocCurve(np.empty(0), np.empty(0), nan)
    pixel_curve = empty if masks is None else roc(maps.reshape(-1), masks.reshape(-1))
    everything = np.ones_like(labels)
    overall = MetricsRow(
        "overall",
        int(labels.size),
        int(good.sum()),
        int(labels.sum()),
        image_curve.auroc,
        *pixel_metrics(everything),
    )
    rows = []
    for defect in sorted(set(defects[labels].tolist())):
        subset = good | (defects == defect)
        rows.append(
            MetricsRow(
                defect,
                int(subset.sum()),
                int(good.sum()),
                int((defects == defect).sum()),
                image_auroc(scores[subset], labels[subset]),
                *pixel_metrics(subset),
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
        has_masks=masks is not None,
        warnings=tuple(predictions.warnings),
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
