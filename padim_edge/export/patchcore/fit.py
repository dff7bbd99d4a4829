"""Fitting PatchCore: stream normal images into the coreset bank, select, install.

Images are decoded one batch at a time; their patch features go into a
:class:`~padim_edge.export.patchcore.bank.CoresetBank`, which reduces each full chunk to its coreset, so
memory is one chunk plus the union of chunk coresets, whatever the number of images. Then the final
greedy pass, the ``N_b`` neighbour table, and :meth:`PatchCoreModule.set_bank`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from padim_edge.export.fit import FitReport, frame_batches, resolve_device, skipped_or_raise
from padim_edge.export.patchcore.bank import (
    DEFAULT_OVERSAMPLE,
    CoresetBank,
    default_chunk_vectors,
    patch_rows,
)
from padim_edge.export.patchcore.model import BankInfo, PatchCoreModule
from padim_edge.export.patchcore.neighbours import neighbour_table

#: ``chunk_vectors="auto"``: :func:`padim_edge.export.patchcore.bank.default_chunk_vectors`.
ChunkSetting = int | Literal["auto"] | None


def make_bank(
    model: PatchCoreModule,
    *,
    chunk_vectors: ChunkSetting = "auto",
    oversample: float = DEFAULT_OVERSAMPLE,
    progress: bool = False,
) -> CoresetBank:
    """An empty bank set up from the model's configuration (``chunk_vectors=None``: exact greedy)."""
    config = model.config
    chunk = default_chunk_vectors(config.dims) if chunk_vectors == "auto" else chunk_vectors
    return CoresetBank(
        config.dims,
        fraction=config.coreset,
        projection_dims=config.projection_dims,
        seed=config.seed,
        chunk_vectors=chunk,
        oversample=oversample,
        progress=progress,
    )


def patch_vectors(embedding: torch.Tensor) -> np.ndarray:
    """Embedding ``[N, D, h, w]`` -> float32 patch vectors ``[N * h * w, D]`` (:func:`.bank.patch_rows`)."""
    return patch_rows(embedding.to(torch.float32).cpu().numpy())


def accumulate(
    model: PatchCoreModule,
    batches: Iterable[Sequence[np.ndarray] | np.ndarray],
    bank: CoresetBank,
    *,
    device: str = "auto",
    progress: tqdm | None = None,
) -> CoresetBank:
    """Embed batches of uint8 frames into ``bank`` (the model is not changed).

    This is the whole fit but the last step, so banks of several workers can be merged
    (:meth:`CoresetBank.merge`) before :func:`install`.
    """
    target = resolve_device(device)
    model.to(target)
    try:
        with torch.inference_mode():
            for batch in batches:
                bank.add(patch_vectors(model.embed(batch)))
                if progress is not None:
                    progress.update(len(batch))
    finally:
        model.to("cpu")
    return bank


def install(model: PatchCoreModule, bank: CoresetBank) -> None:
    """Final greedy pass, neighbour table, and :meth:`PatchCoreModule.set_bank`."""
    vectors = bank.select()
    table = neighbour_table(vectors, model.config.neighbours)
    model.set_bank(vectors, table, info=BankInfo(train_vectors=bank.seen, selection=bank.settings))


def fit(
    model: PatchCoreModule,
    paths: list[Path],
    *,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
    chunk_vectors: ChunkSetting = "auto",
    oversample: float = DEFAULT_OVERSAMPLE,
    skip_unreadable: bool = False,
) -> FitReport:
    """Fit the memory bank of ``model`` on normal image files, in place.

    Args:
        model: A model built for the backbone and configuration wanted.
        paths: Normal (defect-free) image files; at least two.
        batch_size: Images per forward pass.
        device: ``auto``, ``cpu`` or ``cuda`` (the coreset selection runs on the CPU).
        progress: Progress bars on stderr (feature pass, coreset selections).
        chunk_vectors: Rows per streaming chunk (``auto``: 256 MiB of float32; ``None``: exact greedy).
        oversample: Per-chunk coresets keep ``oversample x`` the final fraction.
        skip_unreadable: Leave out files that cannot be decoded (listed in the report's ``skipped``)
            instead of stopping at the first.

    Raises:
        ValueError: Fewer than two (readable) images.
        padim_edge.images.UnreadableImagesError: An image cannot be decoded (the message names it).
    """
    if len(paths) < 2:
        raise ValueError(f"need at least 2 normal images to fit, got {len(paths)}")
    start = time.perf_counter()
    bank = make_bank(model, chunk_vectors=chunk_vectors, oversample=oversample, progress=progress)
    failures: list[tuple[str, str]] = []
    frames = frame_batches(paths, batch_size, skip_unreadable=skip_unreadable, failures=failures)
    with tqdm(total=len(paths), desc="fit", unit="img", disable=not progress) as bar:
        accumulate(model, frames, bank, device=device, progress=bar)
    skipped = skipped_or_raise(failures, len(paths), skip_unreadable=skip_unreadable)
    install(model, bank)
    return FitReport(
        images=len(paths) - len(skipped),
        seconds=time.perf_counter() - start,
        device=str(resolve_device(device)),
        skipped=skipped,
    )


def fit_frames(
    model: PatchCoreModule,
    frames: np.ndarray | Sequence[np.ndarray],
    *,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = False,
    chunk_vectors: ChunkSetting = "auto",
    oversample: float = DEFAULT_OVERSAMPLE,
) -> FitReport:
    """Fit on frames in memory (uint8 ``[N, H, W, 3]`` or a list), e.g. synthetic ones for benchmarks."""
    if len(frames) < 2:
        raise ValueError(f"need at least 2 normal frames to fit, got {len(frames)}")
    start = time.perf_counter()
    bank = make_bank(model, chunk_vectors=chunk_vectors, oversample=oversample, progress=progress)
    batches = (frames[lo : lo + batch_size] for lo in range(0, len(frames), batch_size))
    accumulate(model, batches, bank, device=device)
    install(model, bank)
    return FitReport(
        images=len(frames), seconds=time.perf_counter() - start, device=str(resolve_device(device))
    )
