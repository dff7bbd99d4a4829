"""The antialiased resize + center crop of one frame size as two matrices, in numpy only.

The default graph resizes with an antialiased bilinear ``Resize``, which OpenVINO reads but computes
without the antialias filter (silently: scores move by a few percent). For one frame size the resize
and the crop are a linear map per axis, ``out = R @ X @ C.T``, the same matrices the TensorRT target
bakes into its graph (:func:`padim_edge.export.preprocessing.resize_crop_matrices`, which derives them
from the fit's own preprocessing module). This module builds them from the filter itself, so the
runtime needs no training framework and no onnx: the antialiased bilinear weights (a triangle filter
whose support grows with the downscale factor, normalised per output pixel; plain bilinear with edge
clamping when upscaling). ``tests/runtime/test_openvino.py`` checks them equal to the export's.
Python 3.8 compatible."""

from __future__ import annotations

import numpy as np

from padim_edge.geometry import Geometry


def resize_operator(length: int, size: int) -> np.ndarray:
    """``[size, length]`` float64: the antialiased bilinear resize of one axis from ``length`` to ``size``.

    Raises:
        ValueError: ``length`` or ``size`` below 1.
    """
    if length < 1 or size < 1:
        raise ValueError(f"axis lengths must be positive, got {length} -> {size}")
    scale = length / size
    support = scale if scale >= 1.0 else 1.0  # interp_size 2 (bilinear) * 0.5, times the downscale
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    matrix = np.zeros((size, length), dtype=np.float64)
    for i in range(size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)  # int(): truncation toward zero, as the C++ cast
        hi = min(int(center + support + 0.5), length)
        taps = np.arange(lo, hi, dtype=np.float64)
        weights = np.clip(1.0 - np.abs((taps - center + 0.5) * invscale), 0.0, None)
        total = weights.sum()
        if total != 0.0:
            matrix[i, lo:hi] = weights / total
    return matrix


def resize_crop_matrices(geometry: Geometry, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 ``R [crop, height]`` and ``C [crop, width]`` with ``resize_crop(X) == R @ X @ C.T``.

    Args:
        geometry: The model's resize and crop edges.
        height: Frame height.
        width: Frame width.

    Raises:
        ValueError: A frame edge below 1.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    top = geometry.offset
    window = slice(top, top + geometry.crop)
    rows = resize_operator(height, geometry.resize)[window]
    cols = resize_operator(width, geometry.resize)[window]
    return np.ascontiguousarray(rows), np.ascontiguousarray(cols)
