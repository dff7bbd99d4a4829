"""benchmarks/harness.py and the accuracy suite's goals and reports (no models made)."""

from __future__ import annotations

import json

import click
import pytest

from tests.bench.conftest import benchmark_script


@pytest.fixture(scope="module")
def suites():
    with benchmark_script("harness") as harness, benchmark_script("accuracy") as accuracy:
        yield harness, accuracy


def _row(image_delta: float | None, pixel_delta: float | None, verdict: str = "ok") -> dict:
    return {
        "image_auroc": None if image_delta is None else 0.9 + image_delta, "image_auroc_delta": image_delta,
        "pixel_auroc": None if pixel_delta is None else 0.8 + pixel_delta, "pixel_auroc_delta": pixel_delta,
        "pro": 0.7, "pro_delta": 0.0, "test_score_spearman": 0.99, "fidelity": {"verdict": verdict},
        "calibration_seconds": 12.0,
    }  # fmt: skip


SETS = {
    "demo": {
        "description": "generated", "train_images": 20, "test_images": 40, "defect_images": 20,
        "rows": {
            "fp32": {"image_auroc": 0.9, "pixel_auroc": 0.8, "pro": 0.7},
            "int8-a": _row(-0.004, 0.009),
            "int8-b": _row(0.015, 0.0),  # a gain over the limit: a distance, not a loss
            "int8-c": _row(-0.011, 0.0, verdict="low fidelity"),
            "int8-d": {"error": "RuntimeError: no kernel"},
            "fp16": _row(-0.5, 0.0),  # not an INT8 row: not judged
        },
    },
    "magnetic_tile": {"skipped": "not found"},
}  # fmt: skip


def test_goals_judge_distance_for_padim_and_loss_for_patchcore(suites) -> None:
    _, accuracy = suites
    padim = {g["variant"]: g["result"] for g in accuracy.goals(accuracy.PADIM, SETS)}
    assert padim == {"int8-a": "PASS", "int8-b": "FAIL", "int8-c": "FAIL", "int8-d": "FAIL"}
    patchcore = {g["variant"]: g["result"] for g in accuracy.goals(accuracy.PATCHCORE, SETS)}
    assert patchcore == {"int8-a": "PASS", "int8-b": "PASS", "int8-c": "FAIL", "int8-d": "FAIL"}


def test_model_files_keep_the_names_fidelity_verdicts_reuses(suites) -> None:
    _, accuracy = suites
    assert accuracy.PADIM.folder("demo", 200, 100, None) == "demo-train200-cal100"
    assert accuracy.PADIM.file("int8-qdq refit + 2 float convs") == "mnv2-int8-qdq-refit-+-2-float-convs"
    assert accuracy.PATCHCORE.folder("demo", None, 100, 0.1) == "patchcore-demo-coreset0.1-trainall-cal100"
    assert accuracy.PATCHCORE.file("int8-qdq, bank kept") == "mnv2-patchcore-int8-qdq-bank-kept"


def test_report_and_results_written(suites, tmp_path) -> None:
    harness, accuracy = suites
    result = harness.Run().stamp(
        {"model": "m", "max_train": 20, "max_test": None, "calibration_images": 8, "sets": SETS}
    )
    result["goals"] = accuracy.goals(accuracy.PADIM, SETS)
    text = accuracy.render(accuracy.PADIM, result)
    assert text.startswith("# INT8 and FP16 vs float32")
    assert "**Machine:** " in text and f"`{result['command']}`" in text
    assert "| int8-a | 0.8960 (-0.0040) | 0.8090 (+0.0090) | 0.7000 (+0.0000) | 0.990 | ok | 12 | - |" in text
    assert "| int8-d | failed: RuntimeError: no kernel |" in text
    assert "Skipped: not found" in text
    assert "| demo | int8-b | +0.0150 / +0.0000 | FAIL |" in text
    harness.write_results(tmp_path / "out", "int8_accuracy", result, text)
    assert json.loads((tmp_path / "out" / "int8_accuracy.json").read_text())["sets"]["demo"]["rows"]["fp32"]
    assert (tmp_path / "out" / "int8_accuracy.md").read_text() == text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["int8_accuracy.json", "int8_accuracy.md"]


def test_comma_list_names_the_option(suites) -> None:
    harness, _ = suites
    assert harness.comma_list("demo, dark_texture", harness.SETS, "--sets") == ("demo", "dark_texture")
    with pytest.raises(click.BadParameter, match=r"--sets: \['nope'\]; choose from magnetic_tile"):
        harness.comma_list("demo,nope", harness.SETS, "--sets")


def test_workspace_removes_only_its_own_folder(suites, tmp_path) -> None:
    harness, _ = suites
    with harness.workspace(None, "padim-test-") as temporary:
        (temporary / "model.onnx").write_bytes(b"x")
    assert not temporary.exists()
    with harness.workspace(tmp_path / "kept", "padim-test-") as kept:
        (kept / "model.onnx").write_bytes(b"x")
    assert (tmp_path / "kept" / "model.onnx").is_file()


def test_benchmark_script_leaves_sys_path_and_modules_as_they_were() -> None:
    import sys

    path, before = list(sys.path), set(sys.modules)
    with benchmark_script("latency") as latency:
        assert latency.MAX_FIT_GROWTH == 0.10
        assert "latency" in sys.modules
    assert sys.path == path
    added = set(sys.modules) - before
    assert "latency" not in added
    assert not [m for m in added if "benchmarks" in str(getattr(sys.modules[m], "__file__", None))]
