"""Scoring image folders through the torch-free runtime (labelled sets: :mod:`padim_edge.datasets`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from padim_edge.calibration.errors import CalibrationError
from padim_edge.datasets import Category, DatasetError, load_category
from padim_edge.images import ImageError, iter_batches, list_images, resize_frame


def normal_images(folder: str | Path, *, what: str = "--data") -> list[Path]:
    """The images directly inside ``folder``.

    Raises:
        CalibrationError: The folder is missing, not a folder, or holds no image.
    """
    try:
        return list_images(folder)
    except ImageError as exc:
        raise CalibrationError(f"{what}: {exc}") from exc


def labeled_images(root: str | Path) -> Category:
    """The labelled test images of one MVTec-layout category (masks are not needed here).

    Raises:
        CalibrationError: The layout does not match (the message shows the expected one).
    """
    try:
        return load_category(root, masks="ignore")
    except DatasetError as exc:
        raise CalibrationError(f"--labeled: {exc}") from exc


def score_images(
    model_path: str | Path,
    paths: list[Path],
    *,
    device: str = "auto",
    progress: bool = True,
    desc: str = "scoring",
    batch_size: int = 8,
) -> np.ndarray:
    """Score image files with :class:`padim_edge.runtime.PadimModel`.

    A model built for one frame size (TensorRT target) gets every image resized to it first.

    Returns:
        float32 ``[len(paths)]`` image scores, in the order of ``paths``.

    Raises:
        CalibrationError: An image cannot be decoded, or the model cannot run on ``device``.
    """
    from padim_edge.runtime import ModelLoadError, PadimModel, ProviderError

    try:
        model = PadimModel(model_path, device=device)
    except (ModelLoadError, ProviderError, ValueError) as exc:
        raise CalibrationError(str(exc)) from exc
    scores: list[float] = []
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        try:
            for batch in iter_batches(paths, batch_size):
                frames = [image for _, image in batch]
                if model.info.input_size is not None:
                    frames = [resize_frame(frame, model.info.input_size) for frame in frames]
                scores.extend(p.score for p in model.predict(frames, batch_size=batch_size))
                bar.update(len(batch))
        except ImageError as exc:
            raise CalibrationError(str(exc)) from exc
    return np.asarray(scores, dtype=np.float32)
