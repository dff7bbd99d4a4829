"""What a variant's build function takes and returns: :class:`BuildRequest` and :class:`Built`.

Their own module, below both :mod:`padim_edge.calibration.formats` (the variant table, whose build
functions use them) and the build steps it calls (:mod:`padim_edge.calibration.int8.refit_head`), so the
steps need not import the table. Standard library only at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from padim_edge.calibration import int8


@dataclass
class Built:
    """What a variant's build function returns.

    Attributes:
        proto: The model (without decision outputs; the pipeline bakes the threshold).
        changed: Whether the graph differs from the input (else its scores are the input's).
        props: Metadata to set (``padim_edge.`` keys without the prefix; ``None`` removes a key).
        details: Lines for the summary.
        warnings: Caveats for the user.
        quantization: The quantisation result, for INT8 variants.
    """

    proto: onnx.ModelProto
    changed: bool
    props: dict[str, object | None] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    quantization: int8.Int8Result | None = None


@dataclass(frozen=True)
class BuildRequest:
    """Inputs a build function may need.

    Attributes:
        calibration_images: INT8 calibration images.
        progress: Show progress bars.
        input_size: ``(H, W)`` of a fixed-size model (TensorRT target): calibration frames are resized
            to it.
        head_blocks: Column blocks of a rewritten head (``None``: as many as it has).
        refit: Refit the head's Gaussians through an INT8 backbone (``None``: the variant's default).
        refit_images: Images of the refit (empty: the calibration images).
        float_convs: Backbone ``Conv`` nodes kept float32 by INT8 (``None``: the variant's default).
    """

    calibration_images: list[Path] = field(default_factory=list)
    progress: bool = True
    input_size: tuple[int, int] | None = None
    head_blocks: int | None = None
    refit: bool | None = None
    refit_images: list[Path] = field(default_factory=list)
    float_convs: int | None = None
