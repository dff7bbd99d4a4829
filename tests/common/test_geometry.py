"""The model's view of a frame and of a mask (one rule for overlays, masks and benchmarks), and naming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from padim_edge.geometry import Geometry, parse_size
from padim_edge.naming import data_file, image_keys, key_to_filename, timestamped_folder, variant_file


def test_box_and_offset() -> None:
    assert Geometry(256, 224).box == (16, 16, 240, 240)
    assert Geometry(33, 32).offset == 0
    assert Geometry(37, 32).box == (2, 2, 34, 34)
    with pytest.raises(ValueError, match="32 <= crop <= resize"):
        Geometry(16, 20)
    with pytest.raises(ValueError, match="32 <= crop <= resize"):
        Geometry(64, 28)


def test_image_view_same_size_is_a_center_crop_and_squashes_wide_frames() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(Geometry(40, 36).image_view(image), image[2:38, 2:38])
    wide = np.zeros((60, 120, 3), dtype=np.uint8)
    wide[:, 60:] = 200  # right half bright -> right half of the square view (squashed, not padded)
    view = Geometry(40, 32).image_view(wide)
    assert view.shape == (32, 32, 3) and view.dtype == np.uint8
    assert view[:, :14].max() == 0 and view[:, 18:].min() == 200
    with pytest.raises(ValueError, match="uint8"):
        Geometry(40, 32).image_view(image.astype(np.float32))


def test_map_to_frame_same_size_puts_the_crop_back_in_place() -> None:
    """Frame size = resize: no scaling, the map lands at the crop box and the margins are NaN."""
    geometry = Geometry(40, 32)  # offset 4
    amap = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    frame = geometry.map_to_frame(amap, (40, 40))
    assert frame.shape == (40, 40) and frame.dtype == np.float32
    np.testing.assert_array_equal(frame[4:36, 4:36], amap)
    assert np.isnan(frame[:4]).all() and np.isnan(frame[36:]).all() and np.isnan(frame[:, :4]).all()
    edge = geometry.map_to_frame(amap, (40, 40), outside="edge")
    np.testing.assert_array_equal(edge[4:36, 4:36], amap)
    np.testing.assert_array_equal(edge[0, 4:36], amap[0])  # nearest edge value above the crop
    assert edge[39, 39] == amap[31, 31]


def test_map_to_frame_tall_frame_by_hand() -> None:
    """A 80x40 frame (squashed 2:1 into the 40 square): rows map to s = (y + 0.5) / 2 - 0.5 = y/2 - 0.25.

    Crop row c = s - 4 = y/2 - 4.25; a map that is c itself (linear, so bilinear reads it exactly)
    must read back y/2 - 4.25 for frame rows whose centre is inside the crop (c in [-0.5, 31.5]:
    y = 8..71), clamped to the edge row within the half pixel, and NaN elsewhere. Columns are 1:1.
    """
    amap = np.repeat(np.arange(32, dtype=np.float32)[:, None], 32, axis=1)
    frame = Geometry(40, 32).map_to_frame(amap, (80, 40))
    assert frame.shape == (80, 40)
    column = frame[:, 20]
    assert np.isnan(column[:8]).all() and np.isnan(column[72:]).all()
    assert column[8] == 0.0  # c = -0.25: inside, clamped to row 0
    assert column[9] == pytest.approx(0.25) and column[40] == pytest.approx(15.75)
    assert column[71] == 31.0  # c = 31.25: clamped to the last row
    np.testing.assert_allclose(column[9:71], np.arange(9, 71) / 2 - 4.25, rtol=0, atol=1e-6)
    assert np.isnan(frame[40, :4]).all() and not np.isnan(frame[40, 4:36]).any()


def test_map_to_frame_refuses_bad_input() -> None:
    geometry = Geometry(40, 32)
    with pytest.raises(ValueError, match=r"\[32, 32\] anomaly map"):
        geometry.map_to_frame(np.zeros((30, 30)), (40, 40))
    with pytest.raises(ValueError, match="outside must be"):
        geometry.map_to_frame(np.zeros((32, 32)), (40, 40), outside="zero")
    with pytest.raises(ValueError, match="positive"):
        geometry.map_to_frame(np.zeros((32, 32)), (0, 40))


def test_mask_view_same_size_is_a_center_crop() -> None:
    mask = np.random.default_rng(0).random((40, 40)) < 0.3
    view = Geometry(40, 36).mask_view(mask)
    assert view.dtype == bool and view.shape == (36, 36)
    np.testing.assert_array_equal(view, mask[2:38, 2:38])


def test_mask_view_is_nearest_and_keeps_the_box() -> None:
    mask = np.zeros((160, 80), dtype=np.uint8)  # H=160, W=80 -> resize 40: y / 4, x / 2
    mask[40:80, 20:40] = 255
    view = Geometry(40, 32).mask_view(mask)  # crop offset 4
    expected = np.zeros((40, 40), dtype=bool)
    expected[10:20, 10:20] = True
    np.testing.assert_array_equal(view, expected[4:36, 4:36])


def test_parse_size() -> None:
    assert parse_size("224") == (224, 224)
    assert parse_size("480x640") == (480, 640)
    assert parse_size(" 480X640 ") == (480, 640)
    for bad in ("0", "axb", "1x2x3", "-4x5"):
        with pytest.raises(ValueError, match="HxW"):
            parse_size(bad)


def test_file_naming(tmp_path: Path) -> None:
    assert data_file(tmp_path / "m.onnx") == tmp_path / "m.onnx.data"
    assert variant_file(tmp_path / "m.onnx", "int8") == tmp_path / "m-int8.onnx"
    assert key_to_filename("scratch/003.png", "_overlay.png") == "scratch__003_overlay.png"
    assert key_to_filename("noext", ".png") == "noext.png"
    first = timestamped_folder("padim-bench", tmp_path)
    first.mkdir()
    second = timestamped_folder("padim-bench", tmp_path)
    assert first.parent == second.parent == tmp_path and first != second and not second.exists()


def test_image_keys_do_not_depend_on_how_paths_are_given(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "a" / "x").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    files = [tmp_path / "a" / "x" / "1.png", tmp_path / "a" / "2.png", tmp_path / "b" / "3.png"]
    assert image_keys(files) == ["a/x/1.png", "a/2.png", "b/3.png"]
    monkeypatch.chdir(tmp_path / "a")
    relative = [Path("x/1.png"), Path("2.png"), Path("../b/3.png")]
    assert image_keys(relative) == image_keys(files)
    assert image_keys([tmp_path / "b" / "3.png"]) == ["3.png"]
