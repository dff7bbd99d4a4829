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
#: A mask marking more than this share of its image as defect is reported (an inverted or noisy mask).
MOST_OF_IMAGE = 0.5
#: Masks named per kind of mask problem in a warning (the count says how many there are).
EXAMPLES = 3

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
        warnings: What the layout holds that the metrics ignore (masks of good images), one line each.
    """

    name: str
    root: Path
    samples: tuple[TestSample, ...]
    has_masks: bool = True
    warnings: tuple[str, ...] = ()

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
    warnings = _good_image_masks(root, [s.path for s in samples if not s.is_anomalous]) if with_masks else []
    return Category(
        name=name or root.name,
        root=root,
        samples=tuple(samples),
        has_masks=with_masks,
        warnings=tuple(warnings),
    )


def _good_image_masks(root: Path, good: list[Path]) -> list[str]:
    """The warning for ``ground_truth/good/<stem>_mask.png`` files that mark defect pixels on good images."""
    folder = root / GROUND_TRUTH / GOOD
    if not folder.is_dir():
        return []
    marked = []
    for image in good:
        mask = folder / f"{image.stem}{MASK_SUFFIX}"
        if mask.is_file() and load_mask(mask).any():
            marked.append(mask.relative_to(root).as_posix())
    if not marked:
        return []
    return [
        f"{len(marked)} good image(s) of test/good/ have a mask that marks defect pixels "
        f"({_examples(marked)}): good images are scored as defect-free and these masks are ignored; if the "
        "images show defects, move them to test/<defect>/ and their masks to ground_truth/<defect>/"
    ]


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:EXAMPLES])
    return shown + (f" and {len(items) - EXAMPLES} more" if len(items) > EXAMPLES else "")


def load_mask(
    path: str | Path, shape: tuple[int, int] | None = None, *, problems: MaskProblems | None = None
) -> np.ndarray:
    """Decode a ground-truth mask to ``bool [H, W]`` (any non-zero pixel is a defect).

    Args:
        path: The mask file (grayscale, RGB or 1-bit).
        shape: Expected ``(H, W)``, the size of the image the mask belongs to.
        problems: Where to note a mask that is not binary or marks most of its image (see
            :class:`MaskProblems`); the mask is returned as it is either way.

    Raises:
        DatasetError: The file cannot be decoded or its size differs from ``shape``.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            grey = np.asarray(image.convert("L"))
    except FileNotFoundError as exc:
        raise DatasetError(f"mask not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"cannot decode mask {path}: {exc}") from exc
    if shape is not None and grey.shape != tuple(shape):
        raise DatasetError(
            f"mask {path} is {grey.shape[1]}x{grey.shape[0]} (WxH) but its image is "
            f"{shape[1]}x{shape[0]}; masks must have the size of their image"
        )
    mask = grey > 0
    if problems is not None:
        problems.add(path, grey, mask)
    return mask


class MaskProblems:
    """Masks that decode but are likely wrong, gathered over a test set and worded as one warning each.

    * Not binary: grey levels besides 0 and one defect value. Every non-zero pixel is a defect, so
      background noise of a few grey levels (a JPEG-like or resampled mask) reads as defect.
    * Most of the image: more than :data:`MOST_OF_IMAGE` of the pixels marked (an inverted mask, white
      for normal, or that noise).
    """

    def __init__(self, root: Path | None = None) -> None:
        """``root``: the category folder; masks are named relative to it."""
        self.root = root
        self.masks = 0
        self.not_binary: list[str] = []
        self.most: list[str] = []

    def add(self, path: Path, grey: np.ndarray, mask: np.ndarray) -> None:
        """Note one decoded mask (``grey`` its 8-bit values, ``mask`` its defect pixels)."""
        self.masks += 1
        name = (
            path.relative_to(self.root).as_posix() if self.root and path.is_relative_to(self.root) else path
        )
        levels = np.unique(grey)
        if len(levels) > 2 or (len(levels) == 2 and levels[0] != 0):
            self.not_binary.append(f"{name} ({len(levels)} grey levels, {levels[0]}..{levels[-1]})")
        covered = float(mask.mean()) if mask.size else 0.0
        if covered > MOST_OF_IMAGE:
            self.most.append(f"{name} ({covered:.0%})")

    def warnings(self) -> list[str]:
        """One line per kind of problem found (none: an empty list)."""
        out = []
        if self.not_binary:
            out.append(
                f"{len(self.not_binary)} of {self.masks} masks are not binary (grey levels besides 0 and one "
                f"defect value; every non-zero pixel counts as defect): {_examples(self.not_binary)}; save "
                "masks as 0 = normal, 255 = defect"
            )
        if self.most:
            out.append(
                f"{len(self.most)} of {self.masks} masks mark most of their image as defect (inverted, or "
                f"noise read as defect?): {_examples(self.most)}; masks are 0 = normal, non-zero = defect, "
                "and pixel AUROC and PRO are computed against them"
            )
        return out
