"""The fidelity verdict's statistics, numpy only: paired bootstrap intervals of the synthetic AUROC drop.

The synthetic-defect set (:mod:`.synthetic_defects`) has ``n`` held-out frames, each scored clean and
with one pasted defect, by the reference and by the variant. The frame is the unit of the resampling:
one bootstrap draw picks ``n`` frames with replacement and brings each frame's clean and defected
versions, for both models at once, so the interval of ``AUROC_reference - AUROC_variant`` accounts
for their pairing (the same frames) and for the pixels of one frame moving together.

* Image AUROC: from the ``n x n`` matrix of clean-vs-defected comparisons (the Mann-Whitney kernel),
  a draw's AUROC is ``w' K w / (sum w)^2`` with ``w`` the draw's frame counts.
* Pixel AUROC: each model's pixel scores are binned into :data:`PIXEL_BINS` bins at the quantiles of
  its own pooled scores (AUROC depends on the ranks only), one histogram of defect and one of normal
  pixels per frame; a draw sums the histograms with its counts.

Then :func:`separation` puts the variant's change of the anomaly maps beside the reference's own
spread between normal and defect pixels: ``RMS(reference - (a * variant + b)) / (median defect pixel
- median normal pixel of the reference)`` after the least-squares affine fit (a scale or offset changes
no ranking, and padim-calibrate chooses the variant's threshold on its own scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Bootstrap draws (seeded: the same scores give the same interval).
DRAWS = 2000
#: Bins of each model's pixel scores for the pixel-AUROC draws.
PIXEL_BINS = 2048
#: Seed of the draws.
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A paired comparison of one AUROC.

    Attributes:
        reference: The reference's AUROC on the whole set.
        variant: The variant's.
        low: Lower end of the 95 % bootstrap interval of ``reference - variant`` (the drop).
        high: Upper end.
        reference_low: Lower end of the reference's own 95 % interval (near 0.5: the check has no
            power, the reference itself barely tells the pasted defects from normal frames).
    """

    reference: float
    variant: float
    low: float
    high: float
    reference_low: float

    @property
    def drop(self) -> float:
        """``reference - variant`` (positive: the variant lost)."""
        return self.reference - self.variant


def _frame_counts(frames: int, draws: int, seed: int) -> np.ndarray:
    """``[draws, frames]`` float64 counts of each frame in each draw."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, frames, size=(draws, frames))
    counts = np.zeros((draws, frames), np.float64)
    np.add.at(counts, (np.arange(draws)[:, None], picks), 1.0)
    return counts


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _kernel(clean: np.ndarray, defected: np.ndarray) -> np.ndarray:
    """``K[i, j]``: 1 when defected frame ``j`` scores above clean frame ``i``, 0.5 on a tie."""
    clean = np.asarray(clean, np.float64)[:, None]
    defected = np.asarray(defected, np.float64)[None, :]
    return (defected > clean) + 0.5 * (defected == clean)


def image_interval(
    reference: tuple[np.ndarray, np.ndarray],
    variant: tuple[np.ndarray, np.ndarray],
    *,
    draws: int = DRAWS,
    seed: int = SEED,
) -> Interval:
    """Paired bootstrap of the image AUROC drop.

    Args:
        reference: ``(clean, defected)`` image scores of the reference, one per frame each.
        variant: The same for the variant (same frames, same order).
        draws: Bootstrap draws.
        seed: Their seed.
    """
    k_ref, k_var = _kernel(*reference), _kernel(*variant)
    frames = k_ref.shape[0]
    w = _frame_counts(frames, draws, seed)
    norm = float(frames) ** 2
    a_ref = np.einsum("bi,ij,bj->b", w, k_ref, w) / norm
    a_var = np.einsum("bi,ij,bj->b", w, k_var, w) / norm
    low, high = _percentiles(a_ref - a_var)
    return Interval(float(k_ref.mean()), float(k_var.mean()), low, high, _percentiles(a_ref)[0])


def _histograms(maps: np.ndarray, masks: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame ``(defect, normal)`` pixel histograms of one model's maps (``[2n, H, W]``)."""
    values = np.asarray(maps, np.float64).reshape(maps.shape[0], -1)
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    binned = np.searchsorted(edges, values, side="right")  # 0 .. bins - 1
    frames = masks.shape[0] // 2
    positive = masks.reshape(masks.shape[0], -1)
    defect = np.zeros((frames, bins), np.float64)
    normal = np.zeros((frames, bins), np.float64)
    for index in range(masks.shape[0]):
        frame = index % frames  # clean frame i and defected frame i are the same frame
        row, mask = binned[index], positive[index]
        defect[frame] += np.bincount(row[mask], minlength=bins)
        normal[frame] += np.bincount(row[~mask], minlength=bins)
    return defect, normal


