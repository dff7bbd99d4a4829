"""Choosing thresholds (hand-computed cases) and baking them into the graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from padim_edge import graph_names
from padim_edge.calibration import decision, modelio
from padim_edge.calibration.cli import main
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.formats import VARIANTS
from padim_edge.calibration.pipeline import calibrate
from padim_edge.calibration.threshold import min_images_for, threshold_for_f1, threshold_for_fpr
from padim_edge.images import list_images, load_image
from padim_edge.runtime import PadimModel
from tests.calibration.conftest import props_of, scores_of

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
    props = props_of(out)
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
    assert json.loads(props_of(second)["padim_edge.source_model"])["file"] == "first.onnx"


def test_labeled_f1_via_cli(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "f1.onnx"
    result = CliRunner().invoke(
        main, [str(r18_model), "--labeled", str(synthetic["labeled"]), "--data", str(synthetic["holdout"]),
               "-o", str(out), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "F1-optimal" in result.output and "precision" in result.output and "recall" in result.output
    assert "--data FPR" in result.output
    props = props_of(out)
    assert props["padim_edge.threshold_method"] == "f1"
    assert "padim_edge.threshold_target_fpr" not in props
    model = PadimModel(out, device="cpu")
    good = scores_of(model, synthetic["labeled"] / "test" / "good")
    spot = scores_of(model, synthetic["labeled"] / "test" / "spot")
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
