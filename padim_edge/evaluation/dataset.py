"""MVTec AD test folders: finding images and masks, and running a model over them.

One category looks like::

    ROOT/test/good/000.png                  defect-free test images
    ROOT/test/<defect>/000.png              one folder per defect type
    ROOT/ground_truth/<defect>/000_mask.png masks (0 = normal, non-zero = defect), same size as the image

A root whose sub-folders are such categories (the full MVTec AD: ``ROOT/bottle/test/...``,
``ROOT/cable/test/...``) holds several categories. ``train/`` folders are ignored.

Anomaly maps come out in the model's geometry (resize to ``resize x resize``, center crop ``crop``);
:func:`mask_to_model_view` maps a mask the same way with nearest-neighbour resampling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, UnidentifiedImageError

from padim_edge.images import iter_batches, list_images
from padim_edge.metadata import ModelInfo
from padim_edge.visualize import center_crop_box

GOOD = "good"
MASK_SUFFIX = "_mask.png"

LAYOUT_HELP = (
    "expected the MVTec AD layout: ROOT/test/good/*.png (defect-free images), ROOT/test/<defect>/*.png "
    "(one folder per defect type) and ROOT/ground_truth/<defect>/<stem>_mask.png (one mask per defect "
    "image), or a ROOT whose sub-folders are such categories (ROOT/bottle/test/..., ROOT/cable/test/...)"
)


class DatasetError(ValueError):
    """The test folder does not follow the expected layout, or a mask is missing or malformed."""


class PredictionError(RuntimeError):
    """The model failed on a batch of test images."""


class AnomalyModel(Protocol):
    """What the evaluation needs from a model (:class:`padim_edge.runtime.PadimModel` has it)."""

    info: ModelInfo
    providers: list[str]

    def predict(self, images: Any, batch_size: int = ...) -> list[Any]:
        """Return one prediction (``score``, ``anomaly_map``, ``is_anomalous``) per image."""
        ...


@dataclass(frozen=True)
class TestSample:
    """One test image.

    Attributes:
        path: The image file.
        defect: Defect type (the folder name), ``"good"`` for defect-free images.
        mask_path: The ground-truth mask; ``None`` for good images.
    """

    __test__ = False  # not a pytest test class

    path: Path
    defect: str
    mask_path: Path | None = None

    @property
    def is_anomalous(self) -> bool:
        """Whether the image shows a defect."""
        return self.defect != GOOD

    @property
    def label(self) -> str:
        """``<defect>/<file name>``, for reports."""
        return f"{self.defect}/{self.path.name}"


@dataclass(frozen=True)
class Category:
    """The test set of one MVTec AD category.

    Attributes:
        name: Category name (the root folder's name).
        root: The category folder.
        samples: Good images first, then each defect type in name order.
    """

    name: str
    root: Path
    samples: tuple[TestSample, ...]

    @property
    def defects(self) -> list[str]:
        """Defect types, in name order (``good`` excluded)."""
        return sorted({s.defect for s in self.samples if s.is_anomalous})


def is_category(folder: Path) -> bool:
    """Whether ``folder`` has a ``test/`` sub-folder (looks like one MVTec AD category)."""
    return (folder / "test").is_dir()


def find_categories(root: str | Path) -> list[Category]:
    """Find the categories under ``root``: the root itself, or each sub-folder that is a category.

    Every mask a defect image needs is checked to exist here, before any model runs.

    Raises:
        DatasetError: ``root`` is neither a category nor a folder of categories, or a category is
            malformed (see :func:`load_category`).
        ImageError: A test folder holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}; {LAYOUT_HELP}")
    if is_category(root):
        return [load_category(root)]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and is_category(p))
    if not folders:
        hint = f" (pass {root.parent}, the folder that holds test/)" if root.name == "test" else ""
        raise DatasetError(
            f"{root} has no test/ folder and no category sub-folder with one{hint}; {LAYOUT_HELP}"
        )
    return [load_category(folder) for folder in folders]


