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
from tests.conftest import TRT_SIZE, write_images

HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(
    not HAVE_OPENVINO, reason="needs openvino (pip install 'padim-edge[openvino]')"
)
#: Largest |OpenVINO - onnxruntime| allowed, as a fraction of the frames' max score.
TOLERANCE = 1e-5
#: Frame sizes (H, W): above the small model's 72 resize (downscale, antialias matters) and below it.
SIZES = [(80, 96), (60, 50)]


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


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ov_held")
    write_images(folder, 8, seed=5, sizes=[(80, 96), (70, 70)])
    return folder


@pytest.fixture(scope="module")
def textured(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Two textured frames of each size in :data:`SIZES` (the images the fits see, not noise)."""
    from padim_edge.images import load_image

    folder = tmp_path_factory.mktemp("ov_frames")
    return [load_image(p) for p in write_images(folder, 4, seed=9, sizes=SIZES)]


@pytest.fixture(scope="module")
def patchcore_onnx(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from padim_edge.export.pipeline import run_export
    from tests.export.patchcore.test_pipeline import SMALL as PATCHCORE

    out = tmp_path_factory.mktemp("ov_pc") / "pc.onnx"
    run_export(
        train_dir, out, method="patchcore", coreset=0.25, batch_size=6, parity_images=0, progress=False,
        **PATCHCORE,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def variant_path(request: pytest.FixtureRequest, held_out: Path):
    """``name -> .onnx``: the exports, and padim-calibrate's variants of them (each made on first use)."""
    from padim_edge.calibration.pipeline import calibrate

    exports = {"default": "small_onnx", "fixed-size": "small_trt_onnx", "patchcore": "patchcore_onnx"}
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name in exports:
            return request.getfixturevalue(exports[name])
        if name not in made:
            pc = name.startswith("patchcore-")
            source, variant = (
                get("patchcore") if pc else get("default"),
                name[len("patchcore-") :] if pc else name,
            )
            out = source.with_name(f"{source.stem}-ov-{variant}.onnx")
            extra = {"target_fpr": 0.2} if variant == "fp32-threshold" else {}
            data = held_out if not variant.startswith("head-") else None
            calibrate(source, out, variant=variant, data=data, calibration_images=4, progress=False, **extra)
            made[name] = out
        return made[name]

    return get


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


@needs_openvino
def test_compiled_models_are_f32_static_and_cached(
    small_onnx: Path, textured: list[np.ndarray], tmp_path: Path
) -> None:
    """One compile per (batch, frame size), f32 pinned, the blobs written to the cache folder."""
    import openvino

    cache = tmp_path / "cache"
    model = _open(small_onnx, "openvino", cache)
    model.predict(textured, batch_size=2)
    model.predict(textured[:1])
    runner = model.openvino
    assert sorted(runner._shapes) == [(1, 80, 96, 3), (2, 60, 50, 3), (2, 80, 96, 3)]
    compiled = runner.compiled((1, 80, 96, 3)).compiled
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    assert [tuple(i.get_shape()) for i in compiled.inputs] == [(1, 80, 96, 3)]
    assert len([p for p in cache.iterdir() if p.suffix == ".blob"]) == 3
    (ir,) = cache.glob("*.xml")  # the converted model, read instead of the ONNX file for a new shape
    assert ir.with_suffix(".bin").stat().st_size > small_onnx.stat().st_size * 0.9  # float32 weights kept
    assert len(list(cache.glob("*.json"))) == 1
    if _bf16_capable():
        return
    from padim_edge.runtime import ProviderError

    with pytest.raises(ProviderError, match="precision bf16: this CPU has no bf16 arithmetic"):
        _open(small_onnx, "openvino", cache, precision="bf16")
    with pytest.raises(ProviderError, match="precision bf16: this CPU has no bf16 arithmetic"):
        _open(small_onnx, "openvino-bf16", cache)


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


@needs_openvino
def test_frames_of_many_sizes_share_one_model_with_the_matrices_as_inputs(
    small_onnx: Path, tmp_path: Path
) -> None:
    """Past STATIC_SIZES frame sizes, new sizes run on one any-size model per batch size, as exactly."""
    from padim_edge.runtime.openvino.runner import STATIC_SIZES

    rng = np.random.default_rng(3)
    sizes = [(90, 120), (64, 64), (50, 300), (80, 80), (100, 77), (333, 71), (72, 72)]
    frames = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in sizes]
    reference = _open(small_onnx, "cpu", tmp_path).predict(frames)
    model = _open(small_onnx, "openvino", tmp_path / "cache")
    got = model.predict(frames)
    score_error, map_error = _errors(reference, got, max(p.score for p in reference))
    assert score_error <= TOLERANCE and map_error <= TOLERANCE, (score_error, map_error)
    shapes = model.openvino._shapes
    assert sum(not e.any_size for e in shapes.values()) == STATIC_SIZES == 4
    assert {shapes[(1, *size, 3)].any_size for size in sizes[STATIC_SIZES:]} == {True}


