"""A small built-in demo dataset, generated procedurally (numpy + Pillow; no download, no torch).

:func:`make_demo_dataset` writes an MVTec AD style folder of woven-fabric textures::

    <root>/train/good/000.png ...                     defect-free images
    <root>/test/good/000.png ...
    <root>/test/<defect>/000.png ...                  defect types: scratch, stain, hole
    <root>/ground_truth/<defect>/000_mask.png ...     binary 0/255 masks, one per defect image
    <root>/demo.json                                  manifest: parameters and counts

Every image is RGB, ``size x size``. The good images all come from one texture family (plain weave of
oriented sinusoidal gratings, per-thread yarn irregularity, low-amplitude noise, a mild illumination
gradient, a base colour with a small jitter) with a random sub-pixel translation, a small rotation
and a slightly different thread period per image, so they are alike but never pixel-identical.

The defects are local, clearly visible and cover 0.3 % to 5 % of the image each:

* ``scratch``: a thin curved line, much darker or much brighter than the cloth;
* ``stain``: an irregular blotch with soft edges and a colour shift (rust or oil), texture kept;
* ``hole``: a small dark, slightly irregular disk with a bright rim.

Each defect is painted through an alpha map; its mask is ``alpha >= 0.5``. The output is
deterministic: the same arguments give the same bytes (each image has its own random stream, seeded by
``(seed, split, index)``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

#: Defect types, in the order they are generated and listed.
DEFECT_TYPES: tuple[str, ...] = ("scratch", "stain", "hole")
#: Name of the manifest written (last) at the root of a demo set.
MANIFEST_NAME = "demo.json"
#: Smallest supported image edge.
MIN_SIZE = 64
#: Every defect mask covers this fraction of the image (inclusive bounds).
AREA_RANGE: tuple[float, float] = (0.003, 0.05)

_GENERATOR = "padim_edge.demo"
_GENERATOR_VERSION = 1
# Defects are re-drawn (from the same random stream, so still deterministic) until their mask falls in
# this slightly narrower band, which keeps AREA_RANGE true with a margin.
_TARGET_AREA = (0.0035, 0.045)
_MAX_TRIES = 100
_SUBDIRS = ("train", "test", "ground_truth")

_Grid = tuple[np.ndarray, np.ndarray]
_Defect = tuple[np.ndarray, np.ndarray]  # alpha [H, W] in [0, 1], target colour [H, W, 3]


@dataclass(frozen=True)
class DemoDataset:
    """Where a demo set lies and what it holds.

    Attributes:
        root: The dataset folder.
        train_dir: ``root / "train" / "good"``: the defect-free images to fit on.
        test_dir: ``root / "test"``: one sub-folder per class (``good`` and each defect type).
        defect_types: Defect sub-folder names, e.g. ``("scratch", "stain", "hole")``.
        counts: Number of images per split folder, keyed ``"train/good"``, ``"test/good"``,
            ``"test/<defect>"``.
    """

    root: Path
    train_dir: Path
    test_dir: Path
    defect_types: tuple[str, ...]
    counts: dict[str, int]

    @property
    def ground_truth_dir(self) -> Path:
        """``root / "ground_truth"``: one mask folder per defect type (``<stem>_mask.png``)."""
        return self.root / "ground_truth"

    @property
    def num_defects(self) -> int:
        """Total number of defect test images."""
        return sum(self.counts[f"test/{name}"] for name in self.defect_types)


def make_demo_dataset(
    root: str | Path,
    *,
    seed: int = 0,
    train: int = 80,
    test_good: int = 12,
    test_defect_per_type: int = 8,
    size: int = 256,
    overwrite: bool = False,
) -> DemoDataset:
    """Generate (or reuse) the demo dataset under ``root``.

    Args:
        root: Target folder; created if missing.
        seed: Random seed; the same arguments always give byte-identical files.
        train: Number of defect-free training images (``train/good``).
        test_good: Number of defect-free test images (``test/good``).
        test_defect_per_type: Number of test images per defect type.
        size: Image edge in pixels (square images), at least :data:`MIN_SIZE`.
        overwrite: Replace an existing dataset. Only the ``train``, ``test`` and ``ground_truth``
            sub-folders and the manifest of ``root`` are deleted; other files there are left alone.

    Returns:
        The dataset description.

    Raises:
        ValueError: ``seed`` or a count is negative, ``train`` is zero, or ``size`` is below
            :data:`MIN_SIZE`.
        FileExistsError: ``root`` is a file, or a non-empty folder that is not a complete demo set made
            with the same parameters, and ``overwrite`` is False.
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
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")

    root = Path(root)
    params = {
        "seed": int(seed),
        "train": int(train),
        "test_good": int(test_good),
        "test_defect_per_type": int(test_defect_per_type),
        "size": int(size),
    }
    counts = {"train/good": params["train"], "test/good": params["test_good"]}
    counts.update({f"test/{name}": params["test_defect_per_type"] for name in DEFECT_TYPES})
    dataset = DemoDataset(
        root=root,
        train_dir=root / "train" / "good",
        test_dir=root / "test",
        defect_types=DEFECT_TYPES,
        counts=counts,
    )

    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder; pick an empty or new folder")
    if root.is_dir() and any(root.iterdir()):
        if overwrite:
            _remove_demo_files(root)
        elif _is_complete(dataset, params):
            return dataset
        else:
            raise FileExistsError(_not_empty_message(root, params))

    _generate(dataset, params)
    manifest = {
        "generator": _GENERATOR,
        "generator_version": _GENERATOR_VERSION,
        "params": params,
        "defect_types": list(DEFECT_TYPES),
        "counts": counts,
    }
    # Written last (atomically), so an interrupted run never looks complete.
    tmp = root / (MANIFEST_NAME + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, root / MANIFEST_NAME)
    return dataset


