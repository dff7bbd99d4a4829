"""What ``padim-calibrate`` runs: build a variant, choose and bake the threshold, write the model."""

from __future__ import annotations

import datetime as _dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from padim_edge import __version__, metadata
from padim_edge.atomic import write_errors
from padim_edge.calibration import decision, fidelity, int8, threshold
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.formats import Variant
from padim_edge.calibration.modelio import SourceModel, load_model, save_model, set_props
from padim_edge.calibration.request import check_request as _check_request
from padim_edge.calibration.request import refit_options as _refit_options
from padim_edge.calibration.request import resolve_variant
from padim_edge.calibration.scoring import labeled_images, normal_images, score_images
from padim_edge.calibration.settings import DEFAULT_CALIBRATION_IMAGES, DEFAULT_TARGET_FPR
from padim_edge.calibration.variant_build import BuildRequest, Built
from padim_edge.datasets import Category
from padim_edge.images import fingerprint
from padim_edge.onnx_files import graph_versions, pin_ir_version


@dataclass
class CalibrationReport:
    """What a calibration did.

    Attributes:
        source: The input model.
        variant: The variant written.
        output: The ``.onnx`` written.
        files: Every file written (model, external data, TensorRT table).
        choice: The threshold, when one was baked.
        threshold_source: Where the threshold's images came from.
        data_fpr: FPR on the ``--data`` normal images when the threshold came from labels.
        labeled: The labelled category used (F1 mode).
        calibration_images: INT8 calibration images used.
        details: Extra summary lines.
        warnings: Caveats for the user.
        tensorrt: What happened with the TensorRT table (INT8 only).
        seconds: Wall time.
        fidelity: The variant compared with the input model on held-out frames (``None``: no report,
            a warning says why; always ``None`` for ``fp32-threshold``).
    """

    source: SourceModel
    variant: Variant
    output: Path
    files: list[Path] = field(default_factory=list)
    choice: threshold.ThresholdChoice | None = None
    threshold_source: str = ""
    data_fpr: tuple[int, int] | None = None
    labeled: Category | None = None
    calibration_images: int = 0
    details: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tensorrt: str | None = None
    seconds: float = 0.0
    fidelity: fidelity.Fidelity | None = None


def _arithmetic(source: SourceModel) -> str:
    """``fp32 backbone / int8 head``."""
    return f"{source.info.precision} backbone / {source.info.head_precision} head"


def _source_model(source: SourceModel) -> dict[str, str] | None:
    """``source_model``: the float32 file this model descends from (float32 backbone and head)."""
    if source.info.precision != "fp32" or source.info.head_precision != "fp32":
        return source.info.get("source_model")  # keep the float32 ancestor
    return {"file": source.path.name, "sha256": source.sha256}


def _choose_threshold(
    report: CalibrationReport,
    scoring_model: Path,
    *,
    data_paths: list[Path] | None,
    data: Path | None,
    target_fpr: float | None,
    labeled: Path | None,
    device: str,
    progress: bool,
    threads: int | None = None,
) -> threshold.ThresholdChoice:
    if labeled is not None:
        category = labeled_images(labeled)
        report.labeled = category
        normal = score_images(
            scoring_model, category.normal, device=device, threads=threads, progress=progress, desc="good"
        )
        anomalous = score_images(
            scoring_model,
            category.anomalous,
            device=device,
            threads=threads,
            progress=progress,
            desc="defective",
        )
        choice = threshold.threshold_for_f1(normal, anomalous)
        report.threshold_source = f"{labeled / 'test'}"
        if data_paths:
            data_scores = score_images(
                scoring_model, data_paths, device=device, threads=threads, progress=progress, desc="--data"
            )
            report.data_fpr = (
                int(np.count_nonzero(data_scores > np.float32(choice.threshold))),
                len(data_paths),
            )
        return choice
    assert data_paths is not None
    scores = score_images(
        scoring_model, data_paths, device=device, threads=threads, progress=progress, desc="normal images"
    )
    report.threshold_source = str(data)
    return threshold.threshold_for_fpr(scores, DEFAULT_TARGET_FPR if target_fpr is None else target_fpr)


#: Most image fingerprints a model stores for padim-eval's "threshold chosen on these images" warning.
MAX_THRESHOLD_FINGERPRINTS = 20000


