"""The output variants of ``padim-calibrate``: one table, one build function per row.

* ``fp32-threshold`` -> ``<stem>-calibrated.onnx``: the graph as it is (any precision) plus the
  baked threshold.
* ``int8-qoperator`` -> ``<stem>-int8.onnx``: backbone QLinearConv / QLinearAdd, uint8 activations,
  int8 per-channel weights (the CPU EP's fast path).
* ``int8-qdq`` -> ``<stem>-int8-qdq.onnx``: backbone Q/DQ pairs, symmetric int8 (what TensorRT takes).
* ``fp16`` -> ``<stem>-fp16.onnx``: backbone weights and activations float16 (CUDA / TensorRT EPs).
* ``head-fp32`` / ``head-fp16`` / ``head-int8`` -> ``<stem>-head-<precision>.onnx``: the Mahalanobis
  head's Sigma^-1 and MatMul (PaDiM), or the memory bank and its nearest-neighbour MatMul (PatchCore),
  rebuilt in that precision from the model's own constants, on any backbone precision
  (:mod:`padim_edge.calibration.head`).

The INT8 rows refit the head on the quantised backbone's own embeddings: PaDiM's Gaussians, or
PatchCore's memory bank (:mod:`padim_edge.calibration.int8.refit_head`; ``refit``, on by default);
``float_convs`` keeps the backbone's first convolutions float32 (0 by default: measured in
``benchmarks/int8_accuracy.py`` on three sets, two float convs cost 7 % of the INT8 speed-up at batch 8
and did not bring AUROC closer to float32 than the
refit alone); a :class:`BuildRequest` may override both. The refit images are
the request's ``refit_images`` (``--refit-data``, ideally the training images; the pipeline's default is
every ``--data`` image), else the calibration images.

A build function takes a :class:`BuildRequest` and returns a :class:`Built`
(:mod:`padim_edge.calibration.variant_build`, their home; importable from here too).

A backbone row and a head row combine into one variant (:func:`combine`: ``int8-qoperator+head-int8``
-> ``<stem>-int8-head-int8.onnx``), built one after the other. :data:`VARIANTS` is the single source of
truth: the CLI, the default file names and the metadata all read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from padim_edge.calibration import settings
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.variant_build import BuildRequest, Built
from padim_edge.naming import variant_file

if TYPE_CHECKING:
    from collections.abc import Callable

    import onnx

# The build functions import onnx and the variant modules (fp16, head, int8, refit) when they run:
# importing this table (the CLI's --help lists it) needs only the standard library.


@dataclass(frozen=True)
class Variant:
    """One row of the variant table.

    Attributes:
        name: Variant name.
        suffix: Appended to the input file's stem for the default output name.
        precision: Backbone precision written to the metadata (``None``: keep the input's). A variant
            that sets it needs a float32 backbone to start from.
        quant_format: INT8 format (``qoperator`` / ``qdq``), else ``None``.
        needs_calibration_images: Whether ``--data`` images calibrate the graph itself.
        always_threshold: Whether the variant exists to bake a threshold (else only on request).
        description: One line for the help and the summary.
        build: The function that makes it.
        head_precision: Head precision it rewrites the Mahalanobis head to (``None``: head unchanged).
            Any backbone precision can start from any other head precision.
        refit: Whether it refits the head's Gaussians through the INT8 backbone by default.
        float_convs: Backbone ``Conv`` nodes it keeps float32 by default (INT8 rows).
    """

    name: str
    suffix: str
    precision: str | None
    quant_format: str | None
    needs_calibration_images: bool
    always_threshold: bool
    description: str
    build: Callable[[onnx.ModelProto, BuildRequest], Built]
    head_precision: str | None = None
    refit: bool = False
    float_convs: int = 0

    def default_output(self, model: Path) -> Path:
        """``<dir>/<stem>-<suffix>.onnx`` beside the input model."""
        return variant_file(model, self.suffix)


def build_threshold_only(proto: onnx.ModelProto, request: BuildRequest) -> Built:
    """``fp32-threshold``: the graph as it is; only the threshold will change."""
    return Built(proto=proto, changed=False)


#: Defaults of the INT8 rows (issue 12): refit the Gaussians; quantise every backbone convolution.
INT8_REFIT = True
INT8_FLOAT_CONVS = 0


def _build_int8(proto: onnx.ModelProto, request: BuildRequest, fmt: str) -> Built:
    from padim_edge.calibration import int8
    from padim_edge.calibration.int8 import refit

    float_convs = INT8_FLOAT_CONVS if request.float_convs is None else request.float_convs
    result = int8.quantize_backbone(
        proto,
        request.calibration_images,
        fmt=fmt,
        progress=request.progress,
        size=request.input_size,
        float_convs=float_convs,
    )
    ops = ", ".join(f"{op} {n}" for op, n in sorted(result.quantized_nodes.items()))
    built = Built(
        proto=result.proto,
        changed=True,
        props={
            "precision": "int8",
            "quant_format": fmt,
            "calibration_images": result.images,
            "calibration_method": settings.CALIBRATION_METHOD,
            "float_convs": len(result.float_convs),
            # PaDiM: the head's Gaussians as fitted on the float32 backbone, unless refitted below
            "gaussians": {"source": "fit", "backbone": "fp32"} if refit.is_padim(proto) else None,
        },
        details=[f"backbone ops  {ops}"],
        warnings=list(result.warnings),
        quantization=result,
    )
    if result.float_convs:
        built.details.append(
            f"float convs   first {len(result.float_convs)} backbone Conv nodes kept float32: "
            + ", ".join(result.float_convs)
        )
    if INT8_REFIT if request.refit is None else request.refit:
        from padim_edge.calibration.int8.refit_head import refit_head

        refit_head(built, request, fmt)
    return built


def build_int8_qoperator(proto: onnx.ModelProto, request: BuildRequest) -> Built:
    """``int8-qoperator``: QLinearConv / QLinearAdd backbone, the fast one on the CPU EP."""
    return _build_int8(proto, request, settings.QOPERATOR)


def build_int8_qdq(proto: onnx.ModelProto, request: BuildRequest) -> Built:
    """``int8-qdq``: QuantizeLinear / DequantizeLinear backbone, what TensorRT consumes."""
    return _build_int8(proto, request, settings.QDQ)


def build_fp16(proto: onnx.ModelProto, request: BuildRequest) -> Built:
    """``fp16``: float16 backbone for the CUDA / TensorRT execution providers."""
    from padim_edge.calibration import fp16

    half, counts = fp16.convert_backbone_fp16(proto)
    ops = ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
    return Built(
        proto=half,
        changed=True,
        props={
            "precision": "fp16",
            "quant_format": None,
            "calibration_images": None,
            "calibration_method": None,
        },
        details=[f"backbone ops  {ops} (float16 between the boundary Casts)"],
    )


def _build_head(precision: str) -> Callable[[onnx.ModelProto, BuildRequest], Built]:
    def build(proto: onnx.ModelProto, request: BuildRequest) -> Built:
        from padim_edge.calibration import head

        details, warnings = head.rewrite(proto, precision, blocks=request.head_blocks)
        return Built(
            proto=proto, changed=True, props={"head_precision": precision}, details=details, warnings=warnings
        )

    build.__doc__ = f"``head-{precision}``: the Mahalanobis head rebuilt with {precision} Sigma^-1."
    return build


_HEAD_DESCRIPTIONS = {
    "fp32": "Mahalanobis head with float32 Sigma^-1 / PatchCore float32 bank (any EP), rebuilt from the "
    "model's own constants",
    "fp16": "Mahalanobis head with float16 Sigma^-1 and MatMul, per-row/column scaled / PatchCore float16 "
    "bank and MatMul, per-vector scaled: CUDA / TensorRT EPs",
    "int8": "Mahalanobis head with int8 Sigma^-1 / PatchCore int8 bank (MatMulInteger, a quarter of the "
    "bytes): the CPU EP (not TensorRT; CUDA runs that node on the CPU)",
}

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            name="fp32-threshold",
            suffix="calibrated",
            precision=None,
            quant_format=None,
            needs_calibration_images=False,
            always_threshold=True,
            description="bake the decision threshold; the graph's arithmetic is unchanged",
            build=build_threshold_only,
        ),
        Variant(
            name="int8-qoperator",
            suffix="int8",
            precision="int8",
            quant_format=settings.QOPERATOR,
            needs_calibration_images=True,
            always_threshold=False,
            description="INT8 backbone, QOperator (QLinearConv, uint8 activations, int8 per-channel "
            "weights): for the CPU EP",
            build=build_int8_qoperator,
            refit=INT8_REFIT,
            float_convs=INT8_FLOAT_CONVS,
        ),
        Variant(
            name="int8-qdq",
            suffix="int8-qdq",
            precision="int8",
            quant_format=settings.QDQ,
            needs_calibration_images=True,
            always_threshold=False,
            description="INT8 backbone, QDQ (symmetric int8 activations, int8 per-channel weights): "
            "for TensorRT / CUDA",
            build=build_int8_qdq,
            refit=INT8_REFIT,
            float_convs=INT8_FLOAT_CONVS,
        ),
        Variant(
            name="fp16",
            suffix="fp16",
            precision="fp16",
            quant_format=None,
            needs_calibration_images=False,
            always_threshold=False,
            description="float16 backbone weights and activations; the rest unchanged: CUDA / TensorRT EPs",
            build=build_fp16,
        ),
        *(
            Variant(
                name=f"head-{precision}",
                suffix=f"head-{precision}",
                precision=None,
                quant_format=None,
                needs_calibration_images=False,
                always_threshold=False,
                description=description,
                build=_build_head(precision),
                head_precision=precision,
            )
            for precision, description in _HEAD_DESCRIPTIONS.items()
        ),
    )
}


def _merge(first: Built, second: Built) -> Built:
    return Built(
        proto=second.proto,
        changed=first.changed or second.changed,
        props={**first.props, **second.props},
        details=first.details + second.details,
        warnings=first.warnings + second.warnings,
        quantization=second.quantization or first.quantization,
    )


def combine(backbone: Variant, head_row: Variant) -> Variant:
    """One variant that builds ``backbone`` (a backbone row) and then ``head_row`` (a ``head-*`` row).

    Raises:
        CalibrationError: ``head_row`` is not a head row, or ``backbone`` is not a backbone row.
    """
    if head_row.head_precision is None or backbone.precision is None:
        raise CalibrationError(
            f"{backbone.name} and {head_row.name} do not combine: one backbone variant and one head precision"
        )

    def build(proto: onnx.ModelProto, request: BuildRequest) -> Built:
        first = backbone.build(proto, request)
        return _merge(first, head_row.build(first.proto, request))

    return Variant(
        name=f"{backbone.name}+{head_row.name}",
        suffix=f"{backbone.suffix}-{head_row.suffix}",
        precision=backbone.precision,
        quant_format=backbone.quant_format,
        needs_calibration_images=backbone.needs_calibration_images,
        always_threshold=False,
        description=f"{backbone.description}; {head_row.description}",
        build=build,
        head_precision=head_row.head_precision,
        refit=backbone.refit,
        float_convs=backbone.float_convs,
    )


def select_variant(
    *, int8_flag: bool, fp16_flag: bool, fmt: str | None, head_precision: str | None = None
) -> Variant:
    """The variant the CLI flags ask for (a backbone row, a head row, or both combined).

    Raises:
        CalibrationError: ``--int8`` with ``--fp16``, ``--format`` without ``--int8``, or an unknown head
            precision.
    """
    if int8_flag and fp16_flag:
        raise CalibrationError("--int8 and --fp16 exclude each other: make one variant per call")
    if fmt is not None and not int8_flag:
        raise CalibrationError("--format applies to --int8 only")
    head_row = None
    if head_precision is not None:
        head_row = VARIANTS.get(f"head-{head_precision}")
        if head_row is None:
            choices = ", ".join(v.head_precision for v in VARIANTS.values() if v.head_precision)
            raise CalibrationError(f"unknown --head-precision {head_precision!r}; choose one of {choices}")
    backbone = None
    if int8_flag:
        fmt = fmt or settings.QOPERATOR
        if fmt not in settings.FORMATS:
            raise CalibrationError(f"unknown --format {fmt!r}; choose one of {', '.join(settings.FORMATS)}")
        backbone = VARIANTS[f"int8-{fmt}"]
    elif fp16_flag:
        backbone = VARIANTS["fp16"]
    if backbone is not None and head_row is not None:
        return combine(backbone, head_row)
    return backbone or head_row or VARIANTS["fp32-threshold"]
