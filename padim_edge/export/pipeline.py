"""The export side's public API: build a model, fit it, export it (what ``padim-export`` runs).

Method-agnostic: the method (``padim``, ``patchcore``) is a row of :data:`padim_edge.export.methods.METHODS`.

* :func:`default_settings`: what :func:`build_module` uses for the options it is not given.
* :func:`build_module`: an unfitted model for a method, a backbone row and a configuration.
* :func:`fit` / :func:`fit_frames`: fit on image files or on frames in memory (the method's own fit).
* :func:`export`: write the fused graph, verified against the PyTorch module before it replaces
  anything at the output path (:mod:`.parity`).
* :func:`export_backbone`: write the truncated backbone alone (the graph benchmarks compare against).
* :func:`run_export`: all of it from a folder of images, with the output location checked first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from padim_edge.atomic import check_free_space, check_output_file
from padim_edge.export.backbones import build_backbone, get_spec
from padim_edge.export.exporter import (
    DEFAULT_TARGET,
    TENSORRT_TARGET,
    ExportResult,
    ExternalData,
    check_target,
    export_model,
    trace_features,
)
from padim_edge.export.fit import FitReport
from padim_edge.export.method import AnomalyMethod
from padim_edge.export.methods import Method, MethodOptions, get_method, method_of
from padim_edge.export.parity import PARITY_ATOL, Parity, ParityError, check_parity
from padim_edge.images import list_images, load_image, resize_frame

__all__ = [
    "ExportRun",
    "Parity",
    "ParityError",
    "build_module",
    "check_parity",
    "check_target",
    "default_settings",
    "estimated_bytes",
    "export",
    "export_backbone",
    "fit",
    "fit_frames",
    "run_export",
    "training_scores",
]

#: A fit ``run_export`` can use instead of the local one (the distributed fit is one), called as
#: ``fitter(model, paths, batch_size=, device=, progress=)``; it fits ``model`` in place.
Fitter = Callable[..., FitReport]

#: Training images scored after the fit for the model's ``train_scores`` (overlay colour scale).
TRAIN_SCORE_IMAGES = 32


@dataclass(frozen=True)
class ExportRun:
    """Result of :func:`run_export`."""

    model: AnomalyMethod
    weights: str
    fit: FitReport
    export: ExportResult
    parity: Parity | None


def default_settings(method: str, backbone: str) -> dict[str, Any]:
    """The settings :func:`build_module` gives a ``method`` / ``backbone`` pair when they are not passed.

    Returns:
        ``{"dims": ...}`` plus the method's own defaults (PatchCore: ``coreset``).

    Raises:
        ValueError: Unknown method or backbone.
    """
    row = get_method(method)
    return {"dims": row.default_dims(get_spec(backbone)), **row.defaults.given()}


def build_module(
    backbone: str,
    *,
    method: str = "padim",
    dims: int | None = None,
    resize: int = 256,
    crop: int = 224,
    seed: int = 0,
    weights_file: str | Path | None = None,
    random_init: bool = False,
    coreset: float | None = None,
    reduction: str | None = None,
) -> tuple[AnomalyMethod, str]:
    """Build an unfitted module of ``method`` and its weights identity (see :func:`build_backbone`).

    Args:
        backbone: ``r18``, ``wr50`` or ``mnv2``.
        method: ``padim`` or ``patchcore``.
        dims: Embedding dims (default: the method's for the backbone).
        resize: Square resize edge.
        crop: Center-crop edge.
        seed: Seed of the method's randomness (and of a random-init backbone).
        weights_file: A ``state_dict`` file instead of torchvision's ImageNet weights.
        random_init: Random backbone weights.
        coreset: PatchCore: fraction of the training patch features kept (default 0.1).
        reduction: PaDiM: ``select`` (default) or ``orthogonal`` (see :mod:`.padim.reduction`).

    Raises:
        ValueError: Unknown method or backbone, ``dims`` out of range, an option the method does not
            take, or a bad resize/crop pair.
    """
    row = get_method(method)
    spec = get_spec(backbone)
    split = row.split(MethodOptions(coreset=coreset, reduction=reduction))
    dims = row.default_dims(spec) if dims is None else dims
    if not 1 <= dims <= row.max_dims(spec):
        raise ValueError(f"dims must be in 1..{row.max_dims(spec)} for {method} {backbone}, got {dims}")
    network, weights = build_backbone(spec, weights_file=weights_file, random_init=random_init, seed=seed)
    module = row.make(network, spec, dims=dims, resize=resize, crop=crop, seed=seed, **split.build)
    return module, weights


def estimated_bytes(
    model: AnomalyMethod, *, images: int = 0, blocks: int | None = None, head_precision: str | None = None
) -> int:
    """About how many bytes the exported file takes (backbone weights plus the head's constants).

    ``images``: training images (PatchCore's bank grows with them); ``blocks`` and ``head_precision``:
    PaDiM's head options.
    """
    row = method_of(model)
    head = row.split(MethodOptions(blocks=blocks, head_precision=head_precision)).head
    return row.estimated_bytes(model, images=images, **head)


def fit(
    model: AnomalyMethod,
    paths: list[Path],
    *,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
    coreset_chunk: int | None = None,
    coreset_oversample: float | None = None,
    skip_unreadable: bool = False,
) -> FitReport:
    """Fit ``model`` on normal image files, in place, the way its method fits (see the methods table).

    ``coreset_chunk`` (0: exact greedy) and ``coreset_oversample``: PatchCore's streaming bank.
    ``skip_unreadable``: leave out files that cannot be decoded (the report lists them).
    """
    row = method_of(model)
    fit_options = _fit_options(row, coreset_chunk, coreset_oversample)
    if skip_unreadable:
        fit_options["skip_unreadable"] = True
    return row.fit(model, paths, batch_size=batch_size, device=device, progress=progress, **fit_options)


def _fit_options(row: Method, chunk: int | None, oversample: float | None) -> dict[str, Any]:
    return row.split(MethodOptions(coreset_chunk=chunk, coreset_oversample=oversample)).fit


def fit_frames(
    model: AnomalyMethod,
    frames: np.ndarray | list[np.ndarray],
    *,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = False,
    coreset_chunk: int | None = None,
    coreset_oversample: float | None = None,
) -> FitReport:
    """Fit on frames in memory (uint8 ``[N, H, W, 3]`` or a list), e.g. synthetic ones for benchmarks."""
    row = method_of(model)
    fit_options = _fit_options(row, coreset_chunk, coreset_oversample)
    return row.fit_frames(
        model, frames, batch_size=batch_size, device=device, progress=progress, **fit_options
    )


def training_scores(model: AnomalyMethod, images: list[np.ndarray]) -> dict[str, float]:
    """Score statistics of training images (``count``, ``p50``, ``p99``, ``max``, ``map_p50``).

    Recorded in the model's metadata: overlays use them as a fixed colour scale when the model has no
    threshold. Training images score lower than held-out normal ones; this is a scale, not a threshold.
    """
    maps, scores = model.score_frames(images)
    return {
        "count": len(images),
        "p50": round(float(np.percentile(scores, 50)), 6),
        "p99": round(float(np.percentile(scores, 99)), 6),
        "max": round(float(scores.max()), 6),
        "map_p50": round(float(np.median(maps)), 6),
    }


def export(
    model: AnomalyMethod,
    output: str | Path,
    *,
    weights: str,
    train_images: int,
    parity_images: list[np.ndarray] | None = None,
    external_data: ExternalData = "auto",
    blocks: int | None = None,
    head_precision: str | None = None,
    extra_metadata: dict[str, object] | None = None,
    input_size: tuple[int, int] | None = None,
) -> tuple[ExportResult, Parity | None]:
    """Export a fitted model; with ``parity_images``, only if the graph reproduces the module on them.

    With ``input_size`` (the TensorRT target) the parity frames are first resized to that size (Pillow
    bilinear), since the graph takes no other.

    ``blocks`` and ``head_precision`` (``fp32``, ``fp16``, ``int8``) are PaDiM's head options (column
    blocks of the packed Sigma^-1, default 3; the Mahalanobis head's precision, default fp32); the parity
    check allows for the head precision's error.

    Raises:
        ParityError: The staged graph differs from the PyTorch module; ``output`` was not touched.
    """
    head_options = method_of(model).split(MethodOptions(blocks=blocks, head_precision=head_precision)).head
    results: list[Parity] = []
    if parity_images and input_size is not None:
        parity_images = [resize_frame(image, input_size) for image in parity_images]

    def verify(staged: Path) -> None:
        precision = head_options.get("precision", "fp32")
        atol = PARITY_ATOL + method_of(model).parity_allowance(model, **head_options)
        parity = check_parity(model, staged, parity_images or [], head_precision=precision, atol=atol)
        results.append(parity)
        if not parity.ok:
            raise ParityError(parity)

    result = export_model(
        model,
        output,
        weights=weights,
        train_images=train_images,
        external_data=external_data,
        head_options=head_options,
        extra_metadata=extra_metadata,
        verify=verify if parity_images else None,
        input_size=input_size,
    )
    return result, (results[0] if results else None)


def export_backbone(model: AnomalyMethod, path: str | Path) -> list[Path]:
    """Write ``model``'s preprocessing + truncated backbone alone, its tapped feature maps as outputs.

    The graph the benchmarks time against the fused model (no channel reduction, no head); written like
    every model (:func:`padim_edge.onnx_files.save_model`).

    Returns:
        The files written (the ``.onnx``, and its ``.onnx.data`` when it has one).
    """
    from padim_edge.onnx_files import save_model

    return save_model(trace_features(model, reduce=False), path)


def run_export(
    data: str | Path,
    output: str | Path,
    *,
    method: str = "padim",
    backbone: str = "r18",
    dims: int | None = None,
    resize: int = 256,
    crop: int = 224,
    seed: int = 0,
    weights_file: str | Path | None = None,
    random_init: bool = False,
    batch_size: int = 16,
    device: str = "auto",
    external_data: ExternalData = "auto",
    blocks: int | None = None,
    head_precision: str | None = None,
    coreset: float | None = None,
    coreset_chunk: int | None = None,
    coreset_oversample: float | None = None,
    reduction: str | None = None,
    parity_images: int = 4,
    progress: bool = True,
    target: str = DEFAULT_TARGET,
    input_size: tuple[int, int] | None = None,
    module: tuple[AnomalyMethod, str] | None = None,
    fitter: Fitter | None = None,
    skip_unreadable: bool = False,
) -> ExportRun:
    """Fit a method on the normal images in ``data`` and export the fused graph to ``output``.

    The output location is checked (writable, not a folder, enough free space) before the fit, and
    the new file replaces an old one only once it is complete and has passed the parity check.

    Args:
        data: Folder of defect-free images (direct children).
        output: The ``.onnx`` file to write.
        method: ``padim`` (default) or ``patchcore``.
        backbone: ``r18``, ``wr50`` or ``mnv2``.
        dims: Embedding dims (default: the method's setting for the backbone).
        resize: Square resize edge.
        crop: Center-crop edge.
        seed: Seed of the method's randomness: PaDiM's channel subset, PatchCore's coreset projection and
            first pick (and of a random-init backbone).
        weights_file: A ``state_dict`` file instead of torchvision's ImageNet weights.
        random_init: Random backbone weights (latency and smoke tests only).
        batch_size: Images per forward pass during the fit.
        device: ``auto``, ``cpu`` or ``cuda`` for the fit.
        external_data: ``auto``, ``always`` or ``never``.
        blocks: PaDiM: column blocks of the packed Sigma^-1 storage (default 3).
        head_precision: PaDiM: ``fp32``, ``fp16`` or ``int8`` Sigma^-1 and head MatMul (see
            :data:`padim_edge.export.padim.graph_head.PRECISION_HELP`; default fp32).
        coreset: PatchCore: fraction of the training patch features kept in the bank (default 0.1).
        coreset_chunk: PatchCore: vectors per streaming chunk (default: 256 MiB; 0: exact greedy).
        coreset_oversample: PatchCore: per-chunk coresets keep this many times the fraction (default 2).
        reduction: PaDiM: ``select`` (the random channel subset, default) or ``orthogonal``.
        parity_images: Training images scored by both PyTorch and the exported graph (0: skip).
        progress: Show progress bars.
        target: ``default`` (any frame size) or ``tensorrt`` (frames of ``input_size`` only, no
            antialiased Resize op; see :mod:`padim_edge.export.exporter`).
        input_size: ``(H, W)`` of the camera frames, required by (and only for) ``tensorrt``.
        module: A built, unfitted ``(model, weights identity)`` to fit instead of building one (then
            ``backbone`` ... ``random_init`` are not used).
        fitter: The fit to run (default :func:`padim_edge.export.fit.fit`; see :data:`Fitter`).
        skip_unreadable: Fit without the images that cannot be decoded and record them in the model's
            ``skipped_images`` metadata (default: the fit fails naming them).

    Raises:
        OutputError: ``output`` cannot be written, or the disk lacks the space.
        ParityError: The exported graph does not reproduce the module (nothing written).
        ValueError: Unknown target, or ``input_size`` missing for ``tensorrt`` / given without it.
    """
    check_target(target, input_size)
    output = check_output_file(output, what="--output")
    paths = list_images(data)
    if len(paths) < 2:
        raise ValueError(f"need at least 2 normal images to fit, found {len(paths)} in {data}")
    get_method(method).split(  # an option of another method fails before anything is built
        MethodOptions(
            blocks=blocks,
            head_precision=head_precision,
            coreset=coreset,
            coreset_chunk=coreset_chunk,
            coreset_oversample=coreset_oversample,
            reduction=reduction,
        )
    )
    model, weights = module or build_module(
        backbone,
        method=method,
        dims=dims,
        resize=resize,
        crop=crop,
        seed=seed,
        weights_file=weights_file,
        random_init=random_init,
        coreset=coreset,
        reduction=reduction,
    )
    needed = estimated_bytes(model, images=len(paths), blocks=blocks, head_precision=head_precision)
    check_free_space(output.parent, needed, what="the model")
    fit_options = {"coreset_chunk": coreset_chunk, "coreset_oversample": coreset_oversample}
    fit_options["skip_unreadable"] = skip_unreadable or None
    report = (fitter or fit)(
        model,
        paths,
        batch_size=batch_size,
        device=device,
        progress=progress,
        **{k: v for k, v in fit_options.items() if v is not None},
    )
    paths = report.readable(paths)
    picks = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), TRAIN_SCORE_IMAGES)).round().astype(int))
    sample = [load_image(paths[i]) for i in picks]
    result, parity = export(
        model,
        output,
        weights=weights,
        train_images=report.images,
        parity_images=sample[:parity_images] if parity_images else None,
        external_data=external_data,
        blocks=blocks,
        head_precision=head_precision,
        extra_metadata={"train_scores": training_scores(model, sample), **report.metadata()},
        input_size=input_size if target == TENSORRT_TARGET else None,
    )
    return ExportRun(model=model, weights=weights, fit=report, export=result, parity=parity)