def demo_summary(ds: DemoDataset) -> str:
    """One line describing a demo set, for CLI output.

    Example: ``demo set: 80 train/good, 12 test/good, 24 defects (scratch, stain, hole) in demo/``.
    """
    return (
        f"demo set: {ds.counts['train/good']} train/good, {ds.counts['test/good']} test/good, "
        f"{ds.num_defects} defects ({', '.join(ds.defect_types)}) in {ds.root}"
    )


# --------------------------------------------------------------------------------------------------
# Folder bookkeeping


def _names(count: int) -> list[str]:
    width = max(3, len(str(max(count - 1, 0))))
    return [f"{i:0{width}d}" for i in range(count)]


def _expected_files(dataset: DemoDataset) -> dict[Path, set[str]]:
    """Every folder of the set and the exact PNG names it must hold."""
    root = dataset.root
    expected = {
        root / "train" / "good": {f"{n}.png" for n in _names(dataset.counts["train/good"])},
        root / "test" / "good": {f"{n}.png" for n in _names(dataset.counts["test/good"])},
    }
    for name in dataset.defect_types:
        stems = _names(dataset.counts[f"test/{name}"])
        expected[root / "test" / name] = {f"{s}.png" for s in stems}
        expected[root / "ground_truth" / name] = {f"{s}_mask.png" for s in stems}
    return expected


def _read_manifest(root: Path) -> dict | None:
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != _GENERATOR:
        return None
    return manifest


def _is_complete(dataset: DemoDataset, params: dict[str, int]) -> bool:
    """Whether ``dataset.root`` holds a complete demo set made with ``params``."""
    manifest = _read_manifest(dataset.root)
    if manifest is None or manifest.get("params") != params:
        return False
    if manifest.get("counts") != dataset.counts:
        return False
    for folder, names in _expected_files(dataset).items():
        if not folder.is_dir():
            return False
        present = {p.name for p in folder.iterdir() if p.suffix.lower() == ".png"}
        if present != names:
            return False
    return True


def _not_empty_message(root: Path, params: dict[str, int]) -> str:
    manifest = _read_manifest(root)
    if manifest is None:
        what = f"is not empty and holds no complete padim-edge demo set (no {MANIFEST_NAME})"
    elif manifest.get("params") != params:
        theirs = ", ".join(f"{k}={v}" for k, v in sorted(manifest.get("params", {}).items()))
        what = f"holds a demo set made with other parameters ({theirs})"
    else:
        what = "holds an incomplete demo set (missing or extra images)"
    return f"{root} {what}; pick an empty or new folder, or pass overwrite=True (--overwrite) to replace it"


