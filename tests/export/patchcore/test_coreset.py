"""Greedy coreset selection: the same indices as a plain brute force, on tiny sets."""

from __future__ import annotations

import numpy as np
import pytest

from padim_edge.export.patchcore import coreset


def naive_greedy(x: np.ndarray, count: int, first: int) -> list[int]:
    """Textbook farthest-point selection with a float64 distance matrix (independent of the module)."""
    d = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    picks = [first]
    min_dist = d[first].copy()
    while len(picks) < count:
        nxt = int(np.argmax(min_dist))
        picks.append(nxt)
        min_dist = np.minimum(min_dist, d[nxt])
    return picks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 40)).astype(np.float32) * rng.uniform(0.5, 2, size=(1, 40)).astype(np.float32)
    for count in (1, 7, 60, 300):
        fast = coreset.greedy_coreset(x, count, projection_dims=16, seed=seed)
        brute = coreset.brute_force_greedy(x, count, projection_dims=16, seed=seed)
        np.testing.assert_array_equal(fast, brute)
        z = coreset.project_features(x, 16, seed)
        assert fast.tolist() == naive_greedy(z, count, coreset.first_index(300, seed))
    assert sorted(coreset.greedy_coreset(x, 300, projection_dims=16).tolist()) == list(range(300))


def test_duplicates_and_ties_pick_the_lowest_index() -> None:
    x = np.repeat(np.eye(3, dtype=np.float32), 2, axis=0)  # rows 0=1, 2=3, 4=5
    picks = coreset.greedy_coreset(x, 5, projection_dims=None, seed=0)
    np.testing.assert_array_equal(picks, coreset.brute_force_greedy(x, 5, projection_dims=None, seed=0))
    assert len(set(picks[:3].tolist()) & {0, 2, 4}) >= 2  # distinct points first, lowest index of a pair
    assert picks[3:].tolist() == [0, 0]  # every distance is 0 then: index 0 repeats (as anomalib)


def test_projection_is_seeded_and_pieces_project_like_one_array() -> None:
    x = np.random.default_rng(0).normal(size=(50, 12)).astype(np.float32)
    np.testing.assert_array_equal(coreset.projection_matrix(12, 4, 3), coreset.projection_matrix(12, 4, 3))
    assert not np.array_equal(coreset.projection_matrix(12, 4, 3), coreset.projection_matrix(12, 4, 4))
    whole = coreset.project_features(x, 4, 3)
    np.testing.assert_allclose(coreset.project_pieces([x[:20], x[20:]], 4, 3), whole, atol=1e-6)
    np.testing.assert_allclose(whole.mean(axis=0), 0.0, atol=1e-6)


def test_sizes_and_errors() -> None:
    assert coreset.coreset_size(190_000, 0.1) == 19_000
    assert coreset.coreset_size(10, 0.01) == 1
    assert coreset.coreset_size(10, 1.0) == 10
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"coreset fraction must be in \(0, 1\]"):
            coreset.coreset_size(10, fraction)
    x = np.zeros((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"count must be in \[1, n=4\]"):
        coreset.greedy_coreset(x, 5)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        coreset.greedy_coreset(np.zeros((0, 3)), 1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        coreset.greedy_coreset(np.full((4, 3), np.nan), 1)
