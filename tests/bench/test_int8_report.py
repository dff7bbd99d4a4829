"""benchmarks/int8_*.py: the predictors-vs-loss analysis and the report (no models made)."""

from __future__ import annotations

import pytest

from tests.bench.conftest import benchmark_script


@pytest.fixture(scope="module")
def modules():
    with benchmark_script("int8_predictors") as predictors, benchmark_script("int8_report") as report:
        yield predictors, report


def _row(image_delta: float, pixel_delta: float, synthetic: float, spearman: float) -> dict:
    return {
        "image_auroc": 0.9 + image_delta, "image_auroc_delta": image_delta,
        "pixel_auroc": 0.9 + pixel_delta, "pixel_auroc_delta": pixel_delta,
        "fidelity": {
            "spearman": spearman, "map_error_median": 0.02, "low": synthetic > 0.01,
            "synthetic_image_auroc": [0.8, 0.8 - synthetic], "synthetic_pixel_auroc": [0.9, 0.9],
        },
    }  # fmt: skip


def test_predictor_rows_correlation_and_report(modules) -> None:
    predictors, report = modules
    rows = {
        "fp32": {"image_auroc": 0.9, "pixel_auroc": 0.9},
        "a": _row(-0.02, 0.0, 0.03, 0.9),
        "b": _row(-0.005, 0.0, 0.012, 0.95),
        "c": _row(0.0, 0.0, 0.0, 0.5),
        "d": _row(0.01, 0.0, -0.01, 0.99),
    }
    section = {"rows": rows, "description": "d", "train_images": 1, "train_available": 1, "test_images": 2,
               "defect_images": 1}  # fmt: skip
    acc = {"sets": {"s": section}, "model": "m", "max_train": 1, "max_test": None,
           "calibration_images": 1, "finished": "2026-12-05T12:00:00+00:00"}  # fmt: skip
    found = predictors.fidelity_rows(acc)
    assert [r["variant"] for r in found] == ["a", "b", "c", "d"]  # by synthetic image drop
    assert found[0]["image_loss"] == pytest.approx(0.02) and found[0][
        "synthetic_image_drop"
    ] == pytest.approx(0.03)
    corr = predictors.fidelity_correlation(found)
    assert corr["synthetic_image_drop_vs_image_loss"] == pytest.approx(1.0)
    assert corr["spearman_vs_image_loss"] == pytest.approx(-0.4)
    flags = predictors.flag_agreement(found)
    assert flags == {"real_losses": 1, "synthetic_caught": 1, "synthetic_false": 1, "report_caught": 1,
                     "report_false": 1}  # fmt: skip
    latency = {"model": "r18", "rounds": 1, "background_cpu": [0.0], "file_mb": {}, "rows": [],
               "finished": "2026-12-05T09:22:13+00:00"}  # fmt: skip
    text = report.render({"accuracy": {**acc, "command": "x"}, "latency": latency})
    assert "Kept from the run of 2026-12-05T09:22:13+00:00" in text
    assert "| synthetic-defect image AUROC drop | +1.000 |" in text
    assert "0.7700 (-0.0300)" in text  # variant a's synthetic image AUROC beside its drop