def _remove_demo_files(root: Path) -> None:
    for name in _SUBDIRS:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for name in (MANIFEST_NAME, MANIFEST_NAME + ".tmp"):
        (root / name).unlink(missing_ok=True)


def _save_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=3)


def _generate(dataset: DemoDataset, params: dict[str, int]) -> None:
    """Write every image and mask of ``dataset`` (not the manifest)."""
    seed, size = params["seed"], params["size"]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    grid: _Grid = (ys, xs)
    root = dataset.root

    # One job per image, each with its own random stream seeded by (seed, split, index): the bytes do
    # not depend on the job order, so the jobs can run on threads (numpy and the PNG encoder release
    # the GIL).
    jobs: list[tuple[int, int, Path, Path | None, str | None]] = []
    for split, key in enumerate(["train/good", "test/good", *(f"test/{d}" for d in dataset.defect_types)]):
        folder = root / key
        defect = key.split("/")[1] if split >= 2 else None
        mask_folder = root / "ground_truth" / defect if defect else None
        for folder_ in (folder, mask_folder):
            if folder_ is not None:
                folder_.mkdir(parents=True, exist_ok=True)
        for index, stem in enumerate(_names(dataset.counts[key])):
            mask_path = mask_folder / f"{stem}_mask.png" if mask_folder else None
            jobs.append((split, index, folder / f"{stem}.png", mask_path, defect))

    def run(job: tuple[int, int, Path, Path | None, str | None]) -> None:
        split, index, path, mask_path, defect = job
        rng = np.random.default_rng(np.random.SeedSequence([seed, split, index]))
        image = _texture(rng, grid, size)
        if defect is not None and mask_path is not None:
            alpha, target = _draw_defect(_PAINTERS[defect], rng, image, grid, size)
            image += (target - image) * alpha[..., None]
            _save_png(np.where(alpha >= 0.5, 255, 0).astype(np.uint8), mask_path)
        _save_png(_to_uint8(image), path)

    workers = max(1, min(4, os.cpu_count() or 1))
    if workers == 1:
        for job in jobs:
            run(job)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(run, jobs):  # re-raises the first error
            pass


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image + 0.5, 0.0, 255.0).astype(np.uint8)  # round half up, then truncate


# --------------------------------------------------------------------------------------------------
# Texture


def _thread_profile(rng: np.random.Generator, phase: np.ndarray) -> np.ndarray:
    """Per-thread brightness offsets (yarn irregularity), indexed by the thread a pixel lies on."""
    index = np.floor(phase / (2 * np.pi)).astype(np.int64)
    low = int(index.min())
    table = rng.normal(0.0, 1.0, int(index.max()) - low + 1).astype(np.float32)
    return table[index - low]


def _texture(rng: np.random.Generator, grid: _Grid, size: int) -> np.ndarray:
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


def _draw_defect(
    painter: Callable[[np.random.Generator, np.ndarray, _Grid, int], _Defect],
    rng: np.random.Generator,
    image: np.ndarray,
    grid: _Grid,
    size: int,
) -> _Defect:
    low, high = _TARGET_AREA
    for _ in range(_MAX_TRIES):
        alpha, target = painter(rng, image, grid, size)
        area = float(np.count_nonzero(alpha >= 0.5)) / (size * size)
        if low <= area <= high:
            return alpha, target
    raise RuntimeError(f"could not draw a defect of area {low:.2%}..{high:.2%} in {_MAX_TRIES} tries")


