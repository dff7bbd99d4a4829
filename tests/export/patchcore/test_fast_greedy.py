"""The fast greedy coreset (:mod:`padim_edge.export.patchcore.fast_greedy`) returns exactly the
brute-force picks: every code path (tiles, merges, threads, blocks, the float32 filter) against
:func:`padim_edge.export.patchcore.coreset.brute_force_on_projected`, ties and duplicates included."""

from __future__ import annotations

import numpy as np
import pytest

from padim_edge.export.patchcore import fast_greedy, lazy_greedy
from padim_edge.export.patchcore.coreset import brute_force_on_projected, first_index, project_features


def _gaussian(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def _clustered(n: int, dim: int, seed: int, offset: float = 5.0) -> np.ndarray:
    """Gaussian clusters of varied sizes, spreads and ranks."""
    rng = np.random.default_rng(seed)
    n_clusters = max(2, n // 60)
    centres = rng.standard_normal((n_clusters, dim)) * offset
    label = rng.choice(n_clusters, size=n, p=rng.dirichlet(np.full(n_clusters, 0.7)))
    spread = np.exp(rng.uniform(np.log(0.05), np.log(1.0), n_clusters))
    rank = 4
    basis = rng.standard_normal((n_clusters, rank, dim))
    latent = rng.standard_normal((n, rank))
    x = centres[label] + spread[label, None] * (
        np.einsum("nr,nrd->nd", latent, basis[label]) + 0.1 * rng.standard_normal((n, dim))
    )
    return x.astype(np.float32)


def _duplicated(n: int, dim: int, seed: int) -> np.ndarray:
    """Only n // 5 distinct rows, each repeated, in random order."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((max(1, n // 5), dim)).astype(np.float32)
    return base[rng.integers(0, base.shape[0], size=n)]


def _lattice(n: int, dim: int, seed: int) -> np.ndarray:
    """Small integer coordinates: float32-exact distances with many exact ties."""
    return np.random.default_rng(seed).integers(0, 3, size=(n, dim)).astype(np.float32)


@pytest.fixture
def small_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny GEMM tiles, merge and parallel thresholds, so small inputs use every code path."""
    monkeypatch.setattr(lazy_greedy, "_TILE_ELEMENTS", 64)
    monkeypatch.setattr(lazy_greedy, "_TILE_ROWS", 4)
    monkeypatch.setattr(lazy_greedy, "_TILE_COLS", 3)
    monkeypatch.setattr(lazy_greedy, "_PARALLEL_PAIRS", 16)
    monkeypatch.setattr(lazy_greedy, "_MERGE_PAIRS", 4)
    monkeypatch.setattr(lazy_greedy, "_EXACT_CHUNK_ROWS", 7)


def _assert_same(z: np.ndarray, count: int, first: int, settings: list[dict[str, int]]) -> None:
    expected = brute_force_on_projected(z, count, first)
    for kwargs in settings:
        got = fast_greedy.fast_greedy(z, count, first, **kwargs)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected, err_msg=str(kwargs))


_SETTINGS = [
    {"hot_size": 1, "n_blocks": 0, "num_threads": 1},
    {"hot_size": 5, "n_blocks": 3, "num_threads": 2},
    {"hot_size": 64, "n_blocks": 16, "num_threads": 2},
    {"hot_size": 2048, "n_blocks": 256, "num_threads": 1},
]


# ------------------------------------------------------------------------------------------------
# Exactness against the brute force
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [_gaussian, _clustered, _duplicated, _lattice])
@pytest.mark.parametrize(("n", "dim"), [(1, 5), (2, 3), (37, 8), (300, 16)])
def test_matches_brute_force_small(make, n: int, dim: int, small_tiles: None) -> None:
    """Tiny tiles and thresholds: every code path (tiles, merges, threads, blocks) is exercised."""
    z = project_features(make(n, dim, seed=n + dim), None)
    for count in sorted({1, 2, n // 10, n // 2, n} - {0}):
        if count <= n:
            _assert_same(z, count, first_index(n, seed=count), _SETTINGS)


@pytest.mark.parametrize("make", [_gaussian, _clustered, _duplicated, _lattice])
def test_matches_brute_force_medium(make) -> None:
    """Default tiles: n large enough for blocks, many flushes and parallel refreshes."""
    n = 3000
    z = project_features(make(n, 128, seed=1), None)
    for count in (30, 300, 1500):
        _assert_same(
            z, count, first_index(n, seed=count), [{"hot_size": 64, "n_blocks": 32, "num_threads": 2}]
        )


def test_far_tight_clusters_stress_the_error_bound(small_tiles: None) -> None:
    """Large norms and tiny distances: the float32 filter is unsure about most rows."""
    rng = np.random.default_rng(5)
    centres = rng.standard_normal((4, 32)) * 1e3
    x = centres[rng.integers(0, 4, size=500)] + 1e-2 * rng.standard_normal((500, 32))
    z = project_features(x, None)
    for count in (1, 50, 250, 500):
        _assert_same(z, count, 3, [{"hot_size": 16, "n_blocks": 8, "num_threads": 2}])


def test_numpy_gemm_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_greedy, "_torch_gemm_is_ieee_float32", lambda: False)
    z = project_features(_clustered(800, 32, seed=4), None)
    with pytest.warns(UserWarning, match="reduced precision"):
        got = fast_greedy.fast_greedy(z, 200, 9, hot_size=32, n_blocks=16)
    np.testing.assert_array_equal(got, brute_force_on_projected(z, 200, 9))


def test_fast_greedy_refuses_bad_input() -> None:
    z = project_features(_gaussian(10, 4, seed=0), None)
    with pytest.raises(ValueError, match="count must be in"):
        fast_greedy.fast_greedy(z, 11, 0)
    with pytest.raises(ValueError, match="first must be in"):
        fast_greedy.fast_greedy(z, 2, 10)
