"""Nearest-neighbour scoring against the memory bank: the reference the graph is tested against.

* :func:`neighbour_table`: ``N_b(m)`` for every bank vector ``m`` (itself first, then its ``b - 1``
  nearest other bank vectors), computed once at fit time so that the graph only gathers.
* :class:`NearestNeighbourScorer`: per-patch distance to the nearest bank vector (exact, float64) and
  the paper's re-weighted image score, in the stable softmax form anomalib uses:
  ``w = 1 - softmax(||m_test* - m|| for m in N_b(m*))[0]``, ``score = w * s*``, where ``m_test*`` is the
  patch with the largest nearest distance ``s*`` and ``m*`` its nearest bank vector.

The fit path and the export parity check score with this module; the deployed graph computes the same
in float32 (:mod:`padim_edge.export.patchcore.graph_head`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: float32 elements of the neighbour table's ``[rows, M]`` distance block (64 MiB).
TABLE_BLOCK_ELEMENTS = 1 << 24
#: Extra float32 candidates re-ranked in float64 when building the neighbour table.
TABLE_SLACK = 8


def neighbour_table(bank: np.ndarray, neighbours: int) -> np.ndarray:
    """``[M, b]`` int64: each bank row's own index, then its ``b - 1`` nearest other rows, nearest first.

    ``b = min(neighbours, M)``. Candidates come from a float32 distance matrix in row blocks
    (``neighbours + 8`` per row); they are ranked by float64 distances recomputed from the vectors.
    Memory: one ``[rows, M]`` float32 block of at most 64 MiB, whatever ``M``.

    Raises:
        ValueError: ``neighbours`` below 1 or an empty bank.
    """
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    rows = bank.shape[0]
    if neighbours < 1 or rows < 1:
        raise ValueError(f"need neighbours >= 1 and a non-empty bank, got {neighbours} and {rows} rows")
    b = min(neighbours, rows)
    table = np.empty((rows, b), dtype=np.int64)
    table[:, 0] = np.arange(rows)
    if b == 1:
        return table
    norms = np.einsum("ij,ij->i", bank, bank)
    wide = min(rows, b + TABLE_SLACK)
    bank64 = bank.astype(np.float64)
    block_rows = max(1, min(1024, TABLE_BLOCK_ELEMENTS // rows))
    for lo in range(0, rows, block_rows):
        hi = min(lo + block_rows, rows)
        approx = norms[lo:hi, None] - 2.0 * (bank[lo:hi] @ bank.T) + norms[None, :]
        approx[np.arange(hi - lo), np.arange(lo, hi)] = np.inf  # itself is column 0 already
        candidates = np.argpartition(approx, wide - 1, axis=1)[:, :wide] if wide < rows else None
        if candidates is None:
            candidates = np.broadcast_to(np.arange(rows), (hi - lo, rows))
        exact = ((bank64[candidates] - bank64[lo:hi, None, :]) ** 2).sum(axis=2)
        exact[candidates == np.arange(lo, hi)[:, None]] = np.inf
        order = np.argsort(exact, axis=1, kind="stable")[:, : b - 1]
        table[lo:hi, 1:] = np.take_along_axis(candidates, order, axis=1)
    return table


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
