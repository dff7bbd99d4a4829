"""Streaming, mergeable per-patch statistics against numpy.cov and an explicit float64 inverse."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from padim_edge.gaussian import EPSILON, GaussianStatistics
from tests.export.test_head import reference_gaussians


def _samples(n: int = 40, d: int = 5, patches: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = rng.normal(size=(n, d, patches)) * rng.uniform(0.5, 3, size=(1, d, 1))
    return samples + 1000.0  # a large offset: the naive E[xx] - mu^2 formula loses digits here


@pytest.mark.parametrize("batches", [[40], [7, 13, 20], [1, 1, 38]])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_streaming_statistics_match_numpy_cov(batches: list[int], backend: str) -> None:
    samples = _samples()
    stats = GaussianStatistics(chunk=4)
    start = 0
    for b in batches:
        batch = samples[start : start + b].reshape(b, 5, 2, 3)
        stats.update(torch.from_numpy(batch) if backend == "torch" else batch)
        start += b
    mean, inverse = stats.finalize()
    ref_mean, ref_inverse = reference_gaussians(samples)
    assert stats.count == 40
    assert mean.dtype == inverse.dtype == np.float32
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-6)
    np.testing.assert_allclose(inverse, ref_inverse, rtol=2e-5, atol=1e-6)


def test_merged_shards_equal_one_pass() -> None:
    """Chan's parallel formula: shards reduced in any tree give the one-pass statistics to ~1e-12."""
    samples = _samples(n=53)
    whole = GaussianStatistics()
    whole.update(samples.reshape(53, 5, 2, 3))
    shards = []
    for lo, hi in [(0, 5), (5, 6), (6, 30), (30, 53)]:
        part = GaussianStatistics()
        part.update(samples[lo:hi].reshape(hi - lo, 5, 2, 3))
        shards.append(pickle.loads(pickle.dumps(part)))  # as a worker would send it
    merged = shards[0].merge(shards[1]).merge(shards[2].merge(shards[3]))
    merged.merge(GaussianStatistics())  # an empty shard changes nothing
    assert merged.count == 53
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-13)
    np.testing.assert_allclose(merged.scatter, whole.scatter, rtol=1e-9)
    np.testing.assert_allclose(merged.covariance(), whole.covariance(), rtol=1e-9)


def test_covariance_adds_the_regulariser() -> None:
    samples = _samples()
    stats = GaussianStatistics()
    stats.update(samples.reshape(40, 5, 6, 1))
    expected = np.cov(samples[:, :, 2], rowvar=False) + EPSILON * np.eye(5)
    np.testing.assert_allclose(stats.covariance()[2], expected, rtol=1e-12)


def test_errors() -> None:
    stats = GaussianStatistics()
    stats.update(np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="at least 2 images"):
        stats.finalize()
    with pytest.raises(ValueError, match="does not fit"):
        stats.update(np.zeros((2, 4, 2, 2)))
    other = GaussianStatistics()
    other.update(np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="cannot merge"):
        stats.merge(other)
