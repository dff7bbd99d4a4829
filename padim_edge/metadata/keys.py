"""The metadata key table and its string encoding: every key a padim-edge model may carry.

Every key is a row of :data:`KEYS`; :func:`prop`, :func:`encode` and :func:`encode_updates` refuse any
other, so a key cannot be misspelt in one module and read under another name elsewhere. Pure Python.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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
