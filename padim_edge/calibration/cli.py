"""``padim-calibrate``: bake a decision threshold, and make INT8 / FP16 variants of a padim-edge model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from padim_edge.calibration import settings
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.formats import VARIANTS, select_variant
from padim_edge.calibration.settings import (
    CALIBRATION_METHOD,
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_TARGET_FPR,
    FORMATS,
)
from padim_edge.cli_options import (
    command_settings,
    device_option,
    head_precision_option,
    model_argument,
    output_option,
    quiet_option,
    threads_option,
)
from padim_edge.extras import MissingExtraError, require
from padim_edge.metadata import fidelity_summary

if TYPE_CHECKING:
    from padim_edge.calibration.pipeline import CalibrationReport

# Light at import (settings, the variant table, stdlib-only modules): --help works with only the base
# install. The pipeline (onnx, onnxruntime.quantization, ...) is imported when a calibration runs.


def _size(n: int) -> str:
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def format_summary(report: CalibrationReport) -> list[str]:
    """The lines ``padim-calibrate`` prints after a run."""
    info = report.source.info
    geometry = (
        f"{info.backbone}, dims {info.dims}, crop {info.crop}, {info.precision} backbone / "
        f"{info.head_precision} head"
    )
    lines = [
        f"model         {report.source.path} ({geometry})",
        f"variant       {report.variant.name}: {report.variant.description}",
    ]
    if report.calibration_images:
        lines.append(
            f"calibration   {report.calibration_images} images, one frame per batch "
            f"(activation ranges: {CALIBRATION_METHOD} of |x|)"
        )
    lines += [f"{d}" for d in report.details]
    choice = report.choice
    if choice is not None:
        if choice.method == "target-fpr":
            lines.append(
                f"threshold     {choice.threshold:.6g} (target FPR {choice.target_fpr:g}: the smallest "
                "threshold with at most that share of normal scores above it)"
            )
            lines.append(
                f"normal FPR    {choice.fpr:.4f}: {choice.false_positives} of {choice.normal_images} "
                f"normal images in {report.threshold_source} above it"
            )
        else:
            lines.append(f"threshold     {choice.threshold:.6g} (F1-optimal on {report.threshold_source})")
            lines.append(
                f"labelled      precision {_ratio(choice.precision)}, recall {_ratio(choice.recall)}, "
                f"F1 {_ratio(choice.f1)} ({choice.true_positives} of {choice.anomalous_images} defective "
                "flagged)"
            )
            lines.append(
                f"normal FPR    {choice.fpr:.4f}: {choice.false_positives} of {choice.normal_images} "
                "good test images above it"
            )
            if report.data_fpr is not None:
                flagged, total = report.data_fpr
                lines.append(
                    f"--data FPR    {flagged / total:.4f}: {flagged} of {total} --data images above it"
                )
        lines.append("outputs       is_anomalous = score > threshold, normalized_score = score / threshold")
    if report.fidelity is not None:
        lines.append(f"fidelity      {fidelity_summary(report.fidelity.record())}")
        if report.fidelity.verdict is not None:
            lines.append(f"verdict       {report.fidelity.verdict_line()}")
    if report.tensorrt is not None:
        lines.append(f"tensorrt      {report.tensorrt}")
    for f in report.files:
        lines.append(f"wrote         {f} ({_size(f.stat().st_size)})")
    from padim_edge.compat.check import tensorrt_lines  # onnx: imported once a calibration ran

    lines += tensorrt_lines(report.output, info.input_size)
    lines.append(f"time          {report.seconds:.1f} s")
    lines += [f"warning: {w}" for w in report.warnings]
    return lines


_VARIANT_TABLE = "\n".join(
    f"  {v.name:<15} -> <model>-{v.suffix}.onnx: {v.description}" for v in VARIANTS.values()
)


@click.command(
    context_settings=command_settings(110),
    epilog="\b\nVariants (one per call):\n" + _VARIANT_TABLE,
)
@model_argument()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Folder of HELD-OUT defect-free images (not the training images: those score low and give a "
    "threshold that flags too much). Scores for --target-fpr, and the INT8 calibration frames.",
)
@output_option(
    "The .onnx to write (plus <name>.onnx.data past 512 MiB of constants). Default: "
    "<model>-<suffix>.onnx beside MODEL.",
)
@click.option(
    "--target-fpr",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    help=f"Share of normal images allowed above the threshold (default {DEFAULT_TARGET_FPR} when a threshold "
    "is chosen). The threshold is the smallest t with at most that share of --data scores > t; images "
    "tied at t are not flagged, so the achieved FPR can be lower. Needs >= 1/FPR images to mean anything "
    "(a warning says so). With --int8/--fp16 it picks the threshold on the new model's own scores.",
)
@click.option(
    "--labeled",
    type=click.Path(path_type=Path),
    help="MVTec-layout ROOT (ROOT/test/good, ROOT/test/<defect>/): choose the F1-optimal threshold on its "
    "test images instead of --target-fpr, and report precision / recall there.",
)
@click.option(
    "--int8",
    "int8_flag",
    is_flag=True,
    help="Static INT8 quantisation of the backbone only (preprocessing, reduction and the Mahalanobis head "
    "stay float32), calibrated on --data frames through the model's own preprocessing; the head's "
    "Gaussians (PatchCore: its memory bank) are then refitted on the INT8 features (see --refit, "
    "--float-convs).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    help="INT8 format (default qoperator): qoperator = QLinearConv, uint8 activations, int8 per-channel "
    "weights, fastest on the CPU EP; qdq = Quantize/DequantizeLinear pairs, symmetric int8, for TensorRT "
    "(on the CPU EP it is no faster than float32).",
)
@click.option(
    "--calibration-images",
    type=int,
    help=f"Most --data images for INT8 calibration, spread evenly over the folder (default "
    f"{DEFAULT_CALIBRATION_IMAGES}; at least 2).",
)
@click.option(
    "--refit/--no-refit",
    default=None,
    help="With --int8 (default: on): re-estimate the Mahalanobis head's means and covariances (+0.01 I, as "
    "the fit) on the INT8 backbone's own embeddings, so Sigma^-1 stops amplifying the int8 noise; "
    "PatchCore: select the memory bank again (same coreset settings) from the INT8 backbone's own patch "
    "features, so test and bank features come from the same backbone (torch-free, onnxruntime on the "
    "CPU). --no-refit keeps the float32 fit's head.",
)
@click.option(
    "--refit-data",
    type=click.Path(path_type=Path),
    help="Folder of the refit's images, ideally the TRAINING images (train/good) the model was fitted "
    "on, all of them used. Default: every --data image (then a threshold chosen on --data is biased low; "
    "a warning says so). Use at least as many images as the fit had: a covariance from few images "
    "overstates every distance, and a PatchCore bank from few images is smaller than the fit's.",
)
@click.option(
    "--float-convs",
    type=click.IntRange(min=0),
    help="With --int8: keep the backbone's first N Conv nodes float32 (default 0: every conv int8). A "
    "lever to try when the fidelity report is LOW; 2 cost 7% of the INT8 speed-up at batch 8 in "
    "benchmarks/int8_accuracy.py and did not improve AUROC beyond the refit there.",
)
@click.option(
    "--fp16",
    "fp16_flag",
    is_flag=True,
    help="Float16 backbone weights and activations for the CUDA / TensorRT EPs; uint8 input and float32 "
    "outputs unchanged, Mahalanobis head float32.",
)
@head_precision_option(
    "Rebuild the Mahalanobis head's Sigma^-1 and MatMul in this precision from the model's own "
    "constants (torch-free; any backbone precision; combines with --int8 / --fp16 in one call). int8: "
    "MatMulInteger, the CPU EP (TensorRT does not import it, CUDA has no uint8 x int8 kernel); fp16: CUDA / "
    "TensorRT EPs; fp32: any EP. "
    "A threshold "
    "asked for is chosen on the new model's scores; an old one is dropped.",
)
@click.option(
    "--head-blocks",
    type=click.IntRange(min=1),
    help="Column blocks of the rewritten head's packed Sigma^-1 (default: as many as the model has). More "
    "blocks store fewer bytes (3: 2/3 of the full matrix, 6: 7/12) in more MatMul calls: 6 pays off at "
    "WR50-Rd550's 550 dims, 3 at 100.",
)
@device_option(
    "Where the threshold scores are computed; use the device you deploy on (INT8 calibration itself "
    "always runs on the CPU EP)."
)
@click.option(
    "--tensorrt-table",
    is_flag=True,
    help="With --int8: also write the TensorRT EP's INT8 calibration table (the backbone activation ranges "
    "measured here) to <output>_tensorrt_calibration/, for running the float32 model with trt_int8_enable.",
)
@click.option(
    "--validate",
    type=click.Path(path_type=Path),
    help="Folder of held-out defect-free images for the fidelity report of --int8/--fp16/--head-precision "
    "(the variant vs the input model, stored in the model's metadata: first the image and pixel AUROC of "
    "these frames with and without a pasted synthetic defect, no labels needed; then Spearman rank "
    "correlation of the scores, map error, score ratio). Default: the good test images of --labeled, else "
    f"a part of --data that INT8 does not calibrate on (FP16 / head: --data). At most {settings.MAX_FRAMES} "
    f"images, spread evenly; fewer than {settings.MIN_FRAMES}: no report. Verdict: LOW FIDELITY when a "
    "synthetic image or pixel AUROC drop is beyond doubt (its 95 % bootstrap interval wholly above "
    f"{settings.MAX_SYNTHETIC_AUROC_DROP}) and the maps moved at least {settings.MIN_LOW_SEPARATION} of the "
    "input model's defect-to-normal gap or the drop is over a third of its margin over chance, or "
    f"(--labeled) the image / pixel AUROC drops by more than {settings.MAX_AUROC_DROP} / "
    f"{settings.MAX_PIXEL_AUROC_DROP}; ok when the intervals rule out a drop past "
    f"{settings.MAX_PLAUSIBLE_DROP} or the maps barely move; otherwise the report says the frames cannot "
    f"tell (fewer than {settings.MIN_VERDICT_FRAMES}, or the input model's own synthetic AUROC near chance) "
    "and how to give it more.",
)
@threads_option(
    "onnxruntime intra-op threads for the scoring passes (threshold, fidelity report); default: all "
    "cores. INT8 calibration itself is not affected.",
)
@quiet_option()
def main(
    model: Path,
    data: Path | None,
    output: Path | None,
    target_fpr: float | None,
    labeled: Path | None,
    int8_flag: bool,
    fmt: str | None,
    calibration_images: int | None,
    refit: bool | None,
    refit_data: Path | None,
    float_convs: int | None,
    fp16_flag: bool,
    head_precision: str | None,
    head_blocks: int | None,
    device: str,
    tensorrt_table: bool,
    validate: Path | None,
    threads: int | None,
    quiet: bool,
) -> None:
    """Calibrate a padim-edge model: bake a decision threshold, or write an INT8 / FP16 / head variant.

    MODEL is a .onnx written by padim-export. Without --int8/--fp16/--head-precision the graph gains two
    outputs, is_anomalous (score > threshold) and normalized_score (score / threshold, 1.0 at the boundary),
    and the threshold goes into the metadata; calibrating again replaces it. The threshold flags at
    most --target-fpr of the --data images, or maximises F1 on --labeled test images.

    Every --int8/--fp16/--head-precision run also compares the new model with MODEL on held-out
    defect-free frames (--validate, see there) and prints a fidelity report with a verdict: ok, LOW
    FIDELITY (a warning) when the variant lost accuracy beyond doubt, "not enough evidence" when the frames
    cannot tell (with how to give it more), NO FIDELITY REPORT when there were too few frames.

    \b
    Examples:
      padim-calibrate model.onnx --data holdout/good -o model-cal.onnx --target-fpr 0.01
      padim-calibrate model.onnx --labeled mvtec/bottle -o model-cal.onnx
      padim-calibrate model.onnx --data train/good --int8 -o model-int8.onnx
      padim-calibrate model.onnx --data holdout/good --refit-data train/good --int8 --target-fpr 0.01
      padim-calibrate model.onnx --data holdout/good --int8 --target-fpr 0.01 -o model-int8.onnx
      padim-calibrate model.onnx --fp16 -o model-fp16.onnx
      padim-calibrate model.onnx --head-precision int8 -o model-head-int8.onnx
      padim-calibrate model.onnx --data holdout/good --int8 --head-precision int8 --target-fpr 0.01
      padim-calibrate model.onnx --data train/good --int8 --validate holdout/good -o model-int8.onnx
    """
    try:  # quantisation and graph rewrites need onnx (+ onnxconverter-common), scoring onnxruntime
        require("padim-calibrate", "calibrate", "runtime")
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from None
    from padim_edge.calibration import fidelity
    from padim_edge.calibration.pipeline import calibrate

    try:
        variant = select_variant(
            int8_flag=int8_flag, fp16_flag=fp16_flag, fmt=fmt, head_precision=head_precision
        )
        if calibration_images is not None and not int8_flag:
            raise CalibrationError("--calibration-images applies to --int8 only")
        if tensorrt_table and not int8_flag:
            raise CalibrationError("--tensorrt-table applies to --int8 only")
        if validate is not None and not fidelity.applies(variant):
            raise CalibrationError("--validate applies to --int8, --fp16 and --head-precision only")
        report = calibrate(
            model,
            output,
            variant=variant,
            data=data,
            target_fpr=target_fpr,
            labeled=labeled,
            calibration_images=DEFAULT_CALIBRATION_IMAGES
            if calibration_images is None
            else calibration_images,
            device=device,
            tensorrt_table=tensorrt_table,
            head_blocks=head_blocks,
            progress=not quiet,
            refit=refit,
            refit_data=refit_data,
            float_convs=float_convs,
            validate=validate,
            threads=threads,
        )
    except CalibrationError as exc:
        raise click.ClickException(str(exc)) from exc
    for line in format_summary(report):
        click.echo(line, err=line.startswith("warning:"))
