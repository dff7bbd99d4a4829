"""The model's view of a frame: square resize, then center crop (numpy + Pillow; no torch).

Every frame, whatever its size and aspect ratio, is resized to ``resize x resize`` (PaDiM's
convention: a non-square camera frame is squashed, not padded) and then center-cropped to
``crop x crop``; anomaly maps live in that crop. This module is the one place that rule is written
down for the torch-free side: overlays (:mod:`padim_edge.visualize`), ground-truth masks
(:mod:`padim_edge.evaluation`) and benchmarks all map images through it, and
:meth:`Geometry.map_to_frame` maps an anomaly map back onto the camera frame. The graph itself does
the same with :class:`padim_edge.export.preprocessing.Preprocess`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

#: What :meth:`Geometry.map_to_frame` puts where the model did not look (outside the center crop).
OUTSIDE = ("nan", "edge")
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

    def map_to_frame(
        self, anomaly_map: np.ndarray, size: tuple[int, int], *, outside: str = "nan"
    ) -> np.ndarray:
        """An anomaly map in the original frame's pixels: the inverse of resize + center crop.

        Each frame pixel ``(y, x)`` is mapped to the ``resize`` square by the resize's own pixel-centre
        rule, ``s = (y + 0.5) * resize / H - 0.5`` (the same for ``x`` with ``W``), then into the crop
        (``s - offset``), where the map is read with bilinear interpolation. Frame pixels whose centre
        falls outside the crop's area (the margins the center crop cut off, ``offset`` square pixels on
        every side) get NaN, or with ``outside="edge"`` the value at the crop's nearest edge. A
        non-square frame is stretched back (the model squashed it to a square). numpy only.

        Args:
            anomaly_map: ``[crop, crop]`` map of one frame (``Prediction.anomaly_map``).
            size: ``(H, W)`` of the frame it came from.
            outside: ``nan`` (default: the model did not look there) or ``edge``.

        Returns:
            float32 ``[H, W]``.

        Raises:
            ValueError: The map is not ``[crop, crop]``, ``size`` is not positive, or ``outside`` is
                unknown.
        """
        anomaly_map = np.asarray(anomaly_map, dtype=np.float32)
        if anomaly_map.shape != (self.crop, self.crop):
            raise ValueError(
                f"expected a [{self.crop}, {self.crop}] anomaly map, got {list(anomaly_map.shape)}"
            )
        height, width = (int(v) for v in size)
        if height < 1 or width < 1:
            raise ValueError(f"frame size must be positive, got {size}")
        if outside not in OUTSIDE:
            raise ValueError(f"outside must be one of {', '.join(OUTSIDE)}, got {outside!r}")
        rows, row_inside = self._crop_coordinates(height)
        cols, col_inside = self._crop_coordinates(width)
        r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
        r1, c1 = np.minimum(r0 + 1, self.crop - 1), np.minimum(c0 + 1, self.crop - 1)
        fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
        top = anomaly_map[r0][:, c0] * (1 - fc) + anomaly_map[r0][:, c1] * fc
        bottom = anomaly_map[r1][:, c0] * (1 - fc) + anomaly_map[r1][:, c1] * fc
        frame = (top * (1 - fr) + bottom * fr).astype(np.float32)
        if outside == "nan":
            frame[~(row_inside[:, None] & col_inside[None, :])] = np.nan
        return frame

    def _crop_coordinates(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Per frame pixel along one axis: its coordinate in the crop (clamped) and whether it is inside."""
        square = (np.arange(length, dtype=np.float64) + 0.5) * self.resize / length - 0.5
        inside = (square - self.offset >= -0.5) & (square - self.offset <= self.crop - 0.5)
        return np.clip(square - self.offset, 0, self.crop - 1), inside


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
