"""PatchCore's head in ONNX: nearest bank vector per patch and the re-weighted image score (no torch).

Built directly from numpy constants (the bank ``[M, D]``, its squared norms, the ``[M, b]`` neighbour
table), so a large bank never passes through the tracer. Standard ops only, valid at opsets 17 and 18
and in the forms TensorRT imports (TopK with a constant ``k``, ArgMax/Softmax with attribute axes,
ReduceSum, the one Reduce op whose axes input TensorRT 8.x reads):

* **Nearest bank vector**: ``||x - m||^2 = ||x||^2 + (||m||^2 - 2 x.m)`` and ``||x||^2`` is the same
  for every ``m``, so one ``Gemm(x, bank^T) * -2 + ||m||^2`` ranks the whole bank for every patch and
  ``TopK(k=1, largest=0)`` picks the nearest index.
* **Distance**: ``sqrt(sum((x - m)^2))`` recomputed from differences for that one vector (``N*P*D``
  work, negligible beside the ``N*P*M*D`` GEMM): the expansion's cancellation error, ~eps ||x||^2,
  would become ~1e-3 absolute after ``sqrt`` where distances are near 0 (training-like patches). The
  ``[N, grid, grid]`` distances go to the shared anomaly map.
* **Image score** (the paper's re-weighting): ``m_test*`` = the patch with the largest distance ``s*``
  (ArgMax), ``m*`` its nearest bank vector; ``N_b(m*)`` is gathered from the table precomputed at fit
  time, its distances to ``m_test*`` are computed directly (differences, not the expansion), and
  ``score = (1 - Softmax(d)[0]) * s*``.

**Bank precision** (``precision``, the ``head_precision`` metadata key, the same table as PaDiM's
head: :data:`~padim_edge.export.padim.settings.HEAD_PRECISIONS`): ``fp32`` is the above; ``fp16`` and
``int8`` store the bank in 2 or 1 bytes an entry, scaled per bank vector, and rank it with a float16
MatMul or a MatMulInteger against the scaled query patches; the distances and the re-weighting then
read the dequantised vectors (:mod:`padim_edge.export.patchcore.compact_bank`, which states the error
bound).

The reference is :class:`padim_edge.export.patchcore.nearest.NearestNeighbourScorer` (float64).
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from padim_edge import graph_names
from padim_edge.export.padim.settings import DEFAULT_PRECISION, HEAD_PRECISIONS

HEAD_PREFIX = graph_names.HEAD


def _name(name: str) -> str:
    return HEAD_PREFIX + name


def bank_constants(bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bank as float32 ``[M, D]`` and its float32 squared norms ``[M]`` (summed in float64)."""
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    norms = np.einsum("ij,ij->i", bank.astype(np.float64), bank.astype(np.float64)).astype(np.float32)
    return bank, norms


