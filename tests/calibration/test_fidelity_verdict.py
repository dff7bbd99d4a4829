"""The fidelity verdict: paired bootstrap intervals, separation; ok, low fidelity, not enough evidence."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from padim_edge.calibration import fidelity, settings
from padim_edge.calibration.fidelity import stats as fidelity_stats
from padim_edge.calibration.fidelity.figures import auroc
from padim_edge.metadata import fidelity_summary
from tests.calibration.conftest import texture, write_folder

# --------------------------------------------------------------------------- the statistics


def _loop_drops(ref: np.ndarray, var: np.ndarray, labels: np.ndarray, frames: int, draws: int) -> np.ndarray:
    """Independent bootstrap: draw frames as the module does, recompute both AUROCs from scratch."""
    picks = np.random.default_rng(fidelity_stats.SEED).integers(0, frames, size=(draws, frames))
    drops = []
    for pick in picks:
        index = np.concatenate([pick, pick + frames])  # a frame brings its clean and defected versions
        drops.append(auroc(ref[index], labels[index]) - auroc(var[index], labels[index]))
    return np.array(drops)


def test_image_interval_matches_a_plain_bootstrap() -> None:
    rng = np.random.default_rng(1)
    n = 30
    ref = np.concatenate([rng.normal(0, 1, n), rng.normal(1.2, 1, n)]).round(1)  # ties too
    var = (ref + rng.normal(0, 0.4, 2 * n)).round(1)
    labels = np.arange(2 * n) >= n
    interval = fidelity_stats.image_interval((ref[:n], ref[n:]), (var[:n], var[n:]), draws=400)
    assert interval.reference == pytest.approx(auroc(ref, labels), abs=1e-12)
    assert interval.variant == pytest.approx(auroc(var, labels), abs=1e-12)
    expected = np.percentile(_loop_drops(ref, var, labels, n, 400), [2.5, 97.5])
    assert (interval.low, interval.high) == pytest.approx(tuple(expected), abs=1e-12)


def test_pixel_interval_matches_a_plain_bootstrap() -> None:
    rng = np.random.default_rng(2)
    n = 12
    maps = rng.gamma(2.0, 1.0, (2 * n, 16, 16))
    masks = np.zeros(maps.shape, bool)
    masks[n:, 4:9, 6:10] = True
    maps[masks] += 1.5
    variant = maps + rng.normal(0, 0.6, maps.shape)
    exact = (auroc(maps, masks), auroc(variant, masks))
    interval = fidelity_stats.pixel_interval(maps, variant, masks, exact=exact, draws=200)
    picks = np.random.default_rng(fidelity_stats.SEED).integers(0, n, size=(200, n))
    drops = []
    for pick in picks:
        index = np.concatenate([pick, pick + n])
        drops.append(auroc(maps[index], masks[index]) - auroc(variant[index], masks[index]))
    # 2048 quantile bins for 6,144 pixels: the binned AUROCs match the exact ones closely
    assert interval.low == pytest.approx(np.percentile(drops, 2.5), abs=2e-3)
    assert interval.high == pytest.approx(np.percentile(drops, 97.5), abs=2e-3)
    assert interval.drop == pytest.approx(exact[0] - exact[1], abs=1e-12)


def test_separation_in_units_of_the_reference_gap() -> None:
    masks = np.zeros((2, 4, 4), bool)
    masks[1, :2, :2] = True
    ref = np.ones((2, 4, 4))
    ref[masks] = 3.0  # gap: median defect 3 - median normal 1 = 2
    # a scale and an offset change no ranking: no separation
    assert fidelity_stats.separation(ref, 5 * ref - 2, masks) == pytest.approx(0.0, abs=1e-12)
    # a constant variant explains none of the reference: RMS(ref - mean) / gap
    expected = float(np.sqrt(((ref - ref.mean()) ** 2).mean())) / 2.0
    assert fidelity_stats.separation(ref, np.zeros_like(ref), masks) == pytest.approx(expected, rel=1e-12)
    assert fidelity_stats.separation(np.ones_like(ref), ref, masks) is None  # the reference has no gap


# --------------------------------------------------------------------------- verdicts on stand-in models


class _Model:
    """A stand-in for a FrameModel: the map is each crop pixel's distance from the frame's median grey."""

    info = SimpleNamespace(resize=72, crop=64)

    def __init__(self, change=None) -> None:
        self.change = change

    def predict(self, frames, batch_size=8):
        predictions = []
        for frame in frames:
            grey = np.asarray(frame, np.float32)[4:68, 4:68].mean(axis=2)
            anomaly = np.abs(grey - np.median(grey))
            if self.change is not None:
                anomaly = self.change(anomaly)
            predictions.append(SimpleNamespace(score=float(anomaly.max()), anomaly_map=anomaly))
        return predictions


def _frames(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(7)
    write_folder(folder, [texture(rng, 80, 80) for _ in range(count)])
    return sorted(folder.iterdir())


def _report(reference: _Model, variant: _Model, frames: list[Path]) -> fidelity.Fidelity:
    report = fidelity.Fidelity("m.onnx (fp32)", fidelity.SOURCE_VALIDATE, len(frames))
    report.take(fidelity.synthetic_figures(reference, variant, frames))
    return report


def test_broken_variant_is_low_fidelity(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames", 30)
    broken = _report(_Model(), _Model(lambda a: np.full_like(a, 1.0)), frames)  # scores fall to chance
    assert broken.synthetic_image_auroc is not None and broken.synthetic_image_auroc[1] == 0.5
    assert broken.synthetic_image_drop is not None
    assert broken.synthetic_image_drop[0] > settings.MAX_SYNTHETIC_AUROC_DROP  # a loss beyond doubt
    assert broken.verdict == fidelity.LOW and broken.low is True
    assert broken.problems[0].startswith("synthetic-defect pixel AUROC 0.7387 -> 0.5000: the variant lost at")
    assert "of the input model's margin over chance" in broken.problems[0]
    warning = broken.warnings("int8-qoperator")[-1]
    assert warning.startswith("LOW FIDELITY: int8-qoperator vs m.onnx (fp32) on 30 frames (validate)")
    record = json.loads(json.dumps(broken.record()))
    assert record["verdict"] == "low fidelity" and record["low"] is True
    assert fidelity.Fidelity.from_record(record).verdict == fidelity.LOW  # judged again from the metadata
    assert fidelity_summary(record).startswith("LOW FIDELITY: synthetic-defect image AUROC")


def test_faithful_variant_is_ok(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames", 30)
    rng = np.random.default_rng(3)
    # rescaled and slightly noisy, as an int8 backbone is: no ranking moves by much
    close = _report(_Model(), _Model(lambda a: 1.7 * a + 0.2 + rng.normal(0, 0.01, a.shape)), frames)
    assert close.separation is not None and close.separation < settings.MAX_SEPARATION
    assert close.verdict == fidelity.OK and close.low is False and not close.warnings("int8-qdq")
    assert close.record()["verdict"] == "ok"
    # the same scores: nothing lost, whatever the interval widths
    same = _report(_Model(), _Model(), frames)
    assert same.synthetic_image_drop == (0.0, 0.0) and same.synthetic_pixel_drop == (0.0, 0.0)
    assert same.separation == 0.0 and same.verdict == fidelity.OK


def test_too_few_frames_is_not_enough_evidence(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames", 8)
    broken = _report(_Model(), _Model(lambda a: np.full_like(a, 1.0)), frames)
    assert broken.verdict == fidelity.UNSURE and broken.low is None
    assert broken.problems == [f"8 frames, at least {settings.MIN_VERDICT_FRAMES} needed for a verdict"]
    assert broken.warnings("int8-qoperator") == []  # a line of the report, not a warning
    line = broken.verdict_line()
    assert line.startswith(f"not enough evidence: 8 frames, at least {settings.MIN_VERDICT_FRAMES} needed")
    assert "pass --validate DIR with more held-out defect-free images" in line
    assert broken.record()["verdict"] == "not enough evidence" and broken.record()["low"] is None


def test_reference_near_chance_is_not_enough_evidence(tmp_path: Path) -> None:
    frames = _frames(tmp_path / "frames", 30)
    rng = np.random.default_rng(4)

    def blind(anomaly: np.ndarray) -> np.ndarray:  # ignores the frame: AUROC near 0.5
        return rng.random(anomaly.shape).astype(np.float32)

    report = _report(_Model(blind), _Model(blind), frames)
    assert report.synthetic_reference_low[0] is not None
    assert report.synthetic_reference_low[0] <= settings.MIN_REFERENCE_AUROC
    assert report.verdict == fidelity.UNSURE
    assert any("too close to chance" in problem for problem in report.problems)
    assert "--validate DIR" in report.verdict_line() and report.warnings("int8-qoperator") == []


def _figures(image: tuple, image_drop: tuple, pixel: tuple, pixel_drop: tuple, separation: float) -> dict:
    return {
        "reference": "mnv2.onnx (fp32)", "source": "validate", "frames": 50,
        "synthetic_image_auroc": image, "synthetic_image_drop": image_drop,
        "synthetic_pixel_auroc": pixel, "synthetic_pixel_drop": pixel_drop,
        "synthetic_reference_low": [0.7626, 0.8841], "separation": separation,
    }  # fmt: skip


def test_collapse_is_low_however_little_the_maps_moved() -> None:
    # the figures of the magnetic-tile variant calibrated on blank frames (real AUROC loss 0.25 / 0.19)
    blank = fidelity.Fidelity.from_record(
        _figures((0.8374, 0.617), (0.1384, 0.3014), (0.9324, 0.6112), (0.1974, 0.4423), 0.342)
    )
    assert blank.separation < settings.MIN_LOW_SEPARATION  # the map-change route alone says nothing
    assert blank.verdict == fidelity.LOW
    assert [p.split(":")[0] for p in blank.problems] == [
        "synthetic-defect image AUROC 0.8374 -> 0.6170",
        "synthetic-defect pixel AUROC 0.9324 -> 0.6112",
    ]
    assert "lost at least 41% of the input model's margin over chance" in blank.problems[0]
    # a pixel drop beyond doubt but under a third of the margin, maps moved little: no verdict, and no
    # warning (the demo set's plain INT8 QDQ row: no real loss)
    partial = fidelity.Fidelity.from_record(
        {**_figures((0.7572, 0.7264), (-0.024, 0.089), (0.8691, 0.8328), (0.0179, 0.0574), 0.2),
         "synthetic_reference_low": [0.6788, 0.8112]}
    )  # fmt: skip
    assert partial.verdict == fidelity.UNSURE and partial.warnings("int8-qdq") == []
    line = partial.verdict_line()
    assert line.startswith("not enough evidence: synthetic-defect pixel AUROC 0.8691 -> 0.8328 (drop 0.0363")
    assert line.endswith("labelled images (--labeled ROOT, or padim-eval) before deploying it")


def test_drops_beyond_doubt_on_image_and_pixel_are_low_however_little_the_maps_moved() -> None:
    # the magnetic tile's PatchCore int8-qoperator variant with the bank kept (real loss 0.016 / 0.025)
    kept = fidelity.Fidelity.from_record(
        {**_figures((0.9024, 0.848), (0.012, 0.1016), (0.9654, 0.9457), (0.0077, 0.0373), 0.149),
         "synthetic_reference_low": [0.84, 0.95]}
    )  # fmt: skip
    assert kept.separation < settings.MIN_LOW_SEPARATION and not kept._collapses()
    assert kept.verdict == fidelity.LOW
    assert [p.split(" (")[0] for p in kept.problems] == [
        "synthetic-defect image AUROC 0.9024 -> 0.8480",
        "synthetic-defect pixel AUROC 0.9654 -> 0.9457",
    ]
    # the pixel drop alone beyond doubt, the maps moved as little: the demo set's bank-kept row, no real loss
    one = fidelity.Fidelity.from_record(
        {**_figures((0.7686, 0.7264), (-0.0138, 0.0936), (0.8761, 0.8376), (0.0148, 0.0664), 0.151),
         "synthetic_reference_low": [0.69, 0.82]}
    )  # fmt: skip
    assert one.verdict == fidelity.UNSURE
    assert one.problems[-1].startswith("yet the maps moved only 0.15 of the input model's gap")
    # the pixel drop alone, maps moved 0.45 of the gap: the dark texture's plain INT8 QDQ row (real loss 0.02)
    moved = fidelity.Fidelity.from_record(
        {**_figures((0.6596, 0.655), (-0.0374, 0.045), (0.7119, 0.6764), (0.0078, 0.0653), 0.448),
         "synthetic_reference_low": [0.5804, 0.6108]}
    )  # fmt: skip
    assert moved.verdict == fidelity.LOW and moved.separation >= settings.MIN_LOW_SEPARATION
    assert moved.problems == [
        "synthetic-defect pixel AUROC 0.7119 -> 0.6764 (drop 0.0355, 95 % interval 0.0078 to 0.0653, all of "
        "it above 0.005)"
    ]
