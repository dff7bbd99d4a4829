"""A ``padim-calibrate`` request's options, resolved and checked before any work starts.

Each check raises :class:`~padim_edge.calibration.errors.CalibrationError` with one line naming the flag
and how to fix it; :mod:`padim_edge.calibration.pipeline` runs them first.
"""

from __future__ import annotations

from pathlib import Path

from padim_edge.atomic import OutputError, check_free_space, check_output_file
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.formats import VARIANTS, Variant, combine
from padim_edge.calibration.modelio import SourceModel
from padim_edge.calibration.scoring import normal_images
from padim_edge.onnx_files import initializer_bytes


def check_request(
    source: SourceModel,
    variant: Variant,
    output: Path,
    *,
    data: Path | None,
    target_fpr: float | None,
    labeled: Path | None,
) -> None:
    """Refuse a request that cannot work, before anything is built.

    Raises:
        CalibrationError: Two threshold modes, a bad ``--output``, too little disk space, a source that is
            already of the variant's precision, or a variant that needs ``--data`` / ``--labeled`` without.
    """
    if target_fpr is not None and labeled is not None:
        raise CalibrationError(
            "--target-fpr and --labeled choose the threshold in two different ways: pass one of them"
        )
    if output.resolve() == source.path.resolve():
        raise CalibrationError(
            f"--output {output} is the input model; write the calibrated model to a new file"
        )
    if output.suffix != ".onnx":
        raise CalibrationError(f"--output must end in .onnx, got {output}")
    try:
        check_output_file(output, what="--output")
        # the variant is at most the source's size: refuse now rather than after the calibration
        check_free_space(output.parent, initializer_bytes(source.proto), what=f"the {variant.name} model")
    except OutputError as exc:
        raise CalibrationError(str(exc)) from exc
    if variant.precision is not None and source.info.precision != "fp32":
        raise CalibrationError(
            f"{source.path} is already {source.info.precision}; make the {variant.name} variant from the "
            "float32 model" + source_hint(source)
        )
    if variant.head_precision is not None and source.info.head_precision == variant.head_precision:
        raise CalibrationError(
            f"{source.path} already has a {variant.head_precision} head; choose another --head-precision"
        )
    wants_threshold = variant.always_threshold or target_fpr is not None or labeled is not None
    if variant.needs_calibration_images and data is None:
        raise CalibrationError(f"{variant.name} calibrates on normal images: pass --data DIR")
    if wants_threshold and labeled is None and data is None:
        raise CalibrationError(
            "choosing a threshold needs images: --data DIR (held-out defect-free images, for --target-fpr) "
            "or --labeled ROOT (MVTec test folders, for the F1-optimal threshold)"
        )


def source_hint(source: SourceModel) -> str:
    """`` (it came from X.onnx)`` for a model derived from a float32 file, else empty."""
    ancestor = source.info.get("source_model")
    return f" (it came from {ancestor['file']})" if ancestor else ""


def resolve_variant(variant: str | Variant) -> Variant:
    """A row of :data:`VARIANTS`, or two joined by ``+`` (``int8-qoperator+head-int8``).

    Raises:
        CalibrationError: An unknown name, or two rows that do not combine.
    """
    if isinstance(variant, Variant):
        return variant
    rows = [VARIANTS.get(name) for name in variant.split("+")]
    if any(row is None for row in rows) or len(rows) > 2:
        raise CalibrationError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return rows[0] if len(rows) == 1 else combine(rows[0], rows[1])  # type: ignore[arg-type]


def refit_options(
    row: Variant, refit: bool | None, refit_data: str | Path | None, float_convs: int | None
) -> tuple[bool, list[Path]]:
    """Whether to refit the Gaussians, and on which images (``refit_data``'s; empty: ``--data``'s).

    Raises:
        CalibrationError: A refit / float-conv option for a variant without an INT8 backbone, ``--refit-data``
            with ``--no-refit``, or a bad folder.
    """
    if row.quant_format is None:
        for name, value in (
            ("--refit/--no-refit", refit),
            ("--refit-data", refit_data),
            ("--float-convs", float_convs),
        ):
            if value is not None:
                raise CalibrationError(f"{name} applies to --int8 only")
        return False, []
    if float_convs is not None and float_convs < 0:
        raise CalibrationError(f"--float-convs must be >= 0, got {float_convs}")
    refit = row.refit if refit is None else refit
    if refit_data is None:
        return refit, []
    if not refit:
        raise CalibrationError("--refit-data gives the refit's images: drop --no-refit")
    paths = normal_images(refit_data, what="--refit-data")
    if len(paths) < 2:
        raise CalibrationError(
            f"refitting the Gaussians needs at least 2 images in {refit_data}, found {len(paths)}"
        )
    return refit, paths
