"""padim-export: files written, summary, errors, help."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from padim_edge.export.cli import main as export_main
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
