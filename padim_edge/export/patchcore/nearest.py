"""Nearest-neighbour scoring against the memory bank: the reference the graph is tested against.

* :func:`neighbour_table` (re-exported from the torch-free :mod:`.neighbours`): ``N_b(m)`` for every
  bank vector ``m`` (itself first, then its ``b - 1`` nearest other bank vectors), computed once at fit
  time so that the graph only gathers.
* :class:`NearestNeighbourScorer`: per-patch distance to the nearest bank vector (exact, float64) and
  the paper's re-weighted image score, in the stable softmax form anomalib uses:
  ``w = 1 - softmax(||m_test* - m|| for m in N_b(m*))[0]``, ``score = w * s*``, where ``m_test*`` is the
  patch with the largest nearest distance ``s*`` and ``m*`` its nearest bank vector.

The fit path and the export parity check score with this module; the deployed graph computes the same
in float32 (:mod:`padim_edge.export.patchcore.graph_head`).
"""

from __future__ import annotations

import torch
from torch import nn

from padim_edge.export.patchcore.neighbours import neighbour_table

__all__ = ["NearestNeighbourScorer", "neighbour_table", "reweight"]


def reweight(support_distances: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
    """The paper's image score from the distances to ``N_b(m*)`` ``[N, b]`` (``m*`` first) and ``s*`` ``[N]``.

    ``(1 - exp(d_0) / sum_j exp(d_j)) * s*``, computed as ``1 - softmax(d)[:, 0]`` (max-shifted, stable).
    """
    return (1.0 - torch.softmax(support_distances, dim=1)[:, 0]) * nearest


class NearestNeighbourScorer(nn.Module):
    """Exact nearest-neighbour distances and re-weighted scores against a memory bank, in float64.

    Args:
        bank: ``[M, D]`` float32 memory bank.
        table: ``[M, b]`` neighbour table from :func:`neighbour_table`.
        block_patches: Patches scored per block (bounds the ``[block, M]`` scratch).
        dtype: Arithmetic: float64 (the reference) or float32 (an eager twin for latency comparisons).
    """

    def __init__(
        self,
        bank: torch.Tensor,
        table: torch.Tensor,
        *,
        block_patches: int = 4096,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if bank.ndim != 2 or table.ndim != 2 or table.shape[0] != bank.shape[0]:
            raise ValueError(
                f"bank [M, D] and table [M, b] do not fit: {tuple(bank.shape)}, {tuple(table.shape)}"
            )
        self.register_buffer("bank", bank.to(torch.float32))
        self.register_buffer("table", table.to(torch.int64))
        self.block_patches = block_patches
        self.dtype = dtype

    def nearest(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch vectors ``[K, D]`` -> (float64 distance to the nearest bank vector ``[K]``, its index)."""
        bank = self.bank.to(self.dtype)
        bank_sq = (bank * bank).sum(dim=1)
        dists, index = [], []
        for lo in range(0, patches.shape[0], self.block_patches):
            x = patches[lo : lo + self.block_patches].to(self.dtype)
            where = (bank_sq - 2.0 * x @ bank.T).argmin(dim=1)  # ||x||^2 is the same for every m
            dists.append(((x - bank[where]) ** 2).sum(dim=1).sqrt())  # from differences: no cancellation
            index.append(where)
        return torch.cat(dists), torch.cat(index)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embedding ``[N, D, h, w]`` -> (patch distances ``[N, h, w]``, scores ``[N]``), in ``dtype``."""
        n, d, h, w = embedding.shape
        patches = embedding.flatten(2).transpose(1, 2).reshape(-1, d)  # [N * P, D]
        dist, index = self.nearest(patches)
        dist, index = dist.view(n, h * w), index.view(n, h * w)
        worst = dist.argmax(dim=1)  # m_test*: the first patch with the largest nearest distance
        rows = torch.arange(n, device=dist.device)
        s_star, m_star = dist[rows, worst], index[rows, worst]
        x_star = patches.view(n, h * w, d)[rows, worst].to(self.dtype)  # [N, D]
        support = self.bank[self.table[m_star]].to(self.dtype)  # [N, b, D], m* first
        support_distances = ((support - x_star[:, None, :]) ** 2).sum(dim=2).sqrt()
        return dist.view(n, h, w), reweight(support_distances, s_star)
