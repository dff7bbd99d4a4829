"""padim-predict: the score table, scores.json, overlays, errors."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from padim_edge.runtime import available
from padim_edge.runtime.cli import main as predict_main
from tests.conftest import failing_writes, write_images


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
    overlay = np.asarray(Image.open(out / overlays[0]))
    assert overlay.shape[0] == 64 and overlay.shape[1] > 64 + 12  # the map, then the colour bar
    for name, score in scores.items():
        assert name in result.output and f"{score:.4f}" in result.output
    assert not (out / "labels.json").exists() and not (out / "failed.json").exists()


def test_keys_and_colours_do_not_depend_on_how_paths_are_given(
    small_onnx: Path, tmp_path: Path, monkeypatch
) -> None:
    """The same image gets the same key and the same overlay pixels, alone or with others, by any path."""
    data = tmp_path / "data"
    write_images(data / "good", 3, seed=3)
    runner = CliRunner()
    out_all, out_one = tmp_path / "all", tmp_path / "one"
    assert runner.invoke(predict_main, [str(small_onnx), str(data), "-o", str(out_all), "-q"]).exit_code == 0
    monkeypatch.chdir(data)
    files = ["good/img_000.png", "good/img_001.png"]
    assert runner.invoke(predict_main, [str(small_onnx), *files, "-o", str(out_one), "-q"]).exit_code == 0
    assert sorted(json.loads((out_one / "scores.json").read_text())) == ["img_000.png", "img_001.png"]
    # the common folder of data/'s files is data/good: keys are relative to it, however they were named
    assert sorted(json.loads((out_all / "scores.json").read_text())) == [f"img_00{i}.png" for i in range(3)]
    same_all = np.asarray(Image.open(out_all / "img_001_overlay.png"))
    same_one = np.asarray(Image.open(out_one / "img_001_overlay.png"))
    np.testing.assert_array_equal(same_all, same_one)  # a fixed colour scale, not each run's max


def test_a_corrupt_image_among_many_is_reported_and_the_rest_scored(small_onnx: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_images(data, 3, seed=5)
    (data / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "pred"
    result = CliRunner().invoke(predict_main, [str(small_onnx), str(data), "-o", str(out), "-q"])
    assert result.exit_code == 1
    assert "1 of 3 images could not be read" in result.output and "img_001.png" in result.output
    assert sorted(json.loads((out / "scores.json").read_text())) == ["img_000.png", "img_002.png"]
    assert list(json.loads((out / "failed.json").read_text())) == ["img_001.png"]


def test_predict_cli_errors(small_onnx: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = runner.invoke(predict_main, [str(small_onnx), str(tmp_path), "-o", str(blocker)])
    assert (
        result.exit_code == 1 and "--output" in result.output and "is a file, not a folder" in result.output
    )
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


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_disk_full_or_read_only_is_one_line(
    small_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """A write that fails after the check (disk full, remounted read-only) ends in one line, no traceback."""
    data = tmp_path / "images"
    write_images(data, 2)
    out = tmp_path / "pred"
    failing_writes(monkeypatch, code)
    result = CliRunner().invoke(predict_main, [str(small_onnx), str(data), "-o", str(out), "-q"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"Error: could not write {out}: {os.strerror(code)}" in result.output
    assert "Traceback" not in result.output


def test_help_names_overlays_as_they_are_written(small_onnx: Path, tmp_path: Path) -> None:
    """--help's overlay naming rule and example are what padim-predict writes (nested key, extension)."""
    help_text = CliRunner().invoke(predict_main, ["--help"]).output
    assert "<key>_overlay.png" not in help_text
    assert "'/' replaced by '__'" in help_text and "scratch/003.png -> scratch__003_overlay.png" in help_text
    data = tmp_path / "images"
    write_images(data / "scratch", 1)
    write_images(data / "good", 1)
    out = tmp_path / "pred"
    assert CliRunner().invoke(predict_main, [str(small_onnx), str(data), "-o", str(out), "-q"]).exit_code == 0
    overlays = sorted(p.name for p in out.glob("*_overlay.png"))
    assert overlays == ["good__img_000_overlay.png", "scratch__img_000_overlay.png"]


def test_files_from_lists_paths_relative_to_the_list(small_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    """--files-from: one path per line, blank lines and # comments skipped, relative to the list's folder."""
    data = tmp_path / "data"
    write_images(data / "line1", 3, seed=5)
    write_images(data / "line2", 2, seed=6)
    listing = data / "todo.txt"
    absolute = data / "line2" / "img_001.png"
    listing.write_text(f"# frames to re-check\n\nline1/img_000.png\n  line1/img_002.png  \n{absolute}\n")
    monkeypatch.chdir(tmp_path)  # not the list's folder: relative lines still resolve against it
    runner = CliRunner()
    out = tmp_path / "listed"
    result = runner.invoke(
        predict_main, [str(small_onnx), "--files-from", str(listing), "-o", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    listed = json.loads((out / "scores.json").read_text())
    assert sorted(listed) == ["line1/img_000.png", "line1/img_002.png", "line2/img_001.png"]
    out_all = tmp_path / "all"
    assert runner.invoke(predict_main, [str(small_onnx), str(data), "-o", str(out_all), "-q"]).exit_code == 0
    every = json.loads((out_all / "scores.json").read_text())
    assert {key: every[key] for key in listed} == listed

    # command-line paths and the list together; an empty list and a missing one are one-line errors
    both = runner.invoke(predict_main, [str(small_onnx), str(data / "line2"), "--files-from", str(listing)])
    assert both.exit_code == 0 and both.output.count("img_001.png") == 2, both.output
    (data / "empty.txt").write_text("# nothing yet\n\n")
    result = runner.invoke(predict_main, [str(small_onnx), "--files-from", str(data / "empty.txt")])
    assert result.exit_code == 1 and "names no path (only blank lines or # comments)" in result.output
    result = runner.invoke(predict_main, [str(small_onnx), "--files-from", str(data / "missing.txt")])
    assert result.exit_code == 1 and "cannot read the file list" in result.output
