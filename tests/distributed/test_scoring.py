"""Batch scoring on Ray: the local padim-predict scores bit for bit, bad files reported, idempotent shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from padim_edge.images import iter_batches
from padim_edge.naming import image_keys
from padim_edge.runtime import PadimModel
from padim_edge.runtime.cli import main as predict_main
from tests.common.test_images import write_oversized_png
from tests.conftest import write_images

pytest.importorskip("ray", reason="the [ray] extra is not installed")
import pyarrow.parquet as pq  # after the skip: it comes with the extra


def test_ray_scores_equal_local_predict_and_shards_are_idempotent(
    ray_cluster, small_onnx: Path, tmp_path: Path
) -> None:
    data = tmp_path / "archive"
    write_images(data / "line1", 7, seed=3, sizes=[(80, 96), (64, 64)])
    write_images(data / "line2", 6, seed=4)
    (data / "line2" / "img_002.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_oversized_png(data / "line2" / "img_005.png")
    local, remote = tmp_path / "local", tmp_path / "ray"
    runner = CliRunner()
    result = runner.invoke(
        predict_main, [str(small_onnx), str(data), "-o", str(local), "--batch-size", "4", "-q"]
    )
    assert result.exit_code == 1, result.output

    ray_args = [
        "--ray",
        str(small_onnx),
        str(data),
        "-o",
        str(remote),
        "--batch-size",
        "4",
        "--shard-size",
        "4",
    ]
    result = runner.invoke(predict_main, [*ray_args, "--ray-actors", "2", "--maps", "-q"])
    assert result.exit_code == 1, result.output
    assert (
        "scored 11 of 13 images" in result.output
        and "shards: 4 written, 0 already there, 0 failed" in result.output
    )
    assert "error: line2/img_002.png: cannot decode image" in result.output
    # the local command's files, byte for byte (keys relative to the common folder, scores rounded alike)
    for name in ("scores.json", "failed.json"):
        assert (remote / name).read_text() == (local / name).read_text(), name
    summary = json.loads((remote / "summary.json").read_text())
    assert summary["torch_in_workers"] is False and summary["actors"] == 2 and summary["written"] == 4

    # raw scores (and float16 maps) from the shards == the runtime's, bit for bit, in the same batches
    shards = sorted((remote / "shards").glob("part-*.parquet"))
    table = pq.read_table(shards).to_pydict()
    files = sorted(p for p in data.rglob("*.png"))
    keys = dict(zip(files, image_keys(files), strict=True))
    model = PadimModel(small_onnx, device="cpu")
    expected = {}
    for batch in iter_batches(files, 4, on_error=lambda path, exc: None):
        for (file, _), pred in zip(batch, model.predict([im for _, im in batch], batch_size=4), strict=True):
            expected[keys[file]] = pred
    assert table["key"] == [keys[f] for f in files]
    for key, score, error, picture in zip(
        table["key"], table["score"], table["error"], table["anomaly_map"], strict=True
    ):
        if key in expected:
            assert score == expected[key].score and error is None, key
            np.testing.assert_array_equal(
                np.frombuffer(picture, np.float16).reshape(64, 64),
                expected[key].anomaly_map.astype(np.float16),
            )
        else:
            assert score is None and picture is None and "cannot decode image" in error

    # idempotent per shard: a re-run writes nothing; a lost shard is the only one recomputed
    result = runner.invoke(predict_main, [*ray_args, "--maps", "-q"])
    assert "shards: 0 written, 4 already there" in result.output
    shards[1].unlink()
    result = runner.invoke(predict_main, [*ray_args, "--maps", "-q"])
    assert "shards: 1 written, 3 already there" in result.output and shards[1].is_file()
    assert (remote / "scores.json").read_text() == (local / "scores.json").read_text()


def test_ray_scores_the_files_of_a_list(ray_cluster, small_onnx: Path, tmp_path: Path) -> None:
    """`padim-predict --ray MODEL --files-from LIST`: the listed files (relative to LIST), as locally."""
    data = tmp_path / "archive"
    write_images(data / "line1", 4, seed=7)
    listing = tmp_path / "lists" / "recheck.txt"
    listing.parent.mkdir()
    listing.write_text("# two frames\n../archive/line1/img_001.png\n\n../archive/line1/img_003.png\n")
    local, remote = tmp_path / "local", tmp_path / "ray"
    runner = CliRunner()
    args = ["--files-from", str(listing), "--batch-size", "2", "-q"]
    result = runner.invoke(predict_main, [str(small_onnx), *args, "-o", str(local)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(predict_main, ["--ray", str(small_onnx), *args, "-o", str(remote)])
    assert result.exit_code == 0, result.output
    assert "scored 2 of 2 images" in result.output
    scores = json.loads((remote / "scores.json").read_text())
    assert sorted(scores) == ["img_001.png", "img_003.png"]
    assert (remote / "scores.json").read_text() == (local / "scores.json").read_text()


def test_the_ray_scorer_does_not_import_the_command_line() -> None:
    """Dependencies run one way: runtime/cli -> distributed/commands -> distributed/scoring -> runtime's
    pipeline and output modules; the scorer never imports the CLI (the cycle it had through _write_json)."""
    import subprocess
    import sys

    code = (
        "import sys, padim_edge.distributed.scoring, padim_edge.distributed.commands\n"
        "assert 'padim_edge.runtime.cli' not in sys.modules, 'runtime.cli imported'\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    source = Path(__file__).resolve().parents[2] / "padim_edge" / "distributed" / "scoring.py"
    assert "runtime.cli" not in source.read_text()
