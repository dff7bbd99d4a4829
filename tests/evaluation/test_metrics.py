"""Metrics: AUROC sanity cases and PRO against an independent brute-force implementation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from padim_edge.evaluation.metrics import (
    Confusion,
    MetricsRow,
    confusion,
    image_auroc,
    mean_row,
    pixel_auroc,
    roc,
)
from padim_edge.evaluation.pro import pro_curve, pro_score, trapezoid_area


def brute_force_pro(
    maps: np.ndarray, masks: np.ndarray, max_fpr: float = 0.3, connectivity: int = 8
) -> float:
    """Slow reference: loop over every distinct threshold and every ground-truth component."""
    structure = np.ones((3, 3)) if connectivity == 8 else ndimage.generate_binary_structure(2, 1)
    components = []
    for image_index, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure=structure)
        components += [(image_index, labels == k) for k in range(1, count + 1)]
    normal_values = maps[~masks]
    points = [(0.0, 0.0)]
    for threshold in sorted(set(maps.ravel().tolist()), reverse=True):
        fpr = float(np.mean(normal_values >= threshold))
        overlaps = [float(np.mean(maps[i][region] >= threshold)) for i, region in components]
        points.append((fpr, float(np.mean(overlaps))))
    area = 0.0
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x1 <= max_fpr:
            area += (x1 - x0) * (y0 + y1) / 2
        else:
            if x0 < max_fpr:
                y_at = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
                area += (max_fpr - x0) * (y0 + y_at) / 2
            break
    return area / max_fpr


def random_case(seed: int, *, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = rng.random((6, 10, 10)) < 0.12
    masks[:2] = False  # two defect-free images
    maps = (rng.normal(size=masks.shape) + 1.2 * masks).astype(np.float32)
    if ties:
        maps = np.round(maps, 1)
    return maps, masks


# --- AUROC ---------------------------------------------------------------------------------------


def test_image_auroc_perfect_and_reversed() -> None:
    labels = [False, False, False, True, True]
    assert image_auroc([0.1, 0.2, 0.3, 0.8, 0.9], labels) == 1.0
    assert image_auroc([0.9, 0.8, 0.7, 0.2, 0.1], labels) == 0.0


def test_image_auroc_identical_distributions_is_about_half() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=4000)
    labels = rng.random(4000) < 0.5
    assert image_auroc(scores, labels) == pytest.approx(0.5, abs=0.03)


def test_image_auroc_single_class_is_nan() -> None:
    assert math.isnan(image_auroc([0.1, 0.2], [False, False]))
    assert math.isnan(image_auroc([0.1, 0.2], [True, True]))


def test_image_auroc_ties_count_half() -> None:
    assert image_auroc([1.0, 1.0], [False, True]) == 0.5


def test_pixel_auroc_perfect_random_and_undefined() -> None:
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[1, 2:5, 2:5] = True
    maps = np.where(masks, 2.0, 1.0).astype(np.float32) + np.linspace(0, 0.5, 64).reshape(8, 8)
    assert pixel_auroc(maps, masks) == 1.0
    rng = np.random.default_rng(1)
    noise_masks = rng.random((20, 32, 32)) < 0.3
    assert pixel_auroc(rng.random((20, 32, 32)), noise_masks) == pytest.approx(0.5, abs=0.02)
    assert math.isnan(pixel_auroc(maps, np.zeros_like(masks)))
    with pytest.raises(ValueError, match="differ in shape"):
        pixel_auroc(maps, masks[:, :4])


def test_roc_curve_area_matches_pixel_auroc_and_is_thinned() -> None:
    rng = np.random.default_rng(2)
    masks = rng.random((10, 40, 40)) < 0.2
    maps = rng.normal(size=masks.shape) + masks
    curve = roc(maps.ravel(), masks.ravel(), max_points=100)
    assert curve.auroc == pytest.approx(pixel_auroc(maps, masks), abs=1e-6)
    assert curve.fpr.size <= 100
    assert curve.fpr[0] == 0.0 and curve.fpr[-1] == 1.0 and curve.tpr[-1] == 1.0
    empty = roc([0.1, 0.2], [True, True])
    assert empty.fpr.size == 0 and math.isnan(empty.auroc)


# --- PRO -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_pro_matches_brute_force(seed: int, ties: bool) -> None:
    maps, masks = random_case(seed, ties=ties)
    expected = brute_force_pro(maps, masks)
    assert 0.0 < expected < 1.0
    assert pro_score(maps, masks, num_thresholds=None) == pytest.approx(expected, abs=1e-9)
    assert pro_score(maps, masks) == pytest.approx(expected, abs=2e-3)
    assert pro_score(maps, masks, num_thresholds=100) == pytest.approx(expected, abs=5e-3)


@pytest.mark.parametrize("max_fpr", [0.05, 0.3, 1.0])
def test_pro_matches_brute_force_at_other_fpr_limits(max_fpr: float) -> None:
    maps, masks = random_case(7, ties=True)
    expected = brute_force_pro(maps, masks, max_fpr=max_fpr)
    assert pro_score(maps, masks, max_fpr=max_fpr, num_thresholds=None) == pytest.approx(expected, abs=1e-9)
    assert pro_score(maps, masks, max_fpr=max_fpr) == pytest.approx(expected, abs=3e-3)


def test_pro_uses_8_connectivity() -> None:
    # Two diagonal blobs: one region with 8-connectivity, two with 4-connectivity.
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[1, 1:3, 1:3] = True
    masks[1, 3:6, 3:6] = True
    rng = np.random.default_rng(3)
    maps = rng.normal(size=masks.shape).astype(np.float32)
    maps[1, 1:3, 1:3] += 3.0  # the small blob is found, the large one is not
    eight = brute_force_pro(maps, masks, connectivity=8)
    four = brute_force_pro(maps, masks, connectivity=4)
    assert abs(eight - four) > 0.05
    assert pro_score(maps, masks, num_thresholds=None) == pytest.approx(eight, abs=1e-9)


def test_pro_regions_never_span_images() -> None:
    # The same region in two images counts twice; one image fully detected, the other not at all.
    masks = np.zeros((3, 6, 6), dtype=bool)
    masks[1:, 2:4, 2:4] = True
    maps = np.zeros(masks.shape, dtype=np.float32)
    maps[1, 2:4, 2:4] = 5.0
    assert pro_score(maps, masks, num_thresholds=None) == pytest.approx(brute_force_pro(maps, masks))
    fpr, pro = pro_curve(maps, masks, num_thresholds=None)
    assert pro[np.searchsorted(fpr, 0.0, side="right") - 1] == pytest.approx(0.5)


def test_pro_perfect_and_worst() -> None:
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[2, 1:4, 1:4] = True
    masks[2, 5:7, 5:8] = True
    rng = np.random.default_rng(4)
    noise = rng.random(masks.shape).astype(np.float32)
    assert pro_score(noise + 2 * masks, masks) == pytest.approx(1.0)
    assert pro_score(noise + 2 * masks, masks, num_thresholds=None) == pytest.approx(1.0)
    assert pro_score(noise - 2 * masks, masks) == pytest.approx(0.0)
    assert math.isnan(pro_score(noise, np.zeros_like(masks)))


def test_pro_curve_shape() -> None:
    maps, masks = random_case(5)
    for thresholds in (None, 50):
        fpr, pro = pro_curve(maps, masks, num_thresholds=thresholds)
        assert fpr[0] == 0.0 and pro[0] == 0.0
        assert fpr[-1] == pytest.approx(1.0) and pro[-1] == pytest.approx(1.0)
        assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= -1e-12)
    with pytest.raises(ValueError, match="ground-truth region"):
        pro_curve(maps, np.zeros_like(masks))


def test_pro_binned_matches_exact_on_larger_maps() -> None:
    rng = np.random.default_rng(6)
    masks = np.zeros((24, 64, 64), dtype=bool)
    for i in range(8, 24):
        y, x = rng.integers(0, 48, size=2)
        masks[i, y : y + rng.integers(2, 16), x : x + rng.integers(2, 16)] = True
    maps = (rng.random(masks.shape) + 0.4 * masks * rng.random(masks.shape)).astype(np.float32)
    exact = pro_score(maps, masks, num_thresholds=None)
    assert pro_score(maps, masks) == pytest.approx(exact, abs=1e-3)


def test_trapezoid_interpolates_at_the_limit() -> None:
    x = np.array([0.0, 0.2, 0.4])
    y = np.array([0.0, 1.0, 1.0])
    assert trapezoid_area(x, y) == pytest.approx(0.3)
    assert trapezoid_area(x, y, 0.3) == pytest.approx(0.1 + 0.1)
    assert trapezoid_area(x, y, 0.2) == pytest.approx(0.1)
    # A vertical step exactly at the limit counts nothing extra.
    assert trapezoid_area(np.array([0.0, 0.3, 0.3, 1.0]), np.array([0.0, 0.0, 1.0, 1.0]), 0.3) == 0.0


# --- confusion matrix and rows -------------------------------------------------------------------


def test_confusion_counts_and_rates() -> None:
    decisions = [True, True, False, False, True, False]
    labels = [True, False, False, True, True, False]
    matrix = confusion(decisions, labels, threshold=1.5)
    assert (matrix.tp, matrix.fp, matrix.tn, matrix.fn) == (2, 1, 2, 1)
    assert matrix.precision == pytest.approx(2 / 3)
    assert matrix.recall == pytest.approx(2 / 3)
    assert matrix.to_dict()["threshold"] == 1.5
    total = matrix + Confusion(1.5, 1, 0, 3, 0)
    assert (total.tp, total.fp, total.tn, total.fn) == (3, 1, 5, 1)
    assert Confusion(1.0, 0, 0, 4, 0).to_dict()["precision"] is None


def test_mean_row_averages_finite_values_and_sums_counts() -> None:
    rows = [
        MetricsRow("a", 10, 4, 6, 1.0, 0.9, float("nan")),
        MetricsRow("b", 20, 5, 15, 0.5, 0.7, 0.6),
    ]
    mean = mean_row(rows)
    assert (mean.name, mean.images, mean.good, mean.defective) == ("mean", 30, 9, 21)
    assert mean.image_auroc == pytest.approx(0.75)
    assert mean.pixel_auroc == pytest.approx(0.8)
    assert mean.pro == pytest.approx(0.6)
    assert rows[0].to_dict()["pro"] is None
