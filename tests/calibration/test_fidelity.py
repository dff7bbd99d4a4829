"""Fidelity report of padim-calibrate variants: the figures, the frame split, warnings, metadata, predict."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper
from PIL import Image

from padim_edge import graph_names
from padim_edge.calibration import fidelity, scoring
from padim_edge.calibration.cli import main
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.formats import VARIANTS
from padim_edge.calibration.pipeline import calibrate
from padim_edge.calibration.variant_build import BuildRequest, Built
from padim_edge.images import list_images
from padim_edge.metadata import fidelity_summary
from padim_edge.runtime import PadimModel
from padim_edge.runtime.cli import main as predict_main
from tests.calibration.conftest import props_of, texture, write_folder

# --------------------------------------------------------------------------- the figures


def _spearman_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Independent float64 Spearman: ranks by counting (ties averaged), then Pearson."""

    def ranks(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        less = (x[None, :] < x[:, None]).sum(axis=1)
        equal = (x[None, :] == x[:, None]).sum(axis=1)
        return less + (equal + 1) / 2.0

    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def test_rankdata_averages_ties_by_hand() -> None:
    np.testing.assert_array_equal(fidelity.rankdata([10, 20, 20, 5, 30]), [2, 3.5, 3.5, 1, 5])
    np.testing.assert_array_equal(fidelity.rankdata([7, 7, 7]), [2, 2, 2])
    np.testing.assert_array_equal(fidelity.rankdata([3.0, 1.0, 2.0, 1.0]), [4, 1.5, 3, 1.5])


def test_spearman_hand_computed_and_independent() -> None:
    # no ties: 1 - 6 sum d^2 / (n (n^2 - 1)); d = rank differences (1,2,3,4,5) vs (2,1,4,3,5)
    a, b = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0.2, 0.1, 0.4, 0.3, 0.5])
    assert fidelity.spearman(a, b) == pytest.approx(1 - 6 * 4 / (5 * 24), abs=1e-12)
    assert fidelity.spearman(a, a) == 1.0 and fidelity.spearman(a, -a) == -1.0
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.integers(0, 6, 30).astype(np.float32)  # many ties
        y = x + rng.integers(0, 4, 30)
        assert fidelity.spearman(x, y) == pytest.approx(_spearman_reference(x, y), abs=1e-12)
    assert np.isnan(fidelity.spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(fidelity.spearman([1.0], [2.0]))
    with pytest.raises(ValueError, match="pairs"):
        fidelity.spearman([1.0, 2.0], [1.0, 2.0, 3.0])


def test_spearman_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(4)
    for n in (5, 17, 200):
        x = rng.normal(size=n).round(1)  # ties
        y = (x + rng.normal(scale=0.5, size=n)).round(1)
        assert fidelity.spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_map_error_and_summary_against_numpy() -> None:
    rng = np.random.default_rng(5)
    ref = rng.gamma(2.0, 1.0, (9, 16, 16)).astype(np.float32)
    var = (ref * rng.normal(1.0, 0.05, ref.shape)).astype(np.float32)
    var[4] = ref[4] * 3  # one bad frame
    errors = np.array([fidelity.map_error(r, v) for r, v in zip(ref, var, strict=True)])
    r64, v64 = ref.astype(np.float64), var.astype(np.float64)
    expected = np.sqrt(((v64 - r64) ** 2).sum(axis=(1, 2)) / (r64**2).sum(axis=(1, 2)))
    np.testing.assert_allclose(errors, expected, rtol=1e-12)
    assert errors[4] == pytest.approx(2.0)
    ref_scores, var_scores = ref.max(axis=(1, 2)), var.max(axis=(1, 2))
    figures = fidelity.summarise(ref_scores, var_scores, errors)
    assert figures["map_error_median"] == pytest.approx(np.median(expected), rel=1e-12)
    assert figures["map_error_worst"] == pytest.approx(expected.max(), rel=1e-12)
    ratios = var_scores.astype(np.float64) / ref_scores.astype(np.float64)
    assert figures["score_ratio_median"] == pytest.approx(np.median(ratios), rel=1e-12)
    assert figures["spearman"] == pytest.approx(_spearman_reference(ref_scores, var_scores), abs=1e-12)
    assert figures["nonfinite_frames"] == 0
    # a NaN frame is counted and left out
    var_scores[0] = np.nan
    errors[0] = np.nan
    assert fidelity.summarise(ref_scores, var_scores, errors)["nonfinite_frames"] == 1
    with pytest.raises(ValueError, match="shape"):
        fidelity.map_error(ref[0], ref[0, :8])


def test_verdicts_and_record() -> None:
    good = fidelity.Fidelity(
        "m.onnx (fp32)", fidelity.SOURCE_VALIDATE, 30, spearman=0.999, map_error_median=0.01,
        synthetic_image_auroc=(0.9, 0.899), synthetic_pixel_auroc=(0.95, 0.951),
        synthetic_image_drop=(-0.01, 0.008), synthetic_pixel_drop=(-0.004, 0.003),
        synthetic_reference_low=(0.85, 0.93), separation=0.2,
    )  # fmt: skip
    assert good.verdict == fidelity.OK and good.low is False and not good.problems
    assert not good.warnings("int8-qoperator")
    record = good.record()
    assert record["verdict"] == "ok" and record["synthetic_image_drop"] == [-0.01, 0.008]
    assert (
        record["min_spearman"] == fidelity.MIN_SPEARMAN and record["max_map_error"] == fidelity.MAX_MAP_ERROR
    )
    assert json.loads(json.dumps(record)) == record
    assert fidelity.Fidelity.from_record(record).record() == record
    # Spearman and map error are figures, not verdicts: normal frames reorder without any AUROC change
    assert dataclasses.replace(good, spearman=0.3, map_error_median=0.3).verdict == fidelity.OK
    # a drop whose whole interval lies above the limit is a loss
    bad = dataclasses.replace(
        good, synthetic_image_auroc=(0.9, 0.85), synthetic_image_drop=(0.02, 0.08), separation=0.8
    )
    assert bad.low is True and bad.problems[0].startswith("synthetic-defect image AUROC 0.9000 -> 0.8500")
    # ... when the maps moved enough to matter; else the pasted defects may be all that feel it
    subtle = dataclasses.replace(bad, separation=0.3)
    assert subtle.verdict == fidelity.UNSURE
    assert "moved only 0.30 of the input model's gap" in subtle.problems[-1]
    assert "LOW FIDELITY" in bad.warnings("int8-qoperator")[0]
    assert fidelity_summary(bad.record()).startswith("LOW FIDELITY: synthetic-defect image AUROC 0.9000")
    # a labelled AUROC loss is a loss; a labelled AUROC that held settles it
    assert dataclasses.replace(good, image_auroc=(0.95, 0.90)).low is True
    wide = dataclasses.replace(good, synthetic_pixel_drop=(-0.02, 0.03))
    assert wide.verdict == fidelity.UNSURE and wide.low is None
    assert "does not rule out a loss past 0.01" in wide.problems[0]
    assert wide.warnings("int8-qoperator") == []  # no verdict is no warning: the report line says it
    assert wide.verdict_line().startswith("not enough evidence: synthetic-defect pixel AUROC")
    assert "--validate DIR" in wide.verdict_line()
    full = dataclasses.replace(wide, frames=fidelity.MAX_FRAMES).verdict_line()
    assert "--validate" not in full and f"these {fidelity.MAX_FRAMES} frames are as many" in full
    assert dataclasses.replace(wide, image_auroc=(0.95, 0.95)).verdict == fidelity.OK
    # maps that barely move cannot reorder defects and normal parts, however wide the intervals
    assert dataclasses.replace(wide, separation=0.01).verdict == fidelity.OK
    # a record stored before the intervals existed: no verdict from raw drops
    old = {k: v for k, v in record.items() if k not in ("synthetic_image_drop", "synthetic_pixel_drop")}
    assert fidelity.Fidelity.from_record({**old, "separation": None}).verdict == fidelity.UNSURE
    failed = dataclasses.replace(good, error="no kernel")
    assert failed.verdict is None and failed.low is None and failed.record()["low"] is None
    assert failed.warnings("fp16")[0].startswith("NO FIDELITY REPORT")
    assert fidelity_summary(failed.record()).startswith("NOT MEASURED")


# --------------------------------------------------------------------------- which frames


def test_split_data_never_overlaps(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i:03d}.png" for i in range(200)]
    calibration, held, warnings = fidelity.split_data(paths, 100, hold_out=True)
    assert len(calibration) == 100 and len(held) == 100 and not warnings
    assert not set(calibration) & set(held) and set(calibration) | set(held) == set(paths)
    assert fidelity.split_data(paths, 100, hold_out=False) == (calibration, [], [])
    calibration, held, warnings = fidelity.split_data(paths[:20], 100, hold_out=True)
    assert (len(calibration), len(held)) == (15, 5) and not set(calibration) & set(held)
    assert "15 calibrate and 5 are held out" in warnings[0]
    calibration, held, _ = fidelity.split_data(paths[:7], 100, hold_out=True)
    assert (len(calibration), len(held)) == (2, 5)
    calibration, held, _ = fidelity.split_data(paths[:6], 100, hold_out=True)
    assert (len(calibration), len(held)) == (6, 0)  # too few for both: calibration wins
    with pytest.raises(CalibrationError, match="at least 2"):
        fidelity.split_data(paths[:1], 100, hold_out=True)


def test_plan_frames_sources_and_cap(tmp_path: Path) -> None:
    data = [tmp_path / f"d{i:03d}.png" for i in range(300)]
    valid = [tmp_path / f"v{i:03d}.png" for i in range(80)]
    int8_plan = fidelity.plan_frames(measure=True, calibrates=True, data_paths=data, calibration_count=100)
    assert int8_plan.source == fidelity.SOURCE_SPLIT and int8_plan.candidates == 200
    assert len(int8_plan.frames) == fidelity.MAX_FRAMES and not set(int8_plan.frames) & set(
        int8_plan.calibration
    )
    fp16_plan = fidelity.plan_frames(measure=True, calibrates=False, data_paths=data, calibration_count=100)
    assert fp16_plan.source == fidelity.SOURCE_DATA and not fp16_plan.calibration
    assert len(fp16_plan.frames) == fidelity.MAX_FRAMES
    validated = fidelity.plan_frames(
        measure=True, calibrates=True, data_paths=data, calibration_count=100, validate_paths=valid
    )
    assert validated.source == fidelity.SOURCE_VALIDATE and len(validated.calibration) == 100
    # --validate = the --data folder: the calibration frames are left out of the report
    same = fidelity.plan_frames(
        measure=True, calibrates=True, data_paths=data, calibration_count=100, validate_paths=data
    )
    assert not set(same.frames) & set(same.calibration) and same.candidates == 200
    assert "are INT8 calibration frames too" in same.warnings[0]
    plain = fidelity.plan_frames(measure=False, calibrates=False, data_paths=data, calibration_count=100)
    assert not plain.measure and not plain.frames


# --------------------------------------------------------------------------- end to end


def test_identical_model_is_perfect(r18_model: Path, synthetic: dict[str, Path]) -> None:
    plan = fidelity.plan_frames(
        measure=True, calibrates=False, data_paths=list_images(synthetic["holdout"]), calibration_count=2
    )
    report = fidelity.measure(
        r18_model, r18_model, plan, reference="r18.onnx (fp32)", device="cpu", progress=False
    )
    assert report is not None and report.frames == 20 and report.error is None
    assert report.spearman == 1.0 and report.map_error_median == 0.0 and report.map_error_worst == 0.0
    assert report.score_ratio_median == 1.0 and report.low is False
    assert report.device == "CPUExecutionProvider"


def test_head_variant_report_in_metadata_and_predict(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "head-int8.onnx"
    result = CliRunner().invoke(
        main,
        [
            str(r18_model),
            "--head-precision",
            "int8",
            "--data",
            str(synthetic["holdout"]),
            "--threads",
            "1",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "fidelity      synthetic-defect image AUROC" in result.output
    assert "20 frames: --data)" in result.output
    record = json.loads(props_of(out)["padim_edge.fidelity"])
    assert record["reference"] == "r18.onnx (fp32 backbone / fp32 head)"
    assert record["source"] == fidelity.SOURCE_DATA and record["frames"] == 20
    assert record["image_auroc"] is None and record["pixel_auroc"] is None and record["error"] is None
    assert 0.0 <= record["map_error_median"] <= record["map_error_worst"]
    model = PadimModel(out, device="cpu")
    assert model.info.fidelity == record  # metadata round trip through ModelInfo
    assert PadimModel(r18_model, device="cpu").info.fidelity is None
    frame = list_images(synthetic["holdout"])[0]
    printed = CliRunner().invoke(predict_main, [str(out), str(frame), "-q", "--device", "cpu"])
    assert printed.exit_code == 0, printed.output
    assert f"fidelity: {fidelity_summary(record)}" in printed.output
    # the summary names the figures
    assert f"Spearman {record['spearman']:.4f}" in printed.output
    # a threshold recalibration of the variant keeps its fidelity report (its scores do not change)
    again = tmp_path / "head-int8-cal.onnx"
    calibrate(out, again, data=synthetic["holdout"], progress=False)
    assert PadimModel(again, device="cpu").info.fidelity == record


def _broken_head(proto: onnx.ModelProto, request: BuildRequest) -> Built:
    """The head with every float constant perturbed: a variant that scores nothing like its model."""
    rng = np.random.default_rng(0)
    for tensor in proto.graph.initializer:
        if tensor.name.startswith(graph_names.HEAD) and tensor.data_type == onnx.TensorProto.FLOAT:
            values = numpy_helper.to_array(tensor)
            if values.size > 1:
                noisy = values + rng.normal(0, 3 * (np.abs(values).mean() + 1e-3), values.shape)
                tensor.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), tensor.name))
    return Built(proto=proto, changed=True)


def test_broken_variant_is_low_fidelity(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(VARIANTS, "fp16", dataclasses.replace(VARIANTS["fp16"], build=_broken_head))
    out = tmp_path / "broken.onnx"
    result = CliRunner().invoke(
        main,
        [str(r18_model), "--fp16", "--validate", str(synthetic["holdout"]), "-o", str(out), "-q"],
    )
    assert result.exit_code == 0, result.output
    assert "warning: LOW FIDELITY: fp16 vs r18.onnx" in result.stderr
    record = json.loads(props_of(out)["padim_edge.fidelity"])
    assert record["low"] is True and record["source"] == fidelity.SOURCE_VALIDATE
    assert record["verdict"] == "low fidelity" and record["synthetic_pixel_drop"][0] > 0.005, record
    printed = CliRunner().invoke(
        predict_main, [str(out), str(list_images(synthetic["holdout"])[0]), "-q", "--device", "cpu"]
    )
    assert "warning: LOW FIDELITY:" in printed.stderr


def test_too_few_frames_no_report(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    few = write_folder(tmp_path / "few", [texture(np.random.default_rng(1), 72, 72) for _ in range(3)])
    out = tmp_path / "head.onnx"
    result = CliRunner().invoke(
        main, [str(r18_model), "--head-precision", "int8", "--validate", str(few), "-o", str(out), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "warning: NO FIDELITY REPORT" in result.stderr and "--validate DIR" in result.stderr
    assert "3 held-out normal frames (validate), at least 5 needed" in result.stderr
    assert "padim_edge.fidelity" not in props_of(out)
    # no images at all (FP16 / head variants need no --data): still never silent
    bare = tmp_path / "bare.onnx"
    result = CliRunner().invoke(main, [str(r18_model), "--head-precision", "int8", "-o", str(bare), "-q"])
    assert result.exit_code == 0 and "NO FIDELITY REPORT" in result.stderr
    printed = CliRunner().invoke(predict_main, [str(bare), str(few / "img_000.png"), "-q", "--device", "cpu"])
    assert "carries no fidelity report" in printed.stderr


def test_validate_needs_a_variant(r18_model: Path, synthetic: dict[str, Path]) -> None:
    args = [str(r18_model), "--data", str(synthetic["holdout"]), "--validate", str(synthetic["holdout"])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "--validate applies to --int8" in result.output


def test_int8_holds_out_part_of_data(r18_model: Path, r18_int8: Path) -> None:
    props = props_of(r18_int8)
    record = json.loads(props["padim_edge.fidelity"])
    assert record["source"] == fidelity.SOURCE_SPLIT and record["frames"] == 5
    assert props["padim_edge.calibration_images"] == "15"  # 20 images: 15 calibrate, 5 held out
    assert record["reference"] == f"{r18_model.name} (fp32 backbone / fp32 head)"
    assert record["spearman"] is not None and record["map_error_median"] is not None


def test_variant_that_cannot_run_is_reported(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = scoring.open_model

    def refuse_variant(path: Path, **kwargs: object) -> scoring.FrameModel:
        if Path(path).name == "scoring.onnx":
            raise CalibrationError("NOT_IMPLEMENTED: no float16 kernel for Conv")
        return opened(path, **kwargs)

    monkeypatch.setattr(scoring, "open_model", refuse_variant)
    out = tmp_path / "head.onnx"
    report = calibrate(
        r18_model, out, variant="head-int8", data=synthetic["holdout"], device="cpu", progress=False
    )
    assert report.fidelity is not None and "cannot run on --device cpu" in (report.fidelity.error or "")
    assert any(w.startswith("NO FIDELITY REPORT") and "NOT_IMPLEMENTED" in w for w in report.warnings)
    record = PadimModel(out, device="cpu").info.fidelity
    assert record is not None and record["low"] is None and "NOT_IMPLEMENTED" in record["error"]


def _labeled_with_masks(root: Path) -> Path:
    rng = np.random.default_rng(7)
    good = [texture(rng, 72, 72) for _ in range(8)]
    write_folder(root / "test" / "good", good)
    images, masks = [], []
    for i in range(6):
        image, mask = texture(rng, 72, 72), np.zeros((72, 72), np.uint8)
        y, x = 12 + 5 * i, 40 - 4 * i
        image[y : y + 16, x : x + 16] = 255
        mask[y : y + 16, x : x + 16] = 255
        images.append(image)
        masks.append(mask)
    write_folder(root / "test" / "spot", images)
    (root / "ground_truth" / "spot").mkdir(parents=True)
    for i, mask in enumerate(masks):
        Image.fromarray(mask).save(root / "ground_truth" / "spot" / f"img_{i:03d}_mask.png")
    return root


def test_labeled_gives_auroc(r18_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    labeled = _labeled_with_masks(tmp_path / "cat")
    out = tmp_path / "head.onnx"
    report = calibrate(r18_model, out, variant="head-int8", labeled=labeled, device="cpu", progress=False)
    result = report.fidelity
    assert result is not None and result.source == fidelity.SOURCE_LABELED and result.frames == 8
    assert result.image_auroc is not None and result.pixel_auroc is not None
    assert all(0.0 <= v <= 1.0 for v in (*result.image_auroc, *result.pixel_auroc))
    record = PadimModel(out, device="cpu").info.fidelity
    assert record["image_auroc"] == [round(v, 6) for v in result.image_auroc]
    assert "image auroc" in fidelity_summary(record) and "pixel auroc" in fidelity_summary(record)
