"""The OpenVINO backend's compiled models: static per (batch, frame size), cached on disk under the
model file's identity (a warm start reads neither the ONNX file nor the IR; a rewritten file misses).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.runtime.test_openvino import TOLERANCE, _bf16_capable, _errors, _open, needs_openvino


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
