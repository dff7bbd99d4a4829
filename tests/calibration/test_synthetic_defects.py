"""The synthetic-defect check of the fidelity report: the set, its AUROC, the new LOW flags."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from padim_edge.calibration import fidelity, settings
from padim_edge.calibration.cli import main
from padim_edge.calibration.fidelity import synthetic_defects
from padim_edge.calibration.formats import VARIANTS
from padim_edge.geometry import Geometry
from padim_edge.images import list_images, load_image
from padim_edge.runtime import PadimModel
from tests.calibration.conftest import props_of, texture
from tests.calibration.test_fidelity import _broken_head

GEOMETRY = Geometry(72, 64)


def _frames(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(80, 96), (72, 72), (96, 80)]
    return [texture(rng, *sizes[i % 3]) for i in range(count)]


def test_auroc_hand_computed_and_against_sklearn() -> None:
    assert fidelity.auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert fidelity.auroc([1.0, 1.0, 1.0, 1.0], [0, 1, 0, 1]) == 0.5  # ties count half
    assert np.isnan(fidelity.auroc([1.0, 2.0], [1, 1]))
    with pytest.raises(ValueError, match="labels"):
        fidelity.auroc([1.0, 2.0], [1])
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    labels = rng.random(500) < 0.3
    scores = (rng.normal(size=500) + labels).round(1)  # ties
    assert fidelity.auroc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_synthetic_set_is_deterministic_and_in_the_crop() -> None:
    frames = _frames(20)
    first = synthetic_defects.make_set(frames, GEOMETRY)
    again = synthetic_defects.make_set([f.copy() for f in frames], GEOMETRY)
    for a, b in zip(first.defected + first.clean, again.defected + again.clean, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.masks, again.masks)
    assert first.kinds == again.kinds
    other = synthetic_defects.make_set(frames, GEOMETRY, seed=settings.SYNTHETIC_SEED + 1)
    assert not all(np.array_equal(a, b) for a, b in zip(first.defected, other.defected, strict=True))
    assert first.masks.shape == (20, 64, 64) and first.masks.dtype == bool
    assert all(mask.any() for mask in first.masks)  # every defect lands inside the crop
    for clean, defected, mask in zip(first.clean, first.defected, first.masks, strict=True):
        assert clean.shape == defected.shape == (72, 72, 3) and clean.dtype == np.uint8
        changed = np.abs(defected.astype(int) - clean.astype(int)).max(axis=2) > 0
        view = GEOMETRY.mask_view(changed.astype(np.uint8))
        assert view[mask].mean() > 0.9  # the mask marks pixels the defect changed
        assert changed.sum() > mask.sum() * 0.5
    # sizes, contrasts and both shapes all appear
    kinds = {(k.shape, k.size, k.contrast) for k in first.kinds}
    assert {k[0] for k in kinds} == set(synthetic_defects.SHAPES)
    assert {k[1] for k in kinds} == set(settings.SYNTHETIC_SIZES)
    assert {k[2] for k in kinds} == set(settings.SYNTHETIC_CONTRASTS)
    # the clean frame is the frame squashed to the resize square: a pure function of the frame
    np.testing.assert_array_equal(first.clean[1], load_like(frames[1]))


def load_like(frame: np.ndarray) -> np.ndarray:
    from padim_edge.images import resize_frame

    return resize_frame(frame, (72, 72))


def test_identical_model_loses_nothing_on_synthetic(r18_model: Path, synthetic: dict[str, Path]) -> None:
    plan = fidelity.plan_frames(
        measure=True, calibrates=False, data_paths=list_images(synthetic["holdout"]), calibration_count=2
    )
    report = fidelity.measure(r18_model, r18_model, plan, reference="r18", device="cpu", progress=False)
    assert report is not None and report.synthetic_image_auroc is not None
    image, pixel = report.synthetic_image_auroc, report.synthetic_pixel_auroc
    assert pixel is not None and image[0] == image[1] and pixel[0] == pixel[1]
    assert image[0] > 0.5 and pixel[0] > 0.5  # the pasted defects are visible to the model
    assert report.synthetic_image_drop == (0.0, 0.0) and report.separation == 0.0
    assert report.verdict == fidelity.OK
    # deterministic: a second measurement gives the same figures
    again = fidelity.measure(r18_model, r18_model, plan, reference="r18", device="cpu", progress=False)
    assert again is not None and again.record() == report.record()
    # the same figures from the set built by hand
    frames = [load_image(p) for p in plan.frames]
    model = PadimModel(r18_model, device="cpu")
    made = synthetic_defects.make_set(frames, synthetic_defects.crop_of(model))
    assert synthetic_defects.score(model, made) == pytest.approx((image[0], pixel[0]), abs=1e-12)


def test_broken_head_fails_the_synthetic_check(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(VARIANTS, "fp16", dataclasses.replace(VARIANTS["fp16"], build=_broken_head))
    out = tmp_path / "broken.onnx"
    result = CliRunner().invoke(
        main, [str(r18_model), "--fp16", "--validate", str(synthetic["holdout"]), "-o", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(props_of(out)["padim_edge.fidelity"])
    image, pixel = record["synthetic_image_auroc"], record["synthetic_pixel_auroc"]
    lost = max(image[0] - image[1], pixel[0] - pixel[1])
    assert lost > settings.MAX_SYNTHETIC_AUROC_DROP, record
    lower = max(record["synthetic_image_drop"][0], record["synthetic_pixel_drop"][0])
    assert lower > settings.MAX_SYNTHETIC_AUROC_DROP, record  # the loss is beyond doubt
    assert record["low"] is True and "synthetic-defect" in result.stderr and "LOW FIDELITY" in result.stderr
    assert PadimModel(out, device="cpu").info.fidelity == record