def _binned_auroc(defect: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """AUROC of ``[draws, bins]`` defect and normal pixel counts (ties within a bin count half)."""
    below = np.cumsum(normal, axis=1) - normal
    wins = (defect * (below + 0.5 * normal)).sum(axis=1)
    return wins / (defect.sum(axis=1) * normal.sum(axis=1))


def pixel_interval(
    reference_maps: np.ndarray,
    variant_maps: np.ndarray,
    masks: np.ndarray,
    *,
    exact: tuple[float, float],
    draws: int = DRAWS,
    seed: int = SEED,
    bins: int = PIXEL_BINS,
) -> Interval:
    """Paired bootstrap of the pixel AUROC drop.

    Args:
        reference_maps: ``[2n, H, W]`` maps of the reference: the ``n`` clean frames, then the ``n``
            defected ones in the same order.
        variant_maps: The same for the variant.
        masks: ``bool [2n, H, W]`` defect pixels (none on the clean frames).
        exact: ``(reference, variant)`` pixel AUROC on the whole set, unbinned (the point figures).
        draws: Bootstrap draws.
        seed: Their seed (the same as the image draws: the same frames are drawn).
        bins: Quantile bins per model.
    """
    masks = np.asarray(masks, bool)
    w = _frame_counts(masks.shape[0] // 2, draws, seed)
    drawn = []
    for maps in (reference_maps, variant_maps):
        defect, normal = _histograms(np.asarray(maps), masks, bins)
        drawn.append(_binned_auroc(w @ defect, w @ normal))
    low, high = _percentiles(drawn[0] - drawn[1])
    return Interval(float(exact[0]), float(exact[1]), low, high, _percentiles(drawn[0])[0])


def separation(reference_maps: np.ndarray, variant_maps: np.ndarray, masks: np.ndarray) -> float | None:
    """The variant's map change in units of the reference's own normal-to-defect spread.

    ``RMS(reference - (a * variant + b))`` over every pixel of the set, after the least-squares affine
    fit of the reference's maps on the variant's (in the reference's units; a constant variant leaves
    all of the reference unexplained), divided by ``median(reference on defect pixels) -
    median(reference on normal pixels)``. Below about 0.1 the variant moves a pixel by a tenth of the
    gap that tells defects from normal parts; ``None`` when the reference does not separate them
    (a gap <= 0) or a map is not finite.
    """
    ref = np.asarray(reference_maps, np.float64).ravel()
    var = np.asarray(variant_maps, np.float64).ravel()
    mask = np.asarray(masks, bool).ravel()
    if not (np.isfinite(ref).all() and np.isfinite(var).all()) or not mask.any() or mask.all():
        return None
    gap = float(np.median(ref[mask]) - np.median(ref[~mask]))
    if gap <= 0.0:
        return None
    var_centered = var - var.mean()
    spread = float(np.dot(var_centered, var_centered))
    slope = float(np.dot(var_centered, ref - ref.mean())) / spread if spread > 0 else 0.0
    residual = ref - ref.mean() - slope * var_centered
    value = math.sqrt(float(np.dot(residual, residual)) / residual.size) / gap
    return value if math.isfinite(value) else None
