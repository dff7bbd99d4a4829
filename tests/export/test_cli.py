"""padim-export: files written, summary, errors, help."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

from padim_edge.compat.check import TENSORRT_HINT
from padim_edge.export.cli import main as export_main
from padim_edge.export.cli_inputs import RANDOM_INIT_WARNING
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
    lines = result.stdout.splitlines()
    labels = [line.split()[0] for line in lines]
    # parity is checked on the staged graph before anything is written: the lines say so, in that order
    parity, wrote, tensorrt = labels.index("parity"), labels.index("wrote"), labels.index("tensorrt")
    assert parity < wrote < tensorrt, lines
    assert lines[parity].startswith("parity        ONNX Runtime vs PyTorch on 4 training images")
    assert lines[parity].endswith(") ok")
    assert lines[wrote] == f"wrote         {out} ({out.stat().st_size / 1e6:.1f} MB)"
    assert lines[tensorrt:] == [f"tensorrt      {TENSORRT_HINT}"]  # one line: no TensorRT target asked for
    assert "TensorRT 10" not in result.output
    assert result.stderr == f"warning: {RANDOM_INIT_WARNING}\n"  # --random-init on --data, not the demo


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


def test_int_options_out_of_range_are_refused_not_replaced(train_dir: Path, tmp_path: Path) -> None:
    """--parity-images -1 was read as a slice (5 of 6 images), --blocks 0 as 3 and -2 as 1."""
    out = tmp_path / "m.onnx"
    base = ["--data", str(train_dir), "-o", str(out), *SMALL_ARGS]
    for option, value, bound in (
        ("--parity-images", "-1", "x>=0"),
        ("--blocks", "0", "x>=1"),
        ("--blocks", "-2", "x>=1"),
        ("--batch-size", "0", "x>=1"),
        ("--resize", "0", "x>=1"),
        ("--crop", "-5", "x>=1"),
    ):
        result = CliRunner().invoke(export_main, [*base, option, value])
        assert result.exit_code == 2, (option, value, result.output)
        assert f"Invalid value for '{option}': {value} is not in the range {bound}." in result.output
    assert not out.exists()


def test_a_dataset_root_as_data_gets_the_train_good_hint(tmp_path: Path) -> None:
    root = tmp_path / "cells"
    write_images(root / "train" / "good", 2)
    (root / "test" / "good").mkdir(parents=True)
    for given, inner in ((root, root / "train" / "good"), (root / "train", root / "train" / "good")):
        result = CliRunner().invoke(
            export_main, ["--data", str(given), "-o", str(tmp_path / "m.onnx"), *SMALL_ARGS]
        )
        assert result.exit_code == 2, result.output
        shown = inner.relative_to(given).as_posix()
        message = (
            f"Invalid value for --data: {given} holds no images but {shown}/: it looks like a dataset "
            f"folder; pass its defect-free training images, --data {inner}"
        )
        assert message in " ".join(result.output.split()), result.output
    assert not (tmp_path / "m.onnx").exists()
