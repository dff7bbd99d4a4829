"""The model's view of a frame: square resize, then center crop (numpy + Pillow; no torch).

Every frame, whatever its size and aspect ratio, is resized to ``resize x resize`` (PaDiM's
convention: a non-square camera frame is squashed, not padded) and then center-cropped to
``crop x crop``; anomaly maps live in that crop. This module is the one place that rule is written
down for the torch-free side: overlays (:mod:`padim_edge.visualize`), ground-truth masks
(:mod:`padim_edge.evaluation`) and benchmarks all map images through it. The graph itself does the
same with :class:`padim_edge.export.preprocessing.Preprocess`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Smallest crop the backbones accept (three stride-2 stages and more must leave a patch grid).
MIN_CROP = 32


@dataclass(frozen=True)
class Geometry:
    """Square resize edge and center-crop edge of a model.

    Raises:
        ValueError: ``crop`` is below :data:`MIN_CROP` or larger than ``resize``.
    """

    resize: int
    crop: int

    def __post_init__(self) -> None:
        if not MIN_CROP <= self.crop <= self.resize:
            raise ValueError(f"need {MIN_CROP} <= crop <= resize, got crop={self.crop}, resize={self.resize}")

    @property
    def offset(self) -> int:
        """Top/left offset of the center crop inside the resized square (the same on both axes)."""
        return (self.resize - self.crop) // 2

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(left, top, right, bottom)`` of the crop inside the ``resize`` square (Pillow's order)."""
        return self.offset, self.offset, self.offset + self.crop, self.offset + self.crop

    def image_view(self, image: np.ndarray) -> np.ndarray:
        """A frame in the model's geometry, for display: bilinear resize, center crop.

        Args:
            image: ``uint8 [H, W, 3]`` RGB frame of any size.

        Returns:
            ``uint8 [crop, crop, 3]``, pixel-aligned with the model's anomaly map. (The graph resizes
            with antialiasing; for display the difference does not matter.)
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {list(image.shape)}")
        resized = Image.fromarray(image).resize((self.resize, self.resize), Image.Resampling.BILINEAR)
        return np.asarray(resized.crop(self.box), dtype=np.uint8)

    def mask_view(self, mask: np.ndarray) -> np.ndarray:
        """A ground-truth mask in the model's geometry: nearest resize, center crop.

        Args:
            mask: ``[H, W]`` mask (bool or 0/255), the size of its image.

        Returns:
            ``bool [crop, crop]``, pixel-aligned with the model's anomaly map.
        """
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"expected a 2-D mask, got shape {list(mask.shape)}")
        image = Image.fromarray((mask > 0).astype(np.uint8) * 255)
        resized = image.resize((self.resize, self.resize), Image.Resampling.NEAREST)
        return np.asarray(resized.crop(self.box)) > 0


def parse_size(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"480x640"`` -> (480, 640), as (H, W).

    Raises:
        ValueError: Not ``N`` or ``HxW`` with positive integers.
    """
    parts = text.strip().lower().replace("*", "x").split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected N or HxW (height x width), got {text!r}") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise ValueError(f"expected N or HxW with positive sizes, got {text!r}")
    return sizes[0], sizes[1]
