"""padim-eval warns about ground truth that is likely wrong: non-binary, inverted or good-image masks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from padim_edge.datasets import MaskProblems, load_category, load_mask
from padim_edge.evaluation import cli
from tests.evaluation.fakes import FakeModel, save_image, use_model


def _run(monkeypatch: pytest.MonkeyPatch, model_file: Path, category: Path, out: Path):
    use_model(monkeypatch, FakeModel())
    result = CliRunner().invoke(cli.main, [str(model_file), str(category), "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout)


def _warnings(stderr: str) -> list[str]:
    """The warning lines on stderr (the progress bar shares it)."""
    return [part for part in re.split(r"[\r\n]", stderr) if part.startswith("warning:")]


def _rewrite_masks(category: Path, defect: str, change) -> None:
    for path in sorted((category / "ground_truth" / defect).glob("*_mask.png")):
        grey = np.asarray(Image.open(path).convert("L"))
        save_image(change(grey).astype(np.uint8), path)


def test_clean_masks_give_no_warning(monkeypatch, category: Path, model_file: Path, tmp_path: Path) -> None:
    result, report = _run(monkeypatch, model_file, category, tmp_path / "out")
    assert "warning" not in result.stderr
    assert report["categories"][0]["warnings"] == []
    assert "Warning" not in (tmp_path / "out" / "metrics.md").read_text()


def test_noisy_masks_are_reported(monkeypatch, category: Path, model_file: Path, tmp_path: Path) -> None:
    """Background noise of 1-3 grey levels: every pixel non-zero, so every pixel read as defect."""
    rng = np.random.default_rng(0)
    _rewrite_masks(category, "scratch", lambda g: np.where(g > 0, 255, rng.integers(1, 4, g.shape)))
    result, report = _run(monkeypatch, model_file, category, tmp_path / "out")
    first = "ground_truth/scratch/000_mask.png"
    expected = [
        "4 of 8 masks are not binary (grey levels besides 0 and one defect value; every non-zero pixel "
        f"counts as defect): {first} (4 grey levels, 1..255), ground_truth/scratch/001_mask.png (4 grey "
        "levels, 1..255), ground_truth/scratch/002_mask.png (4 grey levels, 1..255) and 1 more; save masks "
        "as 0 = normal, 255 = defect",
        "4 of 8 masks mark most of their image as defect (inverted, or noise read as defect?): "
        f"{first} (100%), ground_truth/scratch/001_mask.png (100%), ground_truth/scratch/002_mask.png (100%) "
        "and 1 more; masks are 0 = normal, non-zero = defect, and pixel AUROC and PRO are computed against "
        "them",
    ]
    assert report["categories"][0]["warnings"] == expected
    assert _warnings(result.stderr) == [f"warning: widget: {line}" for line in expected]
    markdown = (tmp_path / "out" / "metrics.md").read_text()
    assert all(f"**Warning:** {line}" in markdown for line in expected)


def test_inverted_masks_are_reported(monkeypatch, category: Path, model_file: Path, tmp_path: Path) -> None:
    _rewrite_masks(category, "stain", lambda g: 255 - g)
    result, report = _run(monkeypatch, model_file, category, tmp_path / "out")
    (line,) = report["categories"][0]["warnings"]  # binary (0 / 255): only the coverage warning
    covered = [f"{1 - 30 / 1600:.0%}"] * 3
    assert line.startswith(
        "4 of 8 masks mark most of their image as defect (inverted, or noise read as defect?): "
        f"ground_truth/stain/000_mask.png ({covered[0]}), "
    ), line
    assert _warnings(result.stderr) == [f"warning: widget: {line}"]


def test_a_good_image_with_a_mask_is_reported(
    monkeypatch, category: Path, model_file: Path, tmp_path: Path
) -> None:
    marked = np.zeros((40, 40), dtype=np.uint8)
    marked[5:10, 5:10] = 255
    save_image(marked, category / "ground_truth" / "good" / "001_mask.png")
    save_image(np.zeros((40, 40), dtype=np.uint8), category / "ground_truth" / "good" / "002_mask.png")
    assert load_category(category).warnings == (
        "1 good image(s) of test/good/ have a mask that marks defect pixels "
        "(ground_truth/good/001_mask.png): good images are scored as defect-free and these masks are "
        "ignored; if the images show defects, move them to test/<defect>/ and their masks to "
        "ground_truth/<defect>/",
    )
    result, report = _run(monkeypatch, model_file, category, tmp_path / "out")
    assert report["categories"][0]["warnings"] == list(load_category(category).warnings)
    assert _warnings(result.stderr) == [f"warning: widget: {load_category(category).warnings[0]}"]


def test_binary_masks_of_any_defect_value_pass(tmp_path: Path) -> None:
    """0 / 1 masks and all-normal masks are binary; the check never changes what the mask says."""
    problems = MaskProblems(tmp_path)
    for name, values in (("one.png", (0, 1)), ("empty.png", (0, 0)), ("grey.png", (0, 128))):
        grey = np.full((10, 10), values[0], dtype=np.uint8)
        grey[:3] = values[1]
        save_image(grey, tmp_path / name)
        assert load_mask(tmp_path / name, problems=problems).sum() == (30 if values[1] else 0)
    assert problems.masks == 3 and problems.warnings() == []
