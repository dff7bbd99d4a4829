"""A label-free accuracy check: paste synthetic defects onto held-out normal frames and measure AUROC.

The fidelity report's Spearman and map error compare scores of *normal* frames, which says little about
whether a variant still separates defects from normal parts. This module builds a small labelled set
from the held-out frames alone: each frame is squashed to the model's ``resize`` square (its view, so
the pasted defect lands where the model looks) and scored once as it is and once with one defect blended
in (:func:`padim_edge.demo.texture.blend_defect`). Defects cycle through blobs and thin lines of
:data:`SYNTHETIC_SIZES` x :data:`SYNTHETIC_CONTRASTS` (brightness shift in standard deviations of the
frame), placed inside the center crop; each frame's defect comes from its own generator seeded with
``(SYNTHETIC_SEED, index)``, so the set depends on the frames and the seed only. Both models score the
same set; the image AUROC (clean vs defected frames) and the pixel AUROC (all pixels, the pasted masks)
of the reference and the variant, and their drop, are the report's ``synthetic_*`` figures. numpy +
Pillow + onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from padim_edge.calibration.fidelity.figures import auroc
from padim_edge.calibration.settings import (
    SYNTHETIC_CONTRASTS,
    SYNTHETIC_MIN_STD,
    SYNTHETIC_SEED,
    SYNTHETIC_SIZES,
)
from padim_edge.demo.texture import blend_defect, blob_radius, curve_alpha
from padim_edge.geometry import Geometry
from padim_edge.images import resize_frame

SHAPES = ("blob", "line")


@dataclass(frozen=True)
class Kind:
    """One pasted defect's recipe.

    Attributes:
        shape: ``blob`` or ``line``.
        size: Radius as a fraction of the crop edge.
        contrast: Brightness shift in standard deviations of the frame's grey crop.
    """

    shape: str
    size: float
    contrast: float

    def __str__(self) -> str:
        return f"{self.shape} {self.size:g} x {self.contrast:g} sd"


def kind_of(index: int) -> Kind:
    """The recipe of frame ``index``: contrasts vary fastest, then sizes, then shapes."""
    contrasts, sizes = len(SYNTHETIC_CONTRASTS), len(SYNTHETIC_SIZES)
    return Kind(
        shape=SHAPES[(index // (contrasts * sizes)) % len(SHAPES)],
        size=SYNTHETIC_SIZES[(index // contrasts) % sizes],
        contrast=SYNTHETIC_CONTRASTS[index % contrasts],
    )


@dataclass
class SyntheticSet:
    """Clean and defected frames in the model's ``resize`` square, and the defects' masks in its crop.

    Attributes:
        clean: ``uint8 [resize, resize, 3]`` frames.
        defected: The same frames, each with one pasted defect.
        masks: ``bool [N, crop, crop]`` masks of the pasted defects, aligned with the anomaly maps.
        kinds: Each defect's recipe.
    """

    clean: list[np.ndarray]
    defected: list[np.ndarray]
    masks: np.ndarray
    kinds: list[Kind]


def _alpha(kind: Kind, rng: np.random.Generator, grid: tuple[np.ndarray, np.ndarray], geometry: Geometry):
    """The defect's alpha map in the ``resize`` square, inside the center crop."""
    size, crop, offset = geometry.resize, geometry.crop, geometry.offset
    radius = max(2.0, kind.size * crop)
    if kind.shape == "line":
        for _ in range(20):
            alpha = curve_alpha(
                rng, grid, size, length=6.0 * radius, width=max(2.0, radius / 2.5), border=float(offset)
            )
            if alpha is not None:
                return alpha
    margin = 1.4 * radius + 2.0
    cx, cy = rng.uniform(offset + margin, offset + crop - margin, 2)
    ys, xs = grid
    dx, dy = xs - cx, ys - cy
    rho = np.sqrt(dx * dx + dy * dy)
    outline = blob_radius(rng, np.arctan2(dy, dx), radius, wobble=0.3)
    softness = max(0.75, 0.1 * radius)
    return (1.0 / (1.0 + np.exp(np.clip((rho - outline) / softness, -50.0, 50.0)))).astype(np.float32)


