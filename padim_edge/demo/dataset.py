"""The demo set's folder: writing, reusing and describing it (numpy + Pillow; no download, no torch).

:func:`make_demo_dataset` writes an MVTec AD style folder of woven-fabric textures
(:mod:`padim_edge.demo.texture` paints them)::

    <root>/train/good/000.png ...                     defect-free images
    <root>/test/good/000.png ...
    <root>/test/<defect>/000.png ...                  defect types: scratch, stain, hole
    <root>/ground_truth/<defect>/000_mask.png ...     binary 0/255 masks, one per defect image
    <root>/demo.json                                  manifest: parameters and counts

Every image is RGB, ``size x size``. The output is deterministic: the same arguments give the same
bytes (each image has its own random stream, seeded by ``(seed, split, index)``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from padim_edge import atomic
from padim_edge.demo.texture import (
    DEFECT_TYPES,
    PAINTERS,
    Grid,
    blend_defect,
    draw_defect,
    texture,
    to_uint8,
)

#: Name of the manifest written (last) at the root of a demo set.
MANIFEST_NAME = "demo.json"
#: Smallest supported image edge.
MIN_SIZE = 64

_GENERATOR = "padim_edge.demo"
_GENERATOR_VERSION = 1
_SUBDIRS = ("train", "test", "ground_truth")


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
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    grid: Grid = (ys, xs)

    def paint(rng: np.random.Generator, defect: str | None) -> tuple[np.ndarray, np.ndarray | None]:
        image = texture(rng, grid, size)
        if defect is None:
            return to_uint8(image), None
        return blend_defect(image, draw_defect(PAINTERS[defect], rng, image, grid, size))

    return write_set(
        dataset,
        params,
        paint,
        generator=(_GENERATOR, _GENERATOR_VERSION),
        label="demo set",
        command="python -m padim_edge.demo ROOT",
        overwrite=overwrite,
    )


def demo_summary(ds: DemoDataset) -> str:
    """One line describing a demo set, for CLI output.

    Example: ``demo set: 80 train/good, 12 test/good, 24 defects (scratch, stain, hole) in demo/``.
    """
    return (
        f"demo set: {ds.counts['train/good']} train/good, {ds.counts['test/good']} test/good, "
        f"{ds.num_defects} defects ({', '.join(ds.defect_types)}) in {ds.root}"
    )


#: ``paint(rng, defect)`` -> (RGB uint8 image, 0/255 uint8 mask or None); ``defect`` is None for good images.
Painter = Callable[[np.random.Generator, str | None], tuple[np.ndarray, np.ndarray | None]]


def write_set(
    dataset: DemoDataset,
    params: dict[str, Any],
    paint: Painter,
    *,
    generator: tuple[str, int],
    label: str,
    command: str,
    overwrite: bool,
    progress: bool = False,
) -> DemoDataset:
    """Write (or reuse) the MVTec-layout set ``dataset`` describes; shared by the generated sets.

    Every image gets its own random stream seeded by ``(params["seed"], split, index)``, so the bytes
    depend only on ``params``. The manifest (:data:`MANIFEST_NAME`, naming ``generator``: name and
    version) is written last, atomically: an interrupted run never looks complete. ``label`` names the
    set (``"demo set"``) and ``command`` is how the user re-runs it (``ROOT`` stands for the folder and
    is replaced by it), both for the "use --overwrite" message.
    """
    root = dataset.root
    name, version = generator
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder; pick an empty or new folder")
    if root.is_dir() and any(root.iterdir()):
        if overwrite:
            _remove_demo_files(root)
        elif _is_complete(dataset, params, name):
            return dataset
        else:
            raise FileExistsError(_not_empty_message(root, params, name, label, command))

    _generate(dataset, int(params["seed"]), paint, progress=progress)
    manifest = {
        "generator": name,
        "generator_version": version,
        "params": params,
        "defect_types": list(dataset.defect_types),
        "counts": dataset.counts,
    }
    atomic.write_json(root / MANIFEST_NAME, manifest)
    return dataset


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


def _read_manifest(root: Path, generator: str) -> dict | None:
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != generator:
        return None
    return manifest


def _is_complete(dataset: DemoDataset, params: dict[str, Any], generator: str) -> bool:
    """Whether ``dataset.root`` holds a complete set made by ``generator`` with ``params``."""
    manifest = _read_manifest(dataset.root, generator)
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


def _not_empty_message(root: Path, params: dict[str, Any], generator: str, label: str, command: str) -> str:
    manifest = _read_manifest(root, generator)
    if manifest is None:
        what = f"is not empty and holds no complete padim-edge {label} (no {MANIFEST_NAME})"
    elif manifest.get("params") != params:
        theirs = ", ".join(f"{k}={v}" for k, v in sorted(manifest.get("params", {}).items()))
        what = f"holds a {label} made with other parameters ({theirs})"
    else:
        what = f"holds an incomplete {label} (missing or extra images)"
    rerun = command.replace("ROOT", shlex.quote(str(root)), 1)  # the real folder, ready to paste
    return f"{root} {what}; pick an empty or new folder, or replace it ({rerun} --overwrite)"


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


def _generate(dataset: DemoDataset, seed: int, paint: Painter, *, progress: bool = False) -> None:
    """Write every image and mask of ``dataset`` (not the manifest)."""
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
        image, mask = paint(rng, defect)
        if mask_path is not None:
            if mask is None:
                raise RuntimeError(f"the painter returned no mask for a {defect} image")
            _save_png(mask, mask_path)
        _save_png(image, path)

    workers = max(1, min(4, os.cpu_count() or 1))
    with tqdm(total=len(jobs), desc="generate", unit="img", disable=not progress) as bar:
        if workers == 1:
            for job in jobs:
                run(job)
                bar.update(1)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(run, jobs):  # re-raises the first error
                bar.update(1)


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
