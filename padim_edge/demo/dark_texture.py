"""A dark, low-contrast, rubber-like evaluation set cut from a texture photo scikit-image ships.

The third evaluation set, beside the magnetic tile and the woven-fabric demo (:mod:`.dataset`), with
other statistics: dark (mean grey level about 40 of 255), low contrast (std about 7), a fine random
grain and no alignment between frames. Each frame is a random crop of ``skimage.data.gravel()`` (or
``grass()``) at a random angle (0..360 degrees), scale (0.85..1.1) and mirror, remapped to a dark level
and contrast with a faint neutral tint, a mild illumination gradient and sensor noise. Defects are
subtle, as on moulded rubber, each 0.08 % to 3 % of the image and kept out of the outer 7 % border
(a centre crop keeps them): ``scratch`` (a thin, slightly brighter curved line), ``bubble`` (one to
three small pits or blisters, darker or brighter), ``cut`` (a short dark slit), ``contamination`` (a
soft, lighter, dust-coloured spot that flattens the grain). Masks are ``alpha >= 0.5`` of the painted
defect, so every mask pixel changed by at least half the defect's contrast.

The same arguments give byte-identical files (one random stream per image, as in the demo set).

Measured on the default set (seed 0; 200 train, 60 good + 160 defective test images), 2 cores:
MobileNetV2 ImageNet weights, fp32 (resize 256, crop 224, 100 dims): image AUROC 0.787, pixel AUROC
0.944, PRO 0.850 (per defect image / pixel: scratch 0.866 / 0.959, bubble 0.752 / 0.945, cut
0.811 / 0.983, contamination 0.720 / 0.931); generating it takes about 6 s.

scikit-image is optional (``pip install 'padim-edge[bench]'``): it is imported only when a set is made.

``python -m padim_edge.demo.dark_texture ROOT [--seed N] [--train N] [--small] ...`` writes one.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from padim_edge.demo.dataset import MANIFEST_NAME, DemoDataset, write_set
from padim_edge.demo.texture import (
    Defect,
    Grid,
    blend_defect,
    blob_radius,
    curve_alpha,
    draw_defect,
    to_uint8,
)
from padim_edge.extras import MissingExtraError

__all__ = [
    "AREA_RANGE",
    "DEFECT_TYPES",
    "MANIFEST_NAME",
    "MIN_SIZE",
    "SMALL",
    "SOURCES",
    "dark_summary",
    "load_source",
    "main",
    "make_dark_texture",
]

#: Defect types, in the order they are generated and listed.
DEFECT_TYPES: tuple[str, ...] = ("scratch", "bubble", "cut", "contamination")
#: skimage.data images a set can be cut from (grey, fine-grained, shipped with scikit-image).
SOURCES: tuple[str, ...] = ("gravel", "grass")
#: Every defect mask covers this fraction of the image (inclusive bounds).
AREA_RANGE: tuple[float, float] = (0.0008, 0.03)
#: Smallest supported image edge.
MIN_SIZE = 96
#: Counts of ``--small`` (a quick smoke-test set).
SMALL: dict[str, int] = {"train": 20, "test_good": 8, "test_defect_per_type": 4}
#: Per-frame mean grey level and texture contrast (std, grey levels), drawn uniformly.
LEVEL_RANGE: tuple[float, float] = (34.0, 46.0)
CONTRAST_RANGE: tuple[float, float] = (5.5, 8.0)

_INSTALL = "pip install 'padim-edge[bench]'"
_GENERATOR = "padim_edge.demo.dark_texture"
_GENERATOR_VERSION = 1
_TARGET_AREA = (0.001, 0.027)  # narrower than AREA_RANGE: keeps it true with a margin
_BORDER = 0.07  # defects stay this fraction of the edge away from the border
_SCALE_RANGE = (0.85, 1.1)


def load_source(name: str = "gravel") -> np.ndarray:
    """The ``skimage.data`` texture ``name`` as float32, standardised (mean 0, std 1).

    Raises:
        MissingExtraError: scikit-image is not installed (the message says what to install).
        ValueError: ``name`` is not one of :data:`SOURCES`.
    """
    if name not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {name!r}")
    try:
        import skimage.data
    except ImportError as exc:
        raise MissingExtraError(
            f"the dark texture set needs scikit-image, which is not installed: {_INSTALL}"
        ) from exc
    image = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2)
    return ((image - image.mean()) / image.std()).astype(np.float32)


def make_dark_texture(
    root: str | Path,
    *,
    seed: int = 0,
    train: int = 200,
    test_good: int = 60,
    test_defect_per_type: int = 40,
    size: int = 256,
    source: str = "gravel",
    overwrite: bool = False,
    progress: bool = False,
) -> DemoDataset:
    """Generate (or reuse) the dark texture set under ``root`` (MVTec layout, like the demo set).

    Args:
        root: Target folder; created if missing.
        seed: Random seed; the same arguments always give byte-identical files.
        train: Number of defect-free training images (``train/good``).
        test_good: Number of defect-free test images (``test/good``).
        test_defect_per_type: Number of test images per defect type (:data:`DEFECT_TYPES`).
        size: Image edge in pixels (square RGB images), :data:`MIN_SIZE` to 320.
        source: The ``skimage.data`` texture to cut frames from, one of :data:`SOURCES`.
        overwrite: Replace an existing set. Only the ``train``, ``test`` and ``ground_truth`` sub-folders
            and the manifest of ``root`` are deleted; other files there are left alone.
        progress: Show a progress bar (stderr).

    Returns:
        The dataset description.

    Raises:
        ValueError: ``seed`` or a count is negative, ``train`` is zero, ``size`` is out of range or
            ``source`` is unknown.
        FileExistsError: ``root`` is a file, or a non-empty folder that is not a complete dark texture set
            made with the same parameters, and ``overwrite`` is False.
        MissingExtraError: scikit-image is not installed.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if train < 1:
        raise ValueError(f"train must be >= 1, got {train}")
    if test_good < 0 or test_defect_per_type < 0:
        raise ValueError(
            f"test counts must be >= 0, got test_good={test_good}, "
            f"test_defect_per_type={test_defect_per_type}"
        )
    if not MIN_SIZE <= size <= 320:  # 320: a rotated crop (scale 1.1) still fits in the 512 px source
        raise ValueError(f"size must be in {MIN_SIZE}..320, got {size}")
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")

    root = Path(root)
    params: dict[str, int | str] = {
        "seed": int(seed),
        "train": int(train),
        "test_good": int(test_good),
        "test_defect_per_type": int(test_defect_per_type),
        "size": int(size),
        "source": source,
    }
    counts = {"train/good": int(train), "test/good": int(test_good)}
    counts.update({f"test/{name}": int(test_defect_per_type) for name in DEFECT_TYPES})
    dataset = DemoDataset(
        root=root,
        train_dir=root / "train" / "good",
        test_dir=root / "test",
        defect_types=DEFECT_TYPES,
        counts=counts,
    )
    texture_z = load_source(source)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    grid: Grid = (ys, xs)

    def paint(rng: np.random.Generator, defect: str | None) -> tuple[np.ndarray, np.ndarray | None]:
        image, level = dark_frame(rng, texture_z, grid, size)
        if defect is None:
            return to_uint8(image), None
        painter = _PAINTERS[defect]

        def draw(rng: np.random.Generator, image: np.ndarray, grid: Grid, size: int) -> Defect:
            return painter(rng, image, grid, size, level)

        return blend_defect(image, draw_defect(draw, rng, image, grid, size, area=_TARGET_AREA))

    return write_set(
        dataset,
        params,
        paint,
        generator=(_GENERATOR, _GENERATOR_VERSION),
        label="dark texture set",
        command="python -m padim_edge.demo.dark_texture ROOT",
        overwrite=overwrite,
        progress=progress,
    )


