"""padim-calibrate: help, clear errors, the variant table, and the graph helpers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from padim_edge import graph_names, onnx_files
from padim_edge.calibration import decision, int8, modelio
from padim_edge.calibration.cli import main
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.formats import VARIANTS, select_variant
from padim_edge.calibration.graph import toposort
from padim_edge.calibration.pipeline import calibrate
from padim_edge.images import list_images
from padim_edge.runtime import PadimModel
from tests.calibration.conftest import write_folder
from tests.conftest import failing_writes, swapped_pair

# --------------------------------------------------------------------------- errors and CLI


def test_help_explains_every_option() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    options = (
        "--data --output --target-fpr --labeled --int8 --format --calibration-images --fp16 --head-precision "
        "--device --quiet"
    )
    for option in options.split():
        assert option in result.output
    for variant in VARIANTS:
        assert variant in result.output


def _plain_onnx(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{model}", "--int8", "--fp16", "--data", "{holdout}"], "--int8 and --fp16 exclude each other"),
        (["{model}", "--format", "qdq", "--data", "{holdout}"], "--format applies to --int8 only"),
        (
            ["{model}", "--calibration-images", "5", "--data", "{holdout}"],
            "--calibration-images applies to --int8",
        ),
        (
            ["{model}", "--target-fpr", "0.1", "--labeled", "{labeled}", "--data", "{holdout}"],
            "pass one of them",
        ),
        (["{model}", "--data", "{tmp}/missing"], "folder not found"),
        (["{model}"], "choosing a threshold needs images"),
        (["{model}", "--int8"], "calibrates on normal images: pass --data"),
        (["{model}", "--data", "{one}"], "need at least 2 normal images"),
        (["{model}", "--int8", "--data", "{holdout}", "--calibration-images", "1"], "at least 2"),
        (["{model}", "--data", "{holdout}", "-o", "{model}"], "is the input model"),
        (["{model}", "--data", "{holdout}", "-o", "{tmp}/out.txt"], "must end in .onnx"),
        (["{tmp}/nothing.onnx", "--data", "{holdout}"], "model file not found"),
        (["{text}", "--data", "{holdout}"], "not an ONNX model"),
        (["{plain}", "--data", "{holdout}"], "not a padim-edge model"),
        (["{int8}", "--fp16"], "already int8"),
        (["{model}", "--head-precision", "fp32"], "already has a fp32 head"),
        (["{model}", "--head-precision", "int4"], "'int4' is not one of"),
        (["{model}", "--labeled", "{holdout}"], "test/good/ (defect-free test images)"),
        (["{model}", "--target-fpr", "1.5", "--data", "{holdout}"], "1.5"),
    ],
)
def test_bad_inputs_give_clear_errors(
    args: list[str],
    message: str,
    r18_model: Path,
    r18_int8: Path,
    synthetic: dict[str, Path],
    tmp_path: Path,
) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    values = {
        "model": r18_model,
        "int8": r18_int8,
        "holdout": synthetic["holdout"],
        "labeled": synthetic["labeled"],
        "one": synthetic["root"] / "one",
        "tmp": tmp_path,
        "text": text,
        "plain": _plain_onnx(tmp_path / "plain.onnx"),
    }
    argv = [a.format(**values) for a in args]
    if "-o" not in argv and "--output" not in argv:
        argv += ["-o", str(tmp_path / "out.onnx")]
    result = CliRunner().invoke(main, [*argv, "-q"])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_select_variant_table() -> None:
    assert select_variant(int8_flag=False, fp16_flag=False, fmt=None).name == "fp32-threshold"
    assert select_variant(int8_flag=True, fp16_flag=False, fmt=None).name == "int8-qoperator"
    assert select_variant(int8_flag=True, fp16_flag=False, fmt="qdq").name == "int8-qdq"
    assert select_variant(int8_flag=False, fp16_flag=True, fmt=None).name == "fp16"
    assert {v.precision for v in VARIANTS.values()} == {None, "int8", "fp16"}


# --------------------------------------------------------------------------- helpers


def test_save_with_external_data(r18_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proto = onnx.load(str(r18_model))
    decision.bake_threshold(proto, 3.5)
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_THRESHOLD", 0)
    path = tmp_path / "big.onnx"
    (tmp_path / "big.onnx.data").write_bytes(b"stale" * 100)
    files = modelio.save_model(proto, path)
    assert files == [path, tmp_path / "big.onnx.data"]
    assert path.stat().st_size < 100_000  # constants went to the data file
    assert PadimModel(path, device="cpu").info.threshold is None  # metadata untouched here
    again = modelio.save_model(proto, tmp_path / "again.onnx")  # the proto is still whole
    assert (tmp_path / "again.onnx.data").stat().st_size == (tmp_path / "big.onnx.data").stat().st_size
    assert len(again) == 2
    loaded = modelio.load_model(path)
    assert decision.baked_threshold(loaded.proto) == 3.5
    (tmp_path / "big.onnx.data").unlink()
    with pytest.raises(CalibrationError, match=r"external-data file"):
        modelio.load_model(path)


def test_calibrate_refuses_another_models_data_file(r18_model: Path, tmp_path: Path) -> None:
    """A seed-0 graph with seed-7 data must not become a self-consistent variant that scores wrongly."""
    model = swapped_pair(r18_model, tmp_path)
    out = tmp_path / "model-fp16.onnx"
    result = CliRunner().invoke(main, [str(model), "--fp16", "-o", str(out), "-q"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a one-line error, not a traceback
    assert f"{model.name}.data is not the data file" in result.output
    assert str(model) in result.output
    assert not out.exists()
    with pytest.raises(CalibrationError, match=r"cannot calibrate .*model\.onnx: .*its constants belong"):
        modelio.load_model(model)


def test_calibrate_disk_full_is_one_line_and_keeps_the_old_output(
    r18_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model-fp16.onnx"
    out.write_bytes(b"the old model")
    tried = failing_writes(monkeypatch, under=tmp_path)
    result = CliRunner().invoke(main, [str(r18_model), "--fp16", "-o", str(out), "-q"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"Error: could not write {out}: No space left on device" in result.output
    assert tried == [tmp_path] and out.read_bytes() == b"the old model"


def test_calibrate_checks_free_space_before_working(
    r18_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from padim_edge import atomic

    monkeypatch.setattr(atomic, "free_bytes", lambda folder: 1000)
    monkeypatch.setattr(
        "padim_edge.calibration.fp16.convert_backbone_fp16", lambda *a, **k: pytest.fail("checked too late")
    )
    result = CliRunner().invoke(main, [str(r18_model), "--fp16", "-o", str(tmp_path / "m.onnx"), "-q"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "the fp16 model needs about" in result.output and f"{tmp_path} has 0.00 GB free" in result.output
    assert not (tmp_path / "m.onnx").exists()


def test_int8_of_an_external_data_model(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WR50-Rd550 path (constants past 2 GB) on a small model: every save goes through .data files."""
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_THRESHOLD", 0)
    big = tmp_path / "big.onnx"
    modelio.save_model(onnx.load(str(r18_model)), big)
    out = tmp_path / "big-int8.onnx"
    report = calibrate(
        big, out, variant="int8-qoperator", data=synthetic["holdout"], target_fpr=0.1, progress=False
    )
    assert report.files[:2] == [out, tmp_path / "big-int8.onnx.data"]
    model = PadimModel(out, device="cpu")
    assert model.info.precision == "int8" and model.info.threshold == report.choice.threshold


