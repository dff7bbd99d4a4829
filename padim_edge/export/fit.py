"""Fitting: stream normal images through the model and accumulate per-patch Gaussians.

Images are decoded one batch at a time and folded into :class:`padim_edge.gaussian.GaussianStatistics`;
memory is the model's accumulators plus one batch, whatever the number of images.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from padim_edge.export.padim.fit_memory import check_fit_memory
from padim_edge.export.padim.model import PadimModule
from padim_edge.gaussian import GaussianStatistics
from padim_edge.images import ImageError, UnreadableImagesError, iter_batches, load_image


@dataclass(frozen=True)
class FitReport:
    """What a fit did.

    Attributes:
        images: Number of images the Gaussians were fitted on.
        seconds: Wall time of the fit.
        device: Device the fit ran on.
        skipped: ``(file, reason)`` of the unreadable images left out (``skip_unreadable``).
    """

    images: int
    seconds: float
    device: str
    skipped: tuple[tuple[str, str], ...] = ()

    def readable(self, paths: list[Path]) -> list[Path]:
        """``paths`` without the skipped files."""
        skipped = {file for file, _ in self.skipped}
        return [p for p in paths if str(p) not in skipped]

    def metadata(self) -> dict[str, object]:
        """The ``skipped_images`` metadata key when images were skipped (file names, reasons)."""
        if not self.skipped:
            return {}
        return {
            "skipped_images": [
                {"file": Path(file).name, "reason": reason.replace(file, Path(file).name)}
                for file, reason in self.skipped
            ]
        }


def skipped_or_raise(
    failures: list[tuple[str, str]], total: int, *, skip_unreadable: bool, partial: object = None
) -> tuple[tuple[str, str], ...]:
    """The skipped files to report, or :class:`UnreadableImagesError` when they may not be skipped.

    Raises:
        UnreadableImagesError: ``failures`` without ``skip_unreadable``.
        ValueError: Fewer than two readable images are left.
    """
    if failures and not skip_unreadable:
        raise UnreadableImagesError(failures, total, partial=partial)
    if total - len(failures) < 2:
        raise ValueError(
            f"need at least 2 normal images to fit, {total - len(failures)} of {total} could be read"
        )
    return tuple(failures)


def frame_batches(
    paths: list[Path], batch_size: int, *, skip_unreadable: bool, failures: list[tuple[str, str]]
) -> Iterator[list[np.ndarray]]:
    """Decoded training frames, a batch at a time, for a local fit (PaDiM's and PatchCore's).

    Without ``skip_unreadable`` the first file that cannot be decoded stops the fit: the files after it
    are decoded (no backbone) to find the others, and :class:`UnreadableImagesError` lists them all, so
    one run tells what to fix. With it, each such file is appended to ``failures`` as ``(file, reason)``
    and left out (then :func:`skipped_or_raise` checks that two images are left).
    """
    position = {path: i for i, path in enumerate(paths)}

    def on_error(path: Path, exc: ImageError) -> None:
        failures.append((str(path), str(exc)))
        if not skip_unreadable:
            rest = paths[position[path] + 1 :]
            for other in tqdm(rest, desc="checking the other images", unit="img", leave=False, disable=None):
                try:
                    load_image(other)
                except ImageError as more:
                    failures.append((str(other), str(more)))
            raise UnreadableImagesError(failures, len(paths)) from exc

    for batch in iter_batches(paths, batch_size, on_error=on_error):
        yield [image for _, image in batch]


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
    skip_unreadable: bool = False,
) -> FitReport:
    """Fit the per-patch Gaussians of ``model`` on normal image files, in place.

    Args:
        model: A model built for the backbone and configuration wanted.
        paths: Normal (defect-free) image files; at least two.
        batch_size: Images per forward pass.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: Show a progress bar on stderr.
        skip_unreadable: Leave out files that cannot be decoded (listed in the report's ``skipped``)
            instead of stopping at the first.

    Returns:
        A :class:`FitReport`. The model is left on the CPU, fitted.

    Raises:
        ValueError: Fewer than two (readable) images.
        padim_edge.export.padim.fit_memory.FitMemoryError: The machine lacks the memory the fit needs
            (checked before the first image is read; the message says what to use instead).
        padim_edge.images.UnreadableImagesError: An image cannot be decoded (the message names it).
    """
    if len(paths) < 2:
        raise ValueError(f"need at least 2 normal images to fit, got {len(paths)}")
    check_fit_memory(model.patches, model.config.dims, batch_size=batch_size)
    start = time.perf_counter()
    failures: list[tuple[str, str]] = []
    frames = frame_batches(paths, batch_size, skip_unreadable=skip_unreadable, failures=failures)
    with tqdm(total=len(paths), desc="fit", unit="img", disable=not progress) as bar:
        statistics = accumulate(model, frames, device=device, progress=bar)
    skipped = skipped_or_raise(failures, len(paths), skip_unreadable=skip_unreadable)
    install(model, statistics)
    return FitReport(
        images=statistics.count,
        seconds=time.perf_counter() - start,
        device=str(resolve_device(device)),
        skipped=skipped,
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
    check_fit_memory(model.patches, model.config.dims, batch_size=batch_size)
    start = time.perf_counter()
    batches = (frames[lo : lo + batch_size] for lo in range(0, len(frames), batch_size))
    statistics = accumulate(model, batches, device=device)
    install(model, statistics)
    return FitReport(
        images=statistics.count, seconds=time.perf_counter() - start, device=str(resolve_device(device))
    )
