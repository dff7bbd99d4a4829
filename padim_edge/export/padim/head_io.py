"""Reading a PaDiM head's constants back out of a graph, and putting a rebuilt head in (numpy + onnx).

What ``padim-calibrate --head-precision`` runs, and what a torch-free refit of the Gaussians can use to
install new constants: the Mahalanobis nodes (those ``padim_head/`` nodes between the embedding and
:data:`~padim_edge.export.padim.graph_head.DISTANCE`) are replaced; the anomaly map, the score and a
baked threshold, which read the distance tensor by name, are kept as they are, and so is everything
before the embedding (preprocessing, a float32 / INT8 / FP16 backbone, the reduction).

Editing happens in place, panel by panel: each old panel initializer is removed as soon as its
replacement exists, so rewriting a WR50-Rd550 head holds one panel in float32 at a time beside the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from padim_edge.export.padim import compact_head
from padim_edge.export.padim.graph_head import (
    DISTANCE,
    FLATTEN,
    HEAD_PREFIX,
    PANEL_ALIGN,
    align_bounds,
    block_bounds,
    check_precision,
    head_nodes,
    iter_packed_blocks,
    repack_panels,
)

_PANEL = re.compile(re.escape(HEAD_PREFIX) + r"inv_covariance_(\d+)(_int8|_fp16)?$")
_PRECISION_OF_SUFFIX = {"": "fp32", "_fp16": "fp16", "_int8": "int8"}
MEAN = HEAD_PREFIX + "mean"
GRID_SHAPE = HEAD_PREFIX + "grid_shape"


class HeadError(ValueError):
    """The graph has no PaDiM Mahalanobis head this module can read (not exported by padim-export)."""


@dataclass(frozen=True)
class HeadLayout:
    """Where a graph's Mahalanobis head is and what it stores.

    Attributes:
        embedding: The ``[N, d, grid, grid]`` tensor the head reads.
        grid: Patch grid edge.
        dims: Embedding channels ``d``.
        precision: ``fp32``, ``fp16`` or ``int8`` (from the panels' names and types).
        panels: The panel initializer names, in column order.
        nodes: Names of the head's nodes (from the embedding to the distance tensor).
    """

    embedding: str
    grid: int
    dims: int
    precision: str
    panels: list[str]
    nodes: list[str]


def _initializers(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in graph.initializer}


def head_node_names(
    producer: dict[str, onnx.NodeProto], outputs: list[str], embedding: str, prefix: str
) -> list[str]:
    """The nodes of a head: walk back from ``outputs`` to ``embedding`` through ``prefix`` nodes only.

    Args:
        producer: Tensor name -> the node that produces it.
        outputs: The head's output tensors (where the walk starts).
        embedding: The head's input tensor (where it stops).
        prefix: Name prefix of the head's nodes.
    """
    names: list[str] = []
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen or not node.name.startswith(prefix):
            continue
        seen.add(node.name)
        names.append(node.name)
        stack += [i for i in node.input if i and i != embedding]
    return names


def head_layout(proto: onnx.ModelProto) -> HeadLayout:
    """Find the Mahalanobis head of a padim-edge graph.

    Raises:
        HeadError: No head (a method other than PaDiM, a model from before head prefixes, or a graph
            edited by hand).
    """
    graph = proto.graph
    producer = {o: node for node in graph.node for o in node.output}
    if DISTANCE not in producer or not any(n.name == FLATTEN for n in graph.node):
        raise HeadError(
            f"the graph has no PaDiM Mahalanobis head (no '{FLATTEN}' node producing '{DISTANCE}'); "
            "re-export the model with this version of padim-export"
        )
    flatten = next(n for n in graph.node if n.name == FLATTEN)
    embedding = flatten.input[0]
    names = head_node_names(producer, [DISTANCE], embedding, HEAD_PREFIX)
    inits = _initializers(graph)
    found = sorted(
        ((int(m.group(1)), m.group(2) or "", name) for name in inits if (m := _PANEL.match(name))),
    )
    precisions = {_PRECISION_OF_SUFFIX[suffix] for _, suffix, _ in found}
    if not found or len(precisions) != 1 or [i for i, _, _ in found] != list(range(len(found))):
        raise HeadError(f"cannot tell the head's Sigma^-1 panels apart: {[name for *_, name in found]}")
    if MEAN not in inits or GRID_SHAPE not in inits:
        raise HeadError(f"the head lacks its '{MEAN}' or '{GRID_SHAPE}' constant")
    grid = int(numpy_helper.to_array(inits[GRID_SHAPE])[-1])
    dims = int(inits[MEAN].dims[-1])
    return HeadLayout(
        embedding=embedding,
        grid=grid,
        dims=dims,
        precision=precisions.pop(),
        panels=[name for *_, name in found],
        nodes=names,
    )


def read_mean(proto: onnx.ModelProto) -> np.ndarray:
    """The head's ``[P, d]`` float32 means."""
    tensor = _initializers(proto.graph).get(MEAN)
    if tensor is None:
        raise HeadError(f"the graph has no '{MEAN}' constant")
    return numpy_helper.to_array(tensor).reshape(-1, tensor.dims[-1])


def _pop(graph: onnx.GraphProto, name: str, *, values: bool = True) -> np.ndarray | None:
    """Remove initializer ``name`` from ``graph``; return its values (``values=False``: do not read them)."""
    for index, tensor in enumerate(graph.initializer):
        if tensor.name == name:
            array = numpy_helper.to_array(tensor) if values else None
            del graph.initializer[index]
            return array
    raise HeadError(f"the graph has no '{name}' constant")


def _take_panels(proto: onnx.ModelProto, layout: HeadLayout) -> Iterator[np.ndarray]:
    """Yield the head's float32 panels in column order (dequantised from int8 / float16 when needed),
    removing each initializer from ``proto`` as it goes."""
    graph = proto.graph
    scales = diagonal = None
    if layout.precision != "fp32":
        scales = _pop(graph, compact_head.COLUMN_SCALE)
    names = {t.name for t in graph.initializer}
    if compact_head.DIAGONAL in names:  # int8 heads: the remainder's diagonal, kept in float32
        diagonal = _pop(graph, compact_head.DIAGONAL)
    basis = weight = None
    if compact_head.LOW_RANK_BASIS in names:  # int8 heads: the float32 low-rank part
        basis = _pop(graph, compact_head.LOW_RANK_BASIS)
        weight = _pop(graph, compact_head.LOW_RANK_WEIGHT)
    lo = 0
    for name in layout.panels:
        values = _pop(graph, name)
        assert values is not None
        width = values.shape[-1]
        if scales is None:
            yield values.astype(np.float32, copy=False)
        else:
            part = None if diagonal is None else diagonal[:, :, lo : lo + width]
            panel = compact_head.dequantize_panel(values, scales[:, :, lo : lo + width], part)
            if basis is not None:
                panel += compact_head.low_rank_panel(basis, weight, lo, lo + width)
            yield panel
        del values
        lo += width


def splice_head(
    proto: onnx.ModelProto, old_nodes: list[str], nodes: list[onnx.NodeProto], inits: list
) -> None:
    """Replace the head's nodes ``old_nodes`` by ``nodes`` at their place; drop constants nothing reads.

    Shared with PatchCore's bank rewrite (:mod:`padim_edge.export.patchcore.head_io`).
    """
    graph = proto.graph
    old = set(old_nodes)
    position = next(i for i, n in enumerate(graph.node) if n.name in old)
    kept = [n for n in graph.node if n.name not in old]
    before = sum(1 for n in graph.node[:position] if n.name not in old)
    del graph.node[:]
    graph.node.extend([*kept[:before], *nodes, *kept[before:]])
    new_names = {t.name for t in inits}
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for index in reversed(range(len(graph.initializer))):
        name = graph.initializer[index].name
        if name.startswith(HEAD_PREFIX) and (name in new_names or name not in used):
            del graph.initializer[index]  # replaced, or the old head's own small constant
    graph.initializer.extend(inits)
    for index in reversed(range(len(graph.value_info))):  # shapes / types of the old head's tensors
        if graph.value_info[index].name.startswith(HEAD_PREFIX):
            del graph.value_info[index]


def rewrite_head_precision(
    proto: onnx.ModelProto, precision: str, *, blocks: int | None = None
) -> HeadLayout:
    """Rebuild the head of ``proto`` in ``precision`` from its own constants, in place.

    The mean and the packed panels are read from the graph (dequantised when the head is int8 or
    float16: going up from a compact head does not bring back the float32 values the fit produced).
    The column blocks stay, their boundaries moved to multiples of the target's
    :data:`~padim_edge.export.padim.graph_head.PANEL_ALIGN` when they are not (the panels are then
    rebuilt from the symmetric matrices, a chunk of patches at a time). ``blocks`` asks for another
    number of column blocks (more blocks: fewer bytes, more MatMul calls).

    Returns:
        The layout of the head before the rewrite.

    Raises:
        HeadError: No readable head.
        ValueError: Unknown precision, or the head is already in it.
    """
    check_precision(precision)
    layout = head_layout(proto)
    if layout.precision == precision:
        raise ValueError(f"the head is already {precision}")
    mean = read_mean(proto)
    widths = {t.name: int(t.dims[-1]) for t in proto.graph.initializer if t.name in set(layout.panels)}
    bounds = [0, *np.cumsum([widths[name] for name in layout.panels]).tolist()]
    align = PANEL_ALIGN[precision]
    wanted = align_bounds(bounds, align) if blocks is None else block_bounds(layout.dims, blocks, align=align)
    panels = _take_panels(proto, layout)
    if wanted != bounds:
        panels = repack_panels(list(panels), wanted)
    nodes, inits, _ = head_nodes(layout.embedding, mean, panels, grid=layout.grid, precision=precision)
    splice_head(proto, layout.nodes, nodes, inits)
    return layout


def replace_head(
    proto: onnx.ModelProto,
    *,
    mean: np.ndarray,
    inv_covariance: np.ndarray,
    blocks: int | None = None,
    precision: str | None = None,
) -> HeadLayout:
    """Install new Gaussians in ``proto``'s head, in place (e.g. refitted on another backbone's features).

    Args:
        proto: A padim-edge PaDiM model.
        mean: ``[P, d]`` means.
        inv_covariance: ``[P, d, d]`` inverse covariances.
        blocks: Column blocks (default: as many as the current head has).
        precision: Head precision (default: the current head's).

    Returns:
        The layout of the head before the change.

    Raises:
        HeadError: No readable head.
        ValueError: Gaussians of another shape than the head's.
    """
    layout = head_layout(proto)
    patches = layout.grid * layout.grid
    if mean.shape != (patches, layout.dims) or inv_covariance.shape != (patches, layout.dims, layout.dims):
        raise ValueError(
            f"Gaussians of shape {mean.shape} / {inv_covariance.shape} do not fit the head "
            f"({patches} patches, {layout.dims} dims)"
        )
    precision = check_precision(precision or layout.precision)
    for name in layout.panels:
        _pop(proto.graph, name, values=False)
    align = PANEL_ALIGN[precision]
    panels = iter_packed_blocks(inv_covariance, blocks or len(layout.panels), align=align)
    nodes, inits, _ = head_nodes(layout.embedding, mean, panels, grid=layout.grid, precision=precision)
    splice_head(proto, layout.nodes, nodes, inits)
    return layout
