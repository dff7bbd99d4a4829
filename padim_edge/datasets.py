"""MVTec AD-style folders: finding test images, their labels and masks (numpy + Pillow; no torch).

One category looks like::

    ROOT/train/good/*.png                   defect-free training images
    ROOT/test/good/*.png                    defect-free test images
    ROOT/test/<defect>/*.png                one folder per defect type
    ROOT/ground_truth/<defect>/<stem>_mask.png   masks (0 = normal, non-zero = defect), optional

Without ``ground_truth/`` a category is *image-level*: labels come from the folders alone, and only
image metrics can be computed. With it, every defect image must have its mask. A root whose
sub-folders are such categories (the full MVTec AD: ``ROOT/bottle/test/...``) holds several.

This is the one place that layout is read: evaluation, calibration (``--labeled``), benchmarks and
the distributed fit all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from padim_edge.images import ImageError, is_image, list_images

GOOD = "good"
MASK_SUFFIX = "_mask.png"
GROUND_TRUTH = "ground_truth"

LAYOUT_HELP = (
    "expected the MVTec AD layout: ROOT/test/good/*.png (defect-free images), ROOT/test/<defect>/*.png "
    "(one folder per defect type) and, for pixel metrics, ROOT/ground_truth/<defect>/<stem>_mask.png "
    "(one mask per defect image); or a ROOT whose sub-folders are such categories (ROOT/bottle/test/...)"
)


class DatasetError(ValueError):
    """The folder does not follow the expected layout, or a mask is missing or malformed."""


@dataclass(frozen=True)
class TestSample:
    """One test image.

    Attributes:
        path: The image file.
        defect: Defect type (the folder name), ``"good"`` for defect-free images.
        mask_path: The ground-truth mask; ``None`` for good images and in image-level sets.
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
    """The test set of one category.

    Attributes:
        name: Category name (the root folder's name).
        root: The category folder.
        samples: Good images first, then each defect type in name order.
        has_masks: Whether every defect image has a ground-truth mask (pixel metrics possible).
    """

    name: str
    root: Path
    samples: tuple[TestSample, ...]
    has_masks: bool = True

    @property
    def defects(self) -> list[str]:
        """Defect types, in name order (``good`` excluded)."""
        return sorted({s.defect for s in self.samples if s.is_anomalous})

    @property
    def normal(self) -> list[Path]:
        """The defect-free test images."""
        return [s.path for s in self.samples if not s.is_anomalous]

    @property
    def anomalous(self) -> list[Path]:
        """The defect images, every type."""
        return [s.path for s in self.samples if s.is_anomalous]

    @property
    def train_dir(self) -> Path:
        """``ROOT/train/good`` (it may not exist)."""
        return self.root / "train" / GOOD


def is_category(folder: Path) -> bool:
    """Whether ``folder`` has a ``test/`` sub-folder (looks like one category)."""
    return (folder / "test").is_dir()


def find_categories(root: str | Path, *, masks: str = "auto") -> list[Category]:
    """The categories under ``root``: the root itself, or each sub-folder that is a category.

    Args:
        root: One category or a folder of categories.
        masks: ``auto`` (use ``ground_truth/`` where it exists), ``required`` or ``ignore``.

    Raises:
        DatasetError: ``root`` is neither a category nor a folder of categories, or a category is
            malformed (see :func:`load_category`).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}; {LAYOUT_HELP}")
    if is_category(root):
        return [load_category(root, masks=masks)]
    folders = sorted(p for p in root.iterdir() if p.is_dir() and is_category(p))
    if not folders:
        hint = f" (pass {root.parent}, the folder that holds test/)" if root.name == "test" else ""
        raise DatasetError(
            f"{root} has no test/ folder and no category sub-folder with one{hint}; {LAYOUT_HELP}"
        )
    return [load_category(folder, masks=masks) for folder in folders]


def training_folders(root: str | Path) -> dict[str, Path]:
    """The categories of a folder of categories, for fitting one model each: ``{name: ROOT/name/train/good}``.

    Every sub-folder with a ``train/`` or a ``test/`` folder is a category; its ``train/good`` may be
    missing or empty (fitting it then fails with that message, and the others go on).

    Raises:
        DatasetError: ``root`` is not a folder, is itself one category, or holds none.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}")
    if (root / "train").is_dir() or is_category(root):
        raise DatasetError(
            f"{root} is one category; pass the folder that holds the categories ({root.parent})"
        )
    folders = sorted(
        p for p in root.iterdir() if p.is_dir() and ((p / "train").is_dir() or (p / "test").is_dir())
    )
    if not folders:
        raise DatasetError(
            f"{root} has no category sub-folder (one with train/good/ of defect-free images, as MVTec AD's "
            "ROOT/bottle/train/good)"
        )
    return {folder.name: folder / "train" / GOOD for folder in folders}


def _images(folder: Path) -> list[Path]:
    try:
        return list_images(folder)
    except ImageError as exc:
        raise DatasetError(str(exc)) from exc


def load_category(root: str | Path, name: str | None = None, *, masks: str = "auto") -> Category:
    """List the test images of one category and pair each defect image with its mask.

    Args:
        root: The category folder (holding ``test/``).
        name: Category name (default: the folder's name).
        masks: ``auto``: masks are read when ``ground_truth/`` exists (then every defect image needs
            one), else the set is image-level; ``required``: ``ground_truth/`` must exist; ``ignore``:
            image-level even if masks exist.

    Raises:
        DatasetError: ``test/good/`` or every defect folder is missing or empty, or a mask that is
            needed is missing (every missing one is listed).
    """
    if masks not in ("auto", "required", "ignore"):
        raise ValueError(f"masks must be auto, required or ignore, got {masks!r}")
    root = Path(root)
    test = root / "test"
    if not (test / GOOD).is_dir():
        raise DatasetError(f"{root}: missing {test / GOOD}/ (defect-free test images); {LAYOUT_HELP}")
    defects = sorted(p.name for p in test.iterdir() if p.is_dir() and p.name != GOOD)
    if not defects:
        raise DatasetError(f"{root}: no defect folder in {test}/ besides good/; {LAYOUT_HELP}")
    truth = root / GROUND_TRUTH
    if masks == "required" and not truth.is_dir():
        raise DatasetError(f"{root}: no {GROUND_TRUTH}/ folder, so no pixel metrics; {LAYOUT_HELP}")
    with_masks = masks != "ignore" and truth.is_dir()
    samples = [TestSample(path, GOOD) for path in _images(test / GOOD)]
    missing: list[str] = []
    for defect in defects:
        paths = sorted(p for p in (test / defect).iterdir() if p.is_file() and is_image(p))
        for path in paths:  # an empty defect folder is skipped
            mask_path = truth / defect / f"{path.stem}{MASK_SUFFIX}" if with_masks else None
            if mask_path is not None and not mask_path.is_file():
                missing.append(f"{path.relative_to(root)} -> {mask_path.relative_to(root)}")
            samples.append(TestSample(path, defect, mask_path))
    if len(samples) == len([s for s in samples if not s.is_anomalous]):
        raise DatasetError(f"{root}: no images in the defect folders {defects} of {test}; {LAYOUT_HELP}")
    if missing:
        shown = "; ".join(missing[:5]) + (f"; and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DatasetError(
            f"{root}: {len(missing)} defect image(s) without a ground-truth mask (image -> expected mask): "
            f"{shown}. Remove {truth} to evaluate image-level metrics only."
        )
    return Category(name=name or root.name, root=root, samples=tuple(samples), has_masks=with_masks)


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
