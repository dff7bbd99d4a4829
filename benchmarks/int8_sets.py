"""INT8 benchmark (:mod:`int8_accuracy`): settings shared by its parts, logging, and the three data sets."""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: The project's ``../shared`` folder (``PADIM_EDGE_SHARED`` overrides it, as in the tests).
SHARED = Path(os.environ.get("PADIM_EDGE_SHARED") or ROOT.parent / "shared")
TILES = SHARED / "data" / "magnetic_tile"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
PARTS = ("accuracy", "latency")
SETS = ("magnetic_tile", "demo", "dark_texture")
RESIZE, CROP, DIMS = 256, 224, 100
#: Sizes of the two generated sets (the dark texture set's defaults; the demo set made as large).
GENERATED = {"train": 200, "test_good": 60, "test_defect_per_type": 40}
#: (label, calibrate variant, refit, float_convs); ``None``: the variant's default / not applicable.
VARIANTS = (
    ("int8-qoperator plain", "int8-qoperator", False, 0),
    ("int8-qoperator default", "int8-qoperator", None, None),
    ("int8-qoperator refit + 2 float convs", "int8-qoperator", True, 2),
    ("int8-qdq plain", "int8-qdq", False, 0),
    ("int8-qdq default", "int8-qdq", None, None),
    ("int8-qdq refit + 2 float convs", "int8-qdq", True, 2),
    ("fp16", "fp16", None, None),
)
#: Issue 12's accuracy goal: |INT8 AUROC - float32 AUROC| at most this, image and pixel, every set.
MAX_AUROC_DELTA = 0.01
#: "Speed-up unchanged": the default variant's end-to-end speed-up at least (1 - this) x the plain one's.
SPEEDUP_TOLERANCE = 0.05

_START = time.perf_counter()


def log(message: str) -> None:
    """A progress line with the seconds since the start (stderr)."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def even_spread(items: list, limit: int | None) -> list:
    """At most ``limit`` of ``items``, evenly spread (all of them when ``limit`` is None or larger)."""
    if limit is None or limit >= len(items):
        return list(items)
    index = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in index]


def finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when missing or not finite."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


# --------------------------------------------------------------------------- data sets


def prepare_set(name: str, workdir: Path) -> tuple[Path | None, str]:
    """The set's MVTec root, or ``(None, why it is skipped)``."""
    if name == "magnetic_tile":
        if not (TILES / "train" / "good").is_dir():
            return None, f"{TILES} not found (set PADIM_EDGE_SHARED to the project's shared folder)"
        return TILES, "magnetic tile (real photos; shared data)"
    root = workdir / "data" / name
    if name == "demo":
        from padim_edge.demo.dataset import make_demo_dataset

        make_demo_dataset(root, seed=0, **GENERATED)
        return root, "procedural woven fabric (padim_edge.demo), seed 0"
    from padim_edge.demo.dark_texture import make_dark_texture
    from padim_edge.extras import MissingExtraError

    try:
        make_dark_texture(root, seed=0, **GENERATED)
    except MissingExtraError as exc:
        return None, f"dark texture set not generated: {exc}"
    return root, "dark low-contrast texture (padim_edge.demo.dark_texture), seed 0"


def fit_folder(train: Path, out: Path, limit: int | None) -> tuple[Path, int]:
    """``train`` itself, or a folder of symlinks to an even spread of at most ``limit`` of its images."""
    from padim_edge.images import list_images

    images = list_images(train)
    chosen = even_spread(images, limit)
    if len(chosen) == len(images):
        return train, len(images)
    if out.is_dir() and sorted(p.name for p in out.iterdir()) != sorted(p.name for p in chosen):
        shutil.rmtree(out)
    if not out.is_dir():
        out.mkdir(parents=True)
        for path in chosen:
            (out / path.name).symlink_to(path.resolve())
    return out, len(chosen)


def prepare_fit(
    name: str, workdir: Path, *, folder: str, max_train: int | None
) -> tuple[tuple[Path, Path, Path, int] | None, str]:
    """A set made ready for a fit: ``((root, here, fit_dir, train_images), description)``.

    ``here`` is ``workdir / folder`` (created; one per set and settings, so models are reused),
    ``fit_dir`` the fit's images in it (:func:`fit_folder`). ``(None, why)`` when the set is skipped
    (logged).
    """
    root, description = prepare_set(name, workdir)
    if root is None:
        log(f"{name}: SKIPPED: {description}")
        return None, description
    here = workdir / folder
    here.mkdir(parents=True, exist_ok=True)
    fit_dir, train_images = fit_folder(root / "train" / "good", here / "fit", max_train)
    return (root, here, fit_dir, train_images), description
