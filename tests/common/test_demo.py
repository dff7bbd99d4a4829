"""Tests for the procedural demo dataset (numpy + Pillow only, a few seconds in all)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from padim_edge.demo import (
    AREA_RANGE,
    DEFECT_TYPES,
    MANIFEST_NAME,
    DemoDataset,
    demo_summary,
    main,
    make_demo_dataset,
)

SMALL = {"train": 3, "test_good": 2, "test_defect_per_type": 2, "size": 64}


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> DemoDataset:
    """The default demo set (80 + 12 + 3 x 8 images, 256 px), generated once for the module."""
    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "set")


def _pngs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".png")


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _all_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_counts(default_set: DemoDataset) -> None:
    ds = default_set
    root = ds.root
    assert ds.train_dir == root / "train" / "good"
    assert ds.test_dir == root / "test"
    assert ds.ground_truth_dir == root / "ground_truth"
    assert ds.defect_types == DEFECT_TYPES == ("scratch", "stain", "hole")
    assert ds.counts == {
        "train/good": 80,
        "test/good": 12,
        "test/scratch": 8,
        "test/stain": 8,
        "test/hole": 8,
    }
    assert ds.num_defects == 24

    assert sorted(p.name for p in root.iterdir()) == [MANIFEST_NAME, "ground_truth", "test", "train"]
    assert sorted(p.name for p in (root / "train").iterdir()) == ["good"]
    assert sorted(p.name for p in ds.test_dir.iterdir()) == sorted(["good", *DEFECT_TYPES])
    assert sorted(p.name for p in ds.ground_truth_dir.iterdir()) == sorted(DEFECT_TYPES)
    for key, count in ds.counts.items():
        assert _pngs(root / key) == [f"{i:03d}.png" for i in range(count)]

    manifest = json.loads((root / MANIFEST_NAME).read_text())
    assert manifest["params"] == {
        "seed": 0,
        "train": 80,
        "test_good": 12,
        "test_defect_per_type": 8,
        "size": 256,
    }
    assert manifest["counts"] == ds.counts


def test_images_are_rgb_and_good_images_differ(default_set: DemoDataset) -> None:
    paths = sorted(default_set.train_dir.glob("*.png")) + sorted(default_set.test_dir.glob("*/*.png"))
    assert len(paths) == 80 + 12 + 24
    for path in paths:
        with Image.open(path) as image:
            assert image.mode == "RGB"
            assert image.size == (256, 256)
    goods = [_load(p).astype(np.int16) for p in sorted(default_set.train_dir.glob("*.png"))[:10]]
    for a, b in itertools.pairwise(goods):
        assert not np.array_equal(a, b)  # same family, never the same pixels
        assert np.abs(a - b).mean() > 2.0


def test_masks_binary_sized_and_in_area_range(default_set: DemoDataset) -> None:
    low, high = AREA_RANGE
    assert (low, high) == (0.003, 0.05)
    for defect in default_set.defect_types:
        images = _pngs(default_set.test_dir / defect)
        masks = _pngs(default_set.ground_truth_dir / defect)
        assert masks == [name.replace(".png", "_mask.png") for name in images]
        for name in images:
            mask_path = default_set.ground_truth_dir / defect / name.replace(".png", "_mask.png")
            with Image.open(mask_path) as mask_image:
                assert mask_image.mode == "L"
                with Image.open(default_set.test_dir / defect / name) as image:
                    assert mask_image.size == image.size
                mask = np.asarray(mask_image)
            assert set(np.unique(mask).tolist()) == {0, 255}
            area = float((mask == 255).mean())
            assert low <= area <= high, (defect, name, area)


def test_good_images_have_no_masks(default_set: DemoDataset) -> None:
    assert not (default_set.ground_truth_dir / "good").exists()
    masks = {p.name for p in default_set.ground_truth_dir.rglob("*.png")}
    assert len(masks) == 8  # the same stems repeat across the defect folders, 8 per type
    assert sum(1 for _ in default_set.ground_truth_dir.rglob("*.png")) == 24
    assert not list(default_set.train_dir.glob("*_mask.png"))
    assert not list((default_set.test_dir / "good").glob("*_mask.png"))


def test_defects_are_local(default_set: DemoDataset) -> None:
    """A defect changes its masked pixels far more than the rest of the image (vs the mean good)."""
    mean_good = np.mean([_load(p).astype(np.float64) for p in default_set.train_dir.glob("*.png")], axis=0)
    for defect in default_set.defect_types:
        for path in sorted((default_set.test_dir / defect).glob("*.png")):
            diff = np.abs(_load(path).astype(np.float64) - mean_good).mean(axis=2)
            mask = _load(default_set.ground_truth_dir / defect / f"{path.stem}_mask.png") == 255
            inside, outside = diff[mask].mean(), diff[~mask].mean()
            # Outside the mask the difference is the texture's own variation (~16 grey levels):
            # scratches and holes give ~5x that inside, the (soft-edged, colour-only) stains >= 2.5x.
            assert inside > 2.0 * outside, (defect, path.name, inside, outside)
            assert inside - outside > 20.0, (defect, path.name, inside, outside)


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = make_demo_dataset(tmp_path / "a", seed=7, **SMALL)
    b = make_demo_dataset(tmp_path / "b", seed=7, **SMALL)
    c = make_demo_dataset(tmp_path / "c", seed=8, **SMALL)
    bytes_a, bytes_b, bytes_c = _all_bytes(a.root), _all_bytes(b.root), _all_bytes(c.root)
    assert len(bytes_a) == 3 + 2 + 3 * 2 * 2 + 1
    assert bytes_a == bytes_b
    assert bytes_a.keys() == bytes_c.keys()
    images = [k for k in bytes_a if k.endswith(".png")]
    assert all(bytes_a[k] != bytes_c[k] for k in images if "ground_truth" not in k)
    assert any(bytes_a[k] != bytes_c[k] for k in images if "ground_truth" in k)


def test_other_sizes(tmp_path: Path) -> None:
    ds = make_demo_dataset(tmp_path / "s", seed=3, train=1, test_good=0, test_defect_per_type=3, size=100)
    assert ds.counts["test/good"] == 0
    assert _pngs(ds.test_dir / "good") == []
    for defect in ds.defect_types:
        for mask_path in (ds.ground_truth_dir / defect).glob("*.png"):
            mask = _load(mask_path)
            assert mask.shape == (100, 100)
            assert AREA_RANGE[0] <= (mask == 255).mean() <= AREA_RANGE[1]


def test_reuses_a_complete_set(tmp_path: Path) -> None:
    root = tmp_path / "set"
    first = make_demo_dataset(root, seed=1, **SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    again = make_demo_dataset(str(root), seed=1, **SMALL)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == stamps  # nothing rewritten


def test_empty_existing_folder_is_used(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    ds = make_demo_dataset(root, **SMALL)
    assert (root / MANIFEST_NAME).is_file()
    assert len(_pngs(ds.train_dir)) == 3


def test_refuses_a_foreign_folder(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"empty or new folder.*overwrite") as refused:
        make_demo_dataset(root, **SMALL)
    assert f"(python -m padim_edge.demo {root} --overwrite)" in str(refused.value)  # ready to paste
    assert "ROOT" not in str(refused.value)
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt"]

    ds = make_demo_dataset(root, overwrite=True, **SMALL)
    assert (root / "notes.txt").read_text() == "keep me"  # only the demo sub-folders are replaced
    assert len(_pngs(ds.train_dir)) == 3


def test_refuses_other_parameters_then_overwrites(tmp_path: Path) -> None:
    root = tmp_path / "set"
    make_demo_dataset(root, seed=1, **SMALL)
    with pytest.raises(FileExistsError, match="other parameters"):
        make_demo_dataset(root, seed=2, **SMALL)
    with pytest.raises(FileExistsError, match="other parameters"):
        make_demo_dataset(root, seed=1, **{**SMALL, "train": 4})

    ds = make_demo_dataset(root, seed=1, overwrite=True, **{**SMALL, "train": 2})
    assert _pngs(ds.train_dir) == ["000.png", "001.png"]  # stale images of the old set are gone
    assert json.loads((root / MANIFEST_NAME).read_text())["params"]["train"] == 2


def test_refuses_an_incomplete_set(tmp_path: Path) -> None:
    root = tmp_path / "set"
    ds = make_demo_dataset(root, **SMALL)
    (ds.test_dir / "hole" / "001.png").unlink()
    with pytest.raises(FileExistsError, match="incomplete"):
        make_demo_dataset(root, **SMALL)
    make_demo_dataset(root, overwrite=True, **SMALL)
    assert make_demo_dataset(root, **SMALL) == ds


def test_refuses_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file.png"
    path.write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a folder"):
        make_demo_dataset(path, **SMALL)


@pytest.mark.parametrize(
    "kwargs",
    [{"train": 0}, {"test_good": -1}, {"test_defect_per_type": -1}, {"size": 32}, {"seed": -1}],
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        make_demo_dataset(tmp_path / "x", **{**SMALL, **kwargs})
    assert not (tmp_path / "x").exists()


def test_summary(tmp_path: Path) -> None:
    ds = make_demo_dataset(tmp_path / "s", **SMALL)
    text = demo_summary(ds)
    assert text == f"demo set: 3 train/good, 2 test/good, 6 defects (scratch, stain, hole) in {ds.root}"
    assert "\n" not in text


def test_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cli"
    assert main([str(root), "--size", "64"]) == 0
    assert "demo set: 80 train/good" in capsys.readouterr().out
    assert main([str(root), "--size", "64", "--seed", "5"]) == 2
    assert "--overwrite" in capsys.readouterr().err
