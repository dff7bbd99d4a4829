"""The model's ``metadata_props``: the key table and a typed view of them.

Written by the exporter and the calibrator, read by the runtime, benchmarks and reports. Every key a
padim-edge model may carry is a row of :data:`KEYS`; :func:`encode` refuses any other, so a key
cannot be misspelt in one module and read under another name elsewhere. Pure Python, no torch, no onnx.
"""

from __future__ import annotations

import json
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
    """One line for a fidelity report (:attr:`ModelInfo.fidelity`), ``LOW FIDELITY: ...`` when it is low.

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
    return "LOW FIDELITY: " + text if record.get("low") else text


def parse(props: dict[str, str], *, source: str = "model") -> ModelInfo:
    """Build a :class:`ModelInfo` from raw metadata properties.

    Args:
        props: ``metadata_props`` as a dict of strings.
        source: Name used in error messages (usually the file path).

    Raises:
        NotAPadimModelError: The properties lack the padim-edge marker or a required key.
    """
    if FORMAT_KEY not in props:
        raise NotAPadimModelError(
            f"{source} is an ONNX model but not a padim-edge model (no '{FORMAT_KEY}' metadata); "
            "export one with `padim-export`."
        )
    missing = [name for name, key in KEYS.items() if key.required and PREFIX + name not in props]
    if missing:
        raise NotAPadimModelError(f"{source}: padim-edge metadata is incomplete, missing {missing}")

    def get(name: str, default: Any = None) -> Any:
        text = props.get(PREFIX + name)
        return default if text is None else KEYS[name].decode(text)

    size = get("input_size")
    return ModelInfo(
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
