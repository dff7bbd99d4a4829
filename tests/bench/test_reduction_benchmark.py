"""benchmarks/reduction.py: the semi-orthogonal reducer its figures rest on, against float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.bench.conftest import benchmark_script


@pytest.fixture(scope="module")
def reduction():
    with benchmark_script("reduction") as module:
        yield module


def test_projection_is_semi_orthogonal_and_seeded(reduction) -> None:
    w = reduction.OrthogonalReducer((24, 32, 96), 100, seed=0).projection().double()
    assert w.shape == (152, 100)
    assert (w.T @ w - torch.eye(100, dtype=torch.float64)).abs().max() < 1e-6
    again = reduction.OrthogonalReducer((24, 32, 96), 100, seed=0).projection()
    other = reduction.OrthogonalReducer((24, 32, 96), 100, seed=1).projection()
    assert torch.equal(again, w.float()) and not torch.allclose(other, w.float())
    with pytest.raises(ValueError, match=r"dims must be in \[1, 152\]"):
        reduction.OrthogonalReducer((24, 32, 96), 153, seed=0)


def test_per_map_projection_equals_projecting_the_upsampled_concatenation(reduction) -> None:
    """Projecting each map on its own grid, then upsampling and summing == W^T of PaDiM's embedding."""
    module = reduction.OrthogonalReducer((8, 16, 32), 20, seed=3)
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, c, s, s, generator=g) for c, s in ((8, 16), (16, 8), (32, 4))]
    full = torch.cat([maps[0]] + [F.interpolate(m, size=(16, 16), mode="nearest") for m in maps[1:]], 1)
    expected = torch.einsum("nchw,cd->ndhw", full.double(), module.projection().double())
    got = module(maps).double()
    assert got.shape == (2, 20, 16, 16)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_projection_cost(reduction) -> None:
    assert reduction.projection_macs((64, 128, 256), 100, 56) == 100 * (
        64 * 56**2 + 128 * 28**2 + 256 * 14**2
    )
