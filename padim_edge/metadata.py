"""The model's ``metadata_props``: the key table and a typed view of them.

Written by the exporter and the calibrator, read by the runtime, benchmarks and reports. Every key a
padim-edge model may carry is a row of :data:`KEYS`; :func:`encode` refuses any other, so a key
cannot be misspelt in one module and read under another name elsewhere.

Every key is validated once, when a model is read (:func:`parse`): its type, its range and, given the
graph's outputs, its agreement with the graph (:func:`check_graph`). A hand-edited or corrupted value
is refused there with one line naming the key and the file (:class:`MetadataError`), not later with a
traceback where it is first used. Pure Python, no torch, no onnx.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Marks a file as a padim-edge model; its value is the format version of the metadata below.
FORMAT_KEY = "padim_edge.format"
FORMAT_VERSION = "1"
#: Every other key is stored with this prefix, to keep it apart from other tools' properties.
PREFIX = "padim_edge."


@dataclass(frozen=True)
class Key:
    """One metadata property.

    Attributes:
        name: Key without the prefix.
        kind: How the string value decodes: ``str``, ``int``, ``float`` or ``json``.
        description: What it records.
        required: Every padim-edge model has it.
    """

    name: str
    kind: str
    description: str
    required: bool = False

    def decode(self, text: str) -> Any:
        """The typed value of a stored string."""
        if self.kind == "int":
            return int(text)
        if self.kind == "float":
            return float(text)
        if self.kind == "json":
            return json.loads(text)
        return text


KEYS: dict[str, Key] = {
    key.name: key
    for key in (
        # what the model is
        Key("version", "str", "padim-edge version that wrote the file", required=True),
        Key("method", "str", "padim (per-patch Gaussians) or patchcore (coreset memory bank)"),
        Key("backbone", "str", "r18 | wr50 | mnv2", required=True),
        Key(
            "dims",
            "int",
            "embedding channels (PaDiM: kept after the random reduction; PatchCore: after channel pooling)",
            required=True,
        ),
        Key("channels", "int", "channels of the tapped maps before the reduction"),
        Key("taps", "json", "backbone modules the embedding is built from, when not the row's three"),
        Key("resize", "int", "square resize edge applied to every frame", required=True),
        Key("crop", "int", "center-crop edge = anomaly-map edge", required=True),
        Key("feature_size", "int", "patch grid edge (crop / stride of the first tap)"),
        Key("sigma", "float", "Gaussian blur sigma of the anomaly map"),
        Key("weights", "str", "imagenet:<enum> | sha256:<state_dict file> | random-init", required=True),
        Key("seed", "int", "seed of the channel subset and of a random-init backbone"),
        Key("reduction", "str", "PaDiM: select (random channel subset) or orthogonal (random projection)"),
        Key("channel_indices", "json", "the kept channels, in embedding order (PaDiM's select reduction)"),
        Key("train_images", "int", "normal images the model was fitted on", required=True),
        Key("train_scores", "json", "scores of training images: count, p50, p99, max, map_p50"),
        Key(
            "skipped_images",
            "json",
            "training images that could not be decoded and were left out (--skip-unreadable): file, reason",
        ),
        # PatchCore
        Key("coreset", "float", "PatchCore: fraction of the training patch features kept in the bank"),
        Key("bank_size", "int", "PatchCore: memory-bank vectors in the graph"),
        Key("neighbours", "int", "PatchCore: b, bank neighbours of m* in the re-weighted image score"),
        Key(
            "projection_dims", "int", "PatchCore: Johnson-Lindenstrauss dims of the greedy coreset selection"
        ),
        Key(
            "coreset_selection",
            "json",
            "PatchCore: training patch vectors, how they were reduced (exact | streaming: chunk, oversample)",
        ),
        Key("created", "str", "ISO-8601 UTC creation time"),
        # how the graph computes
        Key("precision", "str", "backbone arithmetic: fp32 | int8 | fp16"),
        Key("head_precision", "str", "head constants and arithmetic: fp32 | fp16 | int8"),
        Key("opset", "int", "ONNX opset of the default domain"),
        Key("ir_version", "int", "ONNX IR version of the file"),
        Key("target", "str", "default (any onnxruntime EP) | tensorrt (fixed input size, no antialias op)"),
        Key("input_size", "json", "[H, W] the graph is built for (tensorrt target); absent: any size"),
        Key("external_data", "json", "the .onnx.data file: file name, bytes, sha256"),
        # calibration
        Key("quant_format", "str", "INT8 format: qoperator | qdq"),
        Key("calibration_images", "int", "frames the INT8 activation ranges were measured on"),
        Key("calibration_method", "str", "how INT8 activation ranges were chosen"),
        Key("float_convs", "int", "INT8: the backbone's first Conv nodes kept float32"),
        Key(
            "gaussians",
            "json",
            "how the head's statistics were (re)fitted for this variant: source fit | refit, backbone, "
            "images, float_convs",
        ),
        Key("fidelity", "json", "variant vs float32 on held-out normal frames (rank correlation, map error)"),
        Key("source_model", "json", "the float32 model a variant was made from: file, sha256"),
        Key("calibrated", "str", "ISO-8601 UTC time of the last padim-calibrate run"),
        Key("calibrated_with", "str", "padim-edge version of the last padim-calibrate run"),
        Key("threshold", "float", "decision threshold: is_anomalous = score > threshold"),
        Key("threshold_method", "str", "target-fpr | f1"),
        Key("threshold_target_fpr", "float", "requested false-positive rate"),
        Key("threshold_images", "int", "normal images the threshold was chosen on"),
        Key("threshold_fpr", "float", "false-positive rate on those images"),
        Key("threshold_precision", "float", "precision on the labelled images (f1)"),
        Key("threshold_recall", "float", "recall on the labelled images (f1)"),
        Key(
            "threshold_data",
            "json",
            "fingerprints (SHA-256 prefixes of the files) of the images the threshold was chosen on, so "
            "padim-eval can warn when it evaluates them",
        ),
    )
}
#: Keys describing a baked threshold (removed together when a variant drops it).
THRESHOLD_KEYS = tuple(name for name in KEYS if name.startswith("threshold"))


def prop(name: str) -> str:
    """The stored property name of a key: ``threshold`` -> ``padim_edge.threshold``.

    Raises:
        KeyError: ``name`` is not in :data:`KEYS`.
    """
    if name not in KEYS:
        raise KeyError(f"unknown padim-edge metadata key {name!r}; add it to padim_edge.metadata.KEYS")
    return PREFIX + name


def _text(value: object) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, tuple)) else str(value)


def encode(values: dict[str, object]) -> dict[str, str]:
    """``{key: value}`` -> stored string properties (lists and dicts as JSON), with the format marker.

    Raises:
        KeyError: A key that is not in :data:`KEYS`.
    """
    out = {FORMAT_KEY: FORMAT_VERSION}
    out.update({prop(key): _text(value) for key, value in values.items()})
    return out


def encode_updates(values: dict[str, object | None]) -> dict[str, str | None]:
    """Like :func:`encode`, for edits: a ``None`` value means "remove this key"; no format marker."""
    return {prop(key): None if value is None else _text(value) for key, value in values.items()}


class NotAPadimModelError(ValueError):
    """The file is a valid ONNX model, but not one padim-edge wrote."""


class MetadataError(NotAPadimModelError):
    """A padim-edge model whose metadata holds a malformed value, or one that contradicts its graph.

    A subclass of :class:`NotAPadimModelError`, so every reader that refuses a foreign model with one
    line refuses a hand-edited one the same way.
    """


def _positive_int(value: Any) -> str | None:
    return None if value >= 1 else "must be at least 1"


def _non_negative_int(value: Any) -> str | None:
    return None if value >= 0 else "must not be negative"


def _positive_float(value: Any) -> str | None:
    return None if value > 0 else "must be a positive number"


def _non_negative_float(value: Any) -> str | None:
    return None if value >= 0 else "must not be negative"


def _fraction(value: Any) -> str | None:
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def _coreset(value: Any) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1]"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a JSON object"


def _list(value: Any) -> str | None:
    return None if isinstance(value, list) else "must be a JSON list"


def _train_scores(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(_is_number(v) for v in value.values()):
        return "must be a JSON object of finite numbers (count, p50, p99, max, map_p50)"
    return None


def _input_size(value: Any) -> str | None:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v >= 1 for v in value)):
        return "must be a JSON list [H, W] of two positive integers"
    return None


def _names(value: Any) -> str | None:
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        return "must be a non-empty JSON list of module names"
    return None


def _indices(value: Any) -> str | None:
    if not (isinstance(value, list) and value and all(_is_int(v) and v >= 0 for v in value)):
        return "must be a non-empty JSON list of channel numbers"
    return None


_SHA256 = re.compile(r"[0-9a-f]{64}")


def external_data_problem(record: Any) -> str | None:
    """What is wrong with an ``external_data`` record (``{file, bytes, sha256}``), or ``None``.

    ``file`` must be a plain file name: the data file lives beside its model, never in another folder.
    """
    if not isinstance(record, dict):
        return "must be a JSON object {file, bytes, sha256}"
    missing = [name for name in ("file", "bytes", "sha256") if name not in record]
    if missing:
        return (
            f"lacks {', '.join(repr(m) for m in missing)} (it must be a JSON object {{file, bytes, sha256}})"
        )
    name = record["file"]
    if not isinstance(name, str) or not name:
        return "has a 'file' that is not a file name"
    if name in (".", "..") or "/" in name or "\\" in name or re.match(r"[A-Za-z]:", name):
        return (
            f"names the data file {name!r}, which is outside the model's folder (a model's data file "
            "must sit beside it)"
        )
    if not _is_int(record["bytes"]) or record["bytes"] < 0:
        return "has a 'bytes' that is not a byte count"
    if not isinstance(record["sha256"], str) or not _SHA256.fullmatch(record["sha256"]):
        return "has a 'sha256' that is not a hex SHA-256"
    return None


#: Value checks beyond the key's type, by key: each returns what is wrong, or ``None``.
CHECKS: dict[str, Callable[[Any], str | None]] = {
    "method": _one_of("padim", "patchcore"),
    "dims": _positive_int,
    "channels": _positive_int,
    "taps": _names,
    "resize": _positive_int,
    "crop": _positive_int,
    "feature_size": _positive_int,
    "sigma": _non_negative_float,
    "reduction": _one_of("select", "orthogonal"),
    "channel_indices": _indices,
    "train_images": _non_negative_int,
    "train_scores": _train_scores,
    "skipped_images": _list,
    "coreset": _coreset,
    "bank_size": _positive_int,
    "neighbours": _positive_int,
    "projection_dims": _positive_int,
    "coreset_selection": _object,
    "precision": _one_of("fp32", "int8", "fp16"),
    "head_precision": _one_of("fp32", "fp16", "int8"),
    "opset": _positive_int,
    "ir_version": _positive_int,
    "target": _one_of("default", "tensorrt"),
    "input_size": _input_size,
    "external_data": external_data_problem,
    "quant_format": _one_of("qoperator", "qdq"),
    "calibration_images": _non_negative_int,
    "float_convs": _non_negative_int,
    "gaussians": _object,
    "fidelity": _object,
    "source_model": _object,
    "threshold": _positive_float,
    "threshold_method": _one_of("target-fpr", "f1"),
    "threshold_target_fpr": _fraction,
    "threshold_images": _non_negative_int,
    "threshold_fpr": _fraction,
    "threshold_precision": _fraction,
    "threshold_recall": _fraction,
    "threshold_data": _list,
}
_TYPE_PROBLEMS = {"int": "is not an integer", "float": "is not a number"}


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _refuse(source: str, name: str, text: str | None, problem: str) -> MetadataError:
    value = "" if text is None else f" = {_shown(text)}"
    return MetadataError(
        f"{source}: metadata key {PREFIX}{name}{value} {problem}; re-export or re-calibrate the model, or "
        "restore the value padim-edge wrote"
    )


def decode_all(props: Mapping[str, str], *, source: str = "model") -> dict[str, Any]:
    """Decode and check every padim-edge key present in ``props``: ``{name: typed value}``.

    Keys this version does not know (written by a newer padim-edge) are left out, not refused.

    Raises:
        MetadataError: A value that does not decode as its key's type (``dims=abc``, JSON that does not
            parse, a float that is ``nan``), is out of range, or contradicts another key (``crop``
            larger than ``resize``, ``channel_indices`` not ``dims`` long). Names the key and ``source``.
    """
    values: dict[str, Any] = {}
    for name, key in KEYS.items():
        text = props.get(PREFIX + name)
        if text is None:
            continue
        try:
            value = key.decode(text)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            problem = _TYPE_PROBLEMS.get(key.kind, f"is not valid JSON ({getattr(exc, 'msg', exc)})")
            raise _refuse(source, name, text, problem) from exc
        if key.kind == "float" and not math.isfinite(value):
            raise _refuse(source, name, text, "is not a finite number")
        check = CHECKS.get(name)
        problem = check(value) if check is not None else None
        if problem:
            raise _refuse(source, name, text, problem)
        values[name] = value
    if "crop" in values and "resize" in values and values["crop"] > values["resize"]:
        raise _refuse(source, "crop", props[PREFIX + "crop"], f"is larger than resize {values['resize']}")
    indices = values.get("channel_indices")
    if indices is not None and "dims" in values and len(indices) != values["dims"]:
        problem = f"lists {len(indices)} channels but dims is {values['dims']}"
        raise _refuse(source, "channel_indices", None, problem)
    if indices is not None and "channels" in values and max(indices) >= values["channels"]:
        problem = f"lists channel {max(indices)} but the backbone taps have {values['channels']}"
        raise _refuse(source, "channel_indices", None, problem)
    return values


def check_graph(
    info: ModelInfo, outputs: Mapping[str, Sequence[int | str | None] | None], *, source: str = "model"
) -> None:
    """Check the metadata against the graph it describes (its outputs' names and shapes).

    Args:
        info: The parsed metadata.
        outputs: ``{output name: shape}`` of the graph (``session.get_outputs()``, or the ONNX graph's);
            a shape lists ints, symbolic names or ``None`` per axis.
        source: Name used in error messages (usually the file path).

    Raises:
        MetadataError: A ``threshold`` key on a graph without the ``is_anomalous`` output (nothing
            would compute the decision it describes: every image would be labelled normal), or a
            ``crop`` that is not the edge of the graph's anomaly map. (A graph with the output and no
            key is accepted: its decision comes from the graph.)
    """
    from padim_edge import graph_names  # pure Python; keeps the table above importable on its own

    flagged = graph_names.IS_ANOMALOUS in outputs
    text = info.raw.get(PREFIX + "threshold")
    if info.threshold is not None and not flagged:
        raise _refuse(
            source,
            "threshold",
            text,
            f"is set but the graph has no {graph_names.IS_ANOMALOUS} output (a threshold is baked into the "
            "graph by padim-calibrate, not by editing the metadata)",
        )
    shape = outputs.get(graph_names.ANOMALY_MAP)
    edges = [d for d in list(shape or [])[-2:] if isinstance(d, int) and not isinstance(d, bool) and d > 0]
    if len(edges) == 2 and edges != [info.crop, info.crop]:
        raise _refuse(
            source,
            "crop",
            str(info.crop),
            f"does not match the graph, whose {graph_names.ANOMALY_MAP} is {edges[0]}x{edges[1]}",
        )


@dataclass(frozen=True)
class ModelInfo:
    """What a padim-edge model says about itself.

    Attributes:
        backbone: Backbone name (``r18``, ``wr50``, ``mnv2``).
        dims: Embedding channels.
        resize: Square resize edge applied to every input frame.
        crop: Center-crop edge; anomaly maps are ``crop x crop``.
        weights: Identity of the backbone weights.
        train_images: Number of normal images the model was fitted on.
        method: ``padim`` or ``patchcore``.
        threshold: Decision threshold baked by ``padim-calibrate``, if any.
        precision: ``fp32``, ``int8`` or ``fp16`` (backbone arithmetic).
        head_precision: ``fp32``, ``fp16`` or ``int8`` (the method head's constants and arithmetic).
        target: ``default`` or ``tensorrt``.
        input_size: ``(H, W)`` the graph is fixed to, or ``None`` for any size.
        raw: Every metadata property, as strings.
    """

    backbone: str
    dims: int
    resize: int
    crop: int
    weights: str
    train_images: int
    method: str = "padim"
    threshold: float | None = None
    precision: str = "fp32"
    head_precision: str = "fp32"
    target: str = "default"
    input_size: tuple[int, int] | None = None
    raw: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def random_init(self) -> bool:
        """Whether the backbone had random (untrained) weights: fine for latency, not for accuracy."""
        return self.weights == "random-init"

    def get(self, name: str, default: Any = None) -> Any:
        """The typed value of any key in :data:`KEYS`, or ``default`` when the model lacks it."""
        text = self.raw.get(prop(name))
        return default if text is None else KEYS[name].decode(text)

    @property
    def fidelity(self) -> dict[str, Any] | None:
        """``padim-calibrate``'s fidelity report (this variant vs the model it was made from), or ``None``.

        Keys (see :mod:`padim_edge.calibration.fidelity`): ``reference``, ``source``, ``frames``,
        ``device``, ``synthetic_image_auroc`` / ``synthetic_pixel_auroc`` (``[reference, variant]`` on
        held-out frames with pasted defects, or ``None``), ``spearman``, ``map_error_median``,
        ``map_error_worst``, ``score_ratio_median``, ``image_auroc`` / ``pixel_auroc`` (``[reference,
        variant]`` or ``None``), ``min_spearman``, ``max_map_error``, the ``max_*_drop`` limits, ``low``
        and ``error`` (why the variant could not be measured, else ``None``).
        """
        value = self.get("fidelity")
        return value if isinstance(value, dict) else None

    @property
    def description(self) -> str:
        """One line: ``padim r18, dims 100, crop 224, fp32 backbone / int8 head``."""
        head = f" / {self.head_precision} head" if self.head_precision != "fp32" else ""
        size = f", input {self.input_size[0]}x{self.input_size[1]}" if self.input_size else ""
        return (
            f"{self.method} {self.backbone}, dims {self.dims}, crop {self.crop}, "
            f"{self.precision} backbone{head}{size}"
        )


def _figure(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def fidelity_summary(record: dict[str, Any]) -> str:
    """One line for a fidelity report (:attr:`ModelInfo.fidelity`), led by its verdict when it is not ok.

    Example: ``synthetic-defect image AUROC 0.9412 -> 0.9388, synthetic-defect pixel AUROC 0.9650 ->
    0.9641, Spearman 0.9980, map error median 0.012 (worst 0.031), score ratio 1.004 (vs r18.onnx
    (fp32 backbone / fp32 head), 45 frames: held-out split of --data)``.
    """
    reference, source = record.get("reference", "?"), record.get("source", "?")
    where = f"vs {reference}, {record.get('frames', 0)} frames: {source}"
    if record.get("error"):
        return f"NOT MEASURED: {record['error']} ({where})"
    text = ""
    for name in ("synthetic_image_auroc", "synthetic_pixel_auroc"):
        pair = record.get(name)
        if pair:
            kind = name.split("_")[1]
            text += f"synthetic-defect {kind} AUROC {_figure(pair[0], 4)} -> {_figure(pair[1], 4)}, "
    text += (
        f"Spearman {_figure(record.get('spearman'), 4)}, map error median "
        f"{_figure(record.get('map_error_median'))} (worst {_figure(record.get('map_error_worst'))}), score "
        f"ratio {_figure(record.get('score_ratio_median'))}"
    )
    for name in ("image_auroc", "pixel_auroc"):
        pair = record.get(name)
        if pair:
            text += f", {name.replace('_', ' ')} {_figure(pair[0])} -> {_figure(pair[1])}"
    text += f" ({where})"
    if record.get("low"):
        return "LOW FIDELITY: " + text
    if record.get("verdict") == "not enough evidence":
        return "NOT ENOUGH EVIDENCE: " + text
    return text


def parse(
    props: Mapping[str, str],
    *,
    source: str = "model",
    outputs: Mapping[str, Sequence[int | str | None] | None] | None = None,
) -> ModelInfo:
    """Build a :class:`ModelInfo` from raw metadata properties, every key checked (:func:`decode_all`).

    Args:
        props: ``metadata_props`` as a dict of strings.
        source: Name used in error messages (usually the file path).
        outputs: The graph's ``{output name: shape}``; given, the metadata is also checked against the
            graph (:func:`check_graph`).

    Raises:
        NotAPadimModelError: The properties lack the padim-edge marker or a required key.
        MetadataError: A key's value is malformed, out of range or contradicts the graph.
    """
    if FORMAT_KEY not in props:
        raise NotAPadimModelError(
            f"{source} is an ONNX model but not a padim-edge model (no '{FORMAT_KEY}' metadata); "
            "export one with `padim-export`."
        )
    if props[FORMAT_KEY] != FORMAT_VERSION:
        raise MetadataError(
            f"{source}: metadata key {FORMAT_KEY} = {_shown(props[FORMAT_KEY])} is not format "
            f"{FORMAT_VERSION}, the one this padim-edge reads; use the padim-edge version that wrote it"
        )
    missing = [name for name, key in KEYS.items() if key.required and PREFIX + name not in props]
    if missing:
        raise NotAPadimModelError(f"{source}: padim-edge metadata is incomplete, missing {missing}")
    values = decode_all(props, source=source)

    def get(name: str, default: Any = None) -> Any:
        return values.get(name, default)

    size = get("input_size")
    info = ModelInfo(
        backbone=get("backbone"),
        dims=get("dims"),
        resize=get("resize"),
        crop=get("crop"),
        weights=get("weights"),
        train_images=get("train_images"),
        method=get("method", "padim"),
        threshold=get("threshold"),
        precision=get("precision", "fp32"),
        head_precision=get("head_precision", "fp32"),
        target=get("target", "default"),
        input_size=(int(size[0]), int(size[1])) if size else None,
        raw=dict(props),
    )
    if outputs is not None:
        check_graph(info, outputs, source=source)
    return info
