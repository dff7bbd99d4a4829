"""PaDiM's fixed random channel subset: index-select from each tapped map, upsample, concatenate."""

from __future__ import annotations

from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


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
