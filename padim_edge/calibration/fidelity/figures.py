"""The fidelity report's figures, numpy only: rank correlation, map error, AUROC, the normal-frame summary.

No scipy or scikit-learn: :func:`rankdata` and :func:`auroc` are the few lines of them the report needs,
so ``padim-calibrate`` stays numpy + onnxruntime.
"""

from __future__ import annotations

import math

import numpy as np


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


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average-tie ranks; ``roc_auc_score``'s value).

    numpy only, beside :mod:`padim_edge.evaluation.metrics` (scikit-learn): the synthetic-defect check
    runs in every ``padim-calibrate`` variant, which must not need the ``eval`` extra.

    Args:
        scores: Higher means more anomalous (any shape; flattened).
        labels: True for the positives (same number of values as ``scores``).

    Returns:
        The AUROC, or ``nan`` when one class is empty.

    Raises:
        ValueError: ``scores`` and ``labels`` differ in size.
    """
    scores = np.asarray(scores).ravel()
    labels = np.asarray(labels, dtype=bool).ravel()
    if scores.size != labels.size:
        raise ValueError(f"{scores.size} scores and {labels.size} labels")
    positives = int(np.count_nonzero(labels))
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    u = float(ranks[labels].sum()) - positives * (positives + 1) / 2.0
    return u / (positives * float(negatives))


def map_error(reference: np.ndarray, variant: np.ndarray) -> float:
    """Relative L2 error of one anomaly map: ``||variant - reference|| / ||reference||`` (float64)."""
    reference = np.asarray(reference, dtype=np.float64)
    variant = np.asarray(variant, dtype=np.float64)
    if reference.shape != variant.shape:
        raise ValueError(f"anomaly maps of shape {reference.shape} and {variant.shape}")
    norm = float(np.linalg.norm(reference))
    return float(np.linalg.norm(variant - reference)) / max(norm, np.finfo(np.float64).tiny)


def finite(value: float | None) -> float | None:
    """``value`` as a float, or ``None`` when it is missing, NaN or infinite."""
    return None if value is None or not math.isfinite(value) else float(value)


def rounded(value: float | None) -> float | None:
    """A finite ``value`` rounded to 6 decimals for the metadata, else ``None``."""
    value = finite(value)
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
    ok = np.isfinite(variant_scores) & np.isfinite(errors) & np.isfinite(reference_scores)
    reference_scores, variant_scores, errors = reference_scores[ok], variant_scores[ok], errors[ok]
    positive = reference_scores > 0
    ratios = variant_scores[positive] / reference_scores[positive]
    return {
        "spearman": finite(spearman(reference_scores, variant_scores)),
        "map_error_median": float(np.median(errors)) if errors.size else None,
        "map_error_worst": float(errors.max()) if errors.size else None,
        "score_ratio_median": float(np.median(ratios)) if ratios.size else None,
        "nonfinite_frames": int(np.count_nonzero(~ok)),
    }