def load_category(root: str | Path, name: str | None = None) -> Category:
    """List the test images of one category and pair each defect image with its mask.

    Args:
        root: The category folder (holding ``test/`` and ``ground_truth/``).
        name: Category name (default: the folder's name).

    Raises:
        DatasetError: ``test/good/`` or every ``test/<defect>/`` is missing, or a defect image has no
            mask at ``ground_truth/<defect>/<stem>_mask.png``.
        ImageError: A test folder holds no image.
    """
    root = Path(root)
    test = root / "test"
    if not (test / GOOD).is_dir():
        raise DatasetError(f"{root}: missing {test / GOOD}/ (defect-free test images); {LAYOUT_HELP}")
    defects = sorted(p.name for p in test.iterdir() if p.is_dir() and p.name != GOOD)
    if not defects:
        raise DatasetError(f"{root}: no defect folder in {test}/ besides good/; {LAYOUT_HELP}")
    samples = [TestSample(path, GOOD) for path in list_images(test / GOOD)]
    missing: list[str] = []
    for defect in defects:
        for path in list_images(test / defect):
            mask_path = root / "ground_truth" / defect / f"{path.stem}{MASK_SUFFIX}"
            if not mask_path.is_file():
                missing.append(f"{path.relative_to(root)} -> {mask_path.relative_to(root)}")
            samples.append(TestSample(path, defect, mask_path))
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(
            f"{root}: {len(missing)} defect image(s) without a ground-truth mask (image -> expected mask): "
            f"{shown}"
        )
    return Category(name=name or root.name, root=root, samples=tuple(samples))


def load_mask(path: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a ground-truth mask to ``bool [H, W]`` (any non-zero pixel is a defect).

    Args:
        path: The mask file (grayscale, RGB or 1-bit).
        shape: Expected ``(H, W)``, the size of the image the mask belongs to.

    Raises:
        DatasetError: The file cannot be decoded or its size differs from ``shape``.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mask = np.asarray(image.convert("L")) > 0
    except FileNotFoundError as exc:
        raise DatasetError(f"mask not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot decode mask {path}: {exc}") from exc
    if shape is not None and mask.shape != tuple(shape):
        raise DatasetError(
            f"mask {path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its image is "
            f"{shape[1]}x{shape[0]}; masks must have the size of their image"
        )
    return mask


def mask_to_model_view(mask: np.ndarray, resize: int, crop: int) -> np.ndarray:
    """Map a full-size mask into the model's geometry: nearest resize to ``resize`` square, center crop.

    Args:
        mask: ``[H, W]`` mask (bool or 0/255).
        resize: Square edge the model resizes every frame to.
        crop: Center-crop edge (the anomaly map's edge).

    Returns:
        ``bool [crop, crop]``, pixel-aligned with the model's anomaly map.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {list(mask.shape)}")
    image = Image.fromarray((mask > 0).astype(np.uint8) * 255)
    resized = image.resize((resize, resize), Image.Resampling.NEAREST)
    return np.asarray(resized.crop(center_crop_box(resize, crop))) > 0


@dataclass
class CategoryPredictions:
    """A model's outputs on one category, with the ground truth in the model's geometry.

    Attributes:
        category: The category evaluated.
        scores: ``float64 [N]`` image scores, in ``category.samples`` order.
        labels: ``bool [N]``: whether each image is a defect image.
        defects: Defect type of each image (``"good"`` for normal ones).
        maps: ``float32 [N, crop, crop]`` anomaly maps.
        masks: ``bool [N, crop, crop]`` ground truth (all ``False`` for good images).
        decisions: ``bool [N]`` model decisions (``Prediction.is_anomalous``) when the model carries a
            threshold, else ``None``.
        threshold: The model's threshold, if any.
        resize: The model's resize edge.
        crop: The model's crop edge.
    """

    category: Category
    scores: np.ndarray
    labels: np.ndarray
    defects: list[str]
    maps: np.ndarray
    masks: np.ndarray
    decisions: np.ndarray | None
    threshold: float | None
    resize: int
    crop: int


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
    masks = np.zeros((count, crop, crop), dtype=bool)
    scores = np.empty(count, dtype=np.float64)
    decisions: list[bool | None] = []
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
            if sample.mask_path is not None:
                mask = load_mask(sample.mask_path, image.shape[:2])
                masks[index] = mask_to_model_view(mask, resize, crop)
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
    )
