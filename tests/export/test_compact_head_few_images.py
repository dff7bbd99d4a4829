"""The int8 head holds parity whatever the number of training images (24, 40, 200 for 64 dims).

With fewer images than dims, Sigma^-1 = (S + 0.01 I)^-1 has ``d - n + 1`` eigenvalues of 100 and
the training embeddings lie in the span of the others, where Sigma^-1 is small: an int8 copy of the
whole matrix (scaled by its ~100 entries, 7-bit activations scaled by ``|x|``) then misses the small
distances of normal images by more than the parity tolerance. The head keeps the largest-variance
directions in float32 and quantises only the residual (:mod:`padim_edge.export.padim.compact_head`).
The reference is an independent float64 computation (numpy.cov + 0.01 I, numpy.linalg.inv).
"""

from __future__ import annotations

import numpy as np
import pytest

from padim_edge.export.padim import compact_head
from padim_edge.export.padim.graph_head import block_bounds, iter_packed_blocks
from padim_edge.export.parity import PARITY_RTOL_BY_PRECISION
from padim_edge.gaussian import EPSILON
from tests.export.test_compact_head import run_head

DIMS, GRID, FACTORS = 64, 4, 8
TOLERANCE = PARITY_RTOL_BY_PRECISION["int8"]


def cnn_like(rng, n, mix, scale, offset):
    """Non-negative, correlated channels of very different scales, a few latent factors plus small noise."""
    z = rng.normal(size=(n, mix.shape[0], mix.shape[2]))
    x = np.maximum(np.einsum("pdk,npk->npd", mix, z) + offset, 0) * scale
    return x + 0.02 * rng.normal(size=x.shape) * scale


@pytest.fixture(scope="module")
def population():
    rng = np.random.default_rng(0)
    patches = GRID * GRID
    mix = rng.normal(size=(patches, DIMS, FACTORS))
    scale = rng.uniform(0.1, 3.0, size=(patches, DIMS))
    offset = rng.normal(size=(patches, DIMS)) * 0.5
    return rng, mix, scale, offset


def fitted(population, images):
    """float64 Gaussians of ``images`` training embeddings, the training set, labelled test embeddings."""
    rng, mix, scale, offset = population
    train = cnn_like(rng, images, mix, scale, offset)  # [n, P, d]
    mean = train.mean(axis=0)
    inverse = np.stack(
        [np.linalg.inv(np.cov(train[:, p], rowvar=False) + EPSILON * np.eye(DIMS)) for p in range(len(mean))]
    )
    inverse = (inverse + inverse.transpose(0, 2, 1)) / 2
    test = cnn_like(rng, 64, mix, scale, offset)
    labels = np.zeros(test.shape[:2], dtype=bool)
    labels[32:, :3] = True  # 32 anomalous images, 3 defective patches each
    test[labels] += rng.normal(size=(int(labels.sum()), DIMS)) * np.tile(scale[:3], (32, 1)) * 0.8
    return mean, inverse, train, test, labels


def as_embedding(patches):
    """``[N, P, d]`` -> the head's ``[N, d, grid, grid]`` float32 input."""
    return np.ascontiguousarray(
        patches.transpose(0, 2, 1).reshape(len(patches), DIMS, GRID, GRID), dtype=np.float32
    )


def reference(mean, inverse, patches):
    """float64 distances of the float32 embeddings from the float32 means (what the graph centres)."""
    x = patches.astype(np.float32).astype(np.float64) - mean.astype(np.float32)
    return np.sqrt(np.maximum(np.einsum("npd,pde,npe->np", x, inverse, x), 0))


def head_distances(mean, inverse, patches, precision):
    _, squared = run_head(
        mean.astype(np.float32), inverse, as_embedding(patches), precision=precision, blocks=3
    )
    return np.sqrt(squared)


def whole_matrix_int8(mean, inverse, patches):
    """numpy model of an int8 head that quantises all of Sigma^-1 (per column, 7-bit rows): the old one."""
    x = patches.astype(np.float32).astype(np.float64) - mean.astype(np.float32)
    step = np.maximum(np.abs(x).max(-1, keepdims=True) / 63, 1e-30)
    a = x / step
    total = np.zeros(x.shape[:2])
    bounds = block_bounds(DIMS, 3, align=16)
    for lo, hi, panel in zip(
        bounds[:-1], bounds[1:], iter_packed_blocks(inverse.astype(np.float32), 3, align=16), strict=True
    ):
        q, c = compact_head.quantize_panel(panel, "int8")
        t = np.einsum("npr,prc->npc", np.rint(a[..., lo:]), q.astype(np.float64))
        total += (step**2 * a[..., lo:hi] * c[:, 0][None] * t).sum(-1)
    return np.sqrt(np.maximum(total, 0))


def auroc(scores, labels):
    """Mann-Whitney AUROC (ties count one half)."""
    scores, labels = np.ravel(scores), np.ravel(labels)
    pos, neg = scores[labels], scores[~labels]
    return float(
        ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    )


@pytest.mark.parametrize("images", [24, 40, 200])
def test_int8_head_parity_and_auroc(population, images: int) -> None:
    mean, inverse, train, test, labels = fitted(population, images)
    parity_set = train[np.linspace(0, images - 1, 4).round().astype(int)]  # as padim-export checks
    for patches in (parity_set, test):
        ref = reference(mean, inverse, patches)
        got = head_distances(mean, inverse, patches, "int8")
        assert np.abs(got - ref).max() <= TOLERANCE * ref.max(), (images, np.abs(got - ref).max(), ref.max())
    fp32 = head_distances(mean, inverse, test, "fp32")
    int8 = head_distances(mean, inverse, test, "int8")
    image_labels = labels.any(axis=1)
    for name, a, b, lab in (
        ("image", fp32.max(axis=1), int8.max(axis=1), image_labels),
        ("pixel", fp32, int8, labels),
    ):
        assert abs(auroc(a, lab) - auroc(b, lab)) <= 0.005, (name, images, auroc(a, lab), auroc(b, lab))


def test_whole_matrix_int8_would_fail_with_few_images(population) -> None:
    """The case the split exists for: quantising all of Sigma^-1 misses the parity tolerance at 24 images."""
    mean, inverse, train, _, _ = fitted(population, 24)
    parity_set = train[:4]
    ref = reference(mean, inverse, parity_set)
    old = whole_matrix_int8(mean, inverse, parity_set)
    new = head_distances(mean, inverse, parity_set, "int8")
    assert np.abs(old - ref).max() > TOLERANCE * ref.max()
    assert np.abs(new - ref).max() < 0.1 * np.abs(old - ref).max()


def test_split_size_follows_the_spectrum() -> None:
    """No float32 split for well-conditioned Gaussians (the compact form), the fewest directions otherwise."""
    d = 100
    flat = np.full((3, d), 0.05)  # small variances: the int8 remainder alone holds parity
    assert compact_head.low_rank_size(flat, cap=25) == 0
    steep = np.concatenate([np.full((3, 5), 50.0), np.full((3, d - 5), 0.001)], axis=1)
    assert compact_head.low_rank_size(steep, cap=25) == 5  # exactly the five long directions
    assert compact_head.low_rank_size(steep, cap=3) == 3  # never past the cap
    assert compact_head.low_rank_cap(d, spanned=23) == 23 and compact_head.low_rank_cap(d, spanned=d) == 25
