"""Baking a threshold into the graph: ``is_anomalous`` and ``normalized_score`` outputs.

Two ``padim_head/`` nodes read ``score``::

    is_anomalous     = Greater(score, threshold)   bool [N]
    normalized_score = Div(score, threshold)       float32 [N]  (1.0 is the decision boundary)

A model that already has them gets its threshold replaced, never a second pair of outputs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from padim_edge import graph_names
from padim_edge.calibration.errors import CalibrationError

THRESHOLD_CONSTANT = graph_names.HEAD + "threshold"
IS_ANOMALOUS_NODE = graph_names.HEAD + "is_anomalous"
NORMALIZED_NODE = graph_names.HEAD + "normalized_score"
DECISION_OUTPUTS = (graph_names.IS_ANOMALOUS, graph_names.NORMALIZED_SCORE)


def strip_threshold(proto: onnx.ModelProto) -> bool:
    """Remove the decision outputs, their nodes and the threshold constant.

    Returns:
        Whether there was anything to remove.
    """
    graph = proto.graph
    found = False
    for items, drop in (
        (graph.node, lambda n: any(o in DECISION_OUTPUTS for o in n.output)),
        (graph.output, lambda v: v.name in DECISION_OUTPUTS),
        (graph.initializer, lambda t: t.name == THRESHOLD_CONSTANT),
        (graph.value_info, lambda v: v.name in DECISION_OUTPUTS),
    ):
        for index in reversed(range(len(items))):  # in place: no copy of the big initializers
            if drop(items[index]):
                del items[index]
                found = True
    return found


def bake_threshold(proto: onnx.ModelProto, threshold: float) -> None:
    """Add (or replace) the decision outputs for ``threshold``.

    Raises:
        CalibrationError: The threshold is not a positive finite number (``normalized_score`` divides by it).
    """
    value = np.float32(threshold)
    if not np.isfinite(value) or value <= 0:
        raise CalibrationError(
            "the threshold must be a positive finite number (normalized_score = score / threshold), "
            f"got {threshold}"
        )
    strip_threshold(proto)
    graph = proto.graph
    score = next(o for o in graph.output if o.name == graph_names.SCORE)
    batch = score.type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_param or (batch.dim_value if batch.HasField("dim_value") else None)
    graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), THRESHOLD_CONSTANT))
    graph.node.extend(
        [
            helper.make_node(
                "Greater",
                [graph_names.SCORE, THRESHOLD_CONSTANT],
                [graph_names.IS_ANOMALOUS],
                name=IS_ANOMALOUS_NODE,
            ),
            helper.make_node(
                "Div",
                [graph_names.SCORE, THRESHOLD_CONSTANT],
                [graph_names.NORMALIZED_SCORE],
                name=NORMALIZED_NODE,
            ),
        ]
    )
    graph.output.extend(
        [
            helper.make_tensor_value_info(graph_names.IS_ANOMALOUS, TensorProto.BOOL, [batch_dim]),
            helper.make_tensor_value_info(graph_names.NORMALIZED_SCORE, TensorProto.FLOAT, [batch_dim]),
        ]
    )


def baked_threshold(proto: onnx.ModelProto) -> float | None:
    """The threshold constant in the graph, if it has one."""
    for tensor in proto.graph.initializer:
        if tensor.name == THRESHOLD_CONSTANT:
            return float(numpy_helper.to_array(tensor))
    return None
