"""benchmarks/compatibility.py old-onnxruntime: the worker's output parsing and the score comparison.

No virtual environments are made: the worker runs with this interpreter.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.bench.conftest import benchmark_script


@pytest.fixture(scope="module")
def script():
    with benchmark_script("compatibility") as module:
        yield module


def test_every_backbone_variant_is_built_on_both_graphs(script) -> None:
    from padim_edge.calibration.formats import VARIANTS

    backbone_rows = {name for name, row in VARIANTS.items() if row.head_precision is None}
    assert set(script.VARIANTS_BY_TARGET["default"]) == backbone_rows
    assert set(script.VARIANTS_BY_TARGET["tensorrt"]) == backbone_rows - {"int8-qoperator"}
    head_rows = {name for name, row in VARIANTS.items() if row.head_precision in ("fp16", "int8")}
    assert set(script.HEAD_VARIANTS_BY_TARGET["default"]) == head_rows
    assert set(script.HEAD_VARIANTS_BY_TARGET["tensorrt"]) == head_rows - {"head-int8"}
    assert set(script.HEAD_VARIANTS_BY_TARGET["patchcore"]) >= head_rows


def test_parse_worker_output(script) -> None:
    payload = {"onnxruntime": "1.16.3", "python": "3.8.18", "models": {"fp32": {"scores": [1.0]}}}
    text = "some warning\nPADIM-RESULT " + json.dumps(payload) + "\n"
    assert script.parse_worker_output(text) == payload
    with pytest.raises(ValueError, match="printed no result") as error:
        script.parse_worker_output("Traceback ...\nImportError: numpy")
    assert "ImportError: numpy" in str(error.value)


def test_compare(script) -> None:
    ref = [10.0, 20.0, 30.0]
    ok = script.compare(ref, {"scores": [10.0, 20.001, 30.0]})
    assert (
        ok["status"] == "ok"
        and ok["max_abs"] == pytest.approx(0.001)
        and ok["relative"] == pytest.approx(0.001 / 30)
    )
    assert script.compare(ref, {"scores": [10.0, 20.01, 30.0]})["status"] == "differs"  # 3.3e-4 > 1e-4
    assert script.compare(ref, {"error": "RuntimeError: IR 10"}) == {
        "status": "error",
        "error": "RuntimeError: IR 10",
    }
    assert script.compare(ref, {"scores": [1.0]})["status"] == "error"


def test_worker_runs_here(script, small_onnx, tmp_path) -> None:
    """The worker snippet itself, with this interpreter (the real runs use the old environments)."""
    import numpy as np

    frames = tmp_path / "frames.npy"
    np.save(frames, np.zeros((2, 40, 50, 3), np.uint8))
    jobs = tmp_path / "jobs.json"
    jobs.write_text(
        json.dumps(
            {
                "fp32": {"model": str(small_onnx), "frames": str(frames)},
                "bad": {"model": "x", "frames": str(frames)},
            }
        )
    )
    out = script.run_env(sys.executable, jobs)
    assert len(out["models"]["fp32"]["scores"]) == 2
    assert out["models"]["bad"]["error"].startswith("ModelLoadError")
