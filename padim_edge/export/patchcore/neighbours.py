"""The neighbour table ``N_b(m)`` of a memory bank (numpy only: the INT8 bank refit builds it torch-free)."""

from __future__ import annotations

import numpy as np

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
