"""Write the one ONNX graph: traced preprocessing + backbone + reduction, then the method's built head.

Method-agnostic: it reads a module through the :class:`padim_edge.export.method.AnomalyMethod`
contract, so PaDiM and its siblings export the same way.

Input ``images``: uint8 ``[N, H, W, 3]`` (N, H, W dynamic). Outputs ``anomaly_map`` float32
``[N, crop, crop]`` and ``score`` float32 ``[N]``. Metadata in ``metadata_props``
(:mod:`padim_edge.metadata`).

Two targets (:data:`TARGETS`):

* ``default``: any frame size, opset 18 (its Resize is antialiased, which needs opset 18). Exact on the
  CPU and CUDA execution providers; TensorRT has no antialiased resize (``padim-check`` says how each
  version fails or changes numbers).
* ``tensorrt``: one fixed frame size ``[N, H, W, 3]`` (N dynamic), the resize + crop as two constant
  MatMuls (:class:`padim_edge.export.preprocessing.MatrixPreprocess`), opset 17 (TensorRT 8.5/8.6's
  documented ceiling). Same numbers as the default graph on frames of that size.

Both get the lowest IR version their opset allows (8), without the IR-10-only node metadata the dynamo
exporter writes, so onnxruntime 1.16 / 1.17 (JetPack 5) load them. Files whose constants would pass
the protobuf limit are written with their tensors in one external-data file beside the model
(``<name>.onnx.data``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from padim_edge import __version__, graph_names, metadata
from padim_edge.export.anomaly_map import separable_operator
from padim_edge.export.graph_map import anomaly_map_nodes
from padim_edge.export.method import AnomalyMethod
from padim_edge.export.preprocessing import MatrixPreprocess
from padim_edge.onnx_files import ExternalData, graph_versions, pin_ir_version, save_model

#: Opset of the default graph (the antialiased Resize needs 18).
OPSET = 18
#: Opset of the TensorRT graph: TensorRT 8.5 / 8.6 document opsets up to 17.
TENSORRT_OPSET = 17
DEFAULT_TARGET = "default"
TENSORRT_TARGET = "tensorrt"
TARGETS = (DEFAULT_TARGET, TENSORRT_TARGET)
INPUT_NAME = graph_names.INPUT
MAP_OUTPUT = graph_names.ANOMALY_MAP
SCORE_OUTPUT = graph_names.SCORE
#: Traced submodule -> stage prefix given to its nodes.
_STAGE_OF_MODULE = {
    "/preprocess": graph_names.PREPROCESS,
    "/features": graph_names.BACKBONE,
    "/reducer": graph_names.REDUCE,
}


class _FeatureGraph(nn.Module):
    """Preprocess + backbone (+ reduction): the traced part of the graph."""

    def __init__(self, model: AnomalyMethod, *, reduce: bool, preprocess: nn.Module | None = None) -> None:
        super().__init__()
        self.preprocess = preprocess if preprocess is not None else model.preprocess
        self.features = model.features
        self.reducer = model.reducer if reduce else None

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        maps = self.features(self.preprocess(images))
        return self.reducer(maps) if self.reducer is not None else tuple(maps)


def check_target(target: str, input_size: tuple[int, int] | None) -> None:
    """Refuse an unknown target, ``tensorrt`` without a frame size, or a frame size for ``default``.

    Raises:
        ValueError: The message names the flag to fix.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    if target == TENSORRT_TARGET and input_size is None:
        raise ValueError(
            "the tensorrt target is built for one camera frame size: pass --input-size HxW (e.g. 480x640)"
        )
    if target == DEFAULT_TARGET and input_size is not None:
        raise ValueError(
            "--input-size applies to --target tensorrt only (the default graph takes any frame size)"
        )
    if input_size is not None and min(input_size) < 1:
        raise ValueError(f"--input-size must be positive, got {input_size[0]}x{input_size[1]}")


def _rename_dims(model: onnx.ModelProto, names: dict[int, str]) -> None:
    """Give the input's dynamic axes readable names everywhere they appear."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    mapping = {dims[i].dim_param: name for i, name in names.items() if dims[i].dim_param}
    for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in mapping:
                dim.dim_param = mapping[dim.dim_param]


def _tag_stages(model: onnx.ModelProto) -> None:
    """Prefix every traced node with its stage (``padim_backbone/...``) from the exporter's namespace."""
    for node in model.graph.node:
        namespace = next((p.value for p in node.metadata_props if p.key == "namespace"), "")
        scope = namespace.split(":")[1] if namespace.count(":") >= 1 else namespace
        prefix = next((v for k, v in _STAGE_OF_MODULE.items() if k in scope), graph_names.BACKBONE)
        node.name = prefix + node.name


