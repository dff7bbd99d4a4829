"""Sigma^-1 panels stored as int8 or float16 values times per-column float32 scales (numpy).

What the compact heads (:mod:`padim_edge.export.padim.compact_head`) store and
:mod:`padim_edge.export.padim.head_io` reads back: ``panel ~ Q * c``, ``c`` ``[P, 1, cols]`` one scale per
patch and column, and for the int8 head the panel's diagonal kept apart in float32.
"""

from __future__ import annotations

import numpy as np

#: Largest magnitude of an int8 Sigma^-1 entry (full signed range, symmetric).
WEIGHT_LEVELS = 127
#: Patches quantised at a time (bounds the float32 temporaries of a WR50-Rd550 panel).
CHUNK = 256


def quantize_panel(
    panel: np.ndarray, precision: str, *, levels: int = WEIGHT_LEVELS
) -> tuple[np.ndarray, np.ndarray]:
    """Store a float32 panel ``[P, rows, cols]`` as ``(Q, c)`` with ``panel ~ Q * c``.

    ``c`` ``[P, 1, cols]`` is the column's largest magnitude divided by ``levels`` (int8) or by 1
    (float16); an all-zero column gets ``c = 1``. Works on :data:`CHUNK` patches at a time.

    Args:
        panel: A packed panel.
        precision: ``int8`` or ``fp16``.
        levels: int8 only: largest ``|Q|``.
    """
    stored, scales, _ = _quantize(panel, precision, levels=levels, split_diagonal=False)
    return stored, scales


def quantize_off_diagonal(
    panel: np.ndarray, *, levels: int = WEIGHT_LEVELS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a float32 panel into its diagonal, kept exact, and the rest, stored in int8.

    The panel's diagonal is that of its diagonal block (``panel[:, j, j]``, ``j < cols``). The int8
    head computes ``sum_c g_c x_c^2`` in float32 and quantises only the off-diagonal entries, whose
    column scales are then set by the data's correlations, not by ``1 / epsilon``: with fewer images
    than dims, ``Sigma^-1`` has ``d - n + 1`` eigenvalues ``1 / 0.01 = 100`` and a diagonal near 100,
    while the scores live in the directions of the small eigenvalues.

    Returns:
        ``(Q, c, g)``: int8 ``Q`` (zero diagonal) and float32 column scales ``c`` ``[P, 1, cols]`` with
        ``panel - diag(g) ~ Q * c``, and the float32 diagonal ``g`` ``[P, 1, cols]``.
    """
    stored, scales, diagonal = _quantize(panel, "int8", levels=levels, split_diagonal=True)
    assert diagonal is not None
    return stored, scales, diagonal


def _quantize(
    panel: np.ndarray, precision: str, *, levels: int, split_diagonal: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    patches, _, cols = panel.shape
    dtype = np.int8 if precision == "int8" else np.float16
    divisor = float(levels) if precision == "int8" else 1.0
    out = np.empty(panel.shape, dtype=dtype)
    scales = np.empty((patches, 1, cols), dtype=np.float32)
    diagonal = np.empty((patches, 1, cols), dtype=np.float32) if split_diagonal else None
    index = np.arange(cols)
    for start in range(0, patches, CHUNK):
        block = np.array(panel[start : start + CHUNK], dtype=np.float32, copy=split_diagonal)
        if diagonal is not None:
            diagonal[start : start + CHUNK, 0] = block[:, index, index]
            block[:, index, index] = 0.0
        scale = np.abs(block).max(axis=1, keepdims=True) / np.float32(divisor)
        scale[scale == 0] = 1.0
        scaled = block / scale
        out[start : start + CHUNK] = np.rint(scaled) if precision == "int8" else scaled
        scales[start : start + CHUNK] = scale
    return out, scales, diagonal


def dequantize_panel(
    stored: np.ndarray, scales: np.ndarray, diagonal: np.ndarray | None = None
) -> np.ndarray:
    """float32 ``stored * scales`` (the panel a compact head computes with), plus ``diag(diagonal)``
    where the int8 head keeps the diagonal apart (:func:`quantize_off_diagonal`)."""
    panel = stored.astype(np.float32) * scales
    if diagonal is not None:
        index = np.arange(panel.shape[-1])
        panel[:, index, index] += diagonal[:, 0, :]
    return panel