@needs_openvino
def test_a_warm_cache_imports_the_blobs_without_reading_the_model(
    small_onnx: Path, textured: list[np.ndarray], tmp_path: Path
) -> None:
    """The second load reads neither the ONNX file nor the IR, and scores exactly as the first."""
    cache = tmp_path / "cache"
    first = _open(small_onnx, "openvino", cache)
    assert first.openvino.loader._model is not None  # the cold load read the graph
    cold = first.predict(textured, batch_size=2)
    assert first.openvino.loader._model is None  # let go once compiled: the cache has its IR
    second = _open(small_onnx, "openvino", cache)
    warm = second.predict(textured, batch_size=2)
    assert second.openvino.loader._model is None  # names, shapes and blobs all came from the cache
    assert second.openvino.output_shapes == first.openvino.output_shapes
    assert [p.score for p in warm] == [p.score for p in cold]
    for a, b in zip(warm, cold, strict=True):
        np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)
    reference = _open(small_onnx, "cpu", cache).predict(textured, batch_size=2)
    assert _errors(reference, warm, max(p.score for p in reference))[0] <= TOLERANCE


@needs_openvino
def test_a_rewritten_model_file_misses_the_cache(
    small_onnx: Path, variant_path, textured: list[np.ndarray], tmp_path: Path
) -> None:
    """Same path, new content: scored as the new model (not from the old blobs), old entries deleted."""
    path, cache = tmp_path / "model.onnx", tmp_path / "cache"
    path.write_bytes(small_onnx.read_bytes())
    old = [p.score for p in _open(path, "openvino", cache).predict(textured, batch_size=2)]
    names = {p.name for p in cache.iterdir()}
    path.write_bytes(variant_path("patchcore").read_bytes())  # in place: same path and inode
    model = _open(path, "openvino", cache)
    assert model.openvino.loader._model is not None  # the new file was read
    new = model.predict(textured, batch_size=2)
    reference = _open(path, "cpu", cache).predict(textured, batch_size=2)
    assert _errors(reference, new, max(p.score for p in reference))[0] <= TOLERANCE
    assert max(abs(a - b.score) for a, b in zip(old, new, strict=True)) > 0.1 * max(old)
    assert not names & {p.name for p in cache.iterdir()}  # the old file's entries are gone


@needs_openvino
def test_importing_openvino_holds_back_its_conversion_tool_until_used() -> None:
    """A fresh process: the backend's import skips openvino.tools.ovc; convert_model still works."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from padim_edge.runtime.openvino.loader import import_openvino\n"
        "ov = import_openvino()\n"
        "print('openvino.tools.ovc' in sys.modules)\n"
        "from openvino import convert_model\n"
        "print(convert_model is ov.convert_model, 'openvino.tools.ovc' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True", "True"]
