"""Heat-map overlays for anomaly maps (numpy + Pillow only: no torch, no matplotlib).

The torch-free runtime imports this module to write per-image overlay PNGs, so it must stay small and
depend on nothing beyond the core requirements.

Anomaly maps live in the model's geometry (:class:`padim_edge.geometry.Geometry`): map a frame into
it with ``Geometry(resize, crop).image_view(frame)`` before drawing a map on top with
:func:`heatmap_overlay`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from padim_edge import atomic
from padim_edge.metadata import ModelInfo


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


@dataclass(frozen=True)
class ColourScale:
    """The fixed map values drawn dark blue (``low``) and dark red (``high``), and where they came from.

    One scale for every overlay of a model, so colours mean the same thing from image to image and
    from run to run (see :func:`colour_scale`).
    """

    low: float
    high: float
    source: str


def colour_scale(info: ModelInfo) -> ColourScale | None:
    """The documented colour scale of a model's overlays, or ``None`` when its metadata has no basis.

    * ``low``: the median anomaly-map value of the training images (``train_scores.map_p50``), the
      typical normal pixel; 0 when unknown.
    * ``high``: 1.5 x the baked threshold when the model is calibrated (the threshold itself is drawn
      two thirds up the bar, in yellow-orange); otherwise 2 x the 99th percentile of the training
      image scores (``train_scores.p99``). That one is rough: images the model was fitted on score lower
      than new normal images (1.7x lower on the demo set, with fewer images than dims), so an
      uncalibrated model's normal parts can look warm. Calibrate a threshold for a meaningful scale.
    """
    stats = info.get("train_scores") or {}
    low = float(stats.get("map_p50", 0.0))
    if info.threshold is not None:
        return ColourScale(
            low,
            1.5 * info.threshold,
            f"0 at the median training pixel, 1 at 1.5 x the threshold {info.threshold:.4g}",
        )
    if "p99" in stats:
        return ColourScale(low, 2.0 * float(stats["p99"]), "2 x the 99th-percentile training score")
    return None


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def annotated_overlay(
    image: np.ndarray,
    anomaly_map: np.ndarray,
    scale: ColourScale,
    *,
    score: float,
    label: str | None = None,
) -> np.ndarray:
    """An overlay with the image score written on it and a colour bar on its right, labelled with ``scale``.

    Args:
        image: ``uint8 [h, w, 3]`` in the map's geometry.
        anomaly_map: ``float [h, w]``.
        scale: The colour scale (the same for every image of a run).
        score: The image score, written top-left.
        label: ``ANOMALOUS`` / ``ok`` for a calibrated model, written after the score.

    Returns:
        ``uint8 [h, w + bar, 3]`` RGB.
    """
    overlay = heatmap_overlay(image, anomaly_map, vmin=scale.low, vmax=scale.high)
    height, width = overlay.shape[:2]
    bar_width, text_width = 12, 56
    canvas = Image.new("RGB", (width + bar_width + text_width, height), (24, 24, 24))
    canvas.paste(Image.fromarray(overlay), (0, 0))
    ramp = JET_LUT[np.linspace(255, 0, height).round().astype(int)]
    canvas.paste(Image.fromarray(np.repeat(ramp[:, None, :], bar_width, axis=1)), (width + 2, 0))
    draw, font = ImageDraw.Draw(canvas), _font()
    x = width + bar_width + 4
    draw.text((x, 0), f"{scale.high:.3g}", fill=(235, 235, 235), font=font)
    draw.text((x, height - 14), f"{scale.low:.3g}", fill=(235, 235, 235), font=font)
    text = f"score {score:.4g}" + (f" {label}" if label else "")
    draw.rectangle((0, 0, min(width, 7 * len(text) + 6), 15), fill=(0, 0, 0))
    draw.text((3, 1), text, fill=(255, 80, 80) if label == "ANOMALOUS" else (255, 255, 255), font=font)
    return np.asarray(canvas, dtype=np.uint8)


def save_png(array: np.ndarray, path: str | Path, *, compress_level: int | None = None) -> Path:
    """Write ``uint8 [h, w, 3]`` RGB, ``uint8 [h, w]`` gray or a boolean mask as a PNG file.

    Parent folders are created; the file is written atomically. Returns the path written.

    Args:
        array: The picture.
        path: The ``.png`` file.
        compress_level: zlib level 0-9 (``None``: Pillow's default, 6). Overlays use 1
            (:data:`padim_edge.runtime.outputs.PNG_COMPRESS_LEVEL`): a few percent larger, much faster.

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
    buffer = io.BytesIO()
    options = {} if compress_level is None else {"compress_level": int(compress_level)}
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", **options)
    atomic.write_bytes(path, buffer.getvalue())
    return path
