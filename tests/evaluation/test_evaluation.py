"""padim-eval: MVTec layout discovery, mask geometry, per-defect rows (fake model); the CLI: test_cli.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from padim_edge.datasets import DatasetError, find_categories, load_mask
from padim_edge.evaluation.metrics import evaluate_category
from padim_edge.evaluation.predictions import PredictionError, predict_category
from tests.evaluation.fakes import CROP, FakeModel, make_category, save_image

# --- geometry ------------------------------------------------------------------------------------


def test_load_mask_checks_the_image_size(tmp_path: Path) -> None:
    path = tmp_path / "m.png"
    save_image(np.full((10, 12), 255, dtype=np.uint8), path)
    assert load_mask(path, (10, 12)).all()
    with pytest.raises(DatasetError, match=r"12x10 \(WxH\) but its image is 13x10"):
        load_mask(path, (10, 13))
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(DatasetError, match="cannot decode mask"):
        load_mask(tmp_path / "bad.png")


# --- layout --------------------------------------------------------------------------------------


def test_find_single_category(category: Path) -> None:
    [found] = find_categories(category)
    assert found.name == "widget"
    assert found.defects == ["scratch", "stain"]
    assert len(found.samples) == 6 + 4 + 4
    assert [s.defect for s in found.samples[:6]] == ["good"] * 6
    scratch = next(s for s in found.samples if s.defect == "scratch")
    assert scratch.mask_path == category / "ground_truth" / "scratch" / "000_mask.png"


def test_find_several_categories(tmp_path: Path) -> None:
    make_category(tmp_path / "mvtec" / "bottle", seed=1)
    make_category(tmp_path / "mvtec" / "cable", seed=2)
    (tmp_path / "mvtec" / "docs").mkdir()  # not a category: ignored
    (tmp_path / "mvtec" / "readme.txt").write_text("hi")
    assert [c.name for c in find_categories(tmp_path / "mvtec")] == ["bottle", "cable"]


def test_unknown_layout_says_what_is_expected(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match=r"expected the MVTec AD layout: ROOT/test/good/"):
        find_categories(tmp_path)
    make_category(tmp_path / "bottle")
    with pytest.raises(DatasetError, match="the folder that holds test/"):
        find_categories(tmp_path / "bottle" / "test")


def test_missing_good_or_defect_folders(tmp_path: Path) -> None:
    (tmp_path / "a" / "test" / "crack").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"missing .*good"):
        find_categories(tmp_path / "a")
    save_image(np.zeros((8, 8, 3), np.uint8), tmp_path / "b" / "test" / "good" / "0.png")
    with pytest.raises(DatasetError, match="no defect folder"):
        find_categories(tmp_path / "b")


def test_missing_mask_is_an_error(category: Path) -> None:
    (category / "ground_truth" / "stain" / "002_mask.png").unlink()
    with pytest.raises(DatasetError, match=r"test/stain/002.png -> ground_truth/stain/002_mask.png"):
        find_categories(category)


def test_mask_of_the_wrong_size_is_an_error(category: Path) -> None:
    save_image(np.zeros((16, 16), np.uint8), category / "ground_truth" / "scratch" / "001_mask.png")
    [found] = find_categories(category)
    with pytest.raises(DatasetError, match=r"001_mask\.png is 16x16 .* but its image is 40x40"):
        predict_category(FakeModel(), found)


# --- predictions and rows ------------------------------------------------------------------------


def test_predict_category_collects_maps_and_masks(category: Path) -> None:
    [found] = find_categories(category)
    model = FakeModel()
    done: list[int] = []
    predictions = predict_category(model, found, batch_size=4, progress=done.append)
    assert model.calls == [4, 4, 4, 2] and done == [4, 4, 4, 2]
    assert predictions.maps.shape == (14, CROP, CROP) and predictions.maps.dtype == np.float32
    assert predictions.labels.tolist() == [False] * 6 + [True] * 8
    assert predictions.decisions is None
    assert not predictions.masks[:6].any()
    # The mask in model geometry sits exactly on the bright box of the anomaly map.
    scratch = predictions.masks[6]
    assert scratch.sum() == 30
    assert predictions.maps[6][scratch].min() > predictions.maps[6][~scratch].max()


def test_per_defect_rows(category: Path) -> None:
    [found] = find_categories(category)
    result = evaluate_category(predict_category(FakeModel(), found))
    rows = {row.name: row for row in result.per_defect}
    assert list(rows) == ["scratch", "stain"]
    scratch, stain = rows["scratch"], rows["stain"]
    assert (scratch.images, scratch.good, scratch.defective) == (10, 6, 4)
    assert scratch.image_auroc == pytest.approx(1.0) and scratch.pixel_auroc == pytest.approx(1.0)
    assert scratch.pro == pytest.approx(1.0)
    # Dark boxes are invisible to a brightness model: worse than chance on pixels, PRO zero.
    assert stain.image_auroc < 0.9
    assert stain.pixel_auroc < 0.1
    assert stain.pro == pytest.approx(0.0)
    assert result.overall.images == 14 and result.overall.defective == 8
    assert stain.image_auroc < result.overall.image_auroc < 1.0
    assert stain.pro < result.overall.pro < 1.0
    assert result.confusion is None


def test_model_failure_becomes_prediction_error(category: Path) -> None:
    class Broken(FakeModel):
        def predict(self, images, batch_size: int = 8):
            raise RuntimeError("CUDA out of memory")

    [found] = find_categories(category)
    with pytest.raises(PredictionError, match="CUDA out of memory"):
        predict_category(Broken(), found)
    with pytest.raises(PredictionError, match=r"\[32, 32\] anomaly map .* expected \[36, 36\]"):

        class WrongCrop(FakeModel):
            def predict(self, images, batch_size: int = 8):
                return FakeModel(crop=32).predict(images, batch_size)

        predict_category(WrongCrop(), found)
