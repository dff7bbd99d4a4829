"""Painting the demo set: the woven-fabric texture and the three defect types (numpy only).

Every good image comes from one texture family (plain weave of oriented sinusoidal gratings,
per-thread yarn irregularity, low-amplitude noise, a mild illumination gradient, a base colour with a
small jitter) with a random sub-pixel translation, a small rotation and a slightly different thread
period. Defects are local, clearly visible and cover 0.3 % to 5 % of the image each: ``scratch`` (a
thin curved line, much darker or brighter), ``stain`` (an irregular blotch with soft edges and a colour
shift, texture kept), ``hole`` (a small dark irregular disk with a bright rim). Each is painted
through an alpha map; its mask is ``alpha >= 0.5``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

#: Defect types, in the order they are generated and listed.
DEFECT_TYPES: tuple[str, ...] = ("scratch", "stain", "hole")
#: Every defect mask covers this fraction of the image (inclusive bounds).
AREA_RANGE: tuple[float, float] = (0.003, 0.05)
# Defects are re-drawn (from the same random stream, so still deterministic) until their mask falls in
# this slightly narrower band, which keeps AREA_RANGE true with a margin.
_TARGET_AREA = (0.0035, 0.045)
_MAX_TRIES = 100

Grid = tuple[np.ndarray, np.ndarray]
Defect = tuple[np.ndarray, np.ndarray]  # alpha [H, W] in [0, 1], target colour [H, W, 3]


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.5, 0.0, 255.0).astype(np.uint8)  # round half up, then truncate


# --------------------------------------------------------------------------------------------------
# Texture


def _thread_profile(rng: np.random.Generator, phase: np.ndarray) -> np.ndarray:
    """Per-thread brightness offsets (yarn irregularity), indexed by the thread a pixel lies on."""
    index = np.floor(phase / (2 * np.pi)).astype(np.int64)
    low = int(index.min())
    table = rng.normal(0.0, 1.0, int(index.max()) - low + 1).astype(np.float32)
    return table[index - low]


def texture(rng: np.random.Generator, grid: Grid, size: int) -> np.ndarray:
    """One defect-free woven-fabric image, float32 ``[H, W, 3]`` on the 0..255 scale."""
    ys, xs = grid
    scale = size / 256.0
    # Python floats keep the float32 grids in float32 (numpy scalars would promote to float64).
    period = max(4.0, 9.0 * scale) * float(rng.uniform(0.97, 1.03))
    theta = math.radians(float(rng.normal(0.0, 1.5)))
    shift_u, shift_v = (float(x) for x in rng.uniform(0.0, period, 2))
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    k = 2 * math.pi / period
    u = (xs * cos_t + ys * sin_t + shift_u) * k  # phase across the warp threads (vertical)
    v = (ys * cos_t - xs * sin_t + shift_v) * k  # phase across the weft threads (horizontal)

    warp, weft = np.sin(u), np.sin(v)
    over = np.tanh(3.0 * warp * weft)  # +1: warp thread on top at this crossing, -1: weft on top
    # Each thread is rounded: bright along its middle, dark in the gaps between threads.
    warp_round = np.abs(np.cos(0.5 * u))
    weft_round = np.abs(np.cos(0.5 * v))
    top = np.where(over > 0, warp_round, weft_round)
    shade = 0.35 * top + 0.12 * over
    shade += 0.035 * (_thread_profile(rng, u) + _thread_profile(rng, v))
    shade += 0.008 * rng.standard_normal(shade.shape, dtype=np.float32)

    angle = float(rng.uniform(0.0, 2 * np.pi))
    ramp = (xs * math.cos(angle) + ys * math.sin(angle)) / size
    light = 1.0 + float(rng.uniform(0.05, 0.12)) * (ramp - float(ramp.mean()))

    base = np.array([112.0, 122.0, 138.0]) * rng.uniform(0.95, 1.05) + rng.normal(0.0, 2.0, 3)
    gray = (0.75 + shade) * light
    return gray[..., None] * base.astype(np.float32)[None, None, :]


# --------------------------------------------------------------------------------------------------
# Defects


def draw_defect(
    painter: Callable[[np.random.Generator, np.ndarray, Grid, int], Defect],
    rng: np.random.Generator,
    image: np.ndarray,
    grid: Grid,
    size: int,
    area: tuple[float, float] = _TARGET_AREA,
) -> Defect:
    """Draw a defect with ``painter`` until its mask (``alpha >= 0.5``) covers ``area`` of the image."""
    low, high = area
    for _ in range(_MAX_TRIES):
        alpha, target = painter(rng, image, grid, size)
        covered = float(np.count_nonzero(alpha >= 0.5)) / (size * size)
        if low <= covered <= high:
            return alpha, target
    raise RuntimeError(f"could not draw a defect of area {low:.2%}..{high:.2%} in {_MAX_TRIES} tries")


def blend_defect(image: np.ndarray, defect: Defect) -> tuple[np.ndarray, np.ndarray]:
    """Blend a drawn defect into the float ``image`` (in place): the uint8 frame and its 0/255 mask
    (the pixels painted at least half strength)."""
    alpha, target = defect
    image += (target - image) * alpha[..., None]
    return to_uint8(image), np.where(alpha >= 0.5, 255, 0).astype(np.uint8)


def curve_alpha(
    rng: np.random.Generator,
    grid: Grid,
    size: int,
    *,
    length: float,
    width: float,
    bend: float = 0.35,
    border: float = 0.0,
) -> np.ndarray | None:
    """The alpha map of a quadratic-Bézier line of about ``length`` x ``width`` pixels.

    Its direction, position and bend (control point up to ``bend * length`` off the chord) are random;
    it stays ``border`` pixels (plus its half width and 4) inside the image. Returns None when the
    drawn curve leaves that area (the caller draws again).
    """
    margin = width + 4.0 + border
    angle = rng.uniform(0.0, np.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    length = min(length, 0.8 * (size - 2 * margin))
    center = rng.uniform(margin + length / 2, size - margin - length / 2, 2)
    start, end = center - direction * length / 2, center + direction * length / 2
    control = center + normal * rng.uniform(-bend, bend) * length
    t = np.linspace(0.0, 1.0, max(8, int(length / 4)))[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end  # [M, 2] as (x, y)
    if points.min() < margin or points.max() > size - 1 - margin:
        return None

    reach = width / 2 + 2.0  # beyond this distance from the line, alpha is 0
    x0, y0 = np.floor(points.min(axis=0) - reach - 1).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + reach + 1).astype(int) + 1
    ys, xs = grid
    dist = np.full((y1 - y0, x1 - x0), np.inf, np.float32)
    for a, b in itertools.pairwise(points):  # distance to each segment, in a window around it
        wx0, wy0 = np.floor(np.minimum(a, b) - reach).astype(int)
        wx1, wy1 = np.ceil(np.maximum(a, b) + reach).astype(int) + 1
        px, py = xs[wy0:wy1, wx0:wx1] - a[0], ys[wy0:wy1, wx0:wx1] - a[1]
        ab = b - a
        along = np.clip((px * ab[0] + py * ab[1]) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
        seg = np.hypot(px - along * ab[0], py - along * ab[1])
        window = dist[wy0 - y0 : wy1 - y0, wx0 - x0 : wx1 - x0]
        np.minimum(window, seg, out=window)
    alpha = np.zeros((size, size), np.float32)
    alpha[y0:y1, x0:x1] = np.clip(width / 2 + 0.5 - dist, 0.0, 1.0)
    return alpha


def _scratch(rng: np.random.Generator, image: np.ndarray, grid: Grid, size: int) -> Defect:
    """A thin quadratic-Bézier line, clearly darker or brighter than the cloth."""
    scale = size / 256.0
    length = rng.uniform(90.0, 170.0) * scale
    width = rng.uniform(2.6, 4.0) * max(scale, 0.75)
    alpha = curve_alpha(rng, grid, size, length=length, width=width)
    if alpha is None:
        return np.zeros((size, size), np.float32), image
    level = rng.uniform(20.0, 45.0) if rng.random() < 0.5 else rng.uniform(225.0, 250.0)
    target = np.full_like(image, level)
    return alpha, target


def blob_radius(rng: np.random.Generator, angle: np.ndarray, radius: float, wobble: float) -> np.ndarray:
    """An irregular closed outline: ``radius`` modulated by a few random angular harmonics."""
    out = np.ones_like(angle)
    for harmonic in (2, 3, 4, 5):
        out += rng.uniform(0.0, wobble / harmonic) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    return radius * out


def _stain(rng: np.random.Generator, image: np.ndarray, grid: Grid, size: int) -> Defect:
    """A soft-edged irregular blotch that shifts the colour (rust or oil) but keeps the weave."""
    scale = size / 256.0
    radius = rng.uniform(12.0, 27.0) * scale
    margin = 1.6 * radius + 4.0
    cx, cy = rng.uniform(margin, size - margin, 2)
    ys, xs = grid
    dx, dy = xs - cx, ys - cy
    rho = np.sqrt(dx * dx + dy * dy)
    outline = blob_radius(rng, np.arctan2(dy, dx), radius, wobble=0.35)
    softness = max(1.0, 0.12 * radius)
    peak = rng.uniform(0.9, 0.97)
    alpha = (peak / (1.0 + np.exp((rho - outline) / softness))).astype(np.float32)

    if rng.random() < 0.5:
        tint = np.array([0.95, 0.55, 0.32]) * rng.uniform(0.75, 0.9)  # rust
    else:
        tint = np.array([0.42, 0.40, 0.36]) * rng.uniform(0.8, 1.0)  # oil
    target = image * tint.astype(np.float32)[None, None, :]
    return alpha, target


def _hole(rng: np.random.Generator, image: np.ndarray, grid: Grid, size: int) -> Defect:
    """A small dark, slightly irregular disk with a bright rim."""
    scale = size / 256.0
    radius = rng.uniform(8.5, 15.0) * scale
    rim = rng.uniform(2.0, 3.5) * max(scale, 0.75)
    margin = 1.3 * (radius + rim) + 4.0
    cx, cy = rng.uniform(margin, size - margin, 2)
    ys, xs = grid
    dx, dy = xs - cx, ys - cy
    rho = np.sqrt(dx * dx + dy * dy)
    outline = blob_radius(rng, np.arctan2(dy, dx), radius, wobble=0.25)
    alpha = np.clip(outline + rim + 0.5 - rho, 0.0, 1.0).astype(np.float32)

    dark = rng.uniform(12.0, 30.0) * (0.6 + 0.4 * np.clip(rho / outline, 0.0, 1.0))
    bright = rng.uniform(215.0, 245.0)
    on_rim = np.clip(rho - outline + 0.5, 0.0, 1.0)
    level = (1.0 - on_rim) * dark + on_rim * bright
    target = np.repeat(level.astype(np.float32)[..., None], 3, axis=2)
    return alpha, target


PAINTERS: dict[str, Callable[[np.random.Generator, np.ndarray, Grid, int], Defect]] = {
    "scratch": _scratch,
    "stain": _stain,
    "hole": _hole,
}
