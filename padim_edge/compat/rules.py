"""The compatibility rules: one function per rule, and :data:`RULES`, the table of where each applies.

Every row says, per target, what a hit means there:

* ``fails``: the parser or runtime rejects it (under onnxruntime's TensorRT EP the node is silently
  left to the CUDA / CPU EP instead, splitting the engine);
* ``changes numbers``: it is accepted and computes something else;
* ``note``: outside what the target documents, with no known failure (not counted as a problem).

Facts and their sources are in docs/tensorrt-sources.md (summarised in docs/edge-targets.md); the
``source`` of each row names them, and says "unverified" where the source was not read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from onnx import NodeProto, TensorProto, helper

from padim_edge.compat.targets import TARGETS, TENSORRT_TARGETS, Target
from padim_edge.compat.view import GraphView

FAILS = "fails"
NUMBERS = "changes numbers"
NOTE = "note"
#: Effects that make a target unusable as it is (``padim-check`` exits non-zero on them).
BLOCKING = (FAILS, NUMBERS)
#: Reduce ops whose axes became an input at opset 18 (ReduceSum did at 13 and is imported right).
AXES_INPUT_REDUCES = frozenset(
    {
        "ReduceMax",
        "ReduceMin",
        "ReduceMean",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceSumSquare",
    }
)
#: Integer-arithmetic ops TensorRT's operator tables list as unsupported ("N").
INTEGER_OPS = frozenset(
    {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul"}
)
#: Protobuf's limit, which onnxruntime's TensorRT EP hits when it serialises the subgraph for TensorRT.
PROTOBUF_LIMIT = 2**31
DEFAULT_DOMAINS = ("", "ai.onnx")

Check = Callable[[GraphView, Target], "list[str]"]


@dataclass(frozen=True)
class Rule:
    """One row of :data:`RULES`.

    Attributes:
        name: Short id (``resize-antialias``).
        summary: What it finds, one line.
        effects: Target name -> ``fails`` / ``changes numbers`` / ``note``; other targets: not applied.
        source: Where the facts come from, and what stayed unverified.
        check: Returns one line per occurrence in the graph (empty: the rule passes).
    """

    name: str
    summary: str
    effects: dict[str, str]
    source: str
    check: Check


def _where(node: NodeProto) -> str:
    return f"{node.name or '(unnamed)'} ({node.op_type})"


def _attribute(node: NodeProto, name: str, default: object = None) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def uint8_intermediate(view: GraphView, target: Target) -> list[str]:
    """uint8 tensors other than graph inputs/outputs; uint8 inputs read by anything but a Cast to float."""
    hits = []
    for node in view.nodes:
        for out in node.output:
            if out and view.types.get(out) == TensorProto.UINT8 and out not in view.graph_outputs:
                hits.append(f"{_where(node)} makes the uint8 tensor '{out}'")
    for name in sorted(view.graph_inputs):
        if view.types.get(name) != TensorProto.UINT8:
            continue
        for node in view.consumers.get(name, []):
            if node.op_type != "Cast" or _attribute(node, "to") not in (
                TensorProto.FLOAT,
                TensorProto.FLOAT16,
            ):
                hits.append(f"{_where(node)} reads the uint8 input '{name}' (only a Cast to float may)")
    return hits


def shape_start_end(view: GraphView, target: Target) -> list[str]:
    """Shape with ``start``/``end`` attributes (opset 15)."""
    hits = []
    for node in view.nodes:
        if node.op_type == "Shape" and {a.name for a in node.attribute} & {"start", "end"}:
            start, end = _attribute(node, "start", 0), _attribute(node, "end")
            hits.append(f"{_where(node)} start={start} end={end}")
    return hits


def resize_antialias(view: GraphView, target: Target) -> list[str]:
    """Resize with ``antialias=1`` (opset 18)."""
    return [
        f"{_where(n)} antialias=1"
        for n in view.nodes
        if n.op_type == "Resize" and _attribute(n, "antialias", 0)
    ]


def resize_axes(view: GraphView, target: Target) -> list[str]:
    """Resize with an ``axes`` attribute that is not every axis in order (opset 18)."""
    hits = []
    for node in view.nodes:
        axes = _attribute(node, "axes") if node.op_type == "Resize" else None
        if axes is None:
            continue
        rank = view.ranks.get(node.input[0])
        if rank is None or list(axes) != list(range(rank)):
            hits.append(
                f"{_where(node)} axes={list(axes)} (input rank {rank if rank is not None else 'unknown'})"
            )
    return hits


def resize_aspect_policy(view: GraphView, target: Target) -> list[str]:
    """Resize with ``keep_aspect_ratio_policy`` other than ``stretch`` (opset 18)."""
    hits = []
    for node in view.nodes:
        policy = _attribute(node, "keep_aspect_ratio_policy") if node.op_type == "Resize" else None
        if policy is not None and policy not in (b"stretch", "stretch"):
            text = policy.decode() if isinstance(policy, bytes) else policy
            hits.append(f"{_where(node)} keep_aspect_ratio_policy={text}")
    return hits


def reduce_axes_input(view: GraphView, target: Target) -> list[str]:
    """Reduce* (not ReduceSum) with axes given as an input."""
    return [
        f"{_where(n)} takes its axes as input '{n.input[1]}'"
        for n in view.nodes
        if n.op_type in AXES_INPUT_REDUCES and len(n.input) >= 2 and n.input[1]
    ]


def reducesum_axes_constant(view: GraphView, target: Target) -> list[str]:
    """ReduceSum whose axes input is computed rather than a constant."""
    return [
        f"{_where(n)} axes '{n.input[1]}' is not a constant"
        for n in view.nodes
        if n.op_type == "ReduceSum" and len(n.input) >= 2 and n.input[1] and not view.is_constant(n.input[1])
    ]


def dequantize_input_type(view: GraphView, target: Target) -> list[str]:
    """DequantizeLinear whose quantized input is not int8 (int32 biases, uint8 activations)."""
    hits = []
    for node in view.nodes:
        data = node.input[0] if node.op_type == "DequantizeLinear" else ""
        if data in view.types and view.types[data] != TensorProto.INT8:
            hits.append(f"{_where(node)} dequantizes {view.type_name(data)} '{data}'")
    return hits


def qdq_zero_point(view: GraphView, target: Target) -> list[str]:
    """Q/DQ without a zero point, or with one that is not an all-zero int8 constant."""
    hits = []
    for node in view.nodes:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or not node.input[2]:
            hits.append(f"{_where(node)} has no zero-point input (TensorRT 8.5 needs all 3 inputs)")
            continue
        value = view.constants.get(node.input[2])
        if value is None:
            hits.append(f"{_where(node)} zero point '{node.input[2]}' is not a small constant")
        elif value.dtype != np.int8:
            hits.append(f"{_where(node)} zero point is {value.dtype} (TensorRT takes int8 only)")
        elif np.any(value != 0):
            hits.append(f"{_where(node)} zero point is not 0 (TensorRT quantizes symmetrically only)")
    return hits


def opset_range(view: GraphView, target: Target) -> list[str]:
    """The ai.onnx opset outside the target's documented range."""
    if target.min_opset <= view.opset <= target.max_opset:
        return []
    return [f"opset {view.opset}; {target.name} documents {target.min_opset}-{target.max_opset}"]


