"""Heat-map overlays: colormap, blending, outlines, model geometry, PNG output, no heavy imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from padim_edge.visualize import (
    JET_LUT,
    colorize,
    heatmap_overlay,
    mask_outline,
    save_png,
)


def test_jet_lut_runs_from_blue_to_red() -> None:
    assert JET_LUT.shape == (256, 3) and JET_LUT.dtype == np.uint8
    low, mid, high = JET_LUT[0].astype(int), JET_LUT[128].astype(int), JET_LUT[255].astype(int)
    assert low[2] > 100 and low[0] == 0 and low[1] == 0  # dark blue
    assert mid[1] == 255  # green-ish middle
    assert high[0] > 100 and high[1] == 0 and high[2] == 0  # dark red


def test_colorize_scales_and_clips() -> None:
    values = np.array([[0.0, 5.0, 10.0, 20.0]])
    colors = colorize(values, vmin=0.0, vmax=10.0)
    np.testing.assert_array_equal(colors[0, 0], JET_LUT[0])
    np.testing.assert_array_equal(colors[0, 2], JET_LUT[255])
    np.testing.assert_array_equal(colors[0, 3], JET_LUT[255])  # above vmax: clipped
    np.testing.assert_array_equal(colors[0, 1], JET_LUT[128])
    # Defaults: the map's own range. A flat map or NaN is drawn as the lowest color.
    np.testing.assert_array_equal(colorize(values)[0, 3], JET_LUT[255])
    np.testing.assert_array_equal(colorize(np.ones((2, 2)))[1, 1], JET_LUT[0])
    np.testing.assert_array_equal(colorize(np.array([[np.nan, 1.0, 2.0]]))[0, 0], JET_LUT[0])


def test_overlay_blends_with_alpha() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    heat = rng.random((6, 7)).astype(np.float32)
    np.testing.assert_array_equal(heatmap_overlay(image, heat, alpha=0.0), image)
    np.testing.assert_array_equal(heatmap_overlay(image, heat, alpha=1.0), colorize(heat))
    half = heatmap_overlay(image, heat, alpha=0.5).astype(int)
    expected = (image.astype(int) + colorize(heat).astype(int)) / 2
    assert np.abs(half - expected).max() <= 0.5
    assert half.dtype == int and heatmap_overlay(image, heat).dtype == np.uint8


def test_overlay_draws_the_mask_outline_only() -> None:
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    heat = np.zeros((10, 10), dtype=np.float32)
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:7, 3:8] = True
    out = heatmap_overlay(image, heat, alpha=0.0, contour_mask=mask, contour_color=(0, 255, 0))
    green = (out == (0, 255, 0)).all(axis=-1)
    np.testing.assert_array_equal(green, mask_outline(mask))
    assert green.sum() == 2 * 5 + 2 * 3  # a 5x5 box has a 16-pixel outline
    assert not green[3:6, 4:7].any()  # interior untouched


def test_outline_closes_at_the_border() -> None:
    mask = np.ones((4, 4), dtype=bool)
    outline = mask_outline(mask)
    assert outline.sum() == 12 and not outline[1:3, 1:3].any()


def test_overlay_rejects_mismatched_inputs() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"with Geometry.image_view\(\)"):
        heatmap_overlay(image, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="uint8"):
        heatmap_overlay(image.astype(np.float32), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="alpha"):
        heatmap_overlay(image, np.zeros((8, 8)), alpha=1.5)
    with pytest.raises(ValueError, match="contour mask shape"):
        heatmap_overlay(image, np.zeros((8, 8)), contour_mask=np.zeros((4, 4), bool))


def test_save_png_round_trips(tmp_path: Path) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    path = save_png(rgb, tmp_path / "deep" / "er" / "rgb.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), rgb)
    with Image.open(save_png(np.eye(4, dtype=bool), tmp_path / "mask.png")) as image:
        np.testing.assert_array_equal(np.asarray(image), np.eye(4, dtype=np.uint8) * 255)
    with pytest.raises(ValueError, match="expected uint8"):
        save_png(np.zeros((4, 4), dtype=np.float32), tmp_path / "bad.png")


def test_importing_visualize_pulls_in_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys, padim_edge.visualize; "
        "heavy = [m for m in ('torch', 'matplotlib', 'scipy', 'sklearn') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_colour_scale_is_fixed_by_the_model() -> None:
    from padim_edge import metadata
    from padim_edge.visualize import annotated_overlay, colour_scale

    base = {
        "version": "x",
        "backbone": "r18",
        "dims": 8,
        "resize": 72,
        "crop": 64,
        "weights": "w",
        "train_images": 9,
    }
    assert colour_scale(metadata.parse(metadata.encode(base))) is None  # no basis: the CLI says so
    trained = {**base, "train_scores": {"count": 9, "p50": 5.0, "p99": 6.0, "max": 6.5, "map_p50": 4.0}}
    scale = colour_scale(metadata.parse(metadata.encode(trained)))
    assert (scale.low, scale.high) == (4.0, 12.0)
    calibrated = colour_scale(metadata.parse(metadata.encode({**trained, "threshold": 10.0})))
    assert (calibrated.low, calibrated.high) == (4.0, 15.0) and "threshold 10" in calibrated.source
    image = np.zeros((64, 64, 3), np.uint8)
    hot = annotated_overlay(image, np.full((64, 64), 99.0), calibrated, score=99.0, label="ANOMALOUS")
    cold = annotated_overlay(image, np.full((64, 64), 0.0), calibrated, score=0.0, label="ok")
    assert hot.shape == cold.shape and hot.shape[0] == 64 and hot.shape[1] > 64
    assert hot[40, 40, 0] > hot[40, 40, 2] and cold[40, 40, 2] > cold[40, 40, 0]  # red vs blue, clipped
