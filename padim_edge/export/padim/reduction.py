"""PaDiM's reduction of the tapped maps to ``dims`` channels, one embedding per patch position.

* ``select`` (the paper's, the default): a fixed random channel subset, index-selected from each tapped
  map, upsampled and concatenated (:class:`EmbeddingReducer`).
* ``orthogonal``: a fixed random semi-orthogonal projection ``W^T x`` (Kim et al. 2021, "Semi-orthogonal
  embedding for efficient unsupervised anomaly segmentation"), one 1x1 convolution per map
  (:class:`OrthogonalReducer`). ``benchmarks/reduction.py`` measures both.
"""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from padim_edge.export.padim.settings import check_reduction


def select_channels(total: int, dims: int, seed: int) -> torch.Tensor:
    """The fixed random channel subset: ``dims`` of ``total`` indices, sorted, chosen once by ``seed``.

    ``dims == total`` keeps every channel (no random reduction).
    """
    if not 1 <= dims <= total:
        raise ValueError(f"dims must be in [1, {total}], got {dims}")
    if dims == total:
        return torch.arange(total)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[:dims].sort().values


class EmbeddingReducer(nn.Module):
    """Index-select the kept channels from each map, nearest-upsample to the first grid, concatenate.

    Selecting before upsampling is the same arithmetic as PaDiM's concatenate-then-select, with less
    work. The embedding's channel order is the sorted ``indices``.

    Args:
        channels: Channels of the three maps.
        indices: Sorted indices into the concatenated ``sum(channels)`` embedding.
    """

    def __init__(self, channels: tuple[int, ...], indices: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("indices", indices.clone(), persistent=False)
        offsets = [0]
        for count in channels:
            offsets.append(offsets[-1] + count)
        self.parts: list[int] = []
        for layer, (lo, hi) in enumerate(pairwise(offsets)):
            local = indices[(indices >= lo) & (indices < hi)] - lo
            if local.numel():
                self.register_buffer(f"keep{layer}", local, persistent=False)
                self.parts.append(layer)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Three maps -> embedding ``[N, dims, h, w]`` on the first map's grid."""
        size = features[0].shape[-2:]
        pieces = []
        for layer in self.parts:
            piece = features[layer].index_select(1, getattr(self, f"keep{layer}"))
            if layer:
                piece = F.interpolate(piece, size=size, mode="nearest")
            pieces.append(piece)
        return torch.cat(pieces, dim=1)


class OrthogonalReducer(nn.Module):
    """Tapped maps -> ``W^T x`` ``[N, dims, h, w]``, ``W`` ``[sum(channels), dims]`` semi-orthogonal.

    ``W`` is the Q factor of a seeded standard-normal matrix (float64, then float32), split by rows into
    one 1x1 convolution per map; each map is projected on its own grid, then nearest-upsampled to the
    first grid and summed: the same arithmetic as projecting the upsampled concatenation, with fewer
    multiply-adds. The weights are persistent buffers: a module rebuilt elsewhere (a Ray worker) loads
    the driver's ``W`` with the state dict instead of trusting another machine's QR to the last bit.

    Args:
        channels: Channels of the tapped maps.
        dims: Output dims ``d <= sum(channels)``.
        seed: Seed of ``W``.
    """

    def __init__(self, channels: tuple[int, ...], dims: int, seed: int) -> None:
        super().__init__()
        total = sum(channels)
        if not 1 <= dims <= total:
            raise ValueError(f"dims must be in [1, {total}], got {dims}")
        generator = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(total, dims, generator=generator, dtype=torch.float64))
        self.count = len(channels)
        lo = 0
        for layer, count in enumerate(channels):
            weight = q[lo : lo + count].T.to(torch.float32).reshape(dims, count, 1, 1).contiguous()
            self.register_buffer(f"weight{layer}", weight)
            lo += count

    def projection(self) -> torch.Tensor:
        """``W`` ``[sum(channels), dims]`` (float32, as used)."""
        return torch.cat([getattr(self, f"weight{i}")[:, :, 0, 0].T for i in range(self.count)])

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Three maps -> embedding ``[N, dims, h, w]`` on the first map's grid."""
        size = features[0].shape[-2:]
        out = None
        for layer in range(self.count):
            piece = F.conv2d(features[layer], getattr(self, f"weight{layer}"))
            if layer:
                piece = F.interpolate(piece, size=size, mode="nearest")
            out = piece if out is None else out + piece
        return out


def make_reducer(
    reduction: str, channels: tuple[int, ...], dims: int, seed: int
) -> tuple[nn.Module, torch.Tensor | None]:
    """The reducer of ``reduction`` and, for ``select``, its kept channel indices.

    Raises:
        ValueError: An unknown reduction, or ``dims`` out of range.
    """
    if check_reduction(reduction) == "orthogonal":
        return OrthogonalReducer(channels, dims, seed), None
    indices = select_channels(sum(channels), dims, seed)
    return EmbeddingReducer(channels, indices), indices