def dark_summary(ds: DemoDataset) -> str:
    """One line describing a dark texture set, for CLI output."""
    return (
        f"dark texture set: {ds.counts['train/good']} train/good, {ds.counts['test/good']} test/good, "
        f"{ds.num_defects} defects ({', '.join(ds.defect_types)}) in {ds.root}"
    )


# --------------------------------------------------------------------------------------------------
# Frames


def dark_frame(
    rng: np.random.Generator, texture_z: np.ndarray, grid: Grid, size: int
) -> tuple[np.ndarray, float]:
    """One defect-free frame, float32 ``[H, W, 3]`` on the 0..255 scale, and its mean grey level.

    A crop of the standardised texture at a random centre, angle, scale and mirror (bilinear), mapped
    to ``level + contrast * z`` with a mild illumination ramp, a faint tint and sensor noise.
    """
    ys, xs = grid
    angle = float(rng.uniform(0.0, 2 * np.pi))
    scale = float(rng.uniform(*_SCALE_RANGE))
    mirror = -1.0 if rng.random() < 0.5 else 1.0
    height, width = texture_z.shape
    half = scale * size / math.sqrt(2.0) + 2.0  # the rotated crop's half diagonal, in source pixels
    cx, cy = float(rng.uniform(half, width - half)), float(rng.uniform(half, height - half))
    a, b = scale * math.cos(angle), -scale * math.sin(angle) * mirror
    d, e = scale * math.sin(angle), scale * math.cos(angle) * mirror
    c, f = cx - (a + b) * size / 2, cy - (d + e) * size / 2  # the output centre maps to (cx, cy)
    crop = Image.fromarray(texture_z).transform(
        (size, size), Image.Transform.AFFINE, (a, b, c, d, e, f), resample=Image.Resampling.BILINEAR
    )
    z = np.asarray(crop, dtype=np.float32)

    level = float(rng.uniform(*LEVEL_RANGE))
    contrast = float(rng.uniform(*CONTRAST_RANGE))
    ramp_angle = float(rng.uniform(0.0, 2 * np.pi))
    ramp = (xs * math.cos(ramp_angle) + ys * math.sin(ramp_angle)) / size
    light = 1.0 + float(rng.uniform(0.04, 0.1)) * (ramp - float(ramp.mean()))
    gray = (level + contrast * z) * light + 1.2 * rng.standard_normal(z.shape, dtype=np.float32)
    tint = (np.array([1.0, 0.99, 1.02]) + rng.normal(0.0, 0.008, 3)).astype(np.float32)
    return gray[..., None] * tint[None, None, :], level


