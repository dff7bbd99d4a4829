"""Running a model over a category's test images and collecting what the metrics need.

The folder layout itself (test images, labels, masks) is read by :mod:`padim_edge.datasets`; anomaly
maps come out in the model's geometry and masks are mapped into it with
:meth:`padim_edge.geometry.Geometry.mask_view`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from padim_edge.datasets import Category, MaskProblems, load_mask
from padim_edge.geometry import Geometry
from padim_edge.images import iter_batches
from padim_edge.metadata import ModelInfo


class PredictionError(RuntimeError):
    """The model failed on a batch of test images."""


class AnomalyModel(Protocol):
    """What the evaluation needs from a model (:class:`padim_edge.runtime.PadimModel` has it)."""

    info: ModelInfo
    providers: list[str]

    def predict(self, images: Any, batch_size: int = ...) -> list[Any]:
        """Return one prediction (``score``, ``anomaly_map``, ``is_anomalous``) per image."""
        ...


@dataclass
class CategoryPredictions:
    """A model's outputs on one category, with the ground truth in the model's geometry.

    Attributes:
        category: The category evaluated.
        scores: ``float64 [N]`` image scores, in ``category.samples`` order.
        labels: ``bool [N]``: whether each image is a defect image.
        defects: Defect type of each image (``"good"`` for normal ones).
        maps: ``float32 [N, crop, crop]`` anomaly maps.
        masks: ``bool [N, crop, crop]`` ground truth (all ``False`` for good images), or ``None`` for an
            image-level category (no ``ground_truth/``).
        decisions: ``bool [N]`` model decisions (``Prediction.is_anomalous``) when the model carries a
            threshold, else ``None``.
        threshold: The model's threshold, if any.
        resize: The model's resize edge.
        crop: The model's crop edge.
        warnings: Ground truth that is likely wrong (masks that are not binary or mark most of their
            image, masks of good images), one line each; the metrics use the masks as they are.
    """

    category: Category
    scores: np.ndarray
    labels: np.ndarray
    defects: list[str]
    maps: np.ndarray
    masks: np.ndarray | None
    decisions: np.ndarray | None
    threshold: float | None
    resize: int
    crop: int
    warnings: list[str] = field(default_factory=list)


def predict_category(
    model: AnomalyModel,
    category: Category,
    *,
    batch_size: int = 8,
    progress: Callable[[int], object] | None = None,
) -> CategoryPredictions:
    """Run ``model`` over every test image of ``category`` and collect what the metrics need.

    Images are decoded one batch at a time; only the float32 anomaly maps and boolean masks (both
    ``crop x crop``) are kept for the whole category.

    Args:
        model: A loaded model (see :class:`AnomalyModel`).
        category: The test set.
        batch_size: Images per decode batch and per inference batch.
        progress: Called with the number of images done after each batch (e.g. ``tqdm.update``).

    Raises:
        ImageError: A test image cannot be decoded.
        DatasetError: A mask cannot be decoded or differs in size from its image.
        PredictionError: The model failed or returned maps of an unexpected shape.
    """
    info = model.info
    resize, crop = int(info.resize), int(info.crop)
    threshold = info.threshold
    samples = list(category.samples)
    count = len(samples)
    maps = np.empty((count, crop, crop), dtype=np.float32)
    masks = np.zeros((count, crop, crop), dtype=bool) if category.has_masks else None
    geometry = Geometry(resize, crop)
    scores = np.empty(count, dtype=np.float64)
    decisions: list[bool | None] = []
    problems = MaskProblems(category.root)
    index = 0
    for batch in iter_batches([s.path for s in samples], batch_size):
        images = [image for _, image in batch]
        try:
            predictions = model.predict(images, batch_size=batch_size)
        except Exception as exc:
            raise PredictionError(f"model failed on the batch starting at {batch[0][0]}: {exc}") from exc
        if len(predictions) != len(batch):
            raise PredictionError(f"model returned {len(predictions)} predictions for {len(batch)} images")
        for (path, image), prediction in zip(batch, predictions, strict=True):
            anomaly_map = np.asarray(prediction.anomaly_map)
            if anomaly_map.shape != (crop, crop):
                raise PredictionError(
                    f"model returned a {list(anomaly_map.shape)} anomaly map for {path}, expected "
                    f"[{crop}, {crop}] (the model's crop)"
                )
            maps[index] = anomaly_map
            scores[index] = float(prediction.score)
            decisions.append(prediction.is_anomalous)
            sample = samples[index]
            if masks is not None and sample.mask_path is not None:
                mask = load_mask(sample.mask_path, image.shape[:2], problems=problems)
                masks[index] = geometry.mask_view(mask)
            index += 1
        if progress is not None:
            progress(len(batch))
    has_decisions = threshold is not None and all(d is not None for d in decisions)
    return CategoryPredictions(
        category=category,
        scores=scores,
        labels=np.array([s.is_anomalous for s in samples], dtype=bool),
        defects=[s.defect for s in samples],
        maps=maps,
        masks=masks,
        decisions=np.array(decisions, dtype=bool) if has_decisions else None,
        threshold=threshold,
        resize=resize,
        crop=crop,
        warnings=[*category.warnings, *problems.warnings()],
    )
