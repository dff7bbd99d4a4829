"""Export-time fidelity report for ``padim-export --head-precision fp16|int8`` (PaDiM).

A reduced-precision head changes only the Mahalanobis head's arithmetic, so its reference is the float32
head of the *same* fit: this module exports that one to a temporary file (``TMPDIR``; its free space is
checked first, and a shortage or a write error leaves the exported model as it is, with a warning
instead of a report), then compares the two with
:func:`padim_edge.calibration.fidelity.measure` (synthetic-defect AUROC, Spearman, map error) on the
training frames (an even spread of at most ``MAX_FRAMES``; the backbone and Gaussians are the same in
both files, so the fit's own frames show the head's error as well as unseen ones would). The report is
stored in the exported model's ``padim_edge.fidelity`` metadata, where ``padim-predict`` and
``PadimModel.info`` show it, exactly as for a ``padim-calibrate`` variant.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from padim_edge.calibration.fidelity import Fidelity
    from padim_edge.export.pipeline import ExportRun

#: Head precisions that get a report: PaDiM's Sigma^-1 or PatchCore's bank in fp16 / int8.
REDUCED = ("fp16", "int8")


def measure_head(
    run: ExportRun,
    output: Path,
    data: Path,
    *,
    head_precision: str | None,
    blocks: int | None = None,
    input_size: tuple[int, int] | None = None,
    progress: bool = False,
) -> tuple[Fidelity | None, list[str]]:
    """Compare the exported model with the float32 head of the same fit and store the report in it.

    Args:
        run: What :func:`padim_edge.export.pipeline.run_export` returned.
        output: The exported ``.onnx`` (rewritten with the report in its metadata).
        data: The training images folder.
        head_precision: The export's ``--head-precision``.
        blocks: The export's ``--blocks``.
        input_size: The TensorRT target's frame size, else ``None``.
        progress: Show progress bars.

    Returns:
        ``(report, warnings)``; ``(None, [])`` when the export has no reduced-precision head.

    Raises:
        CalibrationError: No report could be made (too few frames, or no room in the temporary folder
            for the float32 reference: the message gives the sizes and names ``TMPDIR``).
    """
    if head_precision not in REDUCED:  # fp32 is the reference itself
        return None, []
    from padim_edge import metadata
    from padim_edge.atomic import OutputError, check_free_space
    from padim_edge.calibration import fidelity
    from padim_edge.calibration.errors import CalibrationError
    from padim_edge.calibration.scoring import normal_images
    from padim_edge.export.pipeline import estimated_bytes, export
    from padim_edge.onnx_files import update_props

    plan = fidelity.plan_frames(
        measure=True, calibrates=False, data_paths=normal_images(data), calibration_count=2
    )
    needed = estimated_bytes(run.model, images=run.fit.images, blocks=blocks, head_precision="fp32")
    scratch = tempfile.gettempdir()
    try:
        check_free_space(scratch, needed, what="the float32 reference for the fidelity report")
        with tempfile.TemporaryDirectory(prefix="padim-export-fidelity-") as tmp:
            reference = Path(tmp) / "fp32-head.onnx"
            export(
                run.model,
                reference,
                weights=run.weights,
                train_images=run.fit.images,
                blocks=blocks,
                head_precision="fp32",
                input_size=input_size,
            )
            report = fidelity.measure(
                reference,
                output,
                plan,
                reference="fp32 head of the same fit",
                device="cpu",
                progress=progress,
            )
    except OSError as exc:  # OutputError included: the model is written and whole, say why it has no report
        reason = str(exc) if isinstance(exc, OutputError) else f"{exc.strerror or exc} in {scratch}"
        raise CalibrationError(f"{reason} (set TMPDIR to a folder with room)") from exc
    variant = f"{head_precision} head"
    if report is None:
        return None, [fidelity.no_report_warning(plan, variant)]
    update_props(output, metadata.encode_updates({"fidelity": report.record()}))
    return report, report.warnings(variant)


def echo_report(
    run: ExportRun,
    output: Path,
    data: Path,
    *,
    head_precision: str | None,
    blocks: int | None = None,
    input_size: tuple[int, int] | None = None,
    progress: bool = False,
) -> None:
    """:func:`measure_head` for ``padim-export``: a ``fidelity`` line on stdout, warnings on stderr."""
    import click

    from padim_edge.calibration.errors import CalibrationError
    from padim_edge.metadata import fidelity_summary

    try:
        report, warnings = measure_head(
            run, output, data, head_precision=head_precision, blocks=blocks, input_size=input_size,
            progress=progress,
        )  # fmt: skip
    except CalibrationError as exc:
        click.echo(
            f"warning: NO FIDELITY REPORT: the {head_precision} head was not compared: {exc}", err=True
        )
        return
    if report is not None:
        click.echo(f"fidelity      {fidelity_summary(report.record())}")
        if report.verdict is not None:
            click.echo(f"verdict       {report.verdict_line()}")
    for line in warnings:
        click.echo(f"warning: {line}", err=True)
