"""padim-export and padim-predict through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
from click.testing import CliRunner
from PIL import Image

from padim_edge.export.cli import main as export_main
from padim_edge.runtime import available
from padim_edge.runtime.cli import main as predict_main
from tests.conftest import write_images

SMALL_ARGS = ["--dims", "16", "--resize", "72", "--crop", "64", "--random-init", "--quiet"]


def test_export_cli_writes_model_and_summary(train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.onnx"
    result = CliRunner().invoke(export_main, ["--data", str(train_dir), "--output", str(out), *SMALL_ARGS])
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert "images used   12" in result.output
    assert "16 of 448 channels" in result.output
    assert "random-init" in result.output
    assert "parity        ONNX Runtime vs PyTorch on 4 training images" in result.output
    assert result.output.rstrip().endswith("ok")


def test_export_cli_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(export_main, ["--data", str(tmp_path / "nope"), *SMALL_ARGS])
    assert result.exit_code == 1 and "folder not found" in result.output
    result = runner.invoke(export_main, ["--data", str(tmp_path), "--weights", "w.pth", "--random-init"])
    assert result.exit_code == 2 and "exclude each other" in result.output
    one = tmp_path / "one"
    write_images(one, 1)
    result = runner.invoke(export_main, ["--data", str(one), "-o", str(tmp_path / "m.onnx"), *SMALL_ARGS])
    assert result.exit_code == 1 and "at least 2 normal images" in result.output
    result = runner.invoke(export_main, ["--backbone", "vgg"])
    assert result.exit_code == 2 and "'vgg' is not one of" in result.output


def test_export_help_explains_every_option() -> None:
    result = CliRunner().invoke(export_main, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--backbone",
        "--data",
        "--demo",
        "--dims",
        "--resize",
        "--crop",
        "--weights",
        "--random-init",
    ):
        assert option in result.output
    for command in (export_main, predict_main):
        undocumented = [p.name for p in command.params if isinstance(p, click.Option) and not p.help]
        assert undocumented == [], f"{command.name}: options without help: {undocumented}"


def test_predict_cli_table_scores_and_overlays(small_onnx: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_images(data / "good", 2, seed=3)
    write_images(data / "bad", 1, seed=4)
    out = tmp_path / "pred"
    result = CliRunner().invoke(predict_main, [str(small_onnx), str(data), "--output", str(out), "-q"])
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    assert sorted(scores) == ["bad/img_000.png", "good/img_000.png", "good/img_001.png"]
    assert all(isinstance(v, float) and v > 0 for v in scores.values())
    overlays = sorted(p.name for p in out.glob("*_overlay.png"))
    assert overlays == ["bad__img_000_overlay.png", "good__img_000_overlay.png", "good__img_001_overlay.png"]
    assert np.asarray(Image.open(out / overlays[0])).shape == (64, 64, 3)
    for name, score in scores.items():
        assert name in result.output and f"{score:.4f}" in result.output


def test_predict_cli_errors(small_onnx: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(predict_main, [str(tmp_path / "none.onnx"), str(tmp_path)])
    assert result.exit_code == 1 and "model file not found" in result.output
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    result = runner.invoke(predict_main, [str(small_onnx), str(notes)])
    assert result.exit_code == 1 and "not a supported image file" in result.output
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    result = runner.invoke(predict_main, [str(small_onnx), str(broken), "-q"])
    assert result.exit_code == 1 and "cannot decode image" in result.output
    if "CUDAExecutionProvider" not in available():
        result = runner.invoke(predict_main, [str(small_onnx), str(broken), "--device", "cuda"])
        assert result.exit_code == 1 and "CUDAExecutionProvider" in result.output