def trace_features(
    model: AnomalyMethod, *, reduce: bool = True, input_size: tuple[int, int] | None = None
) -> onnx.ModelProto:
    """Trace preprocessing + truncated backbone (+ channel reduction) to ONNX with the dynamo exporter.

    Args:
        model: A method's module (fitted or not; the head is not part of this graph).
        reduce: Output the reduced embedding ``[N, dims, grid, grid]`` (else the tapped maps ``tap1``,
            ``tap2``, ..., which is "the truncated backbone alone" that benchmarks compare against).
        input_size: ``(H, W)``: build the TensorRT form for frames of this size only (resize + crop as
            MatMuls, opset 17); ``None``: any frame size (antialiased Resize, opset 18).
    """
    model = model.to("cpu").eval()
    preprocess = None
    if input_size is None:
        example = torch.zeros(2, model.config.resize + 8, model.config.resize + 24, 3, dtype=torch.uint8)
        dims = {0: "N", 1: "H", 2: "W"}
    else:
        height, width = input_size
        preprocess = MatrixPreprocess(model.preprocess, height=height, width=width)
        example = torch.zeros(2, height, width, 3, dtype=torch.uint8)
        dims = {0: "N"}
    module = _FeatureGraph(model, reduce=reduce, preprocess=preprocess).eval()
    dynamic = torch.export.Dim.DYNAMIC
    outputs = ["embedding"] if reduce else [f"tap{i + 1}" for i in range(len(model.features.taps))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for noisy in ("torch.onnx", "onnxscript", "torch.export"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[INPUT_NAME],
            output_names=outputs,
            dynamic_shapes=({axis: dynamic for axis in dims},),
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    _rename_dims(proto, dims)
    _tag_stages(proto)
    pin_ir_version(proto)  # after the tagging, which reads the node metadata it drops
    if input_size is not None:
        proto = _to_opset(proto, TENSORRT_OPSET)
    return proto


def portable_shapes(graph: onnx.GraphProto) -> int:
    """Rewrite ``Shape(x, start, end)`` (opset 15) as ``Slice(Shape(x))``, which every TensorRT imports.

    TensorRT 8.5's Shape importer ignores ``start``/``end`` and returns the whole shape (its
    ``builtin_op_importers.cpp`` only calls ``addShape``), so the reducer's resize sizes would come out
    with the wrong length. ``Slice`` with constant starts/ends/axes means the same everywhere.

    Returns:
        How many Shape nodes were rewritten.
    """
    nodes, rewritten = [], 0
    for node in graph.node:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Shape" or not ({"start", "end"} & set(attributes)):
            nodes.append(node)
            continue
        start, end = int(attributes.get("start", 0)), int(attributes.get("end", 2**62))
        base, out = node.name or f"shape_{rewritten}", node.output[0]
        full = out + "_full"
        nodes.append(onnx.helper.make_node("Shape", [node.input[0]], [full], name=base))
        bounds = {"starts": start, "ends": end, "axes": 0}
        for key, value in bounds.items():
            graph.initializer.append(
                onnx.numpy_helper.from_array(np.array([value], np.int64), f"{base}_{key}")
            )
        inputs = [full, *(f"{base}_{key}" for key in bounds)]
        nodes.append(onnx.helper.make_node("Slice", inputs, [out], name=base + "_slice"))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def _to_opset(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """Convert the traced graph with ``onnx.version_converter`` (Resize 18 -> 17 drops its new attributes).

    Only the traced part is converted (backbone weights, well under the 2 GB protobuf limit); the head
    appended later uses ops whose form is the same at opsets 13-18.
    """
    names = [n.name for n in proto.graph.node]
    converted = onnx.version_converter.convert_version(proto, opset)
    for node, name in zip(converted.graph.node, names, strict=True):
        node.name = name  # the converter keeps the order; keep the stage prefixes for certain
    pin_ir_version(converted)
    return converted


def build_graph(
    model: AnomalyMethod, *, input_size: tuple[int, int] | None = None, **head_options: object
) -> onnx.ModelProto:
    """The full fused graph of a fitted model (no metadata yet).

    Args:
        model: A fitted method module.
        input_size: ``(H, W)`` for the TensorRT target (fixed frame size); ``None``: the default graph.
        head_options: Passed to the method's ``head_graph`` (PaDiM: ``blocks``, ``precision``).
    """
    if not model.fitted:
        raise RuntimeError("fit the model before exporting it")
    proto = trace_features(model, reduce=True, input_size=input_size)
    graph = proto.graph
    (embedding,) = [o.name for o in graph.output]
    head = model.head_graph(embedding, **head_options)
    operator = separable_operator(model.anomaly_map, model.grid).numpy()
    map_nodes, map_inits = anomaly_map_nodes(
        head.distance,
        operator,
        map_output=MAP_OUTPUT,
        score_output=SCORE_OUTPUT if head.score is None else None,
    )
    if head.score is not None:
        map_nodes.append(
            onnx.helper.make_node("Identity", [head.score], [SCORE_OUTPUT], name=graph_names.HEAD + "score")
        )
    graph.node.extend(head.nodes + map_nodes)
    graph.initializer.extend(head.initializers + map_inits)
    del graph.output[:]
    crop = model.config.crop
    graph.output.extend(
        [
            onnx.helper.make_tensor_value_info(MAP_OUTPUT, onnx.TensorProto.FLOAT, ["N", crop, crop]),
            onnx.helper.make_tensor_value_info(SCORE_OUTPUT, onnx.TensorProto.FLOAT, ["N"]),
        ]
    )
    graph.name = f"{model.method}_{model.config.spec.name}"
    if head.metadata:  # what the head says about itself (e.g. its precision); export_model keeps it
        onnx.helper.set_model_props(proto, {metadata.prop(k): str(v) for k, v in head.metadata.items()})
    portable_shapes(graph)
    pin_ir_version(proto)
    return proto


def model_metadata(
    model: AnomalyMethod, *, weights: str, train_images: int, extra: dict[str, object] | None = None
) -> dict[str, str]:
    """The ``metadata_props`` a freshly exported model carries (``extra``: more keys of the table)."""
    config = model.config
    return metadata.encode(
        {
            "version": __version__,
            "method": model.method,
            "backbone": config.spec.name,
            "dims": config.dims,
            "resize": config.resize,
            "crop": config.crop,
            "feature_size": model.grid,
            "sigma": config.sigma,
            "weights": weights,
            "seed": config.seed,
            "train_images": train_images,
            "precision": "fp32",
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **model.metadata(),
            **(extra or {}),
        }
    )


@dataclass(frozen=True)
class ExportResult:
    """Files an export wrote and their total size."""

    files: list[Path]

    @property
    def bytes(self) -> int:
        """Total size on disk."""
        return sum(f.stat().st_size for f in self.files)


def export_model(
    model: AnomalyMethod,
    path: str | Path,
    *,
    weights: str,
    train_images: int,
    external_data: ExternalData = "auto",
    head_options: dict[str, object] | None = None,
    extra_metadata: dict[str, object] | None = None,
    verify: Callable[[Path], None] | None = None,
    input_size: tuple[int, int] | None = None,
) -> ExportResult:
    """Export a fitted model as one ONNX graph with its metadata.

    The file is written atomically (:func:`padim_edge.onnx_files.save_model`): if ``verify`` raises,
    or anything else fails, an existing model at ``path`` is left untouched.

    Args:
        model: A fitted method module.
        path: Output ``.onnx`` path.
        weights: Weights identity for the metadata (from :func:`build_backbone`).
        train_images: Images the Gaussians were fitted on.
        external_data: ``auto`` (only when too big to inline), ``always`` or ``never``.
        head_options: Passed to the method's ``head_graph`` (PaDiM: ``blocks``, ``precision``).
        extra_metadata: More metadata keys (see :data:`padim_edge.metadata.KEYS`).
        verify: Called with the staged file before it replaces anything (e.g. a parity check).
        input_size: ``(H, W)``: the TensorRT target for frames of this size (see the module doc).
    """
    proto = build_graph(model, input_size=input_size, **(head_options or {}))
    props = {p.key: p.value for p in proto.metadata_props}
    target: dict[str, object] = {"target": DEFAULT_TARGET if input_size is None else TENSORRT_TARGET}
    if input_size is not None:
        target["input_size"] = [int(input_size[0]), int(input_size[1])]
    target.update(graph_versions(proto))
    props.update(
        model_metadata(
            model, weights=weights, train_images=train_images, extra={**target, **(extra_metadata or {})}
        )
    )
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = (
        f"{model.method} {model.config.spec.name} exported by padim-edge {__version__}: uint8 NHWC frames "
        "in, anomaly_map and score out."
    )
    return ExportResult(save_model(proto, path, external_data=external_data, verify=verify))
