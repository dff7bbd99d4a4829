"""padim-eval's command line with a fake model: tables, JSON, the output folder, errors."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from padim_edge.evaluation import cli
from tests.conftest import failing_writes
from tests.evaluation.fakes import CROP, FakeModel, make_category, use_model

# --- CLI -----------------------------------------------------------------------------------------


def test_cli_prints_the_table(monkeypatch, category: Path, model_file: Path) -> None:
    opened = use_model(monkeypatch, FakeModel())
    result = CliRunner().invoke(cli.main, [str(model_file), str(category), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert opened == [(model_file, "cpu")]
    out = result.stdout
    assert "CPUExecutionProvider" in out
    assert "14 test images: 6 good, 8 defective" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("defect"))
    assert header.split() == [
        "defect",
        "images",
        "good",
        "defective",
        "image",
        "AUROC",
        "pixel",
        "AUROC",
        "PRO@30%",
    ]
    scratch = next(line for line in lines if line.startswith("scratch"))
    assert scratch.split()[:7] == ["scratch", "10", "6", "4", "1.0000", "1.0000", "1.0000"]
    overall = next(line for line in lines if line.startswith("overall"))
    assert overall.split()[:4] == ["overall", "14", "6", "8"]
    assert len(header) >= len(scratch.rstrip())  # right-aligned under the headers
    assert "threshold" not in out.split("no threshold")[-1]


def test_cli_json_is_the_only_stdout(monkeypatch, category: Path, model_file: Path) -> None:
    use_model(monkeypatch, FakeModel())
    result = CliRunner().invoke(cli.main, [str(model_file), str(category), "--json", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["images"] == 14 and report["good"] == 6 and report["defective"] == 8
    assert report["providers"] == ["CPUExecutionProvider"]
    assert report["model"]["crop"] == CROP and report["model"]["threshold"] is None
    assert 0.5 < report["image_auroc"] < 1.0
    assert 0.0 < report["pixel_auroc"] < 1.0 and 0.0 < report["pro"] < 1.0
    per_defect = {row["defect"]: row for row in report["per_defect"]}
    assert (
        per_defect["scratch"]["image_auroc"] == pytest.approx(1.0)
        and per_defect["scratch"]["category"] == "widget"
    )
    assert per_defect["stain"]["pro"] == pytest.approx(0.0)
    assert "confusion" not in report


def test_cli_reports_the_confusion_matrix_at_the_model_threshold(monkeypatch, category, model_file) -> None:
    use_model(monkeypatch, FakeModel(threshold=0.5))  # only bright boxes pass 0.5
    runner = CliRunner()
    report = json.loads(runner.invoke(cli.main, [str(model_file), str(category), "--json"]).stdout)
    expected = {"threshold": 0.5, "tp": 4, "fp": 0, "tn": 6, "fn": 4, "precision": 1.0, "recall": 0.5}
    assert report["confusion"] == {**expected, "accuracy": pytest.approx(10 / 14)}
    text = runner.invoke(cli.main, [str(model_file), str(category)]).stdout
    assert "at threshold 0.5: TP 4  FP 0  TN 6  FN 4  precision 1.0000  recall 0.5000" in text


def test_cli_output_folder(monkeypatch, category: Path, model_file: Path, tmp_path: Path) -> None:
    use_model(monkeypatch, FakeModel())
    out = tmp_path / "report"
    result = CliRunner().invoke(cli.main, [str(model_file), str(category), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text()) == json.loads(result.stdout)
    markdown = (out / "metrics.md").read_text()
    assert "| defect | images | good | defective | image AUROC | pixel AUROC | PRO@30% |" in markdown
    assert "| scratch | 10 | 6 | 4 | 1.0000 | 1.0000 | 1.0000 |" in markdown
    with Image.open(out / "roc.png") as roc:
        assert roc.format == "PNG" and roc.size == (1000, 460)
    with Image.open(out / "grid.png") as grid:
        assert grid.format == "PNG"
        # 6 highest + 6 lowest of 14 images: two rows of 6 cells of 224 px plus padding.
        assert grid.size == (8 + 6 * (224 + 8), 8 + 2 * (22 + 224 + 34 + 8))
        pixels = np.asarray(grid.convert("RGB"))
    # Top row: scratches (hot, reddish boxes) with white mask outlines; the bottom row holds no scratch.
    top_row, bottom_row = pixels[30 : 30 + 224].astype(int), pixels[30 + 288 : 30 + 288 + 224].astype(int)
    assert ((top_row[..., 0] - top_row[..., 2]) > 40).sum() > 4 * 100
    assert ((bottom_row[..., 0] - bottom_row[..., 2]) > 40).sum() == 0
    assert (top_row == 255).all(axis=-1).any()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_cli_write_failures_are_one_line(
    monkeypatch, category: Path, model_file: Path, tmp_path: Path, code: int
) -> None:
    """Disk full, or a permission lost after the start: one line naming the folder, no traceback."""
    use_model(monkeypatch, FakeModel())
    out = tmp_path / "report"
    failing_writes(monkeypatch, code)
    result = CliRunner().invoke(cli.main, [str(model_file), str(category), "-o", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"Error: could not write {out}: {os.strerror(code)}" in result.output


def test_cli_output_that_cannot_be_a_folder(
    monkeypatch, category: Path, model_file: Path, tmp_path: Path
) -> None:
    """-o naming a file, or a folder that cannot be written, is refused before any image is scored."""
    use_model(monkeypatch, FakeModel())
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = CliRunner().invoke(cli.main, [str(model_file), str(category), "-o", str(blocker)])
    assert result.exit_code == 2 and "'--output' / '-o': Directory" in result.output  # click refuses it
    assert "is a file" in result.output
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: simulate the refusal
            import tempfile

            def refuse(*args, **kwargs):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

            monkeypatch.setattr(tempfile, "mkstemp", refuse)
        result = CliRunner().invoke(cli.main, [str(model_file), str(category), "-o", str(locked / "out")])
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"cannot write to --output {locked / 'out'}: Permission denied" in result.output


def test_cli_several_categories(monkeypatch, tmp_path: Path, model_file: Path) -> None:
    make_category(tmp_path / "mvtec" / "bottle", seed=1)
    make_category(tmp_path / "mvtec" / "cable", seed=2, good=4, per_defect=2)
    use_model(monkeypatch, FakeModel(threshold=0.5))
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(cli.main, [str(model_file), str(tmp_path / "mvtec"), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "== bottle ==" in result.stdout and "== cable ==" in result.stdout
    assert "== mean over categories ==" in result.stdout
    mean_line = next(line for line in result.stdout.splitlines() if line.startswith("mean"))
    assert mean_line.split()[:4] == ["mean", str(14 + 8), "10", "12"]
    for name in ("bottle", "cable"):
        assert (out / name / "roc.png").is_file() and (out / name / "grid.png").is_file()
    report = json.loads((out / "metrics.json").read_text())
    assert report["aggregate"] == "mean over categories"
    assert [c["category"] for c in report["categories"]] == ["bottle", "cable"]
    mean = np.mean([c["image_auroc"] for c in report["categories"]])
    assert report["image_auroc"] == pytest.approx(mean)
    assert len(report["per_defect"]) == 4
    assert report["confusion"]["tp"] == 4 + 2 and report["confusion"]["tn"] == 14 - 8 + 4


def test_cli_errors_are_clear(monkeypatch, tmp_path: Path, category: Path, model_file: Path) -> None:
    runner = CliRunner()

    def broken_opener(path, device):
        raise ValueError("not a padim-edge model (no 'padim_edge.format' metadata)")

    monkeypatch.setattr(cli, "open_model", broken_opener)
    result = runner.invoke(cli.main, [str(model_file), str(category)])
    assert result.exit_code == 1
    assert f"Error: cannot load model {model_file}: not a padim-edge model" in result.output

    use_model(monkeypatch, FakeModel())
    (tmp_path / "flat").mkdir()
    result = runner.invoke(cli.main, [str(model_file), str(tmp_path / "flat")])
    assert result.exit_code == 1 and "expected the MVTec AD layout" in result.output

    (category / "test" / "good" / "001.png").write_bytes(b"truncated")
    result = runner.invoke(cli.main, [str(model_file), str(category)])
    assert result.exit_code == 1 and "cannot decode image" in result.output and "001.png" in result.output


def test_cli_help_explains_every_option() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    for text in ("--output", "--device", "auto|cpu|cuda|tensorrt", "--batch-size", "--json", "MODEL", "ROOT"):
        assert text in result.output
    assert "metrics.json" in result.output and "PRO" in result.output


def test_image_level_set_without_masks(monkeypatch, category: Path, model_file: Path, tmp_path: Path) -> None:
    """Folders of good and defective images only: image AUROC, confusion, plots; pixel metrics say why not."""
    import shutil

    shutil.rmtree(category / "ground_truth")
    use_model(monkeypatch, FakeModel(threshold=0.5))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli.main, [str(model_file), str(category), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "no ground_truth/ masks" in result.output and "at threshold 0.5: TP" in result.output
    report = json.loads((out / "metrics.json").read_text())
    assert report["image_auroc"] is not None and report["pixel_auroc"] is None and report["pro"] is None
    assert report["categories"][0]["has_masks"] is False
    assert (out / "roc.png").is_file() and (out / "grid.png").is_file()


def test_missing_extra_is_one_line(tmp_path: Path) -> None:
    """Without scikit-learn, --help still works and a run says which extra to install."""
    import subprocess
    import sys

    block = "import sys; sys.modules['sklearn'] = None; from padim_edge.evaluation.cli import main; main()"
    helped = subprocess.run([sys.executable, "-c", block, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "Evaluate MODEL" in helped.stdout
    (tmp_path / "m.onnx").write_bytes(b"x")
    run = subprocess.run(
        [sys.executable, "-c", block, str(tmp_path / "m.onnx"), str(tmp_path)], capture_output=True, text=True
    )
    assert run.returncode == 1
    assert (
        "padim-eval needs scikit-learn, which is not installed: pip install 'padim-edge[eval]'" in run.stderr
    )
    assert "Traceback" not in run.stderr
