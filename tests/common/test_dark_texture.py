"""Tests for the dark rubber-like texture set (scikit-image's gravel photo; tiny sets, a few seconds)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from padim_edge.demo import MANIFEST_NAME, DemoDataset, make_demo_dataset
from padim_edge.demo import dark_texture as dt
from padim_edge.extras import MissingExtraError

needs_skimage = pytest.mark.skipif(
    importlib.util.find_spec("skimage") is None,
    reason="needs scikit-image (pip install 'padim-edge[bench]', part of the dev extra)",
)
TINY = {"train": 4, "test_good": 3, "test_defect_per_type": 3, "size": 128}


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> DemoDataset:
    return dt.make_dark_texture(tmp_path_factory.mktemp("dark") / "set", seed=3, **TINY)


@needs_skimage
def test_layout_and_counts(tiny_set: DemoDataset) -> None:
    ds, root = tiny_set, tiny_set.root
    assert ds.defect_types == dt.DEFECT_TYPES == ("scratch", "bubble", "cut", "contamination")
    assert ds.counts == {"train/good": 4, "test/good": 3, **{f"test/{d}": 3 for d in dt.DEFECT_TYPES}}
    assert ds.num_defects == 12
    assert sorted(p.name for p in root.iterdir()) == [MANIFEST_NAME, "ground_truth", "test", "train"]
    assert sorted(p.name for p in ds.test_dir.iterdir()) == sorted(["good", *dt.DEFECT_TYPES])
    assert sorted(p.name for p in ds.ground_truth_dir.iterdir()) == sorted(dt.DEFECT_TYPES)
    for key, count in ds.counts.items():
        assert sorted(p.name for p in (root / key).iterdir()) == [f"{i:03d}.png" for i in range(count)]
    for defect in ds.defect_types:
        masks = sorted(p.name for p in (ds.ground_truth_dir / defect).iterdir())
        assert masks == [f"{i:03d}_mask.png" for i in range(3)]
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert manifest["generator"] == "padim_edge.demo.dark_texture"
    assert manifest["params"] == {"seed": 3, **TINY, "source": "gravel"}


@needs_skimage
def test_images_are_dark_low_contrast_rgb_and_unaligned(tiny_set: DemoDataset) -> None:
    paths = sorted(tiny_set.train_dir.glob("*.png")) + sorted(tiny_set.test_dir.glob("*/*.png"))
    assert len(paths) == 4 + 3 + 12
    for path in paths:
        with Image.open(path) as image:
            assert image.mode == "RGB"
            assert image.size == (128, 128)
    goods = [_load(p).astype(np.float64) for p in sorted(tiny_set.train_dir.glob("*.png"))]
    for image in goods:
        assert 30.0 <= image.mean() <= 52.0  # rubber-dark (the magnetic tile and the demo sit near 100+)
        assert 3.0 <= image.std() <= 11.0  # low contrast
        assert image.max() < 130  # no bright areas
    # Random crops / angles: frames never align, so the mean good frame is much flatter than one frame.
    mean_good = np.mean(goods, axis=0).mean(axis=2)
    assert mean_good.std() < 0.75 * np.mean([g.mean(axis=2).std() for g in goods])
    assert all(np.abs(a - b).mean() > 3.0 for a, b in itertools.pairwise(goods))


@needs_skimage
def test_masks_binary_sized_in_area_range_and_inside_the_border(tiny_set: DemoDataset) -> None:
    low, high = dt.AREA_RANGE
    for defect in tiny_set.defect_types:
        for path in sorted((tiny_set.test_dir / defect).glob("*.png")):
            with Image.open(tiny_set.ground_truth_dir / defect / f"{path.stem}_mask.png") as mask_image:
                assert mask_image.mode == "L"
                assert mask_image.size == (128, 128)
                mask = np.asarray(mask_image)
            assert set(np.unique(mask).tolist()) == {0, 255}
            assert low <= (mask == 255).mean() <= high, (defect, path.name)
            ys, xs = np.nonzero(mask)
            edge = int(0.07 * 128)  # kept out of the border a centre crop removes
            assert min(ys.min(), xs.min()) >= edge and max(ys.max(), xs.max()) < 128 - edge


@needs_skimage
def test_defect_pixels_differ_from_their_surroundings(tiny_set: DemoDataset) -> None:
    """Inside the mask the grey level shifts (or the grain flattens) against a ring around it."""
    from PIL import ImageFilter

    for defect in tiny_set.defect_types:
        for path in sorted((tiny_set.test_dir / defect).glob("*.png")):
            gray = _load(path).astype(np.float64).mean(axis=2)
            mask_image = Image.open(tiny_set.ground_truth_dir / defect / f"{path.stem}_mask.png")
            mask = np.asarray(mask_image) == 255
            ring = (np.asarray(mask_image.filter(ImageFilter.MaxFilter(9))) == 255) & ~mask
            inside, around = gray[mask], gray[ring]
            shift = abs(inside.mean() - around.mean())
            flatter = inside.std() / around.std()
            assert shift > 4.0 or flatter < 0.6, (defect, path.name, shift, flatter)


@needs_skimage
def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    small = {"train": 2, "test_good": 1, "test_defect_per_type": 1, "size": 96}
    a = dt.make_dark_texture(tmp_path / "a", seed=7, **small)
    b = dt.make_dark_texture(tmp_path / "b", seed=7, **small)
    c = dt.make_dark_texture(tmp_path / "c", seed=8, **small)
    bytes_a, bytes_b, bytes_c = _all_bytes(a.root), _all_bytes(b.root), _all_bytes(c.root)
    assert len(bytes_a) == 2 + 1 + 4 * 2 + 1
    assert bytes_a == bytes_b
    assert bytes_a.keys() == bytes_c.keys()
    images = [k for k in bytes_a if k.endswith(".png") and "ground_truth" not in k]
    assert all(bytes_a[k] != bytes_c[k] for k in images)
    assert all(bytes_a[k] != bytes_c[k] for k in bytes_a if "ground_truth" in k)


@needs_skimage
def test_reuse_refuse_and_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "set"
    small = {"train": 1, "test_good": 1, "test_defect_per_type": 1, "size": 96}
    first = dt.make_dark_texture(root, **small)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert dt.make_dark_texture(root, **small) == first
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps  # nothing rewritten
    with pytest.raises(FileExistsError, match=r"dark texture set made with other parameters") as refused:
        dt.make_dark_texture(root, **{**small, "source": "grass"})
    assert f"(python -m padim_edge.demo.dark_texture {root} --overwrite)" in str(refused.value)
    with pytest.raises(FileExistsError, match="holds no complete padim-edge demo set"):
        make_demo_dataset(root)  # the woven demo does not take a dark set for its own
    grass = dt.make_dark_texture(root, overwrite=True, **{**small, "source": "grass"})
    assert json.loads((grass.root / MANIFEST_NAME).read_text())["params"]["source"] == "grass"


@pytest.mark.parametrize(
    "kwargs",
    [{"train": 0}, {"test_good": -1}, {"seed": -1}, {"size": 64}, {"size": 400}, {"source": "brick"}],
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        dt.make_dark_texture(tmp_path / "x", **{**TINY, **kwargs})
    assert not (tmp_path / "x").exists()


def test_friendly_error_without_scikit_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)  # `import skimage...` now raises ImportError
    monkeypatch.setitem(sys.modules, "skimage.data", None)
    with pytest.raises(MissingExtraError, match=r"scikit-image.*pip install 'padim-edge\[bench\]'"):
        dt.make_dark_texture(tmp_path / "x", **TINY)
    assert not (tmp_path / "x").exists()
    assert dt.main([str(tmp_path / "x"), "--small", "-q"]) == 2
    assert "pip install 'padim-edge[bench]'" in capsys.readouterr().err


@needs_skimage
def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cli"
    args = [str(root), "--small", "--train", "3", "--test-defect-per-type", "1", "--size", "96", "-q"]
    assert dt.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("dark texture set: 3 train/good, 8 test/good, 4 defects (scratch, bubble, cut, ")
    assert dt.main([*args, "--seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_module_entry_point_help() -> None:
    """``python -m padim_edge.demo.dark_texture --help`` works without importing scikit-image."""
    import subprocess

    code = (
        "import runpy, sys; sys.modules['skimage'] = None; sys.argv = ['x', '--help']; "
        "runpy.run_module('padim_edge.demo.dark_texture', run_name='__main__')"
    )
    root = Path(__file__).resolve().parents[2]
    outcome = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60, cwd=root
    )
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert "usage: python -m padim_edge.demo.dark_texture" in outcome.stdout
    for option in ("--seed", "--train", "--test-good", "--test-defect-per-type", "--small", "--source"):
        assert option in outcome.stdout