def paste(
    frame: np.ndarray, index: int, geometry: Geometry, *, seed: int = SYNTHETIC_SEED, grid=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Kind]:
    """Frame ``index`` in the ``resize`` square, clean and with its defect, and the defect's crop mask.

    Args:
        frame: ``uint8 [H, W, 3]`` normal frame of any size.
        index: Its position in the set (picks the recipe and seeds the generator).
        geometry: The model's resize and crop.
        seed: Base seed.
        grid: ``(ys, xs)`` float32 pixel grids of the square (made when ``None``).

    Returns:
        ``(clean, defected, mask, kind)``; ``mask`` is ``bool [crop, crop]``.
    """
    size = geometry.resize
    if grid is None:
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
        grid = (ys, xs)
    clean = resize_frame(np.ascontiguousarray(frame, dtype=np.uint8), (size, size))
    kind = kind_of(index)
    rng = np.random.default_rng((seed, index))
    alpha = _alpha(kind, rng, grid, geometry)
    view = clean[
        geometry.offset : geometry.offset + geometry.crop, geometry.offset : geometry.offset + geometry.crop
    ]
    grey = view.astype(np.float32).mean(axis=2)
    delta = kind.contrast * max(float(grey.std()), SYNTHETIC_MIN_STD)
    mean = float(grey.mean())
    up = mean + delta <= 255.0 and (mean - delta < 0.0 or rng.random() < 0.5)
    image = clean.astype(np.float32)
    target = np.clip(image + (delta if up else -delta), 0.0, 255.0)
    defected, mask = blend_defect(image, (alpha, target))
    return clean, defected, geometry.mask_view(mask), kind


def make_set(frames: Sequence[np.ndarray], geometry: Geometry, *, seed: int = SYNTHETIC_SEED) -> SyntheticSet:
    """The synthetic set of ``frames`` (deterministic: the same frames and seed give the same set)."""
    size = geometry.resize
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    clean, defected, masks, kinds = [], [], [], []
    for index, frame in enumerate(frames):
        a, b, mask, kind = paste(frame, index, geometry, seed=seed, grid=(ys, xs))
        clean.append(a)
        defected.append(b)
        masks.append(mask)
        kinds.append(kind)
    empty = np.zeros((0, geometry.crop, geometry.crop), bool)
    return SyntheticSet(clean, defected, np.stack(masks) if masks else empty, kinds)


def predict(model, synthetic: SyntheticSet, *, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """One model's image scores and anomaly maps on the synthetic set: the clean frames, then the defected.

    Args:
        model: Anything with ``predict(frames, batch_size)`` returning predictions with ``score`` and
            ``anomaly_map`` (:class:`padim_edge.calibration.scoring.FrameModel`).
        synthetic: From :func:`make_set`.
        batch_size: Frames per call.

    Returns:
        ``(scores float64 [2n], maps float32 [2n, crop, crop])``.

    Raises:
        ValueError: The maps do not match the crop of the masks.
    """
    frames = synthetic.clean + synthetic.defected
    scores, maps = [], []
    for start in range(0, len(frames), batch_size):
        for prediction in model.predict(frames[start : start + batch_size], batch_size=batch_size):
            scores.append(prediction.score)
            maps.append(np.asarray(prediction.anomaly_map, dtype=np.float32))
    stacked = np.stack(maps)
    if stacked.shape[1:] != synthetic.masks.shape[1:]:
        crop = synthetic.masks.shape[1:]
        raise ValueError(f"anomaly maps {stacked.shape[1:]} do not match the crop {crop}")
    return np.asarray(scores, np.float64), stacked


def all_masks(synthetic: SyntheticSet) -> np.ndarray:
    """``bool [2n, crop, crop]`` defect pixels of :func:`predict`'s frames (none on the clean ones)."""
    return np.concatenate([np.zeros_like(synthetic.masks), synthetic.masks])


def aurocs(scores: np.ndarray, maps: np.ndarray, synthetic: SyntheticSet) -> tuple[float, float]:
    """``(image AUROC, pixel AUROC)`` of :func:`predict`'s output (``nan`` where undefined)."""
    labels = np.arange(len(scores)) >= len(synthetic.clean)
    return auroc(scores, labels), auroc(maps, all_masks(synthetic))


def score(model, synthetic: SyntheticSet, *, batch_size: int = 8) -> tuple[float, float]:
    """``(image AUROC, pixel AUROC)`` of one model on the synthetic set (``nan`` where undefined).

    Args:
        model: As for :func:`predict`.
        synthetic: From :func:`make_set`.
        batch_size: Frames per call.
    """
    return aurocs(*predict(model, synthetic, batch_size=batch_size), synthetic)


def crop_of(model) -> Geometry:
    """The model's geometry from its metadata (``info.resize`` / ``info.crop``)."""
    return Geometry(int(model.info.resize), int(model.info.crop))
