"""padim-export --head-precision fp16|int8: the fidelity report against the fp32 head of the same fit."""

from __future__ import annotations

import json

import numpy as np
import onnx
from click.testing import CliRunner

from padim_edge.export.cli import main
from padim_edge.runtime import PadimModel


def test_reduced_head_export_carries_a_fidelity_report(train_dir, tmp_path) -> None:
    args = ["--data", str(train_dir), "--dims", "16", "--resize", "72", "--crop", "64", "--random-init"]
    out = tmp_path / "int8-head.onnx"
    result = CliRunner().invoke(main, [*args, "-o", str(out), "--head-precision", "int8", "--quiet"])
    assert result.exit_code == 0, result.output
    # 12 frames are too few for a verdict: the line says so before the figures
    assert "fidelity      NOT ENOUGH EVIDENCE: synthetic-defect image AUROC" in result.output
    assert "vs fp32 head of the same fit, 12 frames: --data)" in result.output
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    record = json.loads(props["padim_edge.fidelity"])
    assert record["reference"] == "fp32 head of the same fit" and record["frames"] == 12
    image, pixel = record["synthetic_image_auroc"], record["synthetic_pixel_auroc"]
    assert image is not None and pixel is not None and abs(image[0] - image[1]) < 0.05
    model = PadimModel(out, device="cpu")
    assert model.info.fidelity == record and model.info.head_precision == "int8"
    # the rewrite kept the model whole: it still scores like the fp32 head
    assert record["spearman"] > 0.9 and record["map_error_median"] < 0.05
    plain = tmp_path / "fp32.onnx"
    result = CliRunner().invoke(main, [*args, "-o", str(plain), "--quiet"])
    assert result.exit_code == 0 and "fidelity" not in result.output
    assert PadimModel(plain, device="cpu").info.fidelity is None


def test_patchcore_int8_bank_export_carries_a_fidelity_report(train_dir, tmp_path) -> None:
    """The PatchCore bank in int8 gets the same report as PaDiM's int8 Sigma^-1."""
    out = tmp_path / "pc-int8.onnx"
    args = ["--method", "patchcore", "--data", str(train_dir), "--dims", "16"]
    args += ["--resize", "72", "--crop", "64"]
    result = CliRunner().invoke(
        main, [*args, "--random-init", "-o", str(out), "--head-precision", "int8", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "vs fp32 head of the same fit" in result.output
    info = PadimModel(out, device="cpu").info
    assert info.head_precision == "int8" and info.fidelity["reference"] == "fp32 head of the same fit"
    assert info.fidelity["spearman"] > 0.9


def test_no_room_for_the_reference_keeps_the_model_and_warns(train_dir, tmp_path, monkeypatch) -> None:
    """The fp32 reference goes to TMPDIR: without room there the export still succeeds, the model is
    whole and has no report, and the warning says why, with the sizes and what to set."""
    import tempfile

    from padim_edge import atomic

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    real = atomic.free_bytes
    monkeypatch.setattr(
        atomic, "free_bytes", lambda folder: 1000 if "scratch" in str(folder) else real(folder)
    )
    args = ["--data", str(train_dir), "--dims", "16", "--resize", "72", "--crop", "64", "--random-init"]
    out = tmp_path / "int8-head.onnx"
    result = CliRunner().invoke(main, [*args, "-o", str(out), "--head-precision", "int8", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "warning: NO FIDELITY REPORT: the int8 head was not compared: the float32 reference for the " in (
        result.output
    )
    assert f"{scratch} has 0.00 GB free (set TMPDIR to a folder with room)" in result.output
    assert "fidelity      " not in result.output and not list(scratch.glob("padim-export-fidelity-*"))
    model = PadimModel(out, device="cpu")
    assert model.info.fidelity is None and model.info.head_precision == "int8"
    (prediction,) = model.predict(np.zeros((1, 64, 64, 3), dtype=np.uint8))
    assert prediction.anomaly_map.shape == (64, 64) and np.isfinite(prediction.score)
