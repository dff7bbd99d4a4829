"""FP16 backbone for GPU execution providers (onnxconverter-common, no torch).

``onnxconverter_common.float16.convert_float_to_float16`` is run on the backbone alone: the
``padim_backbone/`` nodes are cut out as a small model whose inputs and outputs are the float32
tensors that cross the stage boundary, converted with ``keep_io_types=True`` (so Cast nodes sit at
the boundary), and spliced back. The uint8 input, the preprocessing, the channel reduction, the
Mahalanobis head and the float32 outputs stay exactly as they were.

Why not ``node_block_list`` on the whole graph: with onnxconverter-common 1.16 the blocked head
comes back with float16 Casts on tensors that fan out (the centred embedding feeds several Slices)
and on ``anomaly_map``, which is both a graph output and the ReduceMax input, so the model fails the
ONNX checker. Converting the cut-out backbone has no blocked nodes at all.
"""

from __future__ import annotations

import warnings
from collections import Counter

import onnx
from onnx import TensorProto, helper
from onnxconverter_common import float16

from padim_edge import graph_names
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.graph import (
    backbone_boundary,
    backbone_nodes,
    io_signature,
    prefix_unstaged,
    toposort,
)


def _float_value_info(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


#: Suffix of the backbone's own (float16) copy of a tensor that leaves the backbone.
INNER_SUFFIX = "__fp16"


def backbone_model(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The backbone alone, as a model from its float32 boundary inputs to its boundary outputs.

    A boundary output that backbone nodes also read (a tapped layer feeding the next layer) is
    renamed inside (``<name>__fp16``) and leaves through an Identity named as before: the converter
    then casts only the copy that leaves, and the next layer keeps reading float16.
    """
    graph = proto.graph
    boundary = backbone_boundary(graph)
    wanted = set(boundary.initializers) | set(boundary.shared)
    inner = {name: name + INNER_SUFFIX for name in boundary.outputs}
    nodes = []
    for original in backbone_nodes(graph):
        node = onnx.NodeProto()
        node.CopyFrom(original)
        for i, name in enumerate(node.input):
            node.input[i] = inner.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = inner.get(name, name)
        nodes.append(node)
    nodes += [
        helper.make_node("Identity", [inner[name]], [name], name=graph_names.BACKBONE + name + "_leaves")
        for name in boundary.outputs
    ]
    sub = helper.make_graph(
        nodes=nodes,
        name="padim_backbone",
        inputs=[_float_value_info(n) for n in boundary.inputs],
        outputs=[_float_value_info(n) for n in boundary.outputs],
        initializer=[t for t in graph.initializer if t.name in wanted],
    )
    return helper.make_model(sub, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)


def convert_backbone_fp16(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    """Make the backbone's weights and activations float16, editing ``proto`` in place.

    In place because the head's constants can be gigabytes (WR50-Rd550): they are never copied.

    Args:
        proto: A float32 padim-edge model (without decision outputs).

    Returns:
        ``proto`` itself and the op counts of its new backbone.

    Raises:
        CalibrationError: No backbone nodes, or a converted graph whose interface changed.
    """
    signature = io_signature(proto)
    boundary = backbone_boundary(proto.graph)
    sub = backbone_model(proto)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one notice per weight clipped to float16's range
        half = float16.convert_float_to_float16(sub, keep_io_types=True, disable_shape_infer=False)
    for value in [*half.graph.input, *half.graph.output]:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            raise CalibrationError(f"the FP16 backbone changed the type of boundary tensor {value.name}")

    # constants: drop the backbone-only float32 ones, add the converted set (renamed where shared)
    renames = {name: name + "_fp16" for name in boundary.shared}
    new_nodes = list(half.graph.node)
    for node in new_nodes:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
    for tensor in half.graph.initializer:
        tensor.name = renames.get(tensor.name, tensor.name)

    graph = proto.graph
    inside = {n.name for n in backbone_nodes(graph)}
    internal = {o for n in backbone_nodes(graph) for o in n.output} - set(boundary.outputs)
    internal |= {o + INNER_SUFFIX for o in boundary.outputs} | set(boundary.initializers)
    position = next(i for i, n in enumerate(graph.node) if n.name in inside)
    kept = [n for n in graph.node if n.name not in inside]
    nodes = [*kept[:position], *new_nodes, *kept[position:]]
    del graph.node[:]
    graph.node.extend(nodes)
    only = set(boundary.initializers)
    for index in reversed(range(len(graph.initializer))):
        if graph.initializer[index].name in only:
            del graph.initializer[index]
    graph.initializer.extend(half.graph.initializer)

    # value_info: internal backbone tensors change type; take the converted model's view of them
    for index in reversed(range(len(graph.value_info))):
        if graph.value_info[index].name in internal:
            del graph.value_info[index]
    boundary_names = set(boundary.inputs) | set(boundary.outputs)
    graph.value_info.extend(v for v in half.graph.value_info if v.name not in boundary_names)

    prefix_unstaged(graph)
    toposort(graph)
    if io_signature(proto) != signature:
        raise CalibrationError(f"FP16 conversion changed the interface: {signature} -> {io_signature(proto)}")
    counts = Counter(n.op_type for n in graph.node if n.name.startswith(graph_names.BACKBONE))
    return proto, dict(counts)
