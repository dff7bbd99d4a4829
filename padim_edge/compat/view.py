"""What the rules read: one model's nodes, inferred tensor types, constants and sizes (onnx only)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from padim_edge.onnx_files import initializer_bytes

#: Constants up to this size are decoded for the rules (zero points, axes, shapes).
SMALL_CONSTANT_BYTES = 1 << 16


@dataclass
class GraphView:
    """A loaded model prepared for the rules.

    Attributes:
        proto: The model (external data not loaded).
        types: Element type of every tensor whose type is known (inputs, outputs, initializers,
            shape inference).
        ranks: Rank of every tensor whose shape is known.
        constants: Small initializers and ``Constant`` node outputs, decoded.
        initializers: Names of every initializer.
        consumers: Tensor name -> nodes that read it.
        inference_error: Why shape inference failed, when it did (types then come from the file).
    """

    proto: onnx.ModelProto
    types: dict[str, int] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    initializers: set[str] = field(default_factory=set)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=lambda: defaultdict(list))
    inference_error: str | None = None

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        """Every node of the main graph, in file order."""
        return list(self.proto.graph.node)

    @property
    def graph_inputs(self) -> set[str]:
        """Names of the graph's real inputs (not initializers)."""
        return {i.name for i in self.proto.graph.input} - self.initializers

    @property
    def graph_outputs(self) -> set[str]:
        """Names of the graph's outputs."""
        return {o.name for o in self.proto.graph.output}

    @property
    def opset(self) -> int:
        """The ai.onnx opset."""
        return next((o.version for o in self.proto.opset_import if o.domain in ("", "ai.onnx")), 0)

    @property
    def weight_bytes(self) -> int:
        """Bytes of all initializers, inline or external."""
        return initializer_bytes(self.proto)

    def is_constant(self, name: str) -> bool:
        """Whether ``name`` is an initializer or a ``Constant`` node's output."""
        return name in self.initializers or name in self.constants

    def type_name(self, name: str) -> str:
        """``UINT8``, ``FLOAT``... of a tensor, or ``unknown``."""
        elem = self.types.get(name)
        return onnx.TensorProto.DataType.Name(elem) if elem is not None else "unknown"


def _record(view: GraphView, values: list[onnx.ValueInfoProto]) -> None:
    for value in values:
        tensor = value.type.tensor_type
        if tensor.elem_type:
            view.types[value.name] = tensor.elem_type
        if tensor.HasField("shape"):
            view.ranks[value.name] = len(tensor.shape.dim)


def build_view(proto: onnx.ModelProto) -> GraphView:
    """Prepare ``proto`` (loaded with or without its external data) for the rules."""
    view = GraphView(proto=proto)
    graph = proto.graph
    for tensor in graph.initializer:
        view.initializers.add(tensor.name)
        view.types[tensor.name] = tensor.data_type
        view.ranks[tensor.name] = len(tensor.dims)
        external = tensor.data_location == onnx.TensorProto.EXTERNAL
        if not external and tensor.ByteSize() <= SMALL_CONSTANT_BYTES:
            view.constants[tensor.name] = numpy_helper.to_array(tensor)
    for node in graph.node:
        for name in node.input:
            if name:
                view.consumers[name].append(node)
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attribute in node.attribute:
                if attribute.name == "value":
                    view.constants[node.output[0]] = numpy_helper.to_array(attribute.t)
                    view.types[node.output[0]] = attribute.t.data_type
    _record(view, [*graph.input, *graph.output, *graph.value_info])
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
        _record(view, list(inferred.graph.value_info))
    except Exception as exc:  # a model the checker cannot infer is still checked on what it declares
        view.inference_error = str(exc).splitlines()[0][:200]
    return view