def _fingerprints(paths: list[Path]) -> list[str] | None:
    """Content fingerprints of the threshold's images (``None``: too many to store, or unreadable)."""
    if len(paths) > MAX_THRESHOLD_FINGERPRINTS:
        return None
    try:
        return sorted({fingerprint(path) for path in paths})
    except OSError:
        return None


def _threshold_props(choice: threshold.ThresholdChoice, paths: list[Path]) -> dict[str, object | None]:
    return {
        "threshold_data": _fingerprints(paths),
        "threshold": repr(choice.threshold),
        "threshold_method": choice.method,
        "threshold_target_fpr": choice.target_fpr,
        "threshold_images": choice.normal_images,
        "threshold_fpr": f"{choice.fpr:.6g}",
        "threshold_precision": None if choice.precision is None else f"{choice.precision:.6g}",
        "threshold_recall": None if choice.recall is None else f"{choice.recall:.6g}",
    }


def calibrate(
    model: str | Path,
    output: str | Path | None = None,
    *,
    variant: str | Variant = "fp32-threshold",
    data: str | Path | None = None,
    target_fpr: float | None = None,
    labeled: str | Path | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    device: str = "auto",
    tensorrt_table: bool = False,
    head_blocks: int | None = None,
    progress: bool = True,
    refit: bool | None = None,
    refit_data: str | Path | None = None,
    float_convs: int | None = None,
    validate: str | Path | None = None,
    threads: int | None = None,
) -> CalibrationReport:
    """Write a calibrated variant of a padim-edge model.

    Args:
        model: The input ``.onnx`` (float32 for the INT8 / FP16 variants).
        output: The ``.onnx`` to write (default: ``<stem>-<suffix>.onnx`` beside the input).
        variant: A name from :data:`padim_edge.calibration.formats.VARIANTS` (a backbone and a head row
            may be joined by ``+``), or the row itself.
        data: Folder of held-out defect-free images: threshold scores (target FPR) and INT8
            calibration frames.
        target_fpr: Fraction of normal images allowed above the threshold (default 0.01 when a
            threshold is chosen from ``data``).
        labeled: MVTec-layout root: choose the F1-optimal threshold on ``ROOT/test`` instead.
        calibration_images: Most ``data`` images used for INT8 calibration (an even spread).
        device: Where the threshold scores are computed (``auto``, ``cpu``, ``cuda``, ``tensorrt``).
        tensorrt_table: Also write the TensorRT EP's INT8 calibration table for the float32 model's
            backbone activations (INT8 variants only), beside the output.
        head_blocks: Column blocks of a rewritten head (head variants; default: as many as it has).
        progress: Show progress bars.
        refit: INT8 variants: refit the head's Gaussians on the quantised backbone's embeddings
            (``None``: the variant's default, on).
        refit_data: Folder of the refit's images (default: every ``data`` image); ideally the training
            images.
        float_convs: INT8 variants: the backbone's first this many convolutions stay float32 (``None``:
            the variant's default, 2).
        validate: Folder of held-out defect-free images for the fidelity report (INT8 / FP16 / head
            variants; default: ``labeled``'s good test images, else a part of ``data`` that INT8 does
            not calibrate on). See :mod:`padim_edge.calibration.fidelity`.
        threads: onnxruntime intra-op threads of the scoring passes (threshold, fidelity; ``None``: all).

    Raises:
        CalibrationError: Bad model, folders, flags or too few images (the message says which).
    """
    started = _dt.datetime.now(_dt.timezone.utc)
    row = resolve_variant(variant)
    if head_blocks is not None and row.head_precision is None:
        raise CalibrationError("--head-blocks applies to --head-precision only")
    source = load_model(model)
    output = Path(output) if output is not None else row.default_output(source.path)
    data = Path(data) if data is not None else None
    labeled = Path(labeled) if labeled is not None else None
    _check_request(source, row, output, data=data, target_fpr=target_fpr, labeled=labeled)
    wants_threshold = row.always_threshold or target_fpr is not None or labeled is not None
    data_paths = normal_images(data) if data is not None else None
    report = CalibrationReport(source=source, variant=row, output=output)
    if wants_threshold and labeled is None:
        assert data_paths is not None
        if len(data_paths) < 2:
            raise CalibrationError(
                f"need at least 2 normal images in {data} to choose a threshold, found {len(data_paths)}"
            )

    validate = Path(validate) if validate is not None else None
    plan = fidelity.plan_frames(
        measure=fidelity.applies(row),
        calibrates=row.needs_calibration_images,
        data_paths=data_paths,
        calibration_count=calibration_images,
        validate_paths=normal_images(validate, what="--validate") if validate is not None else None,
        labeled_normal=labeled_images(labeled).normal if labeled is not None else None,
    )
    report.warnings += plan.warnings
    images = plan.calibration
    refit, refit_images = _refit_options(row, refit, refit_data, float_convs)
    if refit and not refit_images and data_paths:
        # every --data image the fidelity report does not hold out: the covariance wants them all
        held_out = set(plan.frames)
        refit_images = [path for path in data_paths if path not in held_out]
    request = BuildRequest(
        calibration_images=images,
        progress=progress,
        input_size=source.info.input_size,
        head_blocks=head_blocks,
        refit=refit,
        refit_images=refit_images,
        float_convs=row.float_convs if float_convs is None else float_convs,
    )
    had_threshold = decision.strip_threshold(source.proto)
    if had_threshold:  # the keys go with the graph's decision, or scoring.onnx is refused at load
        set_props(source.proto, metadata.encode_updates(dict.fromkeys(metadata.THRESHOLD_KEYS)))
    built: Built = row.build(source.proto, request)
    report.details += built.details
    report.warnings += built.warnings
    report.calibration_images = len(request.calibration_images)
    refitted = (built.props.get("gaussians") or {}).get("source") == "refit"  # type: ignore[union-attr]
    if refitted and refit_data is None and wants_threshold and labeled is None:
        report.warnings.append(
            "the head was refitted on --data images and the threshold chosen on --data scores: refitted "
            "images score lower than unseen ones, so the threshold may flag too much; pass --refit-data "
            "with the training images (train/good)"
        )

    pin_ir_version(built.proto)  # converters may stamp a newer IR; onnxruntime 1.16/1.17 load <= 9
    props: dict[str, object | None] = {**graph_versions(built.proto), **built.props}
    with tempfile.TemporaryDirectory(prefix="padim-calibrate-") as tmp:
        scoring_model = source.path
        if built.changed and (wants_threshold or plan.measure):
            scoring_model = Path(tmp) / "scoring.onnx"
            with write_errors(scoring_model, error=CalibrationError):
                save_model(built.proto, scoring_model, check=False)
        if plan.measure:
            report.fidelity = fidelity.measure(
                source.path,
                scoring_model,
                plan,
                reference=f"{source.path.name} ({_arithmetic(source)})",
                labeled=labeled,
                device=device,
                threads=threads,
                progress=progress,
            )
            if report.fidelity is None:
                report.warnings.append(fidelity.no_report_warning(plan, row.name))
            else:
                report.warnings += report.fidelity.warnings(row.name)
            props["fidelity"] = None if report.fidelity is None else report.fidelity.record()
        if wants_threshold:
            choice = _choose_threshold(
                report,
                scoring_model,
                data_paths=data_paths,
                data=data,
                target_fpr=target_fpr,
                labeled=labeled,
                device=device,
                progress=progress,
                threads=threads,
            )
            report.choice = choice
            report.warnings += list(choice.warnings)
            decision.bake_threshold(built.proto, choice.threshold)
            chosen_on = (
                [*report.labeled.normal, *report.labeled.anomalous] if report.labeled else data_paths or []
            )
            props.update(_threshold_props(choice, chosen_on))
        elif had_threshold:
            props.update(dict.fromkeys(metadata.THRESHOLD_KEYS))
            report.warnings.append(
                f"the input's threshold ({source.info.threshold}) was chosen on the scores of the "
                f"{_arithmetic(source)} model and was dropped: pass --target-fpr or --labeled to choose one "
                f"on the {row.name} model's own"
            )
    props.update(
        source_model=_source_model(source),
        calibrated=started.isoformat(timespec="seconds"),
        calibrated_with=__version__,
    )
    set_props(built.proto, metadata.encode_updates(props))
    with write_errors(output, error=CalibrationError):  # disk full: one line, the old output kept
        report.files = save_model(built.proto, output)
    if tensorrt_table and built.quantization is not None:
        folder = output.with_name(output.stem + "_tensorrt_calibration")
        with write_errors(folder, error=CalibrationError):
            report.files += int8.write_tensorrt_table(built.quantization.ranges, folder)
        report.tensorrt = f"INT8 calibration table for the TensorRT EP written to {folder}"
    report.seconds = (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds()
    return report
