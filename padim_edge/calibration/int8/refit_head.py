"""The INT8 variants' refit step: the head re-estimated on the INT8 backbone's own embeddings.

PaDiM's Gaussians (:func:`padim_edge.calibration.int8.refit.refit_gaussians`) or PatchCore's memory bank
(:func:`padim_edge.calibration.int8.refit.refit_bank`), whichever the model's method has, recorded in the
variant's metadata, summary lines and warnings. :mod:`padim_edge.calibration.formats` calls
:func:`refit_head` after quantising the backbone, unless the request turns the refit off.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from padim_edge.calibration.int8 import refit

if TYPE_CHECKING:
    from padim_edge.calibration.variant_build import BuildRequest, Built


def refit_head(built: Built, request: BuildRequest, fmt: str) -> None:
    """Refit ``built``'s head through its INT8 backbone (format ``fmt``), in place.

    The images are the request's ``refit_images``, else its calibration images; fewer than the float32
    fit had gives a warning (the method's own consequence and the fix).
    """
    images = request.refit_images or request.calibration_images
    fitted = refit.train_images(built.proto)
    if refit.method_of(built.proto) == "patchcore":
        used, consequence = _bank(built, request, fmt, images)
    else:
        used, consequence = _gaussians(built, request, fmt, images)
    if fitted is not None and used < fitted:
        built.warnings.append(
            f"the {consequence[0]} {used} images, fewer than the {fitted} the float32 fit used"
            f"{consequence[1]}; pass --refit-data with the training images"
        )


def _gaussians(
    built: Built, request: BuildRequest, fmt: str, images: list[Path]
) -> tuple[int, tuple[str, str]]:
    """PaDiM: means and covariances re-estimated (``gaussians`` metadata)."""
    result = refit.refit_gaussians(built.proto, images, progress=request.progress, size=request.input_size)
    built.props["gaussians"] = {
        "source": "refit",
        "backbone": f"int8-{fmt}",
        "images": result.images,
        "float_convs": built.props["float_convs"],
        "epsilon": refit.EPSILON,
    }
    built.details.append(
        f"gaussians     head refitted on {result.images} images through the INT8 backbone "
        f"(Sigma + {refit.EPSILON:g} I, {result.precision} head)"
    )
    return result.images, (
        "head was refitted on",
        ": a covariance from fewer images overstates distances and can rank images worse than no refit "
        "(on MobileNetV2 / magnetic tile, dims 32: 20 images lost 0.10 Spearman, 40 lost none)",
    )


def _bank(built: Built, request: BuildRequest, fmt: str, images: list[Path]) -> tuple[int, tuple[str, str]]:
    """PatchCore: the memory bank selected again (``bank_size``, ``coreset_selection`` metadata)."""
    result = refit.refit_bank(built.proto, images, progress=request.progress, size=request.input_size)
    old, new = result.rows
    built.props["bank_size"] = new
    built.props["coreset_selection"] = {**result.selection, "backbone": f"int8-{fmt}"}
    built.details.append(
        f"memory bank   reselected from {result.images} images through the INT8 backbone: {new} vectors "
        f"(was {old}), {result.precision} bank"
    )
    return result.images, (
        "memory bank was reselected from",
        f" ({new} vectors instead of {old}): normal patches missing from the bank score as anomalies",
    )
