"""The OpenVINO backend (``device="openvino"``): the same numbers as onnxruntime's CPU EP.

Every variant padim-calibrate writes is scored by both runtimes on textured frames of two sizes (one
downscaled, one upscaled by the model's resize); scores and maps must agree within 1e-5 of the max
score. The resize matrices are checked against the export's own (torch), and the rewrite is shown
necessary: the unrewritten graph on OpenVINO is off by far more. Skips cleanly without openvino.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from padim_edge.geometry import Geometry
from padim_edge.runtime.openvino.resize import resize_crop_matrices
from tests.conftest import TRT_SIZE
from tests.runtime.conftest import SIZES

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(
    not HAVE_OPENVINO, reason="needs openvino (pip install 'padim-edge[openvino]')"
)
#: Largest |OpenVINO - onnxruntime| allowed, as a fraction of the frames' max score.
TOLERANCE = 1e-5


@pytest.mark.parametrize(
    ("resize", "crop", "height", "width"),
    [(72, 64, 90, 120), (72, 64, 60, 50), (72, 64, 71, 300), (256, 224, 480, 640), (256, 224, 256, 256)],
)
def test_resize_matrices_equal_the_exports(resize: int, crop: int, height: int, width: int) -> None:
    """The numpy matrices are the export's (derived from torch's antialiased resize itself)."""
    from padim_edge.export.preprocessing import Preprocess
    from padim_edge.export.preprocessing import resize_crop_matrices as torch_matrices

    expected = [m.numpy() for m in torch_matrices(Preprocess(resize=resize, crop=crop), height, width)]
    got = resize_crop_matrices(Geometry(resize, crop), height, width)
    for want, have in zip(expected, got, strict=True):
        assert have.shape == want.shape
        np.testing.assert_allclose(have, want, rtol=0, atol=1e-12)


def _open(path: Path, device: str, cache: Path, **kwargs: object):
    from padim_edge.runtime import PadimModel

    if device.startswith("openvino"):
        return PadimModel(path, device=device, threads=2, ov_cache_dir=cache, **kwargs)
    return PadimModel(path, device=device, threads=2)


def _vnni() -> bool:
    """Whether this x86 CPU has VNNI (int8 dot products that do not saturate)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags or "amx_int8" in flags


def _errors(reference: list, got: list, top: float) -> tuple[float, float]:
    """Largest score and map difference, as fractions of ``top``."""
    score = max(abs(a.score - b.score) for a, b in zip(reference, got, strict=True)) / top
    amap = (
        max(float(np.abs(a.anomaly_map - b.anomaly_map).max()) for a, b in zip(reference, got, strict=True))
        / top
    )
    return score, amap


def _frames(name: str, textured: list[np.ndarray]) -> list[np.ndarray]:
    if name != "fixed-size":
        return textured
    from padim_edge.images import resize_frame

    return [resize_frame(f, TRT_SIZE) for f in textured]


#: Variants OpenVINO computes as onnxruntime does (float32 arithmetic, or integer heads).
EXACT = [
    "default", "fixed-size", "fp32-threshold", "head-int8", "patchcore", "patchcore-head-fp16",
    "patchcore-head-int8",
]  # fmt: skip
#: The int8 head rounds the embedding to uint8: a 1e-6 float difference that flips one rounding moves
#: that patch's distance by one step (measured up to 1.2e-5 of the max score in a map pixel; scores 6e-7).
MAP_TOLERANCE = {"head-int8": 1e-4}
INT8_NEEDS_VNNI = (
    "INT8 QDQ: on this CPU without VNNI OpenVINO's and onnxruntime's INT8 kernels do not give the same "
    "numbers (2.4 % of the max score apart on a MobileNetV2 PaDiM, docs/openvino.md); parity is checked "
    "on VNNI CPUs"
)


@needs_openvino
@pytest.mark.parametrize(
    "name", [*EXACT, pytest.param("int8-qdq", marks=pytest.mark.skipif(not _vnni(), reason=INT8_NEEDS_VNNI))]
)
def test_openvino_scores_equal_onnxruntime(
    variant_path, textured: list[np.ndarray], name: str, tmp_path: Path
) -> None:
    path = variant_path(name)
    frames = _frames(name, textured)
    reference = _open(path, "cpu", tmp_path).predict(frames, batch_size=2)
    model = _open(path, "openvino", tmp_path)
    assert model.providers == ["OpenVINO-CPU"]
    got = model.predict(frames, batch_size=2)
    score_error, map_error = _errors(reference, got, max(p.score for p in reference))
    assert score_error <= TOLERANCE and map_error <= MAP_TOLERANCE.get(name, TOLERANCE), (
        score_error,
        map_error,
    )
    for a, b in zip(reference, got, strict=True):
        assert b.anomaly_map.shape == a.anomaly_map.shape and b.anomaly_map.dtype == np.float32
        assert b.is_anomalous == a.is_anomalous
        assert (a.normalized_score is None) == (b.normalized_score is None)
        if a.normalized_score is not None:
            assert abs(a.normalized_score - b.normalized_score) <= TOLERANCE * max(1.0, a.normalized_score)
    if name == "fp32-threshold":
        assert all(p.is_anomalous is not None for p in got)


