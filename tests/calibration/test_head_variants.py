"""Head precision variants: every head precision on every backbone variant, with and without a threshold."""

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
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.formats import VARIANTS, select_variant
from padim_edge.calibration.pipeline import calibrate
from padim_edge.calibration.threshold import threshold_for_fpr
from padim_edge.export.padim.head_io import head_layout
from padim_edge.runtime import PadimModel
from tests.calibration.conftest import props_of, scores_of, stage_ops

PANEL_TYPES = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16, "int8": TensorProto.INT8}
#: Median relative score change a head precision may cause on the tiny model (its stated error, with room).
SCORE_RTOL = {"fp32": 1e-5, "fp16": 1e-3, "int8": 3e-2}
BACKBONES = ("fp32", "int8-qoperator", "int8-qdq", "fp16")


@pytest.fixture(scope="session")
def backbone_models(r18_model: Path, r18_int8: Path, synthetic: dict[str, Path]) -> dict[str, Path]:
    """The tiny model with each backbone precision (float32 heads)."""
    qdq = r18_model.with_name("r18-int8-qdq.onnx")
    calibrate(r18_model, qdq, variant="int8-qdq", data=synthetic["holdout"], progress=False)
    half = r18_model.with_name("r18-fp16.onnx")
    calibrate(r18_model, half, variant="fp16", progress=False)
    return {"fp32": r18_model, "int8-qoperator": r18_int8, "int8-qdq": qdq, "fp16": half}


def _panel_types(path: Path) -> set[int]:
    proto = onnx.load(str(path))
    names = set(head_layout(proto).panels)
    return {t.data_type for t in proto.graph.initializer if t.name in names}


def _check_variant(
    out: Path,
    source: Path,
    precision: str,
    backbone: str,
    synthetic: dict[str, Path],
    *,
    threshold: bool,
    rtol: float | None = None,
) -> np.ndarray:
    """Structure, metadata, runtime, closeness to the source's scores, and the threshold; returns scores."""
    assert stage_ops(out, graph_names.BACKBONE) == stage_ops(source, graph_names.BACKBONE)
    assert stage_ops(out, graph_names.PREPROCESS) == stage_ops(source, graph_names.PREPROCESS)
    assert _panel_types(out) == {PANEL_TYPES[precision]}
    model = PadimModel(out, device="cpu")
    assert model.info.head_precision == precision
    assert model.info.precision == ("fp32" if backbone == "fp32" else backbone.split("-")[0])
    scores = scores_of(model, synthetic["holdout"])
    reference = scores_of(source, synthetic["holdout"])
    assert np.all(np.isfinite(scores))
    assert np.median(np.abs(scores - reference) / reference) < (rtol or SCORE_RTOL[precision])
    if threshold:
        assert model.outputs == ["anomaly_map", "score", "is_anomalous", "normalized_score"]
        assert model.info.threshold == threshold_for_fpr(scores, 0.1).threshold
    else:
        assert model.outputs == ["anomaly_map", "score"] and model.info.threshold is None
    return scores


