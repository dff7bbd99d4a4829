"""INT8 (QOperator, QDQ) and FP16 variants: structure, parity, thresholds on their own scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto

from padim_edge import graph_names
from padim_edge.calibration import modelio
from padim_edge.calibration.cli import main
from padim_edge.calibration.graph import io_signature
from padim_edge.calibration.pipeline import calibrate
from padim_edge.calibration.threshold import threshold_for_fpr
from padim_edge.images import list_images, load_image
from padim_edge.runtime import PadimModel
from tests.calibration.conftest import props_of, scores_of, stage_ops
from tests.conftest import MAGNETIC_TILE as TILES

# --------------------------------------------------------------------------- INT8


def test_int8_qoperator_structure_and_runtime(r18_model: Path, r18_int8: Path) -> None:
    fp32, q = onnx.load(str(r18_model)), onnx.load(str(r18_int8))
    assert io_signature(q) == io_signature(fp32)
    assert stage_ops(r18_int8, graph_names.BACKBONE)["Conv"] == 0  # float_convs=0, the INT8 default
    assert (
        stage_ops(r18_int8, graph_names.BACKBONE)["QLinearConv"]
        == stage_ops(r18_model, graph_names.BACKBONE)["Conv"]
    )
    for stage in (graph_names.PREPROCESS, graph_names.REDUCE, graph_names.HEAD):  # the refit keeps the nodes
        assert stage_ops(r18_int8, stage) == stage_ops(r18_model, stage), stage
    assert all(n.name.startswith(graph_names.STAGES) for n in q.graph.node)
    head = {t.name: t.data_type for t in q.graph.initializer if t.name.startswith(graph_names.HEAD)}
    assert head and set(head.values()) <= {TensorProto.FLOAT, TensorProto.INT64}
    model = PadimModel(r18_int8, device="cpu")
    assert model.info.precision == "int8" and model.info.threshold is None
    assert model.outputs == ["anomaly_map", "score"]
    prediction = model.predict(np.zeros((50, 70, 3), np.uint8))[0]
    assert prediction.anomaly_map.shape == (64, 64) and np.isfinite(prediction.score)
    props = props_of(r18_int8)
    assert props["padim_edge.quant_format"] == "qoperator"
    assert props["padim_edge.calibration_images"] == "15"  # 20 --data images: 5 held out for fidelity
    gaussians = json.loads(props["padim_edge.gaussians"])
    assert (gaussians["source"], gaussians["images"]) == ("refit", 15)  # --data minus the held-out frames
    assert json.loads(props["padim_edge.source_model"])["sha256"] == modelio.file_sha256(r18_model)


@pytest.mark.parametrize("variant", ["int8-qoperator", "int8-qdq"])
def test_int8_keeps_an_orthogonal_projection_float(
    synthetic: dict[str, Path], tmp_path: Path, variant: str
) -> None:
    """--reduction orthogonal: its 1x1 convolutions are the reduction's, not the backbone's: INT8 leaves
    them float32 (and the refit reads the embedding they make); the metadata keeps the reduction."""
    from padim_edge.export.pipeline import run_export

    source = tmp_path / "orth.onnx"
    run_export(
        synthetic["train"], source, backbone="r18", dims=16, resize=72, crop=64, random_init=True,
        reduction="orthogonal", parity_images=0, progress=False,
    )  # fmt: skip
    out = tmp_path / f"orth-{variant}.onnx"
    calibrate(source, out, variant=variant, data=synthetic["holdout"], calibration_images=6, progress=False)
    assert stage_ops(out, graph_names.REDUCE) == stage_ops(source, graph_names.REDUCE)
    assert stage_ops(out, graph_names.REDUCE)["Conv"] == 3
    props = props_of(out)
    assert props["padim_edge.reduction"] == "orthogonal"
    assert json.loads(props["padim_edge.gaussians"])["source"] == "refit"
    assert np.all(np.isfinite(scores_of(out, synthetic["holdout"])))


def test_int8_qdq_loads_and_runs(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "qdq.onnx"
    report = calibrate(
        r18_model, out, variant="int8-qdq", data=synthetic["holdout"], calibration_images=6, progress=False
    )
    assert report.calibration_images == 6
    assert any("only 6 calibration images" in w for w in report.warnings)
    ops = stage_ops(out, graph_names.BACKBONE)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert stage_ops(out, graph_names.HEAD) == stage_ops(r18_model, graph_names.HEAD)
    assert props_of(out)["padim_edge.quant_format"] == "qdq"
    scores = scores_of(out, synthetic["holdout"])
    assert np.all(np.isfinite(scores))


def test_int8_with_threshold_uses_int8_scores(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "int8-thr.onnx"
    args = ["--data", str(synthetic["holdout"]), "--int8", "--target-fpr", "0.1", "-o", str(out), "-q"]
    result = CliRunner().invoke(main, [str(r18_model), *args])
    assert result.exit_code == 0, result.output
    assert "calibration table" not in result.output  # no TensorRT table notice unless --tensorrt-table asks
    model = PadimModel(out, device="cpu")
    scores = scores_of(model, synthetic["holdout"])
    assert model.info.threshold == threshold_for_fpr(scores, 0.1).threshold
    assert model.info.precision == "int8"


def test_int8_drops_an_fp32_threshold(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    calibrated, out = tmp_path / "cal.onnx", tmp_path / "int8.onnx"
    calibrate(r18_model, calibrated, data=synthetic["holdout"], progress=False)
    report = calibrate(calibrated, out, variant="int8-qoperator", data=synthetic["holdout"], progress=False)
    assert any("was dropped" in w for w in report.warnings)
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output] == ["anomaly_map", "score"]
    assert "padim_edge.threshold" not in props_of(out)


def test_tensorrt_table_on_request(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("flatbuffers", reason="onnxruntime's write_calibration_table needs flatbuffers")
    out = tmp_path / "trt.onnx"
    report = calibrate(
        r18_model, out, variant="int8-qdq", data=synthetic["holdout"], tensorrt_table=True, progress=False
    )
    folder = tmp_path / "trt_tensorrt_calibration"
    assert report.tensorrt is not None and str(folder) in report.tensorrt
    assert (folder / "calibration.flatbuffers").is_file()
    table = json.loads((folder / "calibration.json").read_text())
    graph = onnx.load(str(r18_model)).graph
    backbone = [n for n in graph.node if n.name.startswith(graph_names.BACKBONE)]
    backbone_tensors = {t for n in backbone for t in [*n.input, *n.output]}
    assert table and set(table) <= backbone_tensors  # ranges of backbone activations only


def test_int8_close_to_fp32_on_real_weights(mnv2_real: Path, tmp_path: Path) -> None:
    from scipy.stats import spearmanr

    out = tmp_path / "mnv2-int8.onnx"
    calibrate(
        mnv2_real, out, variant="int8-qoperator", data=mnv2_real.parent / "train", calibration_images=20,
        refit_data=mnv2_real.parent / "train", progress=False,
    )  # fmt: skip
    good = list_images(TILES / "test" / "good")[::16]
    defects = [
        p
        for d in ("blowhole", "break", "crack", "fray", "uneven")
        for p in list_images(TILES / "test" / d)[::20]
    ]
    frames = [load_image(p) for p in good + defects]
    ref = np.array([p.score for p in PadimModel(mnv2_real, device="cpu").predict(frames)])
    q = np.array([p.score for p in PadimModel(out, device="cpu").predict(frames)])
    rho = spearmanr(ref, q).statistic
    assert rho > 0.85, f"INT8 scores rank the images differently from float32 (Spearman {rho:.3f})"
    assert np.median(np.abs(q - ref) / ref) < 0.15


# --------------------------------------------------------------------------- FP16


def _cpu_fp16_session_or_skip(path: Path) -> PadimModel:
    try:
        return PadimModel(path, device="cpu")
    except Exception as exc:  # pragma: no cover - depends on the onnxruntime build
        if "NOT_IMPLEMENTED" in str(exc) or "kernel" in str(exc).lower():
            pytest.skip(
                f"this onnxruntime's CPU EP has no float16 kernel for an op of the FP16 backbone: {exc}"
            )
        raise


@pytest.mark.parametrize("fixture", ["r18_model", "mnv2_real"])
def test_fp16_parity(
    fixture: str, request: pytest.FixtureRequest, tmp_path: Path, synthetic: dict[str, Path]
) -> None:
    source: Path = request.getfixturevalue(fixture)
    out = tmp_path / "fp16.onnx"
    result = CliRunner().invoke(main, [str(source), "--fp16", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    fp32, half = onnx.load(str(source)), onnx.load(str(out))
    assert io_signature(half) == io_signature(fp32)  # uint8 in, float32 out
    types = {t.name: t.data_type for t in half.graph.initializer}
    conv_weights = [n.input[1] for n in half.graph.node if n.op_type == "Conv"]
    assert conv_weights and all(types[w] == TensorProto.FLOAT16 for w in conv_weights)
    assert all(n.name.startswith(graph_names.BACKBONE) for n in half.graph.node if n.op_type == "Conv")
    head = [t for t in half.graph.initializer if t.name.startswith(graph_names.HEAD)]
    assert all(t.data_type != TensorProto.FLOAT16 for t in head)
    for stage in (graph_names.PREPROCESS, graph_names.REDUCE, graph_names.HEAD):
        assert stage_ops(out, stage) == stage_ops(source, stage), stage
    runtime = _cpu_fp16_session_or_skip(out)
    assert runtime.info.precision == "fp16"
    folder = synthetic["holdout"] if fixture == "r18_model" else source.parent / "train"
    frames = [load_image(p) for p in list_images(folder)[:8]]
    ref = PadimModel(source, device="cpu").predict(frames)
    got = runtime.predict(frames)
    ref_scores = np.array([p.score for p in ref])
    got_scores = np.array([p.score for p in got])
    np.testing.assert_allclose(got_scores, ref_scores, rtol=2e-2)
    scale = max(float(np.abs(np.stack([p.anomaly_map for p in ref])).max()), 1e-6)
    worst = max(float(np.abs(a.anomaly_map - b.anomaly_map).max()) for a, b in zip(ref, got, strict=True))
    assert worst / scale < 3e-2