@needs_openvino
@pytest.mark.parametrize("name", ["fp16", "head-fp16"])
def test_fp16_variants_run_in_float32_arithmetic(
    variant_path, textured: list[np.ndarray], name: str, tmp_path: Path
) -> None:
    """OpenVINO's CPU plugin (f32 pinned) computes an fp16 graph in float32 on its fp16 weights, while
    onnxruntime rounds every fp16 node's output: OpenVINO lands closer to the fp32 model, and the two
    differ by less than the fp16 variant's own error."""
    source = variant_path("default")
    exact = _open(source, "cpu", tmp_path).predict(textured)
    path = variant_path(name)
    reference = _open(path, "cpu", tmp_path).predict(textured)
    got = _open(path, "openvino", tmp_path).predict(textured)
    top = max(p.score for p in exact)
    ort_error, ov_error = _errors(exact, reference, top)[0], _errors(exact, got, top)[0]
    assert ov_error < ort_error
    assert _errors(reference, got, top)[0] <= ort_error


@needs_openvino
def test_qoperator_models_are_refused_naming_the_qdq_format(variant_path, tmp_path: Path) -> None:
    from padim_edge.runtime import ModelLoadError

    path = variant_path("int8-qoperator")
    with pytest.raises(ModelLoadError) as caught:
        _open(path, "openvino", tmp_path)
    assert str(caught.value) == (
        f"{path}: a QOperator INT8 model, which OpenVINO cannot read (QLinearConv, com.microsoft "
        "QLinearAdd); make the INT8 model with padim-calibrate --int8 --format qdq, which OpenVINO runs "
        "in INT8"
    )


def test_bf16_is_refused_for_patchcore_and_fp32_is_the_default() -> None:
    from padim_edge.runtime.openvino import CompileOptions, refusal

    assert refusal({"padim_edge.method": "patchcore"}) is None
    assert "bf16 breaks PatchCore's distance head" in refusal({"padim_edge.method": "patchcore"}, "bf16")
    assert refusal({"padim_edge.method": "padim"}, "bf16") is None
    qdq = {"padim_edge.method": "patchcore", "padim_edge.quant_format": "qdq"}
    assert refusal(qdq).startswith(
        "a PatchCore INT8 QDQ model, which OpenVINO's CPU plugin scores about 10x off"
    )
    assert refusal({"padim_edge.method": "padim", "padim_edge.quant_format": "qdq"}) is None
    options = CompileOptions(threads=2, cache_dir="/c")
    assert options.config() == {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "2",
    }  # fmt: skip
    assert options.folder() == Path("/c")
    assert CompileOptions(cache_dir="").folder() is None
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, got 'fp16'"):
        CompileOptions(precision="fp16").config()


def test_openvino_is_no_onnxruntime_session(small_onnx: Path) -> None:
    from padim_edge.runtime.session import open_session

    with pytest.raises(ValueError, match="device 'openvino' is not an onnxruntime provider"):
        open_session(small_onnx, device="openvino")


def _bf16_capable() -> bool:
    import openvino

    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@needs_openvino
def test_without_the_rewrite_openvino_drops_the_antialias(
    small_onnx: Path, textured: list[np.ndarray]
) -> None:
    """Why the rewrite exists: the read graph compiled as is differs from onnxruntime on downscaled frames."""
    import onnxruntime as ort
    import openvino

    batch = np.stack([f for f in textured if f.shape[:2] == SIZES[0]])
    reference = ort.InferenceSession(str(small_onnx), providers=["CPUExecutionProvider"]).run(
        ["score"], {"images": batch}
    )[0]
    core = openvino.Core()
    raw = core.compile_model(core.read_model(str(small_onnx)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    scores = raw({0: batch})["score"]
    assert np.abs(scores - reference).max() / reference.max() > 1e-3


def _check(path: Path) -> tuple[int, dict[str, str]]:
    """``padim-check --openvino --json``: exit code and ``{rule: effect}`` of the OpenVINO target."""
    import json

    from click.testing import CliRunner

    from padim_edge.compat.cli import main

    result = CliRunner().invoke(main, [str(path), "--openvino", "--json"])
    (target,) = json.loads(result.output)["targets"]
    assert target["target"] == "openvino-cpu"
    return result.exit_code, {f["rule"]: f["effect"] for f in target["findings"]}


def test_padim_check_openvino(variant_path) -> None:
    """Antialias and bf16 notes on the default graph, no antialias on the fixed-size one; QOperator fails."""
    assert _check(variant_path("default")) == (0, {"resize-antialias": "note", "bf16-default": "note"})
    assert _check(variant_path("fixed-size")) == (0, {"bf16-default": "note"})
    code, findings = _check(variant_path("int8-qoperator"))
    assert code == 1 and findings["qoperator"] == "fails"
    assert _check(variant_path("int8-qdq"))[1]["int8-qdq"] == "note"
    assert _check(variant_path("fp16"))[1]["fp16-arithmetic"] == "note"
    code, findings = _check(variant_path("patchcore-int8-qdq"))  # compiles, scores 10x off: refused
    assert code == 1 and findings["patchcore-int8-qdq"] == "fails" and findings["int8-qdq"] == "note"
    assert "patchcore-int8-qdq" not in _check(variant_path("patchcore"))[1]


def test_bench_plans_openvino_rows_beside_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    """padim-bench: OpenVINO only when asked for, fused rows only, with --threads like the CPU EP."""
    from padim_edge.bench import runner
    from padim_edge.runtime import providers

    monkeypatch.setattr(providers, "openvino_installed", lambda: True)
    monkeypatch.setattr(providers, "cpu_has_bf16", lambda: False)
    assert runner.plan_devices(None) == (["cpu"], [])
    assert runner.plan_devices(["cpu", "openvino", "openvino-bf16"]) == (
        ["cpu", "openvino"],
        ["openvino-bf16: skipped, this CPU has no bf16 (AVX512-BF16 / AMX)"],
    )
    monkeypatch.setattr(providers, "openvino_installed", lambda: False)
    assert runner.plan_devices(["openvino"]) == (
        [],
        ["openvino: skipped, pip install 'padim-edge[openvino]'"],
    )
