"""PatchCore's INT8 bank refit: the memory bank selected again from the INT8 backbone's own features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.int8 import refit
from padim_edge.calibration.pipeline import calibrate
from padim_edge.images import list_images, load_image
from padim_edge.runtime import PadimModel
from tests.calibration.conftest import graph_outputs, props_of, write_folder


@pytest.fixture(scope="module")
def patchcore_model(synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from padim_edge.export.pipeline import run_export

    out = tmp_path_factory.mktemp("patchcore") / "pc.onnx"
    run_export(
        synthetic["train"], out, method="patchcore", backbone="r18", resize=72, crop=64, random_init=True,
        parity_images=0, progress=False,
    )  # fmt: skip
    return out


def test_patchcore_int8_reselects_the_bank_from_int8_features(
    patchcore_model: Path, r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """(h) PatchCore has no Gaussians; its INT8 variant selects the memory bank again from the INT8
    backbone's own patch features, with the fit's coreset settings, checked here against the INT8
    model's embeddings computed independently (the model run with the embedding as an extra output)."""
    from padim_edge.export.patchcore.coreset import coreset_size
    from padim_edge.export.patchcore.head_io import bank_layout, read_bank

    proto = onnx.load(str(patchcore_model))
    with pytest.raises(CalibrationError, match="PaDiM models only"):
        refit.refit_gaussians(proto, list_images(synthetic["train"]), progress=False)
    with pytest.raises(CalibrationError, match="PatchCore models only"):
        refit.refit_bank(onnx.load(str(r18_model)), list_images(synthetic["train"]), progress=False)
    out = tmp_path / "pc-int8.onnx"
    train = list_images(synthetic["train"])
    report = calibrate(
        patchcore_model,
        out,
        variant="int8-qoperator",
        data=synthetic["holdout"],
        refit_data=synthetic["train"],
        target_fpr=0.1,
        progress=False,
    )
    assert not any("refit was skipped" in w or "reselected from" in w for w in report.warnings)
    layout = bank_layout(onnx.load(str(out)))
    (embedding,) = graph_outputs(out, [layout.embedding], train)
    patches = embedding.astype(np.float32).transpose(0, 2, 3, 1).reshape(-1, layout.dims)
    before = props_of(patchcore_model)
    fraction = float(before["padim_edge.coreset"])
    bank, table = read_bank(onnx.load(str(out)))
    assert len(bank) == coreset_size(len(patches), fraction) == layout.rows
    assert any(f"reselected from {len(train)} images through the INT8 backbone: {len(bank)} vectors" in d
               for d in report.details)  # fmt: skip
    # every bank row is one of the INT8 patch vectors, exactly, and no two rows are the same vector
    nearest = np.abs(bank[:, None, :] - patches[None, :, :]).max(axis=2).min(axis=1)
    assert nearest.max() == 0.0
    assert len(np.unique(bank, axis=0)) == len(bank)
    old_bank, _ = read_bank(onnx.load(str(patchcore_model)))
    assert not np.array_equal(old_bank, bank)  # the float32 backbone's vectors are gone
    # the neighbour table: each row first, then its nearest other rows (float64 brute force)
    d2 = ((bank[:, None, :].astype(np.float64) - bank[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)
    assert (table[:, 0] == np.arange(len(bank))).all()
    np.testing.assert_allclose(d2[np.arange(len(bank)), table[:, 1]], d2.min(axis=1), rtol=1e-12)
    props = props_of(out)
    assert props["padim_edge.bank_size"] == str(len(bank))
    selection = json.loads(props["padim_edge.coreset_selection"])
    assert selection["train_vectors"] == len(patches) and selection["backbone"] == "int8-qoperator"
    assert props["padim_edge.float_convs"] == "0" and "padim_edge.gaussians" not in props
    (prediction,) = PadimModel(out, device="cpu").predict(load_image(train[0])[None])
    assert np.isfinite(prediction.score)


def test_patchcore_bank_refit_on_fewer_images_warns(
    patchcore_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """Refit images default to the calibration frames; fewer than the fit had shrink the bank: a warning."""
    few = tmp_path / "few"
    write_folder(few, [load_image(p) for p in list_images(synthetic["train"])[:4]])
    report = calibrate(
        patchcore_model,
        tmp_path / "pc-int8.onnx",
        variant="int8-qoperator",
        data=synthetic["holdout"],
        refit_data=few,
        target_fpr=0.1,
        progress=False,
    )
    assert any("memory bank was reselected from 4 images, fewer than the 10" in w for w in report.warnings)
    no_refit = tmp_path / "pc-int8-no-refit.onnx"
    calibrate(
        patchcore_model,
        no_refit,
        variant="int8-qoperator",
        data=synthetic["holdout"],
        refit=False,
        target_fpr=0.1,
        progress=False,
    )
    from padim_edge.export.patchcore.head_io import read_bank

    np.testing.assert_array_equal(
        read_bank(onnx.load(str(no_refit)))[0], read_bank(onnx.load(str(patchcore_model)))[0]
    )
