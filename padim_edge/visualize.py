"""Heat-map overlays for anomaly maps (numpy + Pillow only: no torch, no matplotlib).

The torch-free runtime imports this module to write per-image overlay PNGs, so it must stay small and
depend on nothing beyond the core requirements.

Anomaly maps live in the model's geometry (:class:`padim_edge.geometry.Geometry`): map a frame into
it with ``Geometry(resize, crop).image_view(frame)`` before drawing a map on top with
:func:`heatmap_overlay`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def _jet_lut() -> np.ndarray:
    """A 256-entry jet-like colormap (dark blue -> cyan -> yellow -> dark red) as ``uint8 [256, 3]``."""
    x = np.linspace(0.0, 1.0, 256)
    red = np.clip(1.5 - np.abs(4.0 * x - 3.0), 0.0, 1.0)
    green = np.clip(1.5 - np.abs(4.0 * x - 2.0), 0.0, 1.0)
    blue = np.clip(1.5 - np.abs(4.0 * x - 1.0), 0.0, 1.0)
    return np.round(np.stack([red, green, blue], axis=1) * 255.0).astype(np.uint8)


#: The colormap used by :func:`colorize`: index 0 is the lowest value, 255 the highest.
JET_LUT = _jet_lut()


def colorize(anomaly_map: np.ndarray, *, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Color an anomaly map with the jet-like LUT.

    Args:
        anomaly_map: ``float [h, w]`` map.
        vmin: Value drawn dark blue (default: the map's minimum). Lower values are clipped.
        vmax: Value drawn dark red (default: the map's maximum). Higher values are clipped.

    Returns:
        ``uint8 [h, w, 3]`` RGB. A flat map (``vmax <= vmin``) is drawn all dark blue; NaN as ``vmin``.
    """
    values = np.asarray(anomaly_map, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D anomaly map, got shape {list(values.shape)}")
    finite = values[np.isfinite(values)]
    low = float(vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    high = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 0.0)
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    scaled = np.nan_to_num(scaled, nan=0.0, posinf=1.0, neginf=0.0)
    index = np.clip(np.round(scaled * 255.0), 0, 255).astype(np.intp)
    return JET_LUT[index]


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The one-pixel inner outline of a boolean mask (pixels of the mask with a 4-neighbour outside it).

    Pixels on the image border count as having an outside neighbour, so a mask touching the border is
    closed there.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {list(mask.shape)}")
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def heatmap_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    alpha: float = 0.5,
    contour_mask: np.ndarray | None = None,
    contour_color: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Blend a colored anomaly map over an image, optionally outlining a ground-truth mask.

    Args:
        image: ``uint8 [h, w, 3]`` RGB image in the map's geometry (see
            :meth:`padim_edge.geometry.Geometry.image_view`).
        anomaly_map: ``float [h, w]`` anomaly map.
        vmin: Map value drawn dark blue (default: the map's minimum).
        vmax: Map value drawn dark red (default: the map's maximum). Use the same ``vmin``/``vmax`` for
            several images to make their colors comparable.
        alpha: Weight of the heat map in the blend, in ``[0, 1]`` (0: image only, 1: heat map only).
        contour_mask: Optional boolean ``[h, w]`` mask whose outline is drawn in ``contour_color``.
        contour_color: RGB color of the outline.

    Returns:
        ``uint8 [h, w, 3]`` RGB overlay.

    Raises:
        ValueError: Shapes or dtypes do not match, or ``alpha`` is outside ``[0, 1]``.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 [h, w, 3] image, got {image.dtype} {list(image.shape)}")
    if np.shape(anomaly_map) != image.shape[:2]:
        raise ValueError(
            f"anomaly map shape {list(np.shape(anomaly_map))} does not match image shape "
            f"{list(image.shape[:2])}; map the image into the model's geometry with Geometry.image_view() "
            "first"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colors = colorize(anomaly_map, vmin=vmin, vmax=vmax).astype(np.float32)
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
    out = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    if contour_mask is not None:
        if np.shape(contour_mask) != image.shape[:2]:
            raise ValueError(
                f"contour mask shape {list(np.shape(contour_mask))} does not match image shape "
                f"{list(image.shape[:2])}"
            )
        out[mask_outline(contour_mask)] = np.asarray(contour_color, dtype=np.uint8)
    return out


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write ``uint8 [h, w, 3]`` RGB, ``uint8 [h, w]`` gray or a boolean mask as a PNG file.

    Parent folders are created. Returns the path written.

    Raises:
        ValueError: The array is not one of the accepted shapes / dtypes.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"expected uint8 [h, w] or [h, w, 3], got {array.dtype} {list(array.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")
    return path
