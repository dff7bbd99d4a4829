"""The locally aware patch features: the traced reducer against the paper's pool -> upsample -> pool chain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from padim_edge.export.patchcore.aggregation import PatchAggregator, adaptive_pool_matrix, pooling_matrices
from padim_edge.export.patchcore.settings import DEFAULT_DIMS, default_dims
from padim_edge.spec import BACKBONES


def paper_chain(features: list[torch.Tensor], dims: int) -> torch.Tensor:
    """The order the paper describes: 3x3 average, upsample, per-layer then overall adaptive pooling."""
    size = features[0].shape[-2:]
    per_layer = []
    for i, f in enumerate(features):
        f = F.avg_pool2d(f, 3, stride=1, padding=1)
        if i:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        n, c, h, w = f.shape
        vectors = f.permute(0, 2, 3, 1).reshape(-1, 1, c)  # one row per patch
        per_layer.append(F.adaptive_avg_pool1d(vectors, dims))
    stacked = torch.cat(per_layer, dim=2)  # [patches, 1, L * dims], layer-major as the paper's reshape
    pooled = F.adaptive_avg_pool1d(stacked, dims)[:, 0]
    n, _, h, w = features[0].shape
    return pooled.reshape(n, h, w, dims).permute(0, 3, 1, 2)


@pytest.mark.parametrize(("channels", "dims"), [((12, 20), 16), ((8, 24), 48), ((10, 30), 7)])
def test_aggregator_equals_the_paper_chain(channels: tuple[int, int], dims: int) -> None:
    torch.manual_seed(0)
    features = [torch.randn(2, channels[0], 10, 10, dtype=torch.float64)]
    features.append(torch.randn(2, channels[1], 5, 5, dtype=torch.float64))
    module = PatchAggregator(channels, dims).double()
    for i in range(2):  # the float32 buffers back to exact float64 for the comparison
        setattr(module, f"weight{i}", pooling_matrices(channels, dims)[i][:, :, None, None])
    np.testing.assert_allclose(module(features).numpy(), paper_chain(features, dims).numpy(), atol=1e-12)


def test_adaptive_pool_matrix_is_torchs_pooling() -> None:
    v = torch.randn(3, 1, 13, dtype=torch.float64)
    for out in (4, 13, 20):
        ref = F.adaptive_avg_pool1d(v, out)[:, 0]
        np.testing.assert_allclose(
            (v[:, 0] @ adaptive_pool_matrix(13, out).T).numpy(), ref.numpy(), atol=1e-14
        )


def test_default_dims_keep_the_shallow_tap_and_weigh_taps_equally() -> None:
    """dims = 2 x shallower tap's channels (paper's WR50 1024; R18 256): that tap passes unchanged."""
    for name in ("r18", "wr50"):
        c1, c2 = BACKBONES[name].channels[1:]
        w1, w2 = pooling_matrices((c1, c2), DEFAULT_DIMS[name])
        np.testing.assert_allclose(w1[:c1].numpy(), np.eye(c1), atol=1e-12)  # first half: tap 1 as is
        assert float(w1[c1:].abs().sum()) == 0.0 and float(w2[:c1].abs().sum()) == 0.0
        np.testing.assert_allclose(w2[c1:].sum(dim=1).numpy(), 1.0)  # second half: tap 2 averaged
    c1, c2 = BACKBONES["mnv2"].channels[1:]  # 32, 96 -> 192: both taps unchanged (tap 1 repeated 3x)
    w1, w2 = pooling_matrices((c1, c2), DEFAULT_DIMS["mnv2"])
    np.testing.assert_allclose(w2[c2:].numpy(), np.eye(c2), atol=1e-12)
    np.testing.assert_allclose(w1[:c2].numpy(), np.repeat(np.eye(c1), 3, axis=0), atol=1e-12)
    with pytest.raises(ValueError, match="unknown backbone"):
        default_dims("vgg")
    with pytest.raises(ValueError, match="dims must be >= 1"):
        pooling_matrices((4, 8), 0)
