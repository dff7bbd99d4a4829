"""Shared fixtures: tiny fitted models (random-init, small crop) and the ../shared data when present."""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _private_temp() -> Path:
    """A temp folder for this run, set as TMPDIR and Ray's temp folder, removed when the run ends.

    Code under test writes beside pytest's ``tmp_path`` too (tempfile scratch, Ray's session logs and
    object spill); without this, a run leaves over a GB in the system temp folder.
    """
    os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", tempfile.gettempdir())  # pytest's own folders stay
    folder = Path(tempfile.mkdtemp(prefix="padim-tests-"))
    os.environ["TMPDIR"] = str(folder)
    os.environ["RAY_TMPDIR"] = str(folder)
    tempfile.tempdir = None  # re-read TMPDIR
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


TEST_TEMP = _private_temp()
#: The project's shared data and weights (``PADIM_EDGE_SHARED`` overrides it, e.g. from a git worktree).
SHARED = Path(os.environ.get("PADIM_EDGE_SHARED", ROOT.parent / "shared"))
MAGNETIC_TILE = SHARED / "data" / "magnetic_tile"
MNV2_WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"

#: A small but real configuration: the full r18 taps, a 64x64 crop (16x16 patches), 24 channels.
SMALL = {"backbone": "r18", "dims": 24, "resize": 72, "crop": 64, "random_init": True}
#: Frame size (H, W) of the small TensorRT-target export (both edges above the 72 resize: downscaled).
TRT_SIZE = (90, 120)


def needs_shared():
    """Skip marker for tests that read ../shared (absent in a user's fresh clone)."""
    return pytest.mark.skipif(
        not (MAGNETIC_TILE.is_dir() and MNV2_WEIGHTS.is_file()),
        reason=f"needs the shared dataset and MobileNetV2 weights at {SHARED} (not part of a fresh clone)",
    )


def write_images(
    folder: Path, count: int, *, seed: int = 0, sizes: list[tuple[int, int]] | None = None
) -> list[Path]:
    """Write ``count`` textured RGB PNGs (smooth noise + stripes, so the features are not degenerate)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        h, w = sizes[i % len(sizes)] if sizes else (80, 96)
        xx = np.mgrid[0:h, 0:w][1]
        base = 128 + 40 * np.sin(xx / 3.0 + rng.uniform(0, 6)) + rng.normal(0, 12, (h, w))
        image = np.stack([base, base * 0.9 + 10, base * 0.8 + 20], axis=-1).clip(0, 255).astype(np.uint8)
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def failing_writes(
    monkeypatch: pytest.MonkeyPatch, code: int = errno.ENOSPC, *, under: Path | None = None
) -> list[Path]:
    """Make file writes of :mod:`padim_edge.atomic` fail with ``OSError(code)`` (default: disk full).

    Patches the single writer (``write_bytes``: JSON, text, PNG) and :meth:`atomic.Stage.commit`
    (models), for every target or only those in the folder ``under``; returns the failed targets
    (``commit``: its folder).
    """
    from padim_edge import atomic

    tried: list[Path] = []
    write_bytes, commit = atomic.write_bytes, atomic.Stage.commit

    def failing(real):
        def write(target, *args, **kwargs):
            path = target.folder if isinstance(target, atomic.Stage) else Path(target)
            if under is not None and under not in (path, *path.parents):
                return real(target, *args, **kwargs)
            tried.append(path)
            raise OSError(code, os.strerror(code), str(path))

        return write

    monkeypatch.setattr(atomic, "write_bytes", failing(write_bytes))
    monkeypatch.setattr(atomic.Stage, "commit", failing(commit))
    return tried


def swapped_pair(source: Path, folder: Path) -> Path:
    """``folder/model.onnx`` with external data, its ``.onnx.data`` swapped for another model's.

    The other model is ``source`` with one constant changed (same layout, so the data file has the
    same size): the mix-up of two seeds' exports that once loaded and scored 10x off without a word.
    """
    import onnx
    from onnx import numpy_helper

    from padim_edge import onnx_files

    path, other = folder / "model.onnx", folder / "other" / "model.onnx"
    onnx_files.save_model(onnx.load(str(source)), path, external_data="always", check=False)
    proto = onnx.load(str(source))
    tensor = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) + 1, tensor.name))
    onnx_files.save_model(proto, other, external_data="always", check=False)
    swapped = onnx_files.data_file(other)
    assert swapped.stat().st_size == onnx_files.data_file(path).stat().st_size
    onnx_files.data_file(path).write_bytes(swapped.read_bytes())
    return path


@pytest.fixture(scope="session")
def train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    write_images(folder, 12, sizes=[(80, 96), (64, 64), (100, 90)])
    return folder


@pytest.fixture(scope="session")
def small_export(train_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A fitted small model exported to ONNX: returns the ExportRun (``.model`` is the torch module)."""
    from padim_edge.export.pipeline import run_export

    out = tmp_path_factory.mktemp("model") / "small.onnx"
    return run_export(train_dir, out, batch_size=5, device="cpu", parity_images=0, progress=False, **SMALL)


@pytest.fixture(scope="session")
def small_onnx(small_export) -> Path:
    return small_export.export.files[0]


@pytest.fixture(scope="session")
def small_trt_onnx(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same small model exported for TensorRT (``--target tensorrt --input-size 90x120``)."""
    from padim_edge.export.pipeline import run_export

    out = tmp_path_factory.mktemp("model_trt") / "small-trt.onnx"
    run = run_export(
        train_dir, out, batch_size=5, device="cpu", parity_images=2, progress=False,
        target="tensorrt", input_size=TRT_SIZE, **SMALL,
    )  # fmt: skip
    return run.export.files[0]


@pytest.fixture()
def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(80, 96, 3), (64, 64, 3), (80, 96, 3)]]
