"""Fitting: stream normal images through the model and accumulate per-patch Gaussians.

Images are decoded one batch at a time and folded into :class:`padim_edge.gaussian.GaussianStatistics`;
memory is the model's accumulators plus one batch, whatever the number of images.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from padim_edge.export.padim.model import PadimModule
from padim_edge.gaussian import GaussianStatistics
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


def accumulate(
    model: PadimModule,
    batches: Iterable[Sequence[np.ndarray] | np.ndarray],
    *,
    device: str = "auto",
    statistics: GaussianStatistics | None = None,
    progress: tqdm | None = None,
) -> GaussianStatistics:
    """Fold batches of uint8 frames into per-patch statistics (the model is not changed).

    This is the whole fit but the last step, so partial statistics from several workers can be merged
    (:meth:`GaussianStatistics.merge`) before :func:`install`.

    Args:
        model: The model to embed with.
        batches: Batches of uint8 ``[H, W, 3]`` frames (lists of any sizes, or ``[B, H, W, 3]`` arrays).
        device: ``auto``, ``cpu`` or ``cuda``.
        statistics: Statistics to continue (default: new ones).
        progress: A progress bar advanced by each batch's size.
    """
    target = resolve_device(device)
    statistics = statistics if statistics is not None else GaussianStatistics()
    model.to(target)
    try:
        with torch.inference_mode():
            for batch in batches:
                embedding = model.embed(batch)
                # on the CPU numpy's float64 matmul is the faster accumulator; on a GPU keep it there
                statistics.update(embedding.numpy() if embedding.device.type == "cpu" else embedding)
                if progress is not None:
                    progress.update(len(batch))
    finally:
        model.to("cpu")
    return statistics


def install(model: PadimModule, statistics: GaussianStatistics) -> None:
    """Finalise the statistics (covariance + 0.01 I, inverse) and install them in the model."""
    mean, inv_covariance = statistics.finalize()
    model.set_gaussians(mean, inv_covariance)


def fit(
    model: PadimModule,
    paths: list[Path],
    *,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
) -> FitReport:
    """Fit the per-patch Gaussians of ``model`` on normal image files, in place.

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
    start = time.perf_counter()
    frames = ([image for _, image in batch] for batch in iter_batches(paths, batch_size))
    with tqdm(total=len(paths), desc="fit", unit="img", disable=not progress) as bar:
        statistics = accumulate(model, frames, device=device, progress=bar)
    install(model, statistics)
    return FitReport(
        images=statistics.count, seconds=time.perf_counter() - start, device=str(resolve_device(device))
    )


def fit_frames(
    model: PadimModule,
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    batch_size: int = 16,
    device: str = "auto",
) -> FitReport:
    """Fit on frames in memory (uint8 ``[N, H, W, 3]`` or a list), e.g. synthetic ones for benchmarks."""
    if len(frames) < 2:
        raise ValueError(f"need at least 2 normal frames to fit, got {len(frames)}")
    start = time.perf_counter()
    batches = (frames[lo : lo + batch_size] for lo in range(0, len(frames), batch_size))
    statistics = accumulate(model, batches, device=device)
    install(model, statistics)
    return FitReport(
        images=statistics.count, seconds=time.perf_counter() - start, device=str(resolve_device(device))
    )