def _scratch(rng: np.random.Generator, image: np.ndarray, grid: _Grid, size: int) -> _Defect:
    """A thin quadratic-Bézier line, clearly darker or brighter than the cloth."""
    scale = size / 256.0
    length = rng.uniform(90.0, 170.0) * scale
    width = rng.uniform(2.6, 4.0) * max(scale, 0.75)
    margin = width + 4.0
    angle = rng.uniform(0.0, np.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    length = min(length, 0.8 * (size - 2 * margin))
    center = rng.uniform(margin + length / 2, size - margin - length / 2, 2)
    start, end = center - direction * length / 2, center + direction * length / 2
    control = center + normal * rng.uniform(-0.35, 0.35) * length
    t = np.linspace(0.0, 1.0, max(8, int(length / 4)))[:, None]
    points = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end  # [M, 2] as (x, y)
    if points.min() < margin or points.max() > size - 1 - margin:
        return np.zeros((size, size), np.float32), image

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

    level = rng.uniform(20.0, 45.0) if rng.random() < 0.5 else rng.uniform(225.0, 250.0)
    target = np.full_like(image, level)
    return alpha, target


def _blob_radius(rng: np.random.Generator, angle: np.ndarray, radius: float, wobble: float) -> np.ndarray:
    """An irregular closed outline: ``radius`` modulated by a few random angular harmonics."""
    out = np.ones_like(angle)
    for harmonic in (2, 3, 4, 5):
        out += rng.uniform(0.0, wobble / harmonic) * np.cos(harmonic * angle + rng.uniform(0, 2 * np.pi))
    return radius * out


def _stain(rng: np.random.Generator, image: np.ndarray, grid: _Grid, size: int) -> _Defect:
    """A soft-edged irregular blotch that shifts the colour (rust or oil) but keeps the weave."""
    scale = size / 256.0
    radius = rng.uniform(12.0, 27.0) * scale
    margin = 1.6 * radius + 4.0
    cx, cy = rng.uniform(margin, size - margin, 2)
    ys, xs = grid
    dx, dy = xs - cx, ys - cy
    rho = np.sqrt(dx * dx + dy * dy)
    outline = _blob_radius(rng, np.arctan2(dy, dx), radius, wobble=0.35)
    softness = max(1.0, 0.12 * radius)
    peak = rng.uniform(0.9, 0.97)
    alpha = (peak / (1.0 + np.exp((rho - outline) / softness))).astype(np.float32)

    if rng.random() < 0.5:
        tint = np.array([0.95, 0.55, 0.32]) * rng.uniform(0.75, 0.9)  # rust
    else:
        tint = np.array([0.42, 0.40, 0.36]) * rng.uniform(0.8, 1.0)  # oil
    target = image * tint.astype(np.float32)[None, None, :]
    return alpha, target


def _hole(rng: np.random.Generator, image: np.ndarray, grid: _Grid, size: int) -> _Defect:
    """A small dark, slightly irregular disk with a bright rim."""
    scale = size / 256.0
    radius = rng.uniform(8.5, 15.0) * scale
    rim = rng.uniform(2.0, 3.5) * max(scale, 0.75)
    margin = 1.3 * (radius + rim) + 4.0
    cx, cy = rng.uniform(margin, size - margin, 2)
    ys, xs = grid
    dx, dy = xs - cx, ys - cy
    rho = np.sqrt(dx * dx + dy * dy)
    outline = _blob_radius(rng, np.arctan2(dy, dx), radius, wobble=0.25)
    alpha = np.clip(outline + rim + 0.5 - rho, 0.0, 1.0).astype(np.float32)

    dark = rng.uniform(12.0, 30.0) * (0.6 + 0.4 * np.clip(rho / outline, 0.0, 1.0))
    bright = rng.uniform(215.0, 245.0)
    on_rim = np.clip(rho - outline + 0.5, 0.0, 1.0)
    level = (1.0 - on_rim) * dark + on_rim * bright
    target = np.repeat(level.astype(np.float32)[..., None], 3, axis=2)
    return alpha, target


_PAINTERS: dict[str, Callable[[np.random.Generator, np.ndarray, _Grid, int], _Defect]] = {
    "scratch": _scratch,
    "stain": _stain,
    "hole": _hole,
}


def main(argv: list[str] | None = None) -> int:
    """``python -m padim_edge.demo ROOT [--seed N] [--size PX] [--overwrite]``: write the demo set."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m padim_edge.demo", description=main.__doc__)
    parser.add_argument("root", help="folder to write the dataset to (created if missing)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset there")
    args = parser.parse_args(argv)
    try:
        ds = make_demo_dataset(args.root, seed=args.seed, size=args.size, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(demo_summary(ds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
