"""INT8 Gaussian refit and float first convolutions (issue 12), checked against independent float64 numpy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from padim_edge import graph_names, onnx_files
from padim_edge.calibration import int8, modelio
from padim_edge.calibration.cli import main
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.formats import VARIANTS, select_variant
from padim_edge.calibration.int8 import refit
from padim_edge.calibration.pipeline import calibrate
from padim_edge.export.padim.graph_head import DISTANCE, unpack_panels
from padim_edge.export.padim.head_io import head_layout, read_mean
from padim_edge.images import list_images, load_image, resize_frame
from padim_edge.runtime import PadimModel
from tests.calibration.conftest import graph_outputs, props_of, stage_ops, write_folder


def _head(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The float32 head's mean ``[P, d]`` and full Sigma^-1 ``[P, d, d]`` read back from the graph."""
    proto = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    panels = [inits[name] for name in head_layout(proto).panels]
    return read_mean(proto), unpack_panels(panels, slice(None))


def _numpy_gaussians(embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent float64 reference: per patch np.mean, np.cov + 0.01 I, np.linalg.inv."""
    n, d = embedding.shape[:2]
    x = embedding.reshape(n, d, -1).transpose(2, 0, 1)  # [P, N, d]
    mean = x.mean(axis=1)
    cov = np.stack([np.cov(patch, rowvar=False) for patch in x]) + 0.01 * np.eye(d)
    return mean, np.linalg.inv(cov)


def _head_constants(path: Path) -> dict[str, bytes]:
    proto = onnx.load(str(path))
    return {
        t.name: t.SerializeToString() for t in proto.graph.initializer if t.name.startswith(graph_names.HEAD)
    }


@pytest.fixture(scope="module")
def refitted(r18_model: Path, synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's INT8 QOperator variant, refitted on the 20 held-out images."""
    out = tmp_path_factory.mktemp("refit") / "r18-int8-refit.onnx"
    calibrate(
        r18_model, out, variant="int8-qoperator", data=synthetic["train"], refit_data=synthetic["holdout"],
        float_convs=2, progress=False,
    )  # fmt: skip
    return out


# --------------------------------------------------------------------------- the refit itself


def test_refitted_head_equals_float64_numpy(refitted: Path, synthetic: dict[str, Path]) -> None:
    """(a) mean and Sigma^-1 equal np.mean / np.cov + 0.01 I / np.linalg.inv on the INT8 embeddings."""
    embedding_name = head_layout(onnx.load(str(refitted))).embedding
    (embedding,) = graph_outputs(refitted, [embedding_name], list_images(synthetic["holdout"]))
    mean, inverse = _numpy_gaussians(embedding)
    got_mean, got_inverse = _head(refitted)
    np.testing.assert_allclose(got_mean, mean, rtol=0, atol=1e-5 * np.abs(mean).max())
    scale = np.abs(inverse).max(axis=(1, 2), keepdims=True)
    assert np.abs(got_inverse - inverse).max() / scale.min() < 1e-5
    np.testing.assert_allclose(got_inverse, inverse, rtol=0, atol=1e-5 * float(scale.max()))


def test_refitted_scores_equal_float64_mahalanobis(refitted: Path, synthetic: dict[str, Path]) -> None:
    """(b) the graph's pre-upsample distances equal a float64 Mahalanobis with those Gaussians."""
    layout = head_layout(onnx.load(str(refitted)))
    refit_images = list_images(synthetic["holdout"])
    (train_embedding,) = graph_outputs(refitted, [layout.embedding], refit_images)
    mean, inverse = _numpy_gaussians(train_embedding)
    test_images = list_images(synthetic["labeled"] / "test" / "spot")[:4] + refit_images[:2]
    embedding, distance = graph_outputs(refitted, [layout.embedding, DISTANCE], test_images)
    n, d = embedding.shape[:2]
    x = embedding.reshape(n, d, -1).transpose(0, 2, 1) - mean  # [N, P, d]
    expected = np.sqrt(np.einsum("npi,pij,npj->np", x, inverse, x))
    got = distance.reshape(n, -1)
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-4 * expected.max())
    # and the scores follow: the refitted head, not the float32 fit's, makes the map
    model = PadimModel(refitted, device="cpu")
    assert all(np.isfinite(p.score) for p in model.predict([load_image(p) for p in test_images]))