def ir_version(view: GraphView, target: Target) -> list[str]:
    """An IR version above what the runtime loads."""
    ir = view.proto.ir_version
    if target.max_ir is None or ir <= target.max_ir:
        return []
    return [f"IR version {ir}; {target.name} loads IR <= {target.max_ir}"]


def non_default_domain(view: GraphView, target: Target) -> list[str]:
    """Nodes outside the ai.onnx domain (com.microsoft contrib ops...)."""
    return [f"{_where(n)} in domain {n.domain}" for n in view.nodes if n.domain not in DEFAULT_DOMAINS]


def integer_ops(view: GraphView, target: Target) -> list[str]:
    """Integer-arithmetic quantized ops (the QOperator format), which TensorRT does not import."""
    return [f"{_where(n)}" for n in view.nodes if n.op_type in INTEGER_OPS and n.domain in DEFAULT_DOMAINS]


def large_initializers(view: GraphView, target: Target) -> list[str]:
    """More than 2 GiB of constants."""
    size = view.weight_bytes
    return [f"{size / 2**30:.2f} GiB of initializers"] if size >= PROTOBUF_LIMIT else []


def float16_relu(view: GraphView, target: Target) -> list[str]:
    """float16 Relu at opset >= 18 (where onnxruntime >= 1.17's CPU EP rounds it, 1.16 does not)."""
    if view.opset < 18:
        return []
    return [
        f"{_where(n)} on float16 at opset {view.opset}"
        for n in view.nodes
        if n.op_type == "Relu" and n.input and view.types.get(n.input[0]) == TensorProto.FLOAT16
    ]