@pytest.mark.parametrize("threshold", [False, True], ids=["no-threshold", "threshold"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_head_precision_on_every_backbone(
    backbone: str,
    threshold: bool,
    backbone_models: dict[str, Path],
    r18_model: Path,
    synthetic: dict[str, Path],
    tmp_path: Path,
) -> None:
    source = backbone_models[backbone]
    extra = {"data": synthetic["holdout"], "target_fpr": 0.1} if threshold else {}
    for precision in ("int8", "fp16"):
        out = tmp_path / f"{backbone}-head-{precision}.onnx"
        report = calibrate(source, out, variant=f"head-{precision}", progress=False, **extra)
        assert any(line.startswith("head          fp32 -> " + precision) for line in report.details)
        _check_variant(out, source, precision, backbone, synthetic, threshold=threshold)
        ancestor = json.loads(props_of(out)["padim_edge.source_model"])
        assert ancestor["sha256"] == modelio.file_sha256(r18_model)  # the float32 model, also via a variant
    # and back up to float32 from the int8 head (its rounding stays: warned about)
    back = tmp_path / f"{backbone}-head-fp32.onnx"
    report = calibrate(
        tmp_path / f"{backbone}-head-int8.onnx", back, variant="head-fp32", progress=False, **extra
    )
    assert any("keeps their rounding" in w for w in report.warnings)
    int8_head = tmp_path / f"{backbone}-head-int8.onnx"  # the float32 head differs by the int8 activations
    _check_variant(back, int8_head, "fp32", backbone, synthetic, threshold=threshold, rtol=SCORE_RTOL["int8"])


def test_backbone_and_head_in_one_call(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    """``--int8 --head-precision int8 --target-fpr``: both built, threshold on the combined model's scores."""
    args = ["--data", str(synthetic["holdout"]), "--int8", "--head-precision", "int8", "--target-fpr", "0.1"]
    result = CliRunner().invoke(main, [str(r18_model), *args, "-q"])
    assert result.exit_code == 0, result.output
    out = r18_model.with_name("r18-int8-head-int8.onnx")  # the default name joins both suffixes
    assert out.is_file()
    assert "variant       int8-qoperator+head-int8" in result.output
    assert "MatMulInteger, which TensorRT does not import" in result.output
    assert stage_ops(out, graph_names.BACKBONE)["QLinearConv"] > 0
    props = props_of(out)
    assert props["padim_edge.precision"] == "int8" and props["padim_edge.head_precision"] == "int8"
    assert props["padim_edge.quant_format"] == "qoperator"
    model = PadimModel(out, device="cpu")
    assert model.info.threshold == threshold_for_fpr(scores_of(model, synthetic["holdout"]), 0.1).threshold
    out.unlink()


@pytest.mark.parametrize("backbone", ["int8-qoperator", "fp16"])
def test_backbone_variant_of_a_compact_head_model(
    backbone: str, r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """The other order: head first, then the backbone (quantisation and FP16 leave the int8 head alone)."""
    head = tmp_path / "head-int8.onnx"
    calibrate(r18_model, head, variant="head-int8", progress=False)
    out = tmp_path / f"then-{backbone}.onnx"
    extra = {"data": synthetic["holdout"]} if backbone.startswith("int8") else {}
    calibrate(head, out, variant=backbone, progress=False, **extra)
    assert stage_ops(out, graph_names.HEAD) == stage_ops(head, graph_names.HEAD)
    assert _panel_types(out) == {TensorProto.INT8}
    model = PadimModel(out, device="cpu")
    assert model.info.head_precision == "int8" and model.info.precision == backbone.split("-")[0]
    assert np.all(np.isfinite(scores_of(model, synthetic["holdout"])))


def test_head_variant_drops_an_old_threshold(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    calibrated, out = tmp_path / "cal.onnx", tmp_path / "head.onnx"
    calibrate(r18_model, calibrated, data=synthetic["holdout"], progress=False)
    report = calibrate(calibrated, out, variant="head-int8", progress=False)
    assert any("was dropped" in w and "fp32 backbone / fp32 head" in w for w in report.warnings)
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["anomaly_map", "score"]
    assert "padim_edge.threshold" not in props_of(out)


def test_head_variant_errors(r18_model: Path, tmp_path: Path) -> None:
    head = tmp_path / "head-fp16.onnx"
    calibrate(r18_model, head, variant="head-fp16", progress=False)
    with pytest.raises(CalibrationError, match="already has a fp16 head"):
        calibrate(head, tmp_path / "again.onnx", variant="head-fp16", progress=False)
    with pytest.raises(CalibrationError, match="already has a fp32 head"):
        calibrate(r18_model, tmp_path / "same.onnx", variant="head-fp32", progress=False)
    with pytest.raises(CalibrationError, match="unknown --head-precision"):
        select_variant(int8_flag=False, fp16_flag=False, fmt=None, head_precision="int4")
    with pytest.raises(CalibrationError, match="do not combine"):
        calibrate(r18_model, tmp_path / "x.onnx", variant="head-int8+head-fp16", progress=False)
    result = CliRunner().invoke(main, [str(head), "--head-precision", "fp16", "-o", str(tmp_path / "y.onnx")])
    assert result.exit_code != 0 and "already has a fp16 head" in result.output


def test_variant_table_has_the_head_rows() -> None:
    heads = {v.head_precision for v in VARIANTS.values() if v.head_precision}
    assert heads == {"fp32", "fp16", "int8"}
    combined = select_variant(int8_flag=False, fp16_flag=True, fmt=None, head_precision="fp16")
    assert combined.name == "fp16+head-fp16" and combined.suffix == "fp16-head-fp16"
    assert combined.precision == "fp16" and combined.head_precision == "fp16"
    assert (
        select_variant(int8_flag=False, fp16_flag=False, fmt=None, head_precision="int8").name == "head-int8"
    )


def test_compact_heads_rank_like_fp32_on_real_weights(mnv2_real: Path, tmp_path: Path) -> None:
    """MobileNetV2 (ImageNet weights) on magnetic tile: the compact heads rank images as float32 does."""
    from scipy.stats import spearmanr

    from padim_edge.images import list_images, load_image
    from tests.conftest import MAGNETIC_TILE as TILES

    good = list_images(TILES / "test" / "good")[::8]
    defects = [
        p
        for d in ("blowhole", "break", "crack", "fray", "uneven")
        for p in list_images(TILES / "test" / d)[::10]
    ]
    frames = [load_image(p) for p in good + defects]
    reference = np.array([p.score for p in PadimModel(mnv2_real, device="cpu").predict(frames)])
    for precision, (rho_min, rtol) in {"int8": (0.999, 1e-2), "fp16": (0.99999, 1e-4)}.items():
        out = tmp_path / f"mnv2-head-{precision}.onnx"
        calibrate(mnv2_real, out, variant=f"head-{precision}", progress=False)
        scores = np.array([p.score for p in PadimModel(out, device="cpu").predict(frames)])
        rho = spearmanr(reference, scores).statistic
        change = np.median(np.abs(scores - reference) / reference)
        assert rho >= rho_min and change < rtol, (
            f"{precision}: Spearman {rho:.6f}, median change {change:.2e}"
        )


def test_head_blocks(r18_model: Path, tmp_path: Path) -> None:
    """--head-blocks re-blocks the rewritten head (16-aligned for int8); it needs --head-precision."""
    out = tmp_path / "blocks.onnx"
    report = calibrate(r18_model, out, variant="head-int8", head_blocks=1, progress=False)
    assert "(3 -> 1 column blocks" in report.details[0]
    assert len(head_layout(onnx.load(str(out))).panels) == 1  # dims 16: one 16-wide block either way
    result = CliRunner().invoke(main, [str(r18_model), "--head-blocks", "2", "-o", str(tmp_path / "x.onnx")])
    assert result.exit_code != 0 and "--head-blocks applies to --head-precision only" in result.output