def test_bake_rejects_non_positive_threshold(r18_model: Path) -> None:
    proto = onnx.load(str(r18_model))
    with pytest.raises(CalibrationError, match="positive"):
        decision.bake_threshold(proto, 0.0)


def test_calibration_image_helpers(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i:03d}.png" for i in range(10)]
    assert int8.pick_calibration_images(paths, 4) == [paths[i] for i in (0, 3, 6, 9)]
    assert int8.pick_calibration_images(paths, 50) == paths
    with pytest.raises(CalibrationError, match="at least 2"):
        int8.pick_calibration_images(paths[:1], 10)
    assert [int8.frames_per_pass(n) for n in (1, 7, 12, 97, 100)] == [1, 7, 6, 1, 10]
    write_folder(tmp_path / "frames", [np.full((8, 9, 3), i, np.uint8) for i in range(4)])
    reader = int8.FrameReader(list_images(tmp_path / "frames"), progress=False)
    reader.set_range(start_index=2, end_index=4)
    feeds = [reader.get_next(), reader.get_next(), reader.get_next()]
    assert feeds[2] is None
    assert [int(f[graph_names.INPUT][0, 0, 0, 0]) for f in feeds[:2]] == [2, 3]
    assert feeds[0][graph_names.INPUT].shape == (1, 8, 9, 3) and feeds[0][graph_names.INPUT].dtype == np.uint8


def test_toposort_restores_order() -> None:
    nodes = [
        helper.make_node("Relu", ["b"], ["c"], name="second"),
        helper.make_node("Relu", ["a"], ["b"], name="first"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1])],
        [numpy_helper.from_array(np.zeros(1, np.float32), "unused")],
    )  # fmt: skip
    toposort(graph)
    assert [n.name for n in graph.node] == ["first", "second"]


def test_calibration_package_does_not_import_torch() -> None:
    code = (
        "import sys, padim_edge.calibration.cli, padim_edge.calibration.pipeline; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_summary_says_what_tensorrt_makes_of_the_variant(
    r18_model: Path, small_trt_onnx: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """The padim-export TensorRT lines, in the padim-calibrate summary (default graph: one hint line)."""
    import re

    from padim_edge.compat.check import TENSORRT_HINT

    result = CliRunner().invoke(main, [str(r18_model), "--fp16", "-o", str(tmp_path / "half.onnx"), "-q"])
    assert result.exit_code == 0, result.output
    assert [line for line in result.output.splitlines() if line.startswith("tensorrt")] == [
        f"tensorrt      {TENSORRT_HINT}"
    ]
    assert "TensorRT 10" not in result.output

    out = tmp_path / "trt-half.onnx"
    result = CliRunner().invoke(main, [str(small_trt_onnx), "--fp16", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert re.search(r"TensorRT 10\s+ok", result.output) and "input 90x120 frames only" in result.output
    assert "antialiased" not in result.output

    args = [str(r18_model), "--int8", "--format", "qoperator", "--data", str(synthetic["holdout"])]
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "q.onnx"), "-q"])
    assert result.exit_code == 0, result.output
    assert f"tensorrt      {TENSORRT_HINT}" in result.output and "TensorRT 8.6" not in result.output
