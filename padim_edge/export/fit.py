"""Fitting: stream normal images through the model and accumulate per-patch Gaussians."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from padim_edge.export.gaussian import GaussianAccumulator
from padim_edge.export.model import PadimModule
from padim_edge.images import iter_batches


@dataclass(frozen=True)
class FitReport:
    """What a fit did.

    Attributes:
        images: Number of images the Gaussians were fitted on.
        seconds: Wall time of the fit.
        device: Device the fit ran on.
    """

    images: int
    seconds: float
    device: str


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def fit(
    model: PadimModule,
    paths: list[Path],
    *,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
) -> FitReport:
    """Fit the per-patch Gaussians of ``model`` on normal images, in place.

    Images are decoded one batch at a time; memory is the model's accumulators plus one batch.

    Args:
        model: A model built for the backbone and configuration wanted.
        paths: Normal (defect-free) image files; at least two.
        batch_size: Images per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: Show a progress bar on stderr.

    Returns:
        A :class:`FitReport`. The model is left on the CPU, fitted.

    Raises:
        ValueError: Fewer than two images.
        padim_edge.images.ImageError: An image cannot be decoded (the message names it).
    """
    if len(paths) < 2:
        raise ValueError(f"need at least 2 normal images to fit, got {len(paths)}")
    target = resolve_device(device)
    start = time.perf_counter()
    model.to(target)
    accumulator = GaussianAccumulator(model.patches, model.config.dims, device=target)
    with tqdm(total=len(paths), desc="fit", unit="img", disable=not progress) as bar, torch.inference_mode():
        for batch in iter_batches(paths, batch_size):
            accumulator.update(model.embed([image for _, image in batch]))
            bar.update(len(batch))
    mean, inv_covariance = accumulator.finalize()
    model.to("cpu")
    model.set_gaussians(mean, inv_covariance)
    return FitReport(images=accumulator.count, seconds=time.perf_counter() - start, device=str(target))