def nearest_neighbour_nodes(
    embedding: str,
    bank: np.ndarray,
    table: np.ndarray,
    *,
    grid: int,
    precision: str = DEFAULT_PRECISION,
) -> tuple[list[NodeProto], list[TensorProto], str, str]:
    """Nodes computing PatchCore's patch distances and image score.

    Args:
        embedding: Name of the ``[N, D, grid, grid]`` float32 embedding tensor.
        bank: ``[M, D]`` memory bank.
        table: ``[M, b]`` int neighbour table (row ``i`` starts with ``i``), see
            :func:`padim_edge.export.patchcore.neighbours.neighbour_table`.
        grid: Patch grid edge.
        precision: The bank's storage and the ranking MatMul: ``fp32``, ``fp16`` or ``int8``.

    Returns:
        Nodes, initializers, the name of the ``[N, grid, grid]`` distance tensor and of the ``[N]`` score.

    Raises:
        ValueError: The bank and the table do not fit together, or an unknown precision.
    """
    if precision not in HEAD_PRECISIONS:
        raise ValueError(f"bank precision must be one of {', '.join(HEAD_PRECISIONS)}, got {precision!r}")
    rows, dims = bank.shape
    if table.ndim != 2 or table.shape[0] != rows or not 1 <= table.shape[1] <= rows:
        raise ValueError(f"table {table.shape} does not fit a bank of {rows} rows")
    patches = grid * grid
    n = _name
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(table, dtype=np.int64), n("neighbour_table")),
        numpy_helper.from_array(np.array([0, dims, patches], dtype=np.int64), n("flat_shape")),
        numpy_helper.from_array(np.array([-1, dims], dtype=np.int64), n("rows_shape")),
        numpy_helper.from_array(np.array([-1, patches], dtype=np.int64), n("image_shape")),
        numpy_helper.from_array(np.array([-1, grid, grid], dtype=np.int64), n("grid_shape")),
        numpy_helper.from_array(np.array([1, 1, dims], dtype=np.int64), n("row_expand")),
        numpy_helper.from_array(np.array([-1, 1, 1, dims], dtype=np.int64), n("star_shape")),
        numpy_helper.from_array(np.array([1], dtype=np.int64), n("k")),
        numpy_helper.from_array(np.array([1], dtype=np.int64), n("axis1")),
        numpy_helper.from_array(np.array([3], dtype=np.int64), n("axis3")),
        numpy_helper.from_array(np.array(0, dtype=np.int64), n("first")),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), n("flat")),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), n("one")),
    ]
    node = helper.make_node
    nodes = [
        # patch vectors [N, P, D] and their rows [N*P, D]
        node("Reshape", [embedding, n("flat_shape")], [n("channels_first")], name=n("flatten")),
        node("Transpose", [n("channels_first")], [n("patches")], perm=[0, 2, 1], name=n("to_patches")),
        node("Reshape", [n("patches"), n("rows_shape")], [n("rows")], name=n("to_rows")),
    ]
    if precision == "fp32":
        more_nodes, more_inits = _fp32_nearest(bank)
    else:
        more_nodes, more_inits = _compact_nearest(bank, precision)
    nodes += more_nodes
    inits += more_inits
    nodes += [
        # the distance to the chosen bank vector, recomputed from differences: the expansion above loses
        # ~eps * ||x||^2 to cancellation, which sqrt turns into ~1e-3 errors where distances are near 0
        node("Reshape", [n("nearest"), n("flat")], [n("nearest_rows")], name=n("nearest_rows")),
        *_gather(n("nearest_rows"), n("nearest_vectors"), precision, index_rank=1),
        node("Sub", [n("rows"), n("nearest_vectors")], [n("delta")], name=n("delta")),
        node("Mul", [n("delta"), n("delta")], [n("delta_sq")], name=n("square")),
        node("ReduceSum", [n("delta_sq"), n("axis1")], [n("squared")], keepdims=1, name=n("sum")),
        node("Sqrt", [n("squared")], [n("distance_rows")], name=n("sqrt")),
        node("Reshape", [n("distance_rows"), n("grid_shape")], [n("distance")], name=n("to_grid")),
        # s* and m* of the most anomalous patch m_test* (the first one among equal maxima)
        node("Reshape", [n("distance_rows"), n("image_shape")], [n("image_distances")], name=n("per_image")),
        node("Reshape", [n("nearest"), n("image_shape")], [n("image_nearest")], name=n("nearest_per_image")),
        node("ArgMax", [n("image_distances")], [n("worst")], axis=1, keepdims=1, name=n("worst_patch")),
        node("GatherElements", [n("image_distances"), n("worst")], [n("s_star")], axis=1, name=n("s_star")),
        node("GatherElements", [n("image_nearest"), n("worst")], [n("m_star")], axis=1, name=n("m_star")),
        # N_b(m*) (m* first) and its distances to m_test*, computed directly
        node("Gather", [n("neighbour_table"), n("m_star")], [n("support")], axis=0, name=n("support")),
        *_gather(n("support"), n("support_vectors"), precision, index_rank=3),
        node("Unsqueeze", [n("worst"), n("axis1")], [n("worst3")], name=n("worst3")),
        node("Expand", [n("worst3"), n("row_expand")], [n("worst_rows")], name=n("worst_rows")),
        node("GatherElements", [n("patches"), n("worst_rows")], [n("x_star")], axis=1, name=n("x_star")),
        node("Reshape", [n("x_star"), n("star_shape")], [n("x_star4")], name=n("x_star4")),
        node("Sub", [n("support_vectors"), n("x_star4")], [n("support_delta")], name=n("support_delta")),
        node("Mul", [n("support_delta"), n("support_delta")], [n("support_sq")], name=n("support_square")),
        node(
            "ReduceSum", [n("support_sq"), n("axis3")], [n("support_d2")], keepdims=0, name=n("support_sum")
        ),
        node("Sqrt", [n("support_d2")], [n("support_d")], name=n("support_sqrt")),
        # score = (1 - softmax(d)[m*]) * s*
        node("Softmax", [n("support_d")], [n("support_w")], axis=-1, name=n("softmax")),
        node("Gather", [n("support_w"), n("first")], [n("w_star")], axis=2, name=n("w_star")),
        node("Sub", [n("one"), n("w_star")], [n("weight")], name=n("weight")),
        node("Mul", [n("weight"), n("s_star")], [n("score_column")], name=n("reweight")),
        node("Reshape", [n("score_column"), n("flat")], [n("image_score")], name=n("score_flat")),
    ]
    return nodes, inits, n("distance"), n("image_score")


def _fp32_nearest(bank: np.ndarray) -> tuple[list[NodeProto], list[TensorProto]]:
    """float32: ``||m||^2 - 2 x.m`` for every (patch row, bank vector) in one GEMM, then TopK."""
    n = _name
    bank32, norms = bank_constants(bank)
    inits = [numpy_helper.from_array(bank32, n("bank")), numpy_helper.from_array(norms, n("bank_sq"))]
    nodes = [
        helper.make_node(
            "Gemm",
            [n("rows"), n("bank"), n("bank_sq")],
            [n("partial")],
            alpha=-2.0,
            beta=1.0,
            transB=1,
            name=n("bank_gemm"),
        ),
        _topk(axis=1),
    ]
    return nodes, inits


def _compact_nearest(bank: np.ndarray, precision: str) -> tuple[list[NodeProto], list[TensorProto]]:
    """int8 / float16: the scaled ranking of :mod:`.compact_bank` on ``[N, P, M]``, then TopK."""
    from padim_edge.export.patchcore import compact_bank

    nodes, inits, partial = compact_bank.ranking_nodes(_name("patches"), bank, precision)
    assert partial == _name("partial")
    return [*nodes, _topk(axis=2)], inits


def _topk(*, axis: int) -> NodeProto:
    n = _name
    return helper.make_node(
        "TopK",
        [n("partial"), n("k")],
        [n("partial_min"), n("nearest")],
        axis=axis,
        largest=0,
        sorted=1,
        name=n("nearest"),
    )


def _gather(indices: str, output: str, precision: str, *, index_rank: int) -> list[NodeProto]:
    """Bank vectors at ``indices`` (float32 ``[*indices.shape, D]``; compact banks dequantised)."""
    if precision == "fp32":
        return [helper.make_node("Gather", [_name("bank"), indices], [output], axis=0, name=output)]
    from padim_edge.export.patchcore import compact_bank

    return compact_bank.gather_nodes(indices, output, precision, index_rank=index_rank)
