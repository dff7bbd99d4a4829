"""The torch-free runtime: import hygiene, inputs, errors, threads, providers."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest

from padim_edge.runtime import InputError, ModelLoadError, PadimModel, available
from tests.conftest import swapped_pair


def test_runtime_and_predict_cli_never_import_torch(small_onnx: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "import padim_edge.runtime, padim_edge.runtime.cli, padim_edge.visualize\n"
        f"m = padim_edge.runtime.PadimModel({str(small_onnx)!r}, device='cpu')\n"
        "m.predict(np.zeros((50, 60, 3), np.uint8))\n"
        "bad = [n for n in ('torch', 'torchvision', 'onnx') if n in sys.modules]\n"
        "print('LOADED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED []" in out.stdout


def test_predict_accepts_single_list_and_batch(small_onnx: Path, frames) -> None:
    model = PadimModel(small_onnx, device="cpu", threads=1)
    single = model.predict(frames[1])
    assert len(single) == 1 and single[0].anomaly_map.shape == (64, 64)
    listed = model.predict(frames, batch_size=2)
    assert [p.score for p in listed][1] == pytest.approx(single[0].score, rel=1e-6)
    assert listed[0].score == pytest.approx(listed[2].score, rel=1e-6) or not np.array_equal(
        frames[0], frames[2]
    )
    batched = model.predict(np.stack([frames[0], frames[2]]))
    assert [p.score for p in batched] == pytest.approx([listed[0].score, listed[2].score], rel=1e-6)
    assert all(p.is_anomalous is None and p.normalized_score is None for p in listed)
    assert model.info.crop == 64 and model.info.random_init
    assert model.providers == ["CPUExecutionProvider"]
    assert "padim r18, dims 24" in repr(model)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((10, 10, 3), np.float32), r"uint8 RGB, got dtype float32 \(for 0-1 floats"),
        (np.zeros((10, 10), np.uint8), r"grayscale \[H, W\]"),
        (np.zeros((10, 10, 4), np.uint8), r"4 channels \(RGBA"),
        (np.zeros((10, 10, 1), np.uint8), r"one channel"),
        (np.zeros((2, 2, 10, 10, 3), np.uint8), r"got an array of shape"),
        (np.zeros((0, 10, 3), np.uint8), r"empty frame"),
        ([np.zeros((10, 10, 3), np.uint8), "x"], r"frame 1: expected a numpy array"),
        ("image.png", r"expected a numpy array or a sequence"),
    ],
)
def test_input_validation(small_onnx: Path, bad, message: str) -> None:
    model = PadimModel(small_onnx, device="cpu")
    with pytest.raises(InputError, match=message):
        model.predict(bad)


def test_not_a_model_and_not_ours(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="model file not found"):
        PadimModel(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not protobuf at all" * 10)
    with pytest.raises(ModelLoadError, match=r"junk\.onnx"):
        PadimModel(junk, device="cpu")
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    plain = tmp_path / "plain.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)]), str(plain))
    with pytest.raises(ModelLoadError, match="not a padim-edge model"):
        PadimModel(plain, device="cpu")


def test_thread_safe_concurrent_predict(small_onnx: Path) -> None:
    model = PadimModel(small_onnx, device="cpu", threads=1)
    rng = np.random.default_rng(5)
    inputs = [rng.integers(0, 256, (70, 70, 3), dtype=np.uint8) for _ in range(8)]
    expected = [model.predict(x)[0].score for x in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda x: model.predict(x)[0].score, inputs * 3))
    assert got == pytest.approx(expected * 3, rel=1e-6)


@pytest.mark.skipif(
    "CUDAExecutionProvider" not in available(), reason="this onnxruntime build has no CUDA EP"
)
def test_cuda_provider_matches_cpu(small_onnx: Path, frames) -> None:
    cpu = PadimModel(small_onnx, device="cpu").predict(frames)
    gpu = PadimModel(small_onnx, device="cuda").predict(frames)
    assert [p.score for p in gpu] == pytest.approx([p.score for p in cpu], rel=1e-3)


def test_runtime_refuses_another_models_data_file(
    small_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same-size swap (another seed's data file) is refused by hash in every hashing mode."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = swapped_pair(small_onnx, tmp_path)
    for mode in ("once", "always"):
        with pytest.raises(ModelLoadError, match=r"model\.onnx\.data is not the data file .*model\.onnx"):
            PadimModel(model, device="cpu", verify_data=mode)
    assert PadimModel(model, device="cpu", verify_data="size").info.crop == 64  # the documented weak mode
