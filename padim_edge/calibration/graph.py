"""Graph surgery shared by the INT8 and FP16 variants: stages, the backbone's boundary, ordering.

Every node of an exported graph carries a stage prefix (:mod:`padim_edge.graph_names`). Only
``padim_backbone/`` nodes are ever changed to a lower precision; everything else stays float32.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

import onnx

from padim_edge import graph_names
from padim_edge.calibration.errors import CalibrationError


def stage_of(name: str) -> str | None:
    """The stage prefix of a node name, or ``None`` when it has none."""
    return next((stage for stage in graph_names.STAGES if name.startswith(stage)), None)


def backbone_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The ``padim_backbone/`` nodes, in graph order.

    Raises:
        CalibrationError: The graph has none (a model from before stage prefixes, or not exported
            by padim-export).
    """
    nodes = [n for n in graph.node if n.name.startswith(graph_names.BACKBONE)]
    if not nodes:
        raise CalibrationError(
            f"the graph has no '{graph_names.BACKBONE}' nodes, so its backbone cannot be told apart from the "
            "float32 preprocessing and head; re-export it with this version of padim-export"
        )
    return nodes


def non_backbone_node_names(graph: onnx.GraphProto) -> list[str]:
    """Names of every node outside the backbone (what quantisation and FP16 must leave alone)."""
    return [n.name for n in graph.node if not n.name.startswith(graph_names.BACKBONE)]


def prefix_unstaged(graph: onnx.GraphProto, prefix: str = graph_names.BACKBONE) -> int:
    """Give ``prefix`` to every node that has no stage prefix (nodes a converter inserted).

    Returns:
        How many nodes were renamed.
    """
    taken = {n.name for n in graph.node}
    renamed = 0
    for i, node in enumerate(graph.node):
        if stage_of(node.name) is None:
            base = prefix + (node.name or f"{node.op_type}_{i}")
            name, k = base, 1
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            taken.add(name)
            node.name = name
            renamed += 1
    return renamed


@dataclass(frozen=True)
class Boundary:
    """Where the backbone meets the float32 rest of the graph.

    Attributes:
        inputs: Activations the backbone reads from other stages (the preprocessed frames).
        outputs: Backbone activations other stages (or the graph outputs) read (the tapped maps).
        initializers: Constants only backbone nodes use.
        shared: Constants used both inside and outside the backbone.
    """

    inputs: list[str]
    outputs: list[str]
    initializers: list[str]
    shared: list[str]


def backbone_boundary(graph: onnx.GraphProto) -> Boundary:
    """Find the tensors that cross into and out of the backbone."""
    inside = backbone_nodes(graph)
    inside_ids = {id(n) for n in inside}
    produced = {o for n in inside for o in n.output if o}
    constants = {t.name for t in graph.initializer}
    used_inside = [i for n in inside for i in n.input if i]
    used_outside = {i for n in graph.node if id(n) not in inside_ids for i in n.input if i}
    used_outside |= {o.name for o in graph.output}
    inputs = list(dict.fromkeys(i for i in used_inside if i not in produced and i not in constants))
    outputs = [o for n in inside for o in n.output if o in used_outside]
    backbone_constants = list(dict.fromkeys(i for i in used_inside if i in constants))
    shared = [c for c in backbone_constants if c in used_outside]
    only = [c for c in backbone_constants if c not in used_outside]
    return Boundary(inputs=inputs, outputs=outputs, initializers=only, shared=shared)


def toposort(graph: onnx.GraphProto) -> None:
    """Order ``graph.node`` topologically, keeping the current order wherever it is already valid.

    Raises:
        CalibrationError: The graph has a cycle or a node reads a tensor nothing produces.
    """
    nodes = list(graph.node)
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    producer: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for out in node.output:
            producer[out] = index
    waiting: dict[int, int] = {}
    consumers: dict[int, list[int]] = defaultdict(list)
    for index, node in enumerate(nodes):
        deps = {producer[i] for i in node.input if i not in available and i in producer}
        missing = [i for i in node.input if i not in available and i not in producer]
        if missing:
            raise CalibrationError(f"node {node.name} reads {missing}, which no node produces")
        waiting[index] = len(deps)
        for dep in deps:
            consumers[dep].append(index)
    ready = [i for i, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        index = heapq.heappop(ready)  # earliest ready node first: a valid order comes out unchanged
        order.append(index)
        for nxt in consumers[index]:
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, nxt)
    if len(order) != len(nodes):
        raise CalibrationError("the graph has a cycle")
    ordered = [nodes[i] for i in order]
    del graph.node[:]
    graph.node.extend(ordered)


def io_signature(proto: onnx.ModelProto) -> list[tuple[str, int, tuple[object, ...]]]:
    """``(name, elem_type, dims)`` of every graph input and output: what a variant must keep."""
    out = []
    for value in [*proto.graph.input, *proto.graph.output]:
        tensor = value.type.tensor_type
        dims = tuple(d.dim_param or d.dim_value for d in tensor.shape.dim)
        out.append((value.name, tensor.elem_type, dims))
    return out
