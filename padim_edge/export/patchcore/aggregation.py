"""PatchCore's locally aware patch features: the reducer traced into the graph.

For the two mid-level maps ``f1`` (``[N, C1, g, g]``) and ``f2`` (``[N, C2, g2, g2]``):

1. each map is averaged over its 3x3 neighbourhood (``avg_pool2d(3, stride 1, padding 1)``, zero padding
   counted, as anomalib's ``AvgPool2d(3, 1, 1)``);
2. the deeper map is bilinearly upsampled to the first map's grid (``align_corners=False``);
3. every patch vector is reduced to ``dims`` channels the paper's way: adaptive average pooling of each
   map's channels to ``dims``, then of the stacked ``2 * dims`` vector (layer-major) to ``dims``.

Step 3 is a fixed linear map over channels, ``e = W1 f1 + W2 f2``, with ``[W1 | W2]`` the composition
of the two poolings (:func:`pooling_matrices`, built from ``F.adaptive_avg_pool1d`` itself). Channel
maps commute with the spatial steps 1-2 (both average positions with weights summing to one), so the
graph applies ``W2`` as a 1x1 convolution *before* upsampling, on the 4x smaller grid: the same
arithmetic as pool -> upsample -> concatenate -> pool, with less work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def adaptive_pool_matrix(inputs: int, outputs: int) -> torch.Tensor:
    """``[outputs, inputs]`` float64 matrix ``A`` with ``A @ v == adaptive_avg_pool1d(v, outputs)``.

    Built by pooling the identity, so it is torch's own bin layout (``floor``/``ceil`` bin edges; an
    output larger than the input repeats elements).
    """
    eye = torch.eye(inputs, dtype=torch.float64)[:, None, :]  # [inputs, 1, inputs]: row i = e_i
    return F.adaptive_avg_pool1d(eye, outputs)[:, 0, :].T.contiguous()


def pooling_matrices(channels: tuple[int, ...], dims: int) -> list[torch.Tensor]:
    """Per-map ``[dims, C_l]`` float64 matrices of the paper's two-stage channel pooling.

    ``sum_l W_l @ f_l`` equals ``adaptive_avg_pool1d(concat_l(adaptive_avg_pool1d(f_l, dims)), dims)``.

    Raises:
        ValueError: ``dims`` below 1.
    """
    if dims < 1:
        raise ValueError(f"dims must be >= 1, got {dims}")
    final = adaptive_pool_matrix(len(channels) * dims, dims)  # [dims, L * dims]
    return [
        final[:, i * dims : (i + 1) * dims] @ adaptive_pool_matrix(count, dims)
        for i, count in enumerate(channels)
    ]


class PatchAggregator(nn.Module):
    """Tapped maps -> embedding ``[N, dims, g, g]`` on the first map's grid (see the module docstring).

    Args:
        channels: Channels of the tapped maps, shallowest first.
        dims: Embedding channels.
    """

    def __init__(self, channels: tuple[int, ...], dims: int) -> None:
        super().__init__()
        self.dims = dims
        for i, matrix in enumerate(pooling_matrices(channels, dims)):
            self.register_buffer(f"weight{i}", matrix.to(torch.float32)[:, :, None, None], persistent=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The tapped maps, shallowest first -> embedding ``[N, dims, h, w]`` on the first map's grid."""
        size = features[0].shape[-2:]
        out = None
        for i, feature in enumerate(features):
            local = F.avg_pool2d(feature, kernel_size=3, stride=1, padding=1)
            part = F.conv2d(local, getattr(self, f"weight{i}"))
            if i:
                part = F.interpolate(part, size=size, mode="bilinear", align_corners=False)
            out = part if out is None else out + part
        assert out is not None
        return out
