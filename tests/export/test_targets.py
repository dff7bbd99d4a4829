"""Graph forms every runtime imports the same way; the TensorRT target (fixed frame size, MatMul resize)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from padim_edge import graph_names
from padim_edge.export.cli import main as export_main
from padim_edge.export.pipeline import check_target
from padim_edge.export.preprocessing import MatrixPreprocess, Preprocess, resize_crop_matrices
from padim_edge.runtime import InputError, PadimModel
from tests.conftest import TRT_SIZE


def _consumers(proto: onnx.ModelProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in proto.graph.node if name in n.input]


@pytest.mark.parametrize("which", ["small_onnx", "small_trt_onnx"])
def test_images_are_cast_first_and_score_is_a_global_max_pool(which: str, request) -> None:
    proto = onnx.load(str(request.getfixturevalue(which)))
    (first,) = _consumers(proto, graph_names.INPUT)
    assert first.op_type == "Cast"
    assert onnx.helper.get_attribute_value(first.attribute[0]) == onnx.TensorProto.FLOAT
    (score,) = [n for n in proto.graph.node if graph_names.SCORE in n.output]
    pool = next(n for n in proto.graph.node if n.output[0] == score.input[0])
    assert (score.op_type, pool.op_type) == ("Reshape", "GlobalMaxPool")
    assert not any(n.op_type.startswith("Reduce") and n.op_type != "ReduceSum" for n in proto.graph.node)


def test_versions_and_metadata(small_onnx: Path, small_trt_onnx: Path) -> None:
    for path, opset, target in ((small_onnx, 18, "default"), (small_trt_onnx, 17, "tensorrt")):
        proto = onnx.load(str(path))
        assert proto.ir_version == 8
        assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
        assert not any(len(n.metadata_props) for n in proto.graph.node)  # IR-10-only field, dropped
        assert not len(proto.graph.metadata_props)
        info = PadimModel(path, device="cpu").info
        assert (info.get("opset"), info.get("ir_version"), info.target) == (opset, 8, target)
    assert PadimModel(small_trt_onnx, device="cpu").info.input_size == TRT_SIZE
    assert PadimModel(small_onnx, device="cpu").info.input_size is None


def test_score_is_per_frame_in_a_batch(small_onnx: Path, frames) -> None:
    model = PadimModel(small_onnx, device="cpu")
    batch = np.stack([frames[0], frames[2]])
    together = model.run(batch)["score"]
    alone = [model.run(batch[i : i + 1])["score"][0] for i in range(2)]
    assert together.shape == (2,)
    np.testing.assert_allclose(together, alone, rtol=1e-6)
    assert together[0] != together[1]


def test_tensorrt_graph_matches_the_default_graph(small_onnx: Path, small_trt_onnx: Path) -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (6, *TRT_SIZE, 3), dtype=np.uint8)
    default = PadimModel(small_onnx, device="cpu").predict(frames)
    fixed = PadimModel(small_trt_onnx, device="cpu").predict(frames)
    a, b = np.array([p.score for p in default]), np.array([p.score for p in fixed])
    assert np.abs(a - b).max() <= 1e-4 * a.max(), (a, b)
    maps = np.abs(np.stack([p.anomaly_map for p in default]) - np.stack([p.anomaly_map for p in fixed]))
    assert maps.max() <= 1e-4 * a.max()


def test_tensorrt_graph_has_no_resize_on_frames_and_a_fixed_input(small_trt_onnx: Path) -> None:
    proto = onnx.load(str(small_trt_onnx))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", *TRT_SIZE, 3]
    preprocess = [n.op_type for n in proto.graph.node if n.name.startswith(graph_names.PREPROCESS)]
    assert "Resize" not in preprocess and preprocess.count("MatMul") == 2


def test_runtime_refuses_other_frame_sizes(small_trt_onnx: Path) -> None:
    model = PadimModel(small_trt_onnx, device="cpu")
    good = np.zeros((*TRT_SIZE, 3), np.uint8)
    with pytest.raises(
        InputError, match=r"frame 1: this model was built for 90x120 \(HxW\) frames.*got 64x64"
    ):
        model.predict([good, np.zeros((64, 64, 3), np.uint8)])
    assert len(model.predict([good, good])) == 2


@pytest.mark.parametrize(("height", "width"), [(90, 120), (50, 41), (72, 72), (300, 17)])
def test_matrices_reproduce_the_preprocess_module(height: int, width: int) -> None:
    preprocess = Preprocess(resize=72, crop=64)
    rows, cols = resize_crop_matrices(preprocess, height, width)
    assert rows.shape == (64, height) and cols.shape == (64, width)
    np.testing.assert_allclose(rows.sum(1).numpy(), 1.0, atol=1e-12)  # resampling keeps constants
    frames = torch.randint(0, 256, (2, height, width, 3), dtype=torch.uint8)
    reference = preprocess(frames).double()
    got = MatrixPreprocess(preprocess, height=height, width=width)(frames).double()
    assert (got - reference).abs().max() < 1e-4
    # float64: the two forms agree to rounding, channel by channel
    x = frames.permute(0, 3, 1, 2).double()
    np.testing.assert_allclose((rows @ x @ cols.T).numpy(), preprocess.resize_crop(x).numpy(), atol=1e-9)


@pytest.mark.parametrize(
    "attributes", [{"start": 0, "end": 2}, {"start": 1}, {"start": -2, "end": -1}, {"end": 3}]
)
def test_portable_shapes_mean_the_same(attributes: dict[str, int]) -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from padim_edge.export.exporter import portable_shapes

    node = helper.make_node("Shape", ["x"], ["s"], name="padim_reduce/shape", **attributes)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
        [helper.make_tensor_value_info("s", TensorProto.INT64, None)],
    )
    before = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    before.ir_version = 8
    after = onnx.ModelProto()
    after.CopyFrom(before)
    assert portable_shapes(after.graph) == 1
    assert [n.op_type for n in after.graph.node] == ["Shape", "Slice"]
    assert not after.graph.node[0].attribute
    assert all(n.name.startswith("padim_reduce/") for n in after.graph.node)
    x = np.zeros((2, 3, 4, 5), np.float32)
    run = [ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0] for m in (before, after)]
    np.testing.assert_array_equal(run[0], run[1])


def test_target_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="pass --input-size HxW"):
        check_target("tensorrt", None)
    with pytest.raises(ValueError, match="applies to --target tensorrt only"):
        check_target("default", (480, 640))
    with pytest.raises(ValueError, match="target must be one of default, tensorrt"):
        check_target("onnx", None)
    check_target("tensorrt", (480, 640))


def test_export_cli_target_flags(train_dir: Path, tmp_path: Path) -> None:
    common = [
        "--data",
        str(train_dir),
        "--random-init",
        "--dims",
        "8",
        "--resize",
        "72",
        "--crop",
        "64",
        "-q",
    ]
    runner = CliRunner()
    result = runner.invoke(export_main, [*common, "-o", str(tmp_path / "m.onnx"), "--target", "tensorrt"])
    assert result.exit_code != 0 and "pass --input-size HxW" in result.output
    result = runner.invoke(export_main, [*common, "-o", str(tmp_path / "m.onnx"), "--input-size", "4x"])
    assert result.exit_code != 0 and "--input-size" in result.output
    result = runner.invoke(export_main, [*common, "-o", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "TensorRT 8.5" not in result.output  # one line on how to get a TensorRT form, no check
    assert "--target tensorrt --input-size HxW" in result.output
    out = tmp_path / "t.onnx"
    args = [*common, "-o", str(out), "--target", "tensorrt", "--input-size", "60x90"]
    result = runner.invoke(export_main, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"TensorRT 8\.5\s+ok", result.output) and "input 60x90" in result.output
    assert PadimModel(out, device="cpu").info.input_size == (60, 90)
