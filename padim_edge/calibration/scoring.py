"""Scoring image folders through the torch-free runtime (labelled sets: :mod:`padim_edge.datasets`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

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


class FrameModel:
    """A :class:`padim_edge.runtime.PadimModel` that takes frames of any size.

    A model built for one frame size (TensorRT target) gets every frame resized to it first (image
    files on disk rarely have the camera's size). Has what
    :class:`padim_edge.evaluation.predictions.AnomalyModel` needs (``info``, ``providers``, ``predict``).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.info = model.info
        self.providers: list[str] = list(model.providers)

    def predict(self, images: list[np.ndarray], batch_size: int = 8) -> list[Any]:
        """One :class:`padim_edge.runtime.model.Prediction` per frame, in order."""
        size = self.info.input_size
        if size is not None:
            images = [resize_frame(frame, size) for frame in images]
        return self.model.predict(images, batch_size=batch_size)


def open_model(model_path: str | Path, *, device: str = "auto", threads: int | None = None) -> FrameModel:
    """Open a model for scoring through the torch-free runtime.

    Args:
        model_path: The ``.onnx`` file.
        device: ``auto``, ``cpu``, ``cuda`` or ``tensorrt``.
        threads: onnxruntime intra-op threads (``None``: all cores).

    Raises:
        CalibrationError: The model cannot be loaded, or cannot start on ``device``.
    """
    from padim_edge.runtime import ModelLoadError, PadimModel, ProviderError

    try:
        return FrameModel(PadimModel(model_path, device=device, threads=threads))
    except (ModelLoadError, ProviderError, ValueError) as exc:
        raise CalibrationError(str(exc)) from exc


def iter_predictions(
    models: Sequence[FrameModel],
    paths: list[Path],
    *,
    progress: bool = True,
    desc: str = "scoring",
    batch_size: int = 8,
) -> Iterator[tuple[Path, list[Any]]]:
    """Decode each image once and run every model on it: the one scoring loop of the calibration.

    Yields:
        ``(path, [prediction of each model])`` in the order of ``paths``; a batch of frames at a time is
        held, never the whole folder.

    Raises:
        CalibrationError: An image cannot be decoded.
        Exception: Whatever a model raises on a frame (callers that can go on catch it).
    """
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        try:
            for batch in iter_batches(paths, batch_size):
                frames = [image for _, image in batch]
                outputs = [model.predict(frames, batch_size=batch_size) for model in models]
                for k, (path, _) in enumerate(batch):
                    yield path, [out[k] for out in outputs]
                bar.update(len(batch))
        except ImageError as exc:
            raise CalibrationError(str(exc)) from exc


def score_images(
    model_path: str | Path,
    paths: list[Path],
    *,
    device: str = "auto",
    threads: int | None = None,
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
    model = open_model(model_path, device=device, threads=threads)
    scores = [
        predictions[0].score
        for _, predictions in iter_predictions(
            [model], paths, progress=progress, desc=desc, batch_size=batch_size
        )
    ]
    return np.asarray(scores, dtype=np.float32)
