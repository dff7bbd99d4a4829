"""The canonical float64 squared distance every greedy coreset implementation decides with (numpy only).

Its own module, below both the reference selection (:mod:`.coreset`) and the fast one
(:mod:`.fast_greedy`, :mod:`.lazy_greedy`), so that imports run one way:
``coreset -> fast_greedy -> lazy_greedy -> canonical_distances``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["squared_distances"]


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Canonical float64 squared distances of rows ``a [m, d]`` to ``b [d]`` (or row-paired ``[m, d]``).

    Squared differences are summed by halving the columns (zero-padded to a power of two): a fixed
    order, so a row's value never depends on the BLAS, SIMD paths or how many rows are evaluated.
    """
    s = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    s *= s
    width = s.shape[1]
    padded = 1 << max(width - 1, 0).bit_length()
    if padded != width:
        s = np.concatenate([s, np.zeros((s.shape[0], padded - width))], axis=1)
    while s.shape[1] > 1:
        half = s.shape[1] // 2
        s = s[:, :half] + s[:, half:]
    return s[:, 0]
