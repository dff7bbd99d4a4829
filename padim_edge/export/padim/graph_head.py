"""PaDiM's head in ONNX: batched Mahalanobis distance against baked mean / Sigma^-1 constants.

Built directly from numpy constants (not traced), so that a 3.8 GB ``Sigma^-1`` never passes through
the tracer and the op layout is the fast one:

* **Mahalanobis** (:func:`mahalanobis_nodes`): embeddings go to ``[P, N, d]``, so one batched MatMul
  per block streams each patch's ``Sigma^-1`` once per batch, whatever N is. ``Sigma^-1`` is
  symmetric, so only its lower block triangle is stored, off-diagonal blocks doubled: with ``k``
  column blocks the head reads ``(k + 1) / 2k`` of the full matrix.

The distances then go through the shared anomaly-map nodes (:mod:`padim_edge.export.graph_map`).
The PyTorch module in :mod:`padim_edge.export.padim.mahalanobis` is the reference this head is tested
against. numpy + onnx only: calibration rebuilds heads without torch.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from padim_edge import graph_names

#: Name prefix of every head node and initializer (calibration leaves these in float32).
HEAD_PREFIX = graph_names.HEAD
#: Column blocks of the packed symmetric Sigma^-1 storage; measured in benchmarks/.
DEFAULT_BLOCKS = 3


def _name(name: str) -> str:
    return HEAD_PREFIX + name


def block_bounds(dims: int, blocks: int) -> list[int]:
    """Column-block boundaries of ``Sigma^-1`` (``blocks + 1`` ascending integers from 0 to ``dims``)."""
    blocks = max(1, min(blocks, dims))
    return [round(i * dims / blocks) for i in range(blocks + 1)]


def packed_blocks(inv_covariance: np.ndarray, blocks: int) -> list[np.ndarray]:
    """Split ``Sigma^-1 [P, d, d]`` into lower block-triangle panels.

    Panel ``i`` is ``[P, d - lo_i, hi_i - lo_i]``: rows ``lo_i:`` of column block ``i``, its rows
    below the diagonal block multiplied by two. Then, with ``t_i = x[lo_i:] @ panel_i``,
    ``x^T Sigma^-1 x = sum_i <x[lo_i:hi_i], t_i>``.
    """
    bounds = block_bounds(inv_covariance.shape[-1], blocks)
    panels = []
    for lo, hi in pairwise(bounds):
        panel = np.array(inv_covariance[:, lo:, lo:hi], dtype=np.float32, copy=True)
        panel[:, hi - lo :, :] *= 2.0
        panels.append(panel)
    return panels


def mahalanobis_nodes(
    embedding: str, mean: np.ndarray, inv_covariance: np.ndarray, *, grid: int, blocks: int
) -> tuple[list[NodeProto], list[TensorProto], str]:
    """Nodes computing the per-patch Mahalanobis distance.

    Args:
        embedding: Name of the ``[N, d, grid, grid]`` embedding tensor.
        mean: ``[P, d]`` per-patch means.
        inv_covariance: ``[P, d, d]`` per-patch inverse covariances.
        grid: Patch grid edge (``P = grid * grid``).
        blocks: Column blocks of the packed symmetric storage (1 = full matrix).

    Returns:
        Nodes, initializers, and the name of the ``[N, grid, grid]`` distance tensor.
    """
    patches, dims = mean.shape
    n = _name
    inits = [
        numpy_helper.from_array(np.array([0, dims, patches], dtype=np.int64), n("flat_shape")),
        numpy_helper.from_array(mean.astype(np.float32)[:, None, :], n("mean")),
        numpy_helper.from_array(np.array([2], dtype=np.int64), n("axis2")),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), n("zero")),
        numpy_helper.from_array(np.array([-1, grid, grid], dtype=np.int64), n("grid_shape")),
    ]
    nodes = [
        helper.make_node("Reshape", [embedding, n("flat_shape")], [n("flat")], name=n("flatten")),
        helper.make_node(
            "Transpose", [n("flat")], [n("patch_major")], perm=[2, 0, 1], name=n("to_patch_major")
        ),
        helper.make_node("Sub", [n("patch_major"), n("mean")], [n("delta")], name=n("centre")),
    ]
    bounds = block_bounds(dims, blocks)
    partials = []
    for i, (panel, lo, hi) in enumerate(
        zip(packed_blocks(inv_covariance, blocks), bounds[:-1], bounds[1:], strict=True)
    ):
        inits.append(numpy_helper.from_array(panel, n(f"inv_covariance_{i}")))
        rows, cols = n("delta"), n("delta")
        if len(bounds) > 2:
            inits += [
                numpy_helper.from_array(np.array([lo], dtype=np.int64), n(f"lo_{i}")),
                numpy_helper.from_array(np.array([hi], dtype=np.int64), n(f"hi_{i}")),
                numpy_helper.from_array(np.array([dims], dtype=np.int64), n(f"end_{i}")),
            ]
            rows, cols = n(f"delta_tail_{i}"), n(f"delta_block_{i}")
            nodes += [
                helper.make_node(
                    "Slice", [n("delta"), n(f"lo_{i}"), n(f"end_{i}"), n("axis2")], [rows], name=rows
                ),
                helper.make_node(
                    "Slice", [n("delta"), n(f"lo_{i}"), n(f"hi_{i}"), n("axis2")], [cols], name=cols
                ),
            ]
        nodes += [
            helper.make_node(
                "MatMul", [rows, n(f"inv_covariance_{i}")], [n(f"t_{i}")], name=n(f"matmul_{i}")
            ),
            helper.make_node("Mul", [n(f"t_{i}"), cols], [n(f"products_{i}")], name=n(f"mul_{i}")),
        ]
        partials.append(n(f"products_{i}"))
    if len(partials) > 1:
        nodes.append(helper.make_node("Concat", partials, [n("products")], axis=2, name=n("concat")))
    else:
        nodes.append(helper.make_node("Identity", partials, [n("products")], name=n("products")))
    nodes += [
        helper.make_node(
            "ReduceSum", [n("products"), n("axis2")], [n("squared")], keepdims=0, name=n("reduce")
        ),
        helper.make_node(
            "Transpose", [n("squared")], [n("squared_nm")], perm=[1, 0], name=n("to_batch_major")
        ),
        helper.make_node("Max", [n("squared_nm"), n("zero")], [n("clamped")], name=n("clamp")),
        helper.make_node("Sqrt", [n("clamped")], [n("distance_flat")], name=n("sqrt")),
        helper.make_node(
            "Reshape", [n("distance_flat"), n("grid_shape")], [n("distance")], name=n("to_grid")
        ),
    ]
    return nodes, inits, n("distance")