def _on(effect: str, *targets: str) -> dict[str, str]:
    return dict.fromkeys(targets, effect)


_TRT8 = ("tensorrt-8.5", "tensorrt-8.6")
_ORT = tuple(name for name in TARGETS if name not in TENSORRT_TARGETS)

RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            "uint8-intermediate",
            "uint8 tensors other than network inputs/outputs; a uint8 input read by other than a float Cast",
            _on(FAILS, *TENSORRT_TARGETS),
            "10.x parser: 'TensorRT does not support UINT8 types for intermediate tensors!' "
            "(ModelImporter.cpp); 8.5/8.6: TensorRT's core allows uint8 only into a cast to FP32/FP16 "
            "(DataType.UINT8 docs); the 8.5 Transpose importer has no uint8 check, so there the build, not "
            "the parse, fails (error text unverified)",
            uint8_intermediate,
        ),
        Rule(
            "shape-start-end",
            "Shape with start/end attributes (opset 15)",
            {**_on(FAILS, *_TRT8), "tensorrt-10": NOTE},
            "8.5 Shape importer only calls addShape(input): start/end are ignored and the whole shape comes "
            "out, so sizes built from it have the wrong length (8.6: unverified, assumed as 8.5; 10.x: "
            "unverified)",
            shape_start_end,
        ),
        Rule(
            "resize-antialias",
            "Resize with antialias=1",
            {**_on(NUMBERS, *_TRT8), "tensorrt-10": FAILS},
            "8.5 Resize importer never reads 'antialias' (plain bilinear); current 10.x static checker: "
            "'Antialiasing is not supported currently.' (the 10.x minor that added it is unverified: earlier "
            "10.x ignore it, which changes numbers instead)",
            resize_antialias,
        ),
        Rule(
            "resize-axes",
            "Resize with an 'axes' attribute that is not every axis in order",
            _on(FAILS, *_TRT8),
            "8.5 Resize importer does not read 'axes'; a rank-short scales/sizes then fails 'The shape of "
            "input scales must align with the input rank' (8.6: unverified, assumed as 8.5); 10.x reads it",
            resize_axes,
        ),
        Rule(
            "resize-aspect-policy",
            "Resize with keep_aspect_ratio_policy other than stretch",
            {**_on(NUMBERS, *_TRT8), "tensorrt-10": FAILS},
            "8.5 importer ignores the attribute (stretches); 10.x: 'Only stretch is supported currently'",
            resize_aspect_policy,
        ),
        Rule(
            "reduce-axes-input",
            "ReduceMax/Min/Mean/... with axes as an input (opset 18); ReduceSum is not affected",
            _on(NUMBERS, *TENSORRT_TARGETS),
            "8.5 importers pass no axes input to reduceTensor, which then reduces every axis; "
            "NVIDIA/TensorRT#3467 confirms it for 8.6; 9.x-10.1 importers still drop it; the 10.x minor that "
            "fixed it is unverified. ReduceSum forwards a constant axes input on 8.x (fine)",
            reduce_axes_input,
        ),
        Rule(
            "reducesum-axes-constant",
            "ReduceSum whose axes input is not a constant",
            _on(FAILS, *TENSORRT_TARGETS),
            "reduceTensor: 'Axis input must be an initializer!' (8.x, 10.x)",
            reducesum_axes_constant,
        ),
        Rule(
            "dequantize-input-type",
            "DequantizeLinear of a non-int8 tensor (int32 biases, uint8 activations)",
            _on(FAILS, *TENSORRT_TARGETS),
            "'only activation types allowed as input to this layer' (onnxruntime#14229, onnx-tensorrt#850); "
            "10.6: INT32 still unsupported (NVIDIA/TensorRT#4542); 8.5 rejects UINT8 data",
            dequantize_input_type,
        ),
        Rule(
            "qdq-zero-point",
            "QuantizeLinear/DequantizeLinear without an all-zero int8 zero point",
            _on(FAILS, *TENSORRT_TARGETS),
            "8.5 operators.md: zero point must be 0; QuantDequantLinearHelper: 'TRT only supports symmetric "
            "quantization', '...requires 3 inputs for the DequantizeLinear operator' (8.5); 10.x: INT8/FP8 "
            "only",
            qdq_zero_point,
        ),
        Rule(
            "opset-range",
            "ai.onnx opset outside the target's documented range",
            {**_on(NOTE, *TENSORRT_TARGETS), **_on(FAILS, *_ORT)},
            "TensorRT: operators.md ranges (the 8.5 importer has no hard upper bound: the semantics that "
            "changed at opset 18 are rules of their own); onnxruntime: its compatibility table",
            opset_range,
        ),
        Rule(
            "ir-version",
            "IR version above what onnxruntime loads",
            _on(FAILS, *_ORT),
            "onnxruntime compatibility table; 1.16/1.17: 'Unsupported model IR version: 10, max supported IR "
            "version: 9' (seen with their CPU wheels)",
            ir_version,
        ),
        Rule(
            "non-default-domain",
            "nodes outside the ai.onnx domain (com.microsoft contrib ops)",
            _on(FAILS, *TENSORRT_TARGETS),
            "the importers dispatch by op type and send unknown ones to the plugin path: 'Plugin not found' "
            "(ModelImporter.cpp, 8.5 and 10.x)",
            non_default_domain,
        ),
        Rule(
            "integer-ops",
            "integer-arithmetic quantized ops (QLinearConv, MatMulInteger, ...)",
            _on(FAILS, *TENSORRT_TARGETS),
            "8.5 operators.md lists ConvInteger, MatMulInteger, DynamicQuantizeLinear, QLinearConv, "
            "QLinearMatMul as N; 10.15: MatMulInteger, DynamicQuantizeLinear N (the others on 10.x: "
            "unverified)",
            integer_ops,
        ),
        Rule(
            "float16-relu-cpu",
            "float16 Relu at opset >= 18: CPU scores differ slightly from onnxruntime >= 1.17's (GPU EPs: "
            "unaffected)",
            _on(NOTE, "onnxruntime-1.16"),
            "measured (docs/edge-targets.md): the x86 CPU EPs have no float16 Conv/Relu kernels and run them "
            "in float32 behind Casts; 1.16 also drops lossy fp32->fp16->fp32 Cast round trips (onnxruntime "
            "issue #8787, fixed for 1.17 by PR #17953); >= 1.17 runs an opset-18 float16 Relu as its "
            "function body, a float16 Max, so activations are rounded there. FP16 variant of the default "
            "graph: 2.3e-4 of the max score apart; the opset-17 TensorRT-target FP16 graph: 2.6e-7",
            float16_relu,
        ),
        Rule(
            "large-initializers",
            "2 GiB or more of constants",
            _on(FAILS, *TENSORRT_TARGETS),
            "onnxruntime's TensorRT EP serialises the subgraph to one protobuf (2 GiB limit) before "
            "onnxruntime 1.23 / TensorRT 10.13 (trt_load_user_initializer): every JetPack TensorRT is older",
            large_initializers,
        ),
    )
}