# --------------------------------------------------------------------------------------------------
# Defects: painter(rng, image, grid, size, level) -> (alpha, target), as in texture.py


def _centre(rng: np.random.Generator, size: int, extent: float) -> tuple[float, float]:
    margin = _BORDER * size + extent + 2.0
    cx, cy = rng.uniform(margin, size - margin, 2)
    return float(cx), float(cy)


def _scratch(rng: np.random.Generator, image: np.ndarray, grid: Grid, size: int, level: float) -> Defect:
    """A thin curved line, a little brighter than the rubber (scuffed surface), grain kept."""
    scale = size / 256.0
    length = rng.uniform(50.0, 120.0) * scale
    width = rng.uniform(1.6, 2.6) * max(scale, 0.75)
    alpha = curve_alpha(rng, grid, size, length=length, width=width, bend=0.25, border=_BORDER * size)
    if alpha is None:
        return np.zeros((size, size), np.float32), image
    lift = float(rng.uniform(12.0, 20.0))
    return alpha, image * 0.7 + (0.3 * level + lift)


def _bubble(rng: np.random.Generator, image: np.ndarray, grid: Grid, size: int, level: float) -> Defect:
    """One to three small pits (darker) or blisters (brighter), with a shaded rounded profile."""
    scale = size / 256.0
    ys, xs = grid
    alpha = np.zeros((size, size), np.float32)
    depth = np.zeros((size, size), np.float32)
    count = int(rng.integers(1, 4))
    cx, cy = _centre(rng, size, 22.0 * scale)
    for _ in range(count):
        radius = float(rng.uniform(4.5, 8.0)) * max(scale, 0.75)
        bx, by = cx + rng.uniform(-14.0, 14.0) * scale, cy + rng.uniform(-14.0, 14.0) * scale
        dx, dy = xs - bx, ys - by
        rho = np.sqrt(dx * dx + dy * dy)
        outline = blob_radius(rng, np.arctan2(dy, dx), radius, wobble=0.15)
        alpha = np.maximum(alpha, np.clip(outline + 0.5 - rho, 0.0, 1.0))
        depth = np.maximum(depth, np.sqrt(np.clip(1.0 - (rho / outline) ** 2, 0.0, 1.0)))
    sign = -1.0 if rng.random() < 0.6 else 1.0
    amount = float(rng.uniform(16.0, 26.0))
    shade = (0.45 + 0.55 * depth) * amount * sign
    return alpha.astype(np.float32), image + shade[..., None]


