"""PaDiM's head in ONNX: batched Mahalanobis distance against baked mean / Sigma^-1 constants.

Built directly from numpy constants (not traced), so that a 3.8 GB ``Sigma^-1`` never passes through
the tracer and the op layout is the fast one:

* **Mahalanobis** (:func:`mahalanobis_nodes`): embeddings go to ``[P, N, d]``, so one batched MatMul
  per block streams each patch's ``Sigma^-1`` once per batch, whatever N is. ``Sigma^-1`` is
  symmetric, so only its lower block triangle is stored, off-diagonal blocks doubled: with ``k``
  column blocks the head reads ``(k + 1) / 2k`` of the full matrix.
* **Precision** (:data:`HEAD_PRECISIONS` in :mod:`.settings`): ``fp32`` stores the panels as they are (here);
  ``fp16`` and ``int8`` store them scaled per patch and column, in 2 or 1 bytes an entry, and scale the
  centred embeddings per row at run time (:mod:`padim_edge.export.padim.compact_head`, which states
  each one's error bound). The head reads ``Sigma^-1`` once per batch, so it is bandwidth-bound: fewer
  bytes per entry is what makes it cheaper.

Every precision emits only ops that are the same at opset 17 and 18 (no ``Reduce*`` with an ``axes``
input other than ReduceSum), so the TensorRT-target graph can reuse the builders. The distances then
go through the shared anomaly-map nodes (:mod:`padim_edge.export.graph_map`). The PyTorch module in
:mod:`padim_edge.export.padim.mahalanobis` is the reference this head is tested against. numpy + onnx
only: calibration rebuilds heads without torch (:mod:`padim_edge.export.padim.head_io`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import pairwise

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from padim_edge.export.padim import compact_head
from padim_edge.export.padim.panel_nodes import HEAD_PREFIX, iter_bounded, panel_slices, unpack_panels
from padim_edge.export.padim.settings import (  # noqa: F401  (re-exported; one stdlib-only home)
    BYTES_PER_ENTRY,
    DEFAULT_BLOCKS,
    DEFAULT_PRECISION,
    HEAD_PRECISIONS,
    PANEL_ALIGN,
    PRECISION_HELP,
    align_bounds,
    block_bounds,
    check_precision,
)

#: Name of the head's ``[N, grid, grid]`` distance tensor (what the anomaly-map nodes read).
DISTANCE = HEAD_PREFIX + "distance"
#: Name of the head's first node, the Reshape reading the embedding.
FLATTEN = HEAD_PREFIX + "flatten"


def _name(name: str) -> str:
    return HEAD_PREFIX + name


def packed_panel(inv_covariance: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """One lower block-triangle panel: ``Sigma^-1[:, lo:, lo:hi]``, rows below the diagonal block doubled."""
    panel = np.array(inv_covariance[:, lo:, lo:hi], dtype=np.float32, copy=True)
    panel[:, hi - lo :, :] *= 2.0
    return panel


def iter_packed_blocks(inv_covariance: np.ndarray, blocks: int, *, align: int = 1) -> Iterator[np.ndarray]:
    """:func:`packed_blocks` one panel at a time (a WR50-Rd550 panel is over a gigabyte in float32)."""
    for lo, hi in pairwise(block_bounds(inv_covariance.shape[-1], blocks, align=align)):
        yield packed_panel(inv_covariance, lo, hi)


def repack_panels(panels: list[np.ndarray], bounds: list[int], *, chunk: int = 64) -> Iterator[np.ndarray]:
    """The panels of the same matrices for other column-block ``bounds``, one at a time.

    Rebuilds ``chunk`` patches' full matrices at a time (a WR50-Rd550 chunk is 77 MB), never all of them.
    """
    patches = panels[0].shape[0]
    for lo, hi in pairwise(bounds):
        out = np.empty((patches, bounds[-1] - lo, hi - lo), dtype=np.float32)
        for start in range(0, patches, chunk):
            out[start : start + chunk] = unpack_panels(panels, slice(start, start + chunk))[:, lo:, lo:hi]
        out[:, hi - lo :, :] *= 2.0
        yield out


def packed_blocks(inv_covariance: np.ndarray, blocks: int) -> list[np.ndarray]:
    """Split ``Sigma^-1 [P, d, d]`` into lower block-triangle panels.

    Panel ``i`` is ``[P, d - lo_i, hi_i - lo_i]``: rows ``lo_i:`` of column block ``i``, its rows
    below the diagonal block multiplied by two. Then, with ``t_i = x[lo_i:] @ panel_i``,
    ``x^T Sigma^-1 x = sum_i <x[lo_i:hi_i], t_i>``.
    """
    return list(iter_packed_blocks(inv_covariance, blocks))


def mahalanobis_nodes(
    embedding: str,
    mean: np.ndarray,
    inv_covariance: np.ndarray,
    *,
    grid: int,
    blocks: int,
    precision: str = DEFAULT_PRECISION,
) -> tuple[list[NodeProto], list[TensorProto], str]:
    """Nodes computing the per-patch Mahalanobis distance.

    Args:
        embedding: Name of the ``[N, d, grid, grid]`` embedding tensor.
        mean: ``[P, d]`` per-patch means.
        inv_covariance: ``[P, d, d]`` per-patch inverse covariances.
        grid: Patch grid edge (``P = grid * grid``).
        blocks: Column blocks of the packed symmetric storage (1 = full matrix); int8 and fp16 round
            their boundaries to multiples of :data:`PANEL_ALIGN`.
        precision: One of :data:`HEAD_PRECISIONS`.

    Returns:
        Nodes, initializers, and the name of the ``[N, grid, grid]`` distance tensor.
    """
    panels = iter_packed_blocks(inv_covariance, blocks, align=PANEL_ALIGN[check_precision(precision)])
    return head_nodes(embedding, mean, panels, grid=grid, precision=precision)


def head_nodes(
    embedding: str,
    mean: np.ndarray,
    panels: Iterable[np.ndarray],
    *,
    grid: int,
    precision: str = DEFAULT_PRECISION,
    activation: str = "row",
) -> tuple[list[NodeProto], list[TensorProto], str]:
    """The head from its packed panels (what :func:`packed_blocks` returns, or a model's own, read back).

    Args:
        embedding: Name of the ``[N, d, grid, grid]`` embedding tensor.
        mean: ``[P, d]`` per-patch means.
        panels: Float32 lower block-triangle panels, in column order (consumed one at a time).
        grid: Patch grid edge.
        precision: One of :data:`HEAD_PRECISIONS`.
        activation: int8 only: ``row`` (the default: per-row symmetric 7-bit quantisation of the
            centred embeddings) or ``tensor`` (DynamicQuantizeLinear; kept for the benchmark that
            compares the two, see :mod:`.compact_head`).

    Returns:
        Nodes, initializers, and the name of the ``[N, grid, grid]`` distance tensor.
    """
    check_precision(precision)
    patches, dims = mean.shape
    if patches != grid * grid:
        raise ValueError(f"mean has {patches} patches, the grid {grid}x{grid} needs {grid * grid}")
    n = _name
    inits = [
        numpy_helper.from_array(np.array([0, dims, patches], dtype=np.int64), n("flat_shape")),
        numpy_helper.from_array(np.ascontiguousarray(mean, dtype=np.float32)[:, None, :], n("mean")),
        numpy_helper.from_array(np.array([2], dtype=np.int64), n("axis2")),
        numpy_helper.from_array(np.array([0.0], dtype=np.float32), n("zero")),
        numpy_helper.from_array(np.array([-1, grid, grid], dtype=np.int64), n("grid_shape")),
    ]
    nodes = [
        helper.make_node("Reshape", [embedding, n("flat_shape")], [n("flat")], name=FLATTEN),
        helper.make_node(
            "Transpose", [n("flat")], [n("patch_major")], perm=[2, 0, 1], name=n("to_patch_major")
        ),
        helper.make_node("Sub", [n("patch_major"), n("mean")], [n("delta")], name=n("centre")),
    ]
    if precision == "fp32":
        more_nodes, more_inits = _fp32_squared(n("delta"), panels, dims=dims)
    else:
        more_nodes, more_inits = compact_head.scaled_squared(
            n("delta"), panels, dims=dims, precision=precision, activation=activation
        )
    nodes += more_nodes
    inits += more_inits
    nodes += [
        helper.make_node(
            "Transpose", [n("squared")], [n("squared_nm")], perm=[1, 0], name=n("to_batch_major")
        ),
        helper.make_node("Max", [n("squared_nm"), n("zero")], [n("clamped")], name=n("clamp")),
        helper.make_node("Sqrt", [n("clamped")], [n("distance_flat")], name=n("sqrt")),
        helper.make_node("Reshape", [n("distance_flat"), n("grid_shape")], [DISTANCE], name=n("to_grid")),
    ]
    return nodes, inits, DISTANCE


def _fp32_squared(
    delta: str, panels: Iterable[np.ndarray], *, dims: int
) -> tuple[list[NodeProto], list[TensorProto]]:
    """float32: ``squared = sum_i <delta[lo_i:hi_i], delta[lo_i:] @ panel_i>`` (``[P, N]``)."""
    n = _name
    nodes: list[NodeProto] = []
    inits: list[TensorProto] = []
    partials = []
    for i, (lo, hi, panel) in enumerate(iter_bounded(panels, dims)):
        inits.append(
            numpy_helper.from_array(np.ascontiguousarray(panel, dtype=np.float32), n(f"inv_covariance_{i}"))
        )
        del panel
        slice_nodes, slice_inits, rows, cols = panel_slices(delta, dims=dims, lo=lo, hi=hi, index=i)
        nodes += slice_nodes
        inits += slice_inits
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
    nodes.append(
        helper.make_node(
            "ReduceSum", [n("products"), n("axis2")], [n("squared")], keepdims=0, name=n("reduce")
        )
    )
    return nodes, inits
