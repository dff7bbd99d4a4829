"""The model's ``metadata_props``: key names and a typed view of them.

Written by the exporter and the calibrator, read by the runtime. Pure Python, no torch, no onnx.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

#: Marks a file as a padim-edge model; its value is the format version of the metadata below.
FORMAT_KEY = "padim_edge.format"
FORMAT_VERSION = "1"

#: Keys every padim-edge model carries (``padim_edge.`` prefix keeps them apart from other tools').
KEYS = (
    "version",  # toolkit version that wrote the file
    "backbone",  # r18 | wr50 | mnv2
    "dims",  # channels kept after the random reduction
    "channels",  # channels before the reduction
    "resize",  # square resize edge before the crop
    "crop",  # center crop edge = anomaly map edge
    "feature_size",  # patch grid edge (crop / stride of the first tap)
    "sigma",  # Gaussian blur sigma on the anomaly map
    "weights",  # imagenet | sha256:<hex> of a state_dict file | random-init
    "seed",  # seed of the channel subset
    "channel_indices",  # JSON list of the kept channels, in embedding order
    "train_images",  # number of images the Gaussians were fitted on
    "created",  # ISO-8601 UTC creation time
)
PREFIX = "padim_edge."


@dataclass(frozen=True)
class ModelInfo:
    """What a padim-edge model says about itself.

    Attributes:
        backbone: Backbone name (``r18``, ``wr50``, ``mnv2``).
        dims: Embedding channels kept.
        resize: Square resize edge applied to every input frame.
        crop: Center-crop edge; anomaly maps are ``crop x crop``.
        weights: Identity of the backbone weights.
        train_images: Number of normal images the model was fitted on.
        threshold: Decision threshold baked by ``padim-calibrate``, if any.
        precision: ``fp32``, ``int8`` or ``fp16`` (backbone arithmetic).
        raw: Every metadata property, as strings.
    """

    backbone: str
    dims: int
    resize: int
    crop: int
    weights: str
    train_images: int
    threshold: float | None = None
    precision: str = "fp32"
    raw: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def random_init(self) -> bool:
        """Whether the backbone had random (untrained) weights: fine for latency, not for accuracy."""
        return self.weights == "random-init"


class NotAPadimModelError(ValueError):
    """The file is a valid ONNX model, but not one padim-edge wrote."""


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
    missing = [
        k
        for k in ("backbone", "dims", "resize", "crop", "weights", "train_images")
        if PREFIX + k not in props
    ]
    if missing:
        raise NotAPadimModelError(f"{source}: padim-edge metadata is incomplete, missing {missing}")

    def get(key: str) -> str:
        return props[PREFIX + key]

    threshold = props.get(PREFIX + "threshold")
    return ModelInfo(
        backbone=get("backbone"),
        dims=int(get("dims")),
        resize=int(get("resize")),
        crop=int(get("crop")),
        weights=get("weights"),
        train_images=int(get("train_images")),
        threshold=float(threshold) if threshold is not None else None,
        precision=props.get(PREFIX + "precision", "fp32"),
        raw=dict(props),
    )


def encode(values: dict[str, object]) -> dict[str, str]:
    """Turn ``{key: value}`` into prefixed string properties (lists and dicts as JSON)."""
    out = {FORMAT_KEY: FORMAT_VERSION}
    for key, value in values.items():
        out[PREFIX + key] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return out
