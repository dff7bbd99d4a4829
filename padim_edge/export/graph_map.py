"""The anomaly map and image score in ONNX, shared by every method (numpy + onnx; no torch).

Bilinear upsampling of the patch distances to the crop and the Gaussian blur are both separable
linear maps, so together they are one ``[crop, grid]`` matrix ``K`` and ``map = K @ D @ K^T``. ``K``
comes from the PyTorch reference module itself
(:func:`padim_edge.export.anomaly_map.separable_operator`), so the two cannot drift apart.

The score is the map's maximum as ``GlobalMaxPool`` over the map seen as ``[N, 1, crop, crop]``, then a
reshape to ``[N]``: one form every TensorRT and onnxruntime version imports the same way at any opset.
(An opset-18 ``ReduceMax`` takes its axes as an input, which the TensorRT 8.5/8.6 importers ignore:
they reduce every axis, so the whole batch would get one score.)
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from padim_edge import graph_names


def _name(name: str) -> str:
    return graph_names.HEAD + name


def anomaly_map_nodes(
    distance: str, operator: np.ndarray, *, map_output: str, score_output: str | None
) -> tuple[list[NodeProto], list[TensorProto]]:
    """Nodes for ``map = K @ D @ K^T`` and (unless the head scores images itself) ``score = max(map)``.

    ``max(map)`` is ``Reshape [N, 1, crop, crop] -> GlobalMaxPool -> Reshape [N]``.

    Args:
        distance: Name of the ``[N, grid, grid]`` distance tensor.
        operator: ``K`` ``[crop, grid]`` from :func:`padim_edge.export.anomaly_map.separable_operator`.
        map_output: Graph output name of the anomaly map.
        score_output: Graph output name of the score, or ``None`` when the method's head computes it.
    """
    n = _name
    crop = operator.shape[0]
    inits = [
        numpy_helper.from_array(operator.astype(np.float32), n("upsample_blur")),
        numpy_helper.from_array(np.ascontiguousarray(operator.T).astype(np.float32), n("upsample_blur_t")),
    ]
    nodes = [
        helper.make_node("MatMul", [n("upsample_blur"), distance], [n("rows_done")], name=n("rows")),
        helper.make_node("MatMul", [n("rows_done"), n("upsample_blur_t")], [map_output], name=n("cols")),
    ]
    if score_output is not None:
        inits += [
            numpy_helper.from_array(np.array([-1, 1, crop, crop], dtype=np.int64), n("map_nchw_shape")),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), n("score_shape")),
        ]
        nodes += [
            helper.make_node(
                "Reshape", [map_output, n("map_nchw_shape")], [n("map_nchw")], name=n("map_nchw")
            ),
            helper.make_node("GlobalMaxPool", [n("map_nchw")], [n("map_max")], name=n("map_max")),
            helper.make_node("Reshape", [n("map_max"), n("score_shape")], [score_output], name=n("score")),
        ]
    return nodes, inits
