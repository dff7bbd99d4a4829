"""The exported graph: parity with PyTorch, dynamic axes, metadata, checker, external data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from padim_edge import graph_names, onnx_files
from padim_edge.export import exporter
from padim_edge.export.backbones import BACKBONES, WeightsError, build_backbone, get_spec
from padim_edge.export.pipeline import build_module, check_parity, run_export
from padim_edge.images import ImageError, load_image
from padim_edge.runtime import ModelLoadError, PadimModel
from tests.conftest import SMALL, write_images


def test_onnx_matches_pytorch_module(small_export, small_onnx: Path, frames) -> None:
    parity = check_parity(small_export.model, small_onnx, frames)
    assert parity.relative <= 1e-4, parity


def test_graph_and_fit_path_share_preprocessing_and_embedding(small_export, train_dir: Path) -> None:
    """The traced feature graph reproduces the embedding the fit accumulated, for a training image."""
    import onnxruntime as ort

    model = small_export.model
    image = load_image(sorted(train_dir.iterdir())[0])
    session = ort.InferenceSession(
        exporter.trace_features(model, reduce=True).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    (onnx_embedding,) = session.run(None, {"images": image[None]})
    with torch.inference_mode():
        torch_embedding = model.embed([image]).numpy()
    scale = np.abs(torch_embedding).max()
    np.testing.assert_allclose(onnx_embedding, torch_embedding, atol=1e-4 * scale)


@pytest.mark.parametrize("shape", [(224, 224), (480, 640)])
def test_graph_is_dynamic_in_batch_and_size(small_onnx: Path, shape: tuple[int, int]) -> None:
    model = PadimModel(small_onnx, device="cpu")
    rng = np.random.default_rng(shape[0])
    batch = rng.integers(0, 256, (3, *shape, 3), dtype=np.uint8)
    together = model.run(batch)
    assert together["anomaly_map"].shape == (3, 64, 64)
    assert together["score"].shape == (3,)
    for k in range(3):
        alone = model.run(batch[k : k + 1])
        np.testing.assert_allclose(alone["score"], together["score"][k : k + 1], rtol=1e-5)
        np.testing.assert_allclose(alone["anomaly_map"][0], together["anomaly_map"][k], rtol=1e-5, atol=1e-5)
        assert alone["score"][0] == pytest.approx(alone["anomaly_map"][0].max())


def test_metadata_and_checker(small_onnx: Path, small_export) -> None:
    proto = onnx.load(str(small_onnx))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    props = {p.key: p.value for p in proto.metadata_props}
    for key in (
        "version",
        "backbone",
        "dims",
        "resize",
        "crop",
        "weights",
        "train_images",
        "created",
        "seed",
    ):
        assert f"padim_edge.{key}" in props, key
    assert props["padim_edge.backbone"] == "r18"
    assert props["padim_edge.weights"] == "random-init"
    assert props["padim_edge.train_images"] == "12"
    indices = json.loads(props["padim_edge.channel_indices"])
    assert len(indices) == 24 and indices == sorted(indices) and max(indices) < 448
    inputs = proto.graph.input
    assert [i.name for i in inputs] == ["images"]
    assert inputs[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = [d.dim_param or d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    assert dims == ["N", "H", "W", 3]
    assert [o.name for o in proto.graph.output] == ["anomaly_map", "score"]
    prefixes = {n.name.split("/")[0] + "/" for n in proto.graph.node}
    assert prefixes == set(graph_names.STAGES)
    assert all(n.op_type != "Conv" for n in proto.graph.node if not n.name.startswith(graph_names.BACKBONE))


def test_external_data_round_trip_and_missing_file(small_export, tmp_path: Path, frames) -> None:
    path = tmp_path / "ext.onnx"
    result = exporter.export_model(
        small_export.model, path, weights="random-init", train_images=12, external_data="always"
    )
    data = tmp_path / "ext.onnx.data"
    assert result.files == [path, data]
    assert data.stat().st_size > path.stat().st_size
    onnx.checker.check_model(str(path), full_check=True)
    assert check_parity(small_export.model, path, frames).relative <= 1e-4
    # re-export over the same name does not append to the old data file
    exporter.export_model(
        small_export.model, path, weights="random-init", train_images=12, external_data="always"
    )
    assert data.stat().st_size == result.files[1].stat().st_size
    data.unlink()
    with pytest.raises(ModelLoadError, match=r"ext\.onnx\.data"):
        PadimModel(path, device="cpu")


def test_external_data_is_automatic_past_the_threshold(small_export, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_files, "EXTERNAL_DATA_THRESHOLD", 1_000)
    result = exporter.export_model(
        small_export.model, tmp_path / "auto.onnx", weights="random-init", train_images=1
    )
    assert [f.name for f in result.files] == ["auto.onnx", "auto.onnx.data"]
    assert PadimModel(result.files[0], device="cpu").info.dims == 24


def test_full_dims_means_no_reduction() -> None:
    model, _ = build_module("mnv2", dims=152, resize=72, crop=64, random_init=True)
    assert model.indices.tolist() == list(range(152))
    with pytest.raises(ValueError, match=r"dims must be in 1\.\.152"):
        build_module("mnv2", dims=153, random_init=True)


def test_backbone_table() -> None:
    assert {k: v.total_channels for k, v in BACKBONES.items()} == {"r18": 448, "wr50": 1792, "mnv2": 152}
    assert {k: v.default_dims for k, v in BACKBONES.items()} == {"r18": 100, "wr50": 550, "mnv2": 100}
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        get_spec("vgg")


def test_channel_subset_is_fixed_by_seed() -> None:
    a, _ = build_module("r18", resize=72, crop=64, random_init=True, seed=3)
    b, _ = build_module("r18", resize=72, crop=64, random_init=True, seed=3)
    c, _ = build_module("r18", resize=72, crop=64, random_init=True, seed=4)
    assert a.indices.tolist() == b.indices.tolist() != c.indices.tolist()


def test_missing_imagenet_weights_name_the_cache_file(monkeypatch, tmp_path: Path) -> None:
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError) as info:
        build_backbone(get_spec("r18"))
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "--weights FILE" in message and "--random-init" in message


def test_weights_file_that_does_not_fit(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(WeightsError, match="does not fit backbone r18"):
        build_backbone(get_spec("r18"), weights_file=bad)
    with pytest.raises(WeightsError, match="not found"):
        build_backbone(get_spec("r18"), weights_file=tmp_path / "nope.pth")


def test_weights_file_identity_is_its_sha256(tmp_path: Path) -> None:
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    _, identity = build_backbone(get_spec("r18"), weights_file=path)
    import hashlib

    assert identity == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_fit_input_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageError, match="no images in"):
        run_export(empty, tmp_path / "m.onnx", **SMALL)
    with pytest.raises(ImageError, match="folder not found"):
        run_export(tmp_path / "missing", tmp_path / "m.onnx", **SMALL)
    one = tmp_path / "one"
    write_images(one, 1)
    with pytest.raises(ValueError, match="at least 2 normal images"):
        run_export(one, tmp_path / "m.onnx", **SMALL)
    corrupt = tmp_path / "corrupt"
    write_images(corrupt, 3)
    (corrupt / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ImageError, match=r"cannot decode image .*img_001\.png"):
        run_export(corrupt, tmp_path / "m.onnx", progress=False, **SMALL)


def test_public_api_defaults_and_backbone_graph(small_export, tmp_path: Path) -> None:
    """default_settings / export_backbone: what the benchmarks need, without export internals."""
    from padim_edge.export.pipeline import default_settings, export_backbone

    assert default_settings("padim", "r18") == {"dims": get_spec("r18").default_dims}
    patchcore = default_settings("patchcore", "wr50")
    assert set(patchcore) == {"dims", "coreset"} and 0 < patchcore["coreset"] < 1
    with pytest.raises(ValueError, match="unknown method"):
        default_settings("spade", "r18")
    [path] = export_backbone(small_export.model, tmp_path / "backbone.onnx")
    outputs = [o.name for o in onnx.load(str(path)).graph.output]
    assert outputs == [f"tap{i + 1}" for i in range(len(small_export.model.features.taps))]


def test_bench_uses_only_the_export_public_api() -> None:
    """bench/artifacts.py builds, fits and exports through padim_edge.export.pipeline alone."""
    import ast

    source = Path(__file__).resolve().parents[2] / "padim_edge" / "bench" / "artifacts.py"
    imported = {
        node.module
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("padim_edge.export")
    }
    assert imported == {"padim_edge.export.pipeline"}
