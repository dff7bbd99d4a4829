"""Fit + export in one call: what ``padim-export`` runs, usable from Python and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from padim_edge.export.backbones import build_backbone, get_spec
from padim_edge.export.exporter import DEFAULT_BLOCKS, ExportResult, ExternalData, export_model
from padim_edge.export.fit import FitReport, fit
from padim_edge.export.model import PadimConfig, PadimModule
from padim_edge.images import list_images, load_image


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime vs PyTorch on a few training images.

    Attributes:
        images: Images compared.
        max_abs_score: Largest absolute score difference.
        max_abs_map: Largest absolute anomaly-map difference.
        max_score: Largest PyTorch score (the scale the differences are relative to).
    """

    images: int
    max_abs_score: float
    max_abs_map: float
    max_score: float

    @property
    def relative(self) -> float:
        """Worst difference relative to the largest score."""
        return max(self.max_abs_score, self.max_abs_map) / max(self.max_score, 1e-12)


@dataclass(frozen=True)
class ExportRun:
    """Result of :func:`run_export`."""

    model: PadimModule
    weights: str
    fit: FitReport
    export: ExportResult
    parity: Parity | None


def build_module(
    backbone: str,
    *,
    dims: int | None = None,
    resize: int = 256,
    crop: int = 224,
    seed: int = 0,
    weights_file: str | Path | None = None,
    random_init: bool = False,
) -> tuple[PadimModule, str]:
    """Build an unfitted PaDiM module and its weights identity (see :func:`build_backbone`)."""
    spec = get_spec(backbone)
    network, weights = build_backbone(spec, weights_file=weights_file, random_init=random_init)
    config = PadimConfig(spec=spec, dims=dims or spec.default_dims, resize=resize, crop=crop, seed=seed)
    return PadimModule(network, config), weights


def check_parity(model: PadimModule, onnx_path: Path, images: list[np.ndarray]) -> Parity:
    """Score ``images`` with the PyTorch module and with the exported file through the runtime."""
    from padim_edge.runtime import PadimModel

    runtime = PadimModel(onnx_path, device="cpu")
    torch_maps, torch_scores = model.score_frames(images)
    predictions = runtime.predict(images)
    onnx_scores = np.array([p.score for p in predictions])
    onnx_maps = np.stack([p.anomaly_map for p in predictions])
    return Parity(
        images=len(images),
        max_abs_score=float(np.abs(onnx_scores - torch_scores).max()),
        max_abs_map=float(np.abs(onnx_maps - torch_maps).max()),
        max_score=float(torch_scores.max()),
    )


def run_export(
    data: str | Path,
    output: str | Path,
    *,
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
    blocks: int = DEFAULT_BLOCKS,
    parity_images: int = 4,
    progress: bool = True,
) -> ExportRun:
    """Fit PaDiM on the normal images in ``data`` and export the fused graph to ``output``.

    Args:
        data: Folder of defect-free images (direct children).
        output: The ``.onnx`` file to write.
        backbone: ``r18``, ``wr50`` or ``mnv2``.
        dims: Channels kept (default: the backbone's paper setting).
        resize: Square resize edge.
        crop: Center-crop edge.
        seed: Seed of the random channel subset.
        weights_file: A ``state_dict`` file instead of torchvision's ImageNet weights.
        random_init: Random backbone weights (latency and smoke tests only).
        batch_size: Images per forward pass during the fit.
        device: ``auto``, ``cpu`` or ``cuda`` for the fit.
        external_data: ``auto``, ``always`` or ``never``.
        blocks: Column blocks of the packed Sigma^-1 storage.
        parity_images: Training images scored by both PyTorch and the exported graph (0: skip).
        progress: Show progress bars.
    """
    paths = list_images(data)
    if len(paths) < 2:
        raise ValueError(f"need at least 2 normal images to fit, found {len(paths)} in {data}")
    model, weights = build_module(
        backbone,
        dims=dims,
        resize=resize,
        crop=crop,
        seed=seed,
        weights_file=weights_file,
        random_init=random_init,
    )
    report = fit(model, paths, batch_size=batch_size, device=device, progress=progress)
    result = export_model(
        model, output, weights=weights, train_images=report.images, external_data=external_data, blocks=blocks
    )
    parity = None
    if parity_images:
        parity = check_parity(model, Path(output), [load_image(p) for p in paths[:parity_images]])
    return ExportRun(model=model, weights=weights, fit=report, export=result, parity=parity)
