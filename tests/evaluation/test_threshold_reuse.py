"""padim-eval warns when the model's threshold was chosen on the very images it evaluates."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from padim_edge.images import fingerprint
from tests.conftest import write_images

pytest.importorskip("sklearn", reason="padim-eval needs the [eval] extra")


@pytest.fixture(scope="module")
def calibrated(small_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The small model with a threshold chosen on ``held_out`` (8 normal images)."""
    from padim_edge.calibration.pipeline import calibrate

    folder = tmp_path_factory.mktemp("threshold")
    held_out = folder / "held_out"
    write_images(held_out, 8, seed=7)
    out = folder / "calibrated.onnx"
    calibrate(small_onnx, out, data=held_out, target_fpr=0.1, progress=False)
    return out, held_out


def _root(tmp_path: Path, good: list[Path]) -> Path:
    root = tmp_path / "set"
    (root / "test" / "good").mkdir(parents=True)
    for i, path in enumerate(good):
        shutil.copy(path, root / "test" / "good" / f"renamed_{i}.png")
    write_images(root / "test" / "scratch", 3, seed=11)
    return root


def test_the_threshold_images_are_fingerprinted(calibrated: tuple[Path, Path]) -> None:
    from padim_edge.runtime import PadimModel

    model, held_out = calibrated
    stored = PadimModel(str(model), device="cpu").info.get("threshold_data")
    assert stored == sorted(fingerprint(p) for p in sorted(held_out.iterdir()))


def test_eval_warns_when_it_sees_the_threshold_images(calibrated, tmp_path: Path) -> None:
    from padim_edge.evaluation.cli import main

    model, held_out = calibrated
    root = _root(tmp_path, sorted(held_out.iterdir())[:3])  # copied under other names
    result = CliRunner().invoke(main, [str(model), str(root), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "3 of the 6 images evaluated" in result.stderr
    assert "are images the model's threshold was chosen on" in result.stderr


def test_eval_is_quiet_on_held_out_images(calibrated, tmp_path: Path) -> None:
    from padim_edge.evaluation.cli import main

    model, _ = calibrated
    others = write_images(tmp_path / "others", 3, seed=23)
    root = _root(tmp_path, others)
    result = CliRunner().invoke(main, [str(model), str(root), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "threshold was chosen on" not in result.stderr
