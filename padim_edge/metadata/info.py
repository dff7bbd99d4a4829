"""The typed view of a model's metadata (:class:`ModelInfo`) and :func:`parse`, which builds it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from padim_edge.metadata.keys import FORMAT_KEY, FORMAT_VERSION, KEYS, PREFIX, prop
from padim_edge.metadata.validation import MetadataError, NotAPadimModelError, _shown, check_graph, decode_all


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