def _cut(rng: np.random.Generator, image: np.ndarray, grid: Grid, size: int, level: float) -> Defect:
    """A short, nearly straight dark slit (the cut's shadow)."""
    scale = size / 256.0
    length = rng.uniform(22.0, 50.0) * scale
    width = rng.uniform(1.8, 2.8) * max(scale, 0.75)
    alpha = curve_alpha(rng, grid, size, length=length, width=width, bend=0.08, border=_BORDER * size)
    if alpha is None:
        return np.zeros((size, size), np.float32), image
    return alpha, image * float(rng.uniform(0.4, 0.58))


def _contamination(
    rng: np.random.Generator, image: np.ndarray, grid: Grid, size: int, level: float
) -> Defect:
    """A soft irregular spot of lighter, dust-coloured matter that partly hides the grain."""
    scale = size / 256.0
    radius = float(rng.uniform(6.0, 13.0)) * scale
    cx, cy = _centre(rng, size, 1.5 * radius)
    ys, xs = grid
    dx, dy = xs - cx, ys - cy
    rho = np.sqrt(dx * dx + dy * dy)
    outline = blob_radius(rng, np.arctan2(dy, dx), radius, wobble=0.35)
    softness = max(0.8, 0.15 * radius)
    peak = float(rng.uniform(0.75, 0.9))
    alpha = (peak / (1.0 + np.exp(np.minimum((rho - outline) / softness, 60.0)))).astype(np.float32)
    dust = (level + float(rng.uniform(14.0, 24.0))) * np.array([1.04, 1.0, 0.9], np.float32)
    return alpha, image * 0.35 + 0.65 * dust[None, None, :]


_PAINTERS = {"scratch": _scratch, "bubble": _bubble, "cut": _cut, "contamination": _contamination}


# --------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    """``python -m padim_edge.demo.dark_texture ROOT``: write the dark rubber-like texture set."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m padim_edge.demo.dark_texture",
        description="Write a dark, low-contrast, rubber-like MVTec-layout set cut from a scikit-image "
        f"texture (needs scikit-image: {_INSTALL}).",
    )
    parser.add_argument("root", help="folder to write the dataset to (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, help="train/good images (default 200; --small: 20)")
    parser.add_argument("--test-good", type=int, help="test/good images (default 60; --small: 8)")
    parser.add_argument(
        "--test-defect-per-type", type=int, help="test images per defect type (default 40; --small: 4)"
    )
    parser.add_argument("--size", type=int, default=256, help=f"image edge, {MIN_SIZE}..320 (default 256)")
    parser.add_argument("--source", choices=SOURCES, default="gravel", help="skimage.data texture")
    parser.add_argument("--small", action="store_true", help="small default counts (a quick smoke test)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset there")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    defaults = SMALL if args.small else {"train": 200, "test_good": 60, "test_defect_per_type": 40}
    counts = {
        key: getattr(args, key) if getattr(args, key) is not None else value
        for key, value in defaults.items()
    }
    try:
        ds = make_dark_texture(
            args.root,
            seed=args.seed,
            size=args.size,
            source=args.source,
            overwrite=args.overwrite,
            progress=not args.quiet,
            **counts,
        )
    except (FileExistsError, ValueError, MissingExtraError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(dark_summary(ds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
