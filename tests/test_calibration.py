"""Tests for padim-calibrate: threshold selection and baking, INT8 and FP16 variants, errors.

Models are built once per session: a tiny random-init ResNet-18 (crop 64) fitted on synthetic
frames, and (when ``../shared`` is there) a MobileNetV2 with real ImageNet weights fitted on a few
magnetic-tile images for the INT8 accuracy check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from padim_edge import graph_names, onnx_files
from padim_edge.calibration import (
    CalibrationError,
    calibrate,
    decision,
    int8,
    modelio,
    threshold_for_f1,
    threshold_for_fpr,
)
from padim_edge.calibration.cli import main
from padim_edge.calibration.formats import VARIANTS, select_variant
from padim_edge.calibration.graph import io_signature, toposort
from padim_edge.calibration.threshold import min_images_for
from padim_edge.images import list_images, load_image
from padim_edge.runtime import PadimModel

SHARED = Path(__file__).resolve().parents[2] / "shared"
TILES = SHARED / "data" / "magnetic_tile"
MNV2_WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"


# --------------------------------------------------------------------------- fixtures


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random grey texture, uint8 RGB."""
    coarse = rng.normal(128, 30, (height // 8 + 1, width // 8 + 1))
    image = np.kron(coarse, np.ones((8, 8)))[:height, :width] + rng.normal(0, 6, (height, width))
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def _defect(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image.copy()
    y, x = rng.integers(10, image.shape[0] - 30), rng.integers(10, image.shape[1] - 30)
    out[y : y + 18, x : x + 18] = 255
    return out


def _write(folder: Path, images: list[np.ndarray], prefix: str = "img") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{prefix}_{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train / held-out / labelled folders of synthetic frames (sizes vary)."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    sizes = [(80, 96), (72, 72), (96, 80)]
    frames = [_texture(rng, *sizes[i % 3]) for i in range(40)]
    _write(root / "train", frames[:10])
    _write(root / "holdout", frames[10:30])
    labeled = root / "labeled"
    _write(labeled / "test" / "good", frames[30:40])
    _write(labeled / "test" / "spot", [_defect(f, rng) for f in frames[:8]])
    _write(root / "one", frames[:1])
    return {"root": root, "train": root / "train", "holdout": root / "holdout", "labeled": labeled}


@pytest.fixture(scope="session")
def r18_model(synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny float32 model: random-init ResNet-18, dims 16, resize 72, crop 64."""
    from padim_edge.export.pipeline import run_export

    out = tmp_path_factory.mktemp("r18") / "r18.onnx"
    run_export(
        synthetic["train"], out, backbone="r18", dims=16, resize=72, crop=64, random_init=True,
        parity_images=0, progress=False,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def r18_int8(r18_model: Path, synthetic: dict[str, Path]) -> Path:
    """The tiny model's INT8 QOperator variant (no threshold)."""
    out = r18_model.with_name("r18-int8.onnx")
    calibrate(r18_model, out, variant="int8-qoperator", data=synthetic["holdout"], progress=False)
    return out


@pytest.fixture(scope="session")
def mnv2_real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileNetV2 with real ImageNet weights, fitted on 40 magnetic-tile train images (crop 112)."""
    if not TILES.is_dir() or not MNV2_WEIGHTS.is_file():
        pytest.skip(f"needs the project's ../shared data and weights ({TILES}, {MNV2_WEIGHTS}); not present")
    import shutil

    from padim_edge.export.pipeline import run_export

    root = tmp_path_factory.mktemp("mnv2")
    train = root / "train"
    train.mkdir()
    paths = list_images(TILES / "train" / "good")
    for p in paths[:: len(paths) // 40][:40]:
        shutil.copy(p, train / p.name)
    out = root / "mnv2.onnx"
    run_export(
        train, out, backbone="mnv2", dims=32, resize=128, crop=112, weights_file=MNV2_WEIGHTS,
        parity_images=0, progress=False,
    )  # fmt: skip
    return out


def _scores(model: Path | PadimModel, folder: Path) -> np.ndarray:
    runtime = model if isinstance(model, PadimModel) else PadimModel(model, device="cpu")
    return np.array(
        [p.score for p in runtime.predict([load_image(f) for f in list_images(folder)])], np.float32
    )


def _stage_ops(path: Path, stage: str) -> Counter:
    proto = onnx.load(str(path))
    return Counter(n.op_type for n in proto.graph.node if n.name.startswith(stage))


def _props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


# --------------------------------------------------------------------------- threshold maths


def test_fpr_threshold_hand_computed() -> None:
    scores = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    choice = threshold_for_fpr(scores, 0.1)  # one false positive allowed: the 2nd largest score
    assert choice.threshold == 9.0
    assert choice.false_positives == 1 and choice.fpr == pytest.approx(0.1)
    assert threshold_for_fpr(scores, 0.05).threshold == 10.0  # none allowed: the largest score
    assert threshold_for_fpr(scores, 0.29).threshold == 8.0  # floor(2.9) = 2 allowed (no float slip)
    assert threshold_for_fpr(scores, 0.3).threshold == 7.0  # 0.3 * 10 = 3 allowed exactly
    assert threshold_for_fpr(scores, 0.0).threshold == 10.0
    assert threshold_for_fpr(scores, 0.999).threshold == 1.0  # at most n - 1 above


def test_fpr_threshold_ties_flag_less_than_target() -> None:
    # 2 of 6 may be flagged, but the 3 top scores tie: t = 9 flags none, anything lower flags 3 (> 2).
    choice = threshold_for_fpr([1, 2, 3, 9, 9, 9], 0.34)
    assert choice.threshold == 9.0
    assert choice.false_positives == 0
    choice = threshold_for_fpr([1, 5, 5, 7], 0.25)  # one allowed: t = 5, the 7 is flagged
    assert choice.threshold == 5.0 and choice.false_positives == 1


def test_fpr_threshold_warns_below_one_over_target() -> None:
    assert min_images_for(0.01) == 100 and min_images_for(0.1) == 10 and min_images_for(0.0) == 0
    few = threshold_for_fpr(np.arange(50, dtype=np.float32), 0.01)
    assert few.threshold == 49.0 and few.warnings and "at least 100" in few.warnings[0]
    assert not threshold_for_fpr(np.arange(100, dtype=np.float32), 0.01).warnings


def test_fpr_threshold_errors() -> None:
    with pytest.raises(CalibrationError, match="at least 2"):
        threshold_for_fpr([3.0], 0.01)
    with pytest.raises(CalibrationError, match=r"\[0, 1\)"):
        threshold_for_fpr([1.0, 2.0], 1.0)
    with pytest.raises(CalibrationError, match="NaN"):
        threshold_for_fpr([1.0, float("nan")], 0.1)


def test_f1_threshold_hand_computed() -> None:
    # t=3: tp 3, fp 1 (the 4) -> F1 6/7; t=4: tp 2 -> 4/5; t=2: fp 2 -> 6/8; t=3.5: 4/6.
    choice = threshold_for_f1([1, 2, 3, 4], [3.5, 5, 6])
    assert choice.threshold == 3.0
    assert (choice.true_positives, choice.false_positives) == (3, 1)
    assert choice.precision == pytest.approx(0.75) and choice.recall == pytest.approx(1.0)
    assert choice.f1 == pytest.approx(6 / 7)
    assert choice.fpr == pytest.approx(0.25)


def test_f1_threshold_ties_take_the_highest() -> None:
    # flag-all (t just below 1): tp 4, fp 4 -> 8/12; t=6: tp 2, fp 0, fn 2 -> 4/6. Equal: take t = 6.
    choice = threshold_for_f1([3, 4, 5, 6], [1, 2, 7, 8])
    assert choice.threshold == 6.0
    assert choice.f1 == pytest.approx(2 / 3)
    assert choice.false_positives == 0


def test_f1_threshold_can_flag_everything() -> None:
    choice = threshold_for_f1([1.0], [2.0, 3.0, 0.5])  # best: flag all (tp 3, fp 1) = 6/7
    assert choice.threshold < 0.5 and choice.true_positives == 3
    with pytest.raises(CalibrationError, match="normal and anomalous"):
        threshold_for_f1([1.0, 2.0], [])


# --------------------------------------------------------------------------- baked threshold


def test_baked_outputs_agree_with_threshold(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "cal.onnx"
    report = calibrate(r18_model, out, data=synthetic["holdout"], target_fpr=0.1, progress=False)
    choice = report.choice
    assert choice is not None and choice.method == "target-fpr"
    model = PadimModel(out, device="cpu")
    assert model.outputs == ["anomaly_map", "score", "is_anomalous", "normalized_score"]
    assert model.info.threshold == pytest.approx(choice.threshold, rel=0, abs=0)
    frames = [load_image(f) for f in list_images(synthetic["holdout"])]
    predictions = model.predict(frames)
    scores = np.array([p.score for p in predictions], np.float32)
    thr = np.float32(choice.threshold)
    assert [p.is_anomalous for p in predictions] == list(scores > thr)
    np.testing.assert_allclose([p.normalized_score for p in predictions], scores / thr, rtol=1e-6)
    assert np.count_nonzero(scores > thr) <= 0.1 * len(scores)
    assert choice.threshold in set(scores.tolist())  # an observed normal score
    raw = model.run(np.stack([frames[1]] * 2))  # is_anomalous is bool [N]
    assert raw["is_anomalous"].dtype == np.bool_ and raw["is_anomalous"].shape == (2,)
    props = _props(out)
    assert props["padim_edge.threshold_method"] == "target-fpr"
    assert float(props["padim_edge.threshold_target_fpr"]) == 0.1
    assert int(props["padim_edge.threshold_images"]) == 20
    source = json.loads(props["padim_edge.source_model"])
    assert source == {"file": "r18.onnx", "sha256": modelio.file_sha256(r18_model)}
    assert props["padim_edge.precision"] == "fp32"
    nodes = {n.name: n for n in onnx.load(str(out)).graph.node}
    assert nodes[decision.IS_ANOMALOUS_NODE].input[0] == graph_names.SCORE
    assert all(n.startswith(graph_names.STAGES) for n in nodes)


def test_recalibration_replaces_threshold(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    first, second = tmp_path / "first.onnx", tmp_path / "second.onnx"
    a = calibrate(r18_model, first, data=synthetic["holdout"], target_fpr=0.0, progress=False)
    b = calibrate(first, second, data=synthetic["holdout"], target_fpr=0.2, progress=False)
    assert a.choice is not None and b.choice is not None and b.choice.threshold < a.choice.threshold
    proto = onnx.load(str(second))
    assert [o.name for o in proto.graph.output] == [
        "anomaly_map",
        "score",
        "is_anomalous",
        "normalized_score",
    ]
    assert sum(t.name == decision.THRESHOLD_CONSTANT for t in proto.graph.initializer) == 1
    assert sum(n.op_type in ("Greater", "Div") for n in proto.graph.node) == 2
    assert decision.baked_threshold(proto) == pytest.approx(b.choice.threshold, abs=0)
    assert PadimModel(second, device="cpu").info.threshold == b.choice.threshold
    assert json.loads(_props(second)["padim_edge.source_model"])["file"] == "first.onnx"


def test_labeled_f1_via_cli(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "f1.onnx"
    result = CliRunner().invoke(
        main, [str(r18_model), "--labeled", str(synthetic["labeled"]), "--data", str(synthetic["holdout"]),
               "-o", str(out), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "F1-optimal" in result.output and "precision" in result.output and "recall" in result.output
    assert "--data FPR" in result.output
    props = _props(out)
    assert props["padim_edge.threshold_method"] == "f1"
    assert "padim_edge.threshold_target_fpr" not in props
    model = PadimModel(out, device="cpu")
    good = _scores(model, synthetic["labeled"] / "test" / "good")
    spot = _scores(model, synthetic["labeled"] / "test" / "spot")
    expected = threshold_for_f1(good, spot)
    assert model.info.threshold == expected.threshold


def test_summary_reports_fpr_and_files(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "summary.onnx"
    result = CliRunner().invoke(
        main, [str(r18_model), "--data", str(synthetic["holdout"]), "-o", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "target FPR 0.01" in result.output  # the default
    assert "normal FPR    0.0000: 0 of 20" in result.output
    assert f"wrote         {out}" in result.output
    assert "warning: 20 normal images cannot measure a 0.01 FPR (that needs at least 100)" in result.output


def test_default_output_name(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "line3.onnx"
    shutil.copy(r18_model, model)
    report = calibrate(model, data=synthetic["holdout"], progress=False)
    assert report.output == tmp_path / "line3-calibrated.onnx" and report.output.exists()
    assert VARIANTS["int8-qoperator"].default_output(model).name == "line3-int8.onnx"
    assert VARIANTS["int8-qdq"].default_output(model).name == "line3-int8-qdq.onnx"
    assert VARIANTS["fp16"].default_output(model).name == "line3-fp16.onnx"


# --------------------------------------------------------------------------- INT8


def test_int8_qoperator_structure_and_runtime(r18_model: Path, r18_int8: Path) -> None:
    fp32, q = onnx.load(str(r18_model)), onnx.load(str(r18_int8))
    assert io_signature(q) == io_signature(fp32)
    assert _stage_ops(r18_int8, graph_names.BACKBONE)["Conv"] == 0
    assert (
        _stage_ops(r18_int8, graph_names.BACKBONE)["QLinearConv"]
        == _stage_ops(r18_model, graph_names.BACKBONE)["Conv"]
    )
    for stage in (graph_names.PREPROCESS, graph_names.REDUCE, graph_names.HEAD):
        assert _stage_ops(r18_int8, stage) == _stage_ops(r18_model, stage), stage
    assert all(n.name.startswith(graph_names.STAGES) for n in q.graph.node)
    head = {t.name: t.data_type for t in q.graph.initializer if t.name.startswith(graph_names.HEAD)}
    assert head and set(head.values()) <= {TensorProto.FLOAT, TensorProto.INT64}
    model = PadimModel(r18_int8, device="cpu")
    assert model.info.precision == "int8" and model.info.threshold is None
    assert model.outputs == ["anomaly_map", "score"]
    prediction = model.predict(np.zeros((50, 70, 3), np.uint8))[0]
    assert prediction.anomaly_map.shape == (64, 64) and np.isfinite(prediction.score)
    props = _props(r18_int8)
    assert props["padim_edge.quant_format"] == "qoperator"
    assert props["padim_edge.calibration_images"] == "20"
    assert json.loads(props["padim_edge.source_model"])["sha256"] == modelio.file_sha256(r18_model)


def test_int8_qdq_loads_and_runs(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "qdq.onnx"
    report = calibrate(
        r18_model, out, variant="int8-qdq", data=synthetic["holdout"], calibration_images=6, progress=False
    )
    assert report.calibration_images == 6
    assert any("only 6 calibration images" in w for w in report.warnings)
    ops = _stage_ops(out, graph_names.BACKBONE)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert _stage_ops(out, graph_names.HEAD) == _stage_ops(r18_model, graph_names.HEAD)
    assert _props(out)["padim_edge.quant_format"] == "qdq"
    scores = _scores(out, synthetic["holdout"])
    assert np.all(np.isfinite(scores))


def test_int8_with_threshold_uses_int8_scores(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "int8-thr.onnx"
    args = ["--data", str(synthetic["holdout"]), "--int8", "--target-fpr", "0.1", "-o", str(out), "-q"]
    result = CliRunner().invoke(main, [str(r18_model), *args])
    assert result.exit_code == 0, result.output
    assert "tensorrt is not importable here" in result.output  # said plainly, not an error
    model = PadimModel(out, device="cpu")
    scores = _scores(model, synthetic["holdout"])
    assert model.info.threshold == threshold_for_fpr(scores, 0.1).threshold
    assert model.info.precision == "int8"


def test_int8_drops_an_fp32_threshold(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    calibrated, out = tmp_path / "cal.onnx", tmp_path / "int8.onnx"
    calibrate(r18_model, calibrated, data=synthetic["holdout"], progress=False)
    report = calibrate(calibrated, out, variant="int8-qoperator", data=synthetic["holdout"], progress=False)
    assert any("was dropped" in w for w in report.warnings)
    proto = onnx.load(str(out))
    assert [o.name for o in proto.graph.output] == ["anomaly_map", "score"]
    assert "padim_edge.threshold" not in _props(out)


def test_tensorrt_table_when_available(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("flatbuffers", reason="onnxruntime's write_calibration_table needs flatbuffers")
    monkeypatch.setattr(int8, "tensorrt_available", lambda: True)
    out = tmp_path / "trt.onnx"
    report = calibrate(r18_model, out, variant="int8-qdq", data=synthetic["holdout"], progress=False)
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
        progress=False,
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
        assert _stage_ops(out, stage) == _stage_ops(source, stage), stage
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


# --------------------------------------------------------------------------- errors and CLI


def test_help_explains_every_option() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    options = (
        "--data --output --target-fpr --labeled --int8 --format --calibration-images --fp16 --device --quiet"
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
        (["{model}", "--labeled", "{holdout}"], "expected ROOT/test/good"),
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
    _write(tmp_path / "frames", [np.full((8, 9, 3), i, np.uint8) for i in range(4)])
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
