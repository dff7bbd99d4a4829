"""Many categories at once: one Ray task per category; a failing one is reported and stops nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from padim_edge.export.cli import main as export_main
from tests.conftest import write_images
from tests.distributed.test_fit import SMALL_ARGS

pytest.importorskip("ray", reason="the [ray] extra is not installed")


def test_categories_fit_in_parallel_and_failures_are_rows(
    ray_cluster, train_dir: Path, small_onnx: Path, tmp_path: Path
) -> None:
    root, out = tmp_path / "mvtec", tmp_path / "models"
    shutil.copytree(train_dir, root / "bottle" / "train" / "good")  # the session model's training set
    write_images(root / "grid" / "train" / "good", 1, seed=8)  # too few to fit
    (root / "screw" / "test" / "good").mkdir(parents=True)  # a category without train/
    (root / "notes").mkdir()  # not a category: ignored
    args = [
        "--ray",
        "--categories",
        str(root),
        "--output",
        str(out),
        "--device",
        "cpu",
        "--parity-images",
        "0",
    ]
    result = CliRunner().invoke(export_main, [*args, *SMALL_ARGS, "-q"])
    assert result.exit_code == 1, result.output
    assert "2 of 3 categories failed: grid, screw" in result.output
    assert "FAILED  grid: ValueError: need at least 2 normal images to fit, found 1" in result.output
    assert sorted(p.name for p in out.glob("*.onnx")) == ["bottle.onnx"]
    summary = json.loads((out / "summary.json").read_text())
    rows = {row["category"]: row for row in summary["rows"]}
    assert list(rows) == ["bottle", "grid", "screw"] and summary["failed"] == ["grid", "screw"]
    assert rows["bottle"]["ok"] and rows["bottle"]["images"] == 12
    assert (
        rows["screw"]["error"].startswith("ImageError: folder not found:")
        and "screw/train/good" in rows["screw"]["error"]
    )
    table = (out / "summary.md").read_text()
    assert (
        "1 of 3 categories fitted" in table
        and "| grid | FAILED | 0 |" in table
        and "| bottle | ok | 12 |" in table
    )
    # a category's task is the local pipeline: the same training set gives the same constants
    ours = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(out / "bottle.onnx").graph.initializer}
    for tensor in onnx.load(small_onnx).graph.initializer:
        np.testing.assert_array_equal(
            ours[tensor.name], onnx.numpy_helper.to_array(tensor), err_msg=tensor.name
        )
