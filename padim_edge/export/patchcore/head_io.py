"""Reading PatchCore's bank back out of a graph and rebuilding its head in another precision (numpy + onnx).

What ``padim-calibrate --head-precision`` runs on a PatchCore model: the nearest-neighbour nodes (the
``padim_head/`` nodes between the embedding and the distance / image-score tensors) are rebuilt from the
graph's own bank and neighbour table (dequantised when the bank is fp16 or int8); the anomaly map, the
score output, a baked threshold and everything before the embedding (any backbone precision) stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from padim_edge.export.padim.head_io import HeadError, head_node_names, splice_head
from padim_edge.export.patchcore import compact_bank
from padim_edge.export.patchcore.graph_head import HEAD_PREFIX, nearest_neighbour_nodes

TABLE = HEAD_PREFIX + "neighbour_table"
FP32_BANK = HEAD_PREFIX + "bank"
FLATTEN = HEAD_PREFIX + "flatten"
DISTANCE = HEAD_PREFIX + "distance"
SCORE = HEAD_PREFIX + "image_score"
GRID_SHAPE = HEAD_PREFIX + "grid_shape"


@dataclass(frozen=True)
class BankLayout:
    """Where a graph's PatchCore head is and what its bank is stored in.

    Attributes:
        embedding: The ``[N, D, grid, grid]`` tensor the head reads.
        grid: Patch grid edge.
        precision: ``fp32``, ``fp16`` or ``int8`` (from the bank's initializer).
        rows: Bank vectors ``M``.
        dims: Embedding dims ``D``.
        nodes: Names of the head's nodes.
    """

    embedding: str
    grid: int
    precision: str
    rows: int
    dims: int
    nodes: list[str]


def is_patchcore_head(proto: onnx.ModelProto) -> bool:
    """Whether ``proto`` has a PatchCore nearest-neighbour head (its neighbour table)."""
    return any(t.name == TABLE for t in proto.graph.initializer)


def bank_layout(proto: onnx.ModelProto) -> BankLayout:
    """Find the PatchCore head of a padim-edge graph.

    Raises:
        HeadError: No PatchCore head, or one this module cannot read.
    """
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: node for node in graph.node for o in node.output}
    flatten = next((n for n in graph.node if n.name == FLATTEN), None)
    if TABLE not in inits or flatten is None or DISTANCE not in producer or SCORE not in producer:
        raise HeadError(
            "the graph has no PatchCore nearest-neighbour head; re-export it with this padim-export"
        )
    stored = [p for p, name in compact_bank.BANK.items() if name in inits]
    precision = "fp32" if FP32_BANK in inits else (stored[0] if len(stored) == 1 else None)
    if precision is None:
        raise HeadError("cannot tell the PatchCore head's bank precision from its constants")
    bank = inits[FP32_BANK if precision == "fp32" else compact_bank.BANK[precision]]
    rows, dims = (bank.dims[0], bank.dims[1]) if precision == "fp32" else (bank.dims[1], bank.dims[0])
    embedding = flatten.input[0]
    names = head_node_names(producer, [DISTANCE, SCORE], embedding, HEAD_PREFIX)
    grid = int(numpy_helper.to_array(inits[GRID_SHAPE])[-1])
    return BankLayout(embedding, grid, precision, int(rows), int(dims), names)


def read_bank(proto: onnx.ModelProto, layout: BankLayout | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The float32 bank ``[M, D]`` (dequantised when compact) and the ``[M, b]`` neighbour table."""
    layout = layout or bank_layout(proto)
    inits = {t.name: t for t in proto.graph.initializer}
    table = numpy_helper.to_array(inits[TABLE])
    if layout.precision == "fp32":
        return numpy_helper.to_array(inits[FP32_BANK]).astype(np.float32), table
    stored = numpy_helper.to_array(inits[compact_bank.BANK[layout.precision]])
    scale = numpy_helper.to_array(inits[compact_bank.BANK_SCALE])
    return np.ascontiguousarray(compact_bank.dequantize_bank(stored, scale)), table


def bank_bytes(proto: onnx.ModelProto) -> int:
    """Bytes of the stored bank and its scales."""
    from padim_edge.onnx_files import tensor_bytes

    names = {FP32_BANK, compact_bank.BANK_SCALE, *compact_bank.BANK.values()}
    return sum(tensor_bytes(t) for t in proto.graph.initializer if t.name in names)


def rewrite_bank_precision(proto: onnx.ModelProto, precision: str) -> BankLayout:
    """Rebuild the PatchCore head of ``proto`` with its bank in ``precision``, in place.

    Going up from a compact bank keeps its rounding (the fitted float32 bank is not in the file).

    Returns:
        The layout before the rewrite.

    Raises:
        HeadError: No readable PatchCore head.
        ValueError: Unknown precision, or the bank is already in it.
    """
    layout = bank_layout(proto)
    if layout.precision == precision:
        raise ValueError(f"the bank is already {precision}")
    bank, table = read_bank(proto, layout)
    nodes, inits, _, _ = nearest_neighbour_nodes(
        layout.embedding, bank, table, grid=layout.grid, precision=precision
    )
    splice_head(proto, layout.nodes, nodes, inits)
    return layout
