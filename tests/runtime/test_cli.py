"""padim-predict: the score table, scores.json, overlays, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from padim_edge.runtime import available
from padim_edge.runtime.cli import main as predict_main
from tests.conftest import write_images


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
