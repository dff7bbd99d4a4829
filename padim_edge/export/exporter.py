"""Write the one ONNX graph: traced preprocessing + backbone + reduction, then the method's built head.

Method-agnostic: it reads a module through the :class:`padim_edge.export.method.AnomalyMethod`
contract, so PaDiM and its siblings export the same way.

Input ``images``: uint8 ``[N, H, W, 3]`` (N, H, W dynamic). Outputs ``anomaly_map`` float32
``[N, crop, crop]`` and ``score`` float32 ``[N]``. Metadata in ``metadata_props``
(:mod:`padim_edge.metadata`). Files whose constants would pass the protobuf limit are written with
their tensors in one external-data file beside the model (``<name>.onnx.data``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from padim_edge import __version__, graph_names, metadata
from padim_edge.export.anomaly_map import separable_operator
from padim_edge.export.graph_map import anomaly_map_nodes
from padim_edge.export.method import AnomalyMethod
from padim_edge.onnx_files import ExternalData, save_model

OPSET = 18
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

    def __init__(self, model: AnomalyMethod, *, reduce: bool) -> None:
        super().__init__()
        self.preprocess = model.preprocess
        self.features = model.features
        self.reducer = model.reducer if reduce else None

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        maps = self.features(self.preprocess(images))
        return self.reducer(maps) if self.reducer is not None else tuple(maps)


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


def trace_features(model: AnomalyMethod, *, reduce: bool = True) -> onnx.ModelProto:
    """Trace preprocessing + truncated backbone (+ channel reduction) to ONNX with the dynamo exporter.

    Args:
        model: A method's module (fitted or not; the head is not part of this graph).
        reduce: Output the reduced embedding ``[N, dims, grid, grid]`` (else the tapped maps ``tap1``,
            ``tap2``, ..., which is "the truncated backbone alone" that benchmarks compare against).
    """
    module = _FeatureGraph(model.to("cpu").eval(), reduce=reduce).eval()
    example = torch.zeros(2, model.config.resize + 8, model.config.resize + 24, 3, dtype=torch.uint8)
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
            dynamic_shapes=({0: dynamic, 1: dynamic, 2: dynamic},),
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    proto = program.model_proto
    _rename_dims(proto, {0: "N", 1: "H", 2: "W"})
    _tag_stages(proto)
    return proto


def build_graph(model: AnomalyMethod, **head_options: object) -> onnx.ModelProto:
    """The full fused graph of a fitted model (no metadata yet).

    Args:
        model: A fitted method module.
        head_options: Passed to the method's ``head_graph`` (PaDiM: ``blocks``).
    """
    if not model.fitted:
        raise RuntimeError("fit the model before exporting it")
    proto = trace_features(model, reduce=True)
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
        head_options: Passed to the method's ``head_graph`` (PaDiM: ``blocks``).
        extra_metadata: More metadata keys (see :data:`padim_edge.metadata.KEYS`).
        verify: Called with the staged file before it replaces anything (e.g. a parity check).
    """
    proto = build_graph(model, **(head_options or {}))
    props = {p.key: p.value for p in proto.metadata_props}
    props.update(model_metadata(model, weights=weights, train_images=train_images, extra=extra_metadata))
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = (
        f"{model.method} {model.config.spec.name} exported by padim-edge {__version__}: uint8 NHWC frames "
        "in, anomaly_map and score out."
    )
    return ExportResult(save_model(proto, path, external_data=external_data, verify=verify))