def test_refit_gaussians_api(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    """refit_gaussians on a --no-refit INT8 model installs what its RefitResult reports."""
    plain = tmp_path / "plain.onnx"
    calibrate(
        r18_model, plain, variant="int8-qoperator", data=synthetic["holdout"], refit=False, progress=False
    )
    proto = onnx.load(str(plain))
    images = list_images(synthetic["train"])
    result = refit.refit_gaussians(proto, images, progress=False)
    assert result.images == len(images) and result.precision == "fp32"
    np.testing.assert_array_equal(read_mean(proto), result.mean)
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    panels = [inits[name] for name in head_layout(proto).panels]
    np.testing.assert_allclose(unpack_panels(panels, slice(None)), result.inv_covariance, rtol=1e-6, atol=0)
    with pytest.raises(CalibrationError, match="at least 2 images"):
        refit.refit_gaussians(proto, images[:1], progress=False)


def test_refit_module_does_not_import_torch() -> None:
    """(c) the refit (PaDiM Gaussians, PatchCore bank) runs where the runtime does: no torch."""
    code = (
        "import sys, padim_edge.calibration.int8.refit, padim_edge.calibration.formats; "
        "import padim_edge.calibration.int8.refit_head; "
        # what refit_bank imports when it runs (PatchCore's bank selection and head)
        "import padim_edge.export.patchcore.bank, padim_edge.export.patchcore.neighbours; "
        "import padim_edge.export.patchcore.graph_head, padim_edge.export.patchcore.head_io; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_no_refit_keeps_the_head(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    """(d) --no-refit: the head's constants are byte for byte the float32 model's."""
    out = tmp_path / "no-refit.onnx"
    report = calibrate(
        r18_model, out, variant="int8-qoperator", data=synthetic["holdout"], refit=False, progress=False
    )
    assert _head_constants(out) == _head_constants(r18_model)
    assert not any("refitted" in line for line in report.details)
    props = props_of(out)
    assert json.loads(props["padim_edge.gaussians"]) == {"source": "fit", "backbone": "fp32"}


# --------------------------------------------------------------------------- float first convolutions


def test_first_convs_order() -> None:
    """Graph order where valid, else topological (the stem first even when listed later)."""
    nodes = [
        helper.make_node("Conv", ["b", "w"], ["c"], name="padim_backbone/second"),
        helper.make_node("Relu", ["c"], ["d"], name="padim_backbone/relu"),
        helper.make_node("Conv", ["a", "w"], ["b"], name="padim_backbone/stem"),
        helper.make_node("Conv", ["d", "w"], ["e"], name="padim_backbone/third"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )  # fmt: skip
    proto = helper.make_model(graph)
    assert int8.first_convs(proto, 2) == ["padim_backbone/stem", "padim_backbone/second"]
    assert int8.first_convs(proto, 0) == []
    assert len(int8.first_convs(proto, 10)) == 3
    with pytest.raises(CalibrationError, match=">= 0"):
        int8.first_convs(proto, -1)


def test_float_convs_stay_float(r18_model: Path, refitted: Path) -> None:
    """(e) float_convs=2: exactly the first two backbone Conv nodes stay Conv."""
    fp32, q = onnx.load(str(r18_model)), onnx.load(str(refitted))
    first = int8.first_convs(fp32, 2)
    assert len(first) == 2
    convs = [n.name for n in q.graph.node if n.op_type == "Conv"]
    assert convs == first
    total = stage_ops(r18_model, graph_names.BACKBONE)["Conv"]
    assert stage_ops(refitted, graph_names.BACKBONE)["QLinearConv"] == total - 2
    inits = {t.name: t.data_type for t in q.graph.initializer}
    for node in (n for n in q.graph.node if n.name in first):
        assert inits[node.input[1]] == TensorProto.FLOAT  # float weights, not quantised ones


def test_float_convs_qdq(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    """QDQ: the excluded convs read float weights directly; every other conv's weight is dequantised."""
    out = tmp_path / "qdq.onnx"
    calibrate(
        r18_model, out, variant="int8-qdq", data=synthetic["holdout"], calibration_images=4, float_convs=1,
        progress=False,
    )  # fmt: skip
    proto = onnx.load(str(out))
    first = int8.first_convs(onnx.load(str(r18_model)), 1)
    inits = {t.name for t in proto.graph.initializer}
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert [n.name for n in convs if n.input[1] in inits] == first
    props = props_of(out)
    assert props["padim_edge.float_convs"] == "1"
    assert json.loads(props["padim_edge.gaussians"])["backbone"] == "int8-qdq"


def test_no_float_convs_by_default(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "all-int8.onnx"
    data = synthetic["holdout"]
    calibrate(r18_model, out, variant="int8-qoperator", data=data, refit=False, progress=False)
    assert stage_ops(out, graph_names.BACKBONE)["Conv"] == 0
    assert props_of(out)["padim_edge.float_convs"] == "0"


# --------------------------------------------------------------------------- metadata, table, CLI


def test_metadata_records_the_refit(refitted: Path) -> None:
    """(f) gaussians and float_convs in the metadata."""
    props = props_of(refitted)
    assert json.loads(props["padim_edge.gaussians"]) == {
        "source": "refit",
        "backbone": "int8-qoperator",
        "images": 20,
        "float_convs": 2,
        "epsilon": 0.01,
    }
    assert props["padim_edge.float_convs"] == "2"
    assert PadimModel(refitted, device="cpu").info.get("gaussians")["source"] == "refit"


def test_variant_table_defaults() -> None:
    for name in ("int8-qoperator", "int8-qdq"):
        assert VARIANTS[name].refit and VARIANTS[name].float_convs == 0
    for name in ("fp32-threshold", "fp16", "head-int8"):
        assert not VARIANTS[name].refit and VARIANTS[name].float_convs == 0
    both = select_variant(int8_flag=True, fp16_flag=False, fmt="qdq", head_precision="int8")
    assert both.refit and both.float_convs == 0


def test_cli_flags(r18_model: Path, synthetic: dict[str, Path], tmp_path: Path) -> None:
    """(g) the flags are in --help and work end to end."""
    help_text = CliRunner().invoke(main, ["--help"]).output
    for flag in ("--refit / --no-refit", "--refit-data", "--float-convs", "train/good"):
        assert flag in help_text
    out = tmp_path / "cli.onnx"
    args = ["--data", str(synthetic["holdout"]), "--int8", "--refit-data", str(synthetic["train"])]
    args += ["--float-convs", "1", "--target-fpr", "0.1", "-o", str(out), "-q"]
    result = CliRunner().invoke(main, [str(r18_model), *args])
    assert result.exit_code == 0, result.output
    assert "head refitted on 10 images through the INT8 backbone" in result.output
    assert "biased" not in result.output and "refitted on --data" not in result.output
    props = props_of(out)
    assert json.loads(props["padim_edge.gaussians"])["images"] == 10
    assert props["padim_edge.float_convs"] == "1"
    assert stage_ops(out, graph_names.BACKBONE)["Conv"] == 1
    # the default refit on --data with a threshold from --data: warned about
    out2 = tmp_path / "cli2.onnx"
    args = ["--data", str(synthetic["holdout"]), "--int8", "--calibration-images", "6", "--target-fpr", "0.1"]
    result = CliRunner().invoke(main, [str(r18_model), *args, "-o", str(out2), "-q"])
    assert result.exit_code == 0, result.output
    # --data minus the 14 frames the fidelity report holds out (not only the 6 calibration frames)
    assert "head refitted on 6 images" in result.output
    assert "refitted on --data images" in result.output
    assert "refitted on 6 images, fewer than the 10" in result.output


def test_refit_on_fewer_images_than_the_fit_warns(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    few = write_folder(tmp_path / "few", [load_image(p) for p in list_images(synthetic["train"])[:4]])
    out = tmp_path / "few.onnx"
    report = calibrate(
        r18_model, out, variant="int8-qoperator", data=synthetic["holdout"], refit_data=few, progress=False
    )
    assert any("refitted on 4 images, fewer than the 10" in w for w in report.warnings)
    assert json.loads(props_of(out)["padim_edge.gaussians"])["images"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "{holdout}", "--refit-data", "{train}"], "--refit-data applies to --int8 only"),
        (["--fp16", "--no-refit"], "--refit/--no-refit applies to --int8 only"),
        (["--fp16", "--float-convs", "1"], "--float-convs applies to --int8 only"),
        (["--int8", "--data", "{holdout}", "--no-refit", "--refit-data", "{train}"], "drop --no-refit"),
        (
            ["--int8", "--data", "{holdout}", "--refit-data", "{tmp}/missing"],
            "--refit-data: folder not found",
        ),
        (["--int8", "--data", "{holdout}", "--float-convs", "-1"], "-1"),
    ],
)
def test_cli_flag_errors(
    args: list[str], message: str, r18_model: Path, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    values = {"holdout": synthetic["holdout"], "train": synthetic["train"], "tmp": tmp_path}
    argv = [str(r18_model), *(a.format(**values) for a in args), "-o", str(tmp_path / "x.onnx"), "-q"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_refit_of_an_external_data_model(
    r18_model: Path, synthetic: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The WR50 path: the embedding cut is written with external data and still refits the same."""
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_THRESHOLD", 0)
    proto = onnx.load(str(r18_model))
    assert modelio.needs_external_data(proto)
    cut = refit.embedding_model(proto, head_layout(proto).embedding)
    assert not any(n.name.startswith(graph_names.HEAD) for n in cut.graph.node)
    statistics = refit.embedding_statistics(proto, list_images(synthetic["train"]), progress=False)
    monkeypatch.undo()
    inline = refit.embedding_statistics(proto, list_images(synthetic["train"]), progress=False)
    assert statistics.count == inline.count == 10
    np.testing.assert_array_equal(statistics.mean, inline.mean)


def test_refit_of_a_fixed_size_model(small_trt_onnx: Path, train_dir: Path, tmp_path: Path) -> None:
    """A TensorRT-target model (fixed input size): the refit frames are resized to it, as calibration's."""
    out = tmp_path / "trt-qdq.onnx"
    report = calibrate(
        small_trt_onnx, out, variant="int8-qdq", data=train_dir, refit_data=train_dir, progress=False
    )
    images = list_images(train_dir)
    assert any(f"head refitted on {len(images)} images" in line for line in report.details)
    model = PadimModel(out, device="cpu")
    assert model.info.input_size == (90, 120)
    assert json.loads(props_of(out)["padim_edge.gaussians"])["backbone"] == "int8-qdq"
    prediction = model.predict([resize_frame(load_image(images[0]), (90, 120))])[0]
    assert np.isfinite(prediction.score)


def test_refit_opens_its_session_through_the_runtime_factory(
    r18_model: Path, synthetic: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One home for session setup: the refit's onnxruntime session comes from runtime.session."""
    from padim_edge.runtime import session as runtime_session

    opened: list[tuple[str, str]] = []
    real = runtime_session.open_session

    def recording(path, **kwargs):
        opened.append((Path(path).name, kwargs.get("device", "auto")))
        return real(path, **kwargs)

    monkeypatch.setattr(runtime_session, "open_session", recording)
    images = list_images(synthetic["train"])[:2]
    statistics = refit.embedding_statistics(onnx.load(str(r18_model)), images, progress=False)
    assert opened == [("embedding.onnx", "cpu")]
    assert statistics.count > 0
