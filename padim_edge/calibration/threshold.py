"""Choosing the decision threshold from scores (numpy only).

The graph decides ``is_anomalous = score > threshold`` (strictly greater), so both rules below pick
a threshold equal to one of the observed float32 scores and an image scoring exactly the threshold is
*not* flagged.

**Target FPR** (:func:`threshold_for_fpr`): with ``n`` held-out normal scores and a target ``f``,
the threshold is the smallest ``t`` such that the fraction of normal scores ``> t`` is ``<= f``. With
``k = floor(f * n)`` false positives allowed, that is the ``(k + 1)``-th largest normal score.
Ties: when that score is shared by several images, none of them is flagged, so the achieved FPR can be
below the target (any lower ``t`` would flag all of the tied images at once and overshoot). With fewer
than ``1 / f`` images ``k`` is 0 and the threshold is the highest normal score: the achieved FPR is 0
on those images but the target is not really measured, which :func:`threshold_for_fpr` warns about
(a warning, not an error: small lines still need a threshold, and the warning says how many images
would make the target meaningful).

**F1** (:func:`threshold_for_f1`): with labelled normal and anomalous scores, every observed score is a
candidate (plus one just below the lowest, which flags everything); the candidate with the highest F1
wins, and among equal F1 the highest threshold (fewest alarms on normal parts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from padim_edge.calibration.errors import CalibrationError

TARGET_FPR = "target-fpr"
F1 = "f1"


@dataclass(frozen=True)
class ThresholdChoice:
    """A chosen threshold and how it does on the images it was chosen on.

    Attributes:
        threshold: The score threshold (a float32 value; flag when ``score > threshold``).
        method: ``target-fpr`` or ``f1``.
        normal_images: Normal images scored.
        false_positives: Normal images scoring above the threshold.
        target_fpr: The requested FPR (``target-fpr`` only).
        anomalous_images: Anomalous images scored (``f1`` only).
        true_positives: Anomalous images scoring above the threshold (``f1`` only).
        warnings: Caveats to show the user (too few images for the target, ...).
    """

    threshold: float
    method: str
    normal_images: int
    false_positives: int
    target_fpr: float | None = None
    anomalous_images: int = 0
    true_positives: int = 0
    warnings: tuple[str, ...] = field(default=())

    @property
    def fpr(self) -> float:
        """Fraction of the normal images flagged."""
        return self.false_positives / self.normal_images

    @property
    def precision(self) -> float | None:
        """Flagged images that are anomalous (``None`` without labels or when nothing is flagged)."""
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if self.anomalous_images and flagged else None

    @property
    def recall(self) -> float | None:
        """Anomalous images flagged (``None`` without labels)."""
        return self.true_positives / self.anomalous_images if self.anomalous_images else None

    @property
    def f1(self) -> float | None:
        """Harmonic mean of precision and recall (``None`` without labels)."""
        if not self.anomalous_images:
            return None
        fn = self.anomalous_images - self.true_positives
        return 2 * self.true_positives / (2 * self.true_positives + self.false_positives + fn)


def _scores(values: np.ndarray | list[float], what: str) -> np.ndarray:
    scores = np.asarray(values, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(scores)):
        raise CalibrationError(f"{what} contain NaN or infinite values; the model output is broken")
    return scores


def min_images_for(target_fpr: float) -> int:
    """Normal images needed before ``target_fpr`` is measurable (at least one false positive allowed)."""
    return math.ceil(1.0 / target_fpr - 1e-9) if target_fpr > 0 else 0


def threshold_for_fpr(normal_scores: np.ndarray | list[float], target_fpr: float) -> ThresholdChoice:
    """The smallest threshold that flags at most ``target_fpr`` of the normal images.

    Args:
        normal_scores: Scores of held-out defect-free images.
        target_fpr: Allowed fraction of normal images flagged, in ``[0, 1)``.

    Raises:
        CalibrationError: Fewer than 2 scores, a target outside ``[0, 1)``, or non-finite scores.
    """
    if not 0.0 <= target_fpr < 1.0:
        raise CalibrationError(f"the target FPR must be in [0, 1), got {target_fpr}")
    scores = _scores(normal_scores, "normal scores")
    n = scores.size
    if n < 2:
        raise CalibrationError(f"need at least 2 normal images to choose a threshold, got {n}")
    allowed = min(math.floor(target_fpr * n + 1e-9), n - 1)
    descending = np.sort(scores)[::-1]
    threshold = float(descending[allowed])
    warnings: list[str] = []
    needed = min_images_for(target_fpr)
    if n < needed:
        warnings.append(
            f"{n} normal images cannot measure a {target_fpr:g} FPR (that needs at least {needed}): the "
            "threshold is the highest normal score, so the true false-alarm rate is unknown; score more "
            "held-out normal images"
        )
    return ThresholdChoice(
        threshold=threshold,
        method=TARGET_FPR,
        normal_images=n,
        false_positives=int(np.count_nonzero(scores > np.float32(threshold))),
        target_fpr=float(target_fpr),
        warnings=tuple(warnings),
    )


def threshold_for_f1(
    normal_scores: np.ndarray | list[float], anomalous_scores: np.ndarray | list[float]
) -> ThresholdChoice:
    """The threshold with the best F1 on labelled images (ties: the highest such threshold).

    Args:
        normal_scores: Scores of defect-free images.
        anomalous_scores: Scores of defective images.

    Raises:
        CalibrationError: No normal or no anomalous image, or non-finite scores.
    """
    normal = _scores(normal_scores, "normal scores")
    anomalous = _scores(anomalous_scores, "anomalous scores")
    if normal.size < 1 or anomalous.size < 1:
        raise CalibrationError(
            f"the F1 threshold needs normal and anomalous images, got {normal.size} normal and "
            f"{anomalous.size} anomalous"
        )
    lowest = np.float32(min(normal.min(), anomalous.min()))
    candidates = np.unique(np.concatenate([normal, anomalous, [np.nextafter(lowest, np.float32(-np.inf))]]))
    sorted_normal, sorted_anomalous = np.sort(normal), np.sort(anomalous)
    fp = normal.size - np.searchsorted(sorted_normal, candidates, side="right")
    tp = anomalous.size - np.searchsorted(sorted_anomalous, candidates, side="right")
    fn = anomalous.size - tp
    f1 = 2 * tp / (2 * tp + fp + fn)
    best = int(np.flatnonzero(f1 == f1.max())[-1])  # candidates ascend: the last is the highest threshold
    return ThresholdChoice(
        threshold=float(candidates[best]),
        method=F1,
        normal_images=int(normal.size),
        false_positives=int(fp[best]),
        anomalous_images=int(anomalous.size),
        true_positives=int(tp[best]),
    )
