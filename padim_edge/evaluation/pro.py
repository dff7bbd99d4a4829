"""PRO, the per-region overlap (Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021).

For a sweep of thresholds, the PRO is the mean over every connected component of the ground truth
(over all images) of the fraction of the component's pixels at or above the threshold; the x axis is
the pixel false-positive rate on defect-free pixels. The curve is integrated with the trapezoid rule
over FPR in ``[0, max_fpr]`` (the point at ``max_fpr`` interpolated) and divided by ``max_fpr``.
Components use 8-connectivity, as the MVTec AD evaluation code does (:func:`scipy.ndimage.label`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

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


def check_pixels(maps: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate and stack maps ``[N, H, W]`` float32 and masks ``[N, H, W]`` bool of the same shape."""
    maps = _as_stack(maps, "anomaly maps", np.float32)
    masks = _as_stack(masks, "masks", bool)
    if maps.shape != masks.shape:
        raise ValueError(f"anomaly maps {list(maps.shape)} and masks {list(masks.shape)} differ in shape")
    return maps, masks


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
    maps, masks = check_pixels(anomaly_maps, masks)
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
    maps, masks = check_pixels(anomaly_maps, masks)
    if masks.all() or not masks.any():
        return float("nan")
    fpr, pro = pro_curve(maps, masks, num_thresholds=num_thresholds, fpr_limit=max_fpr)
    return trapezoid_area(fpr, pro, max_fpr) / max_fpr
