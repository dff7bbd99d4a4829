"""The scoring pipeline: the sequential loop's results bit for bit, in order, bounded; overlay names."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from padim_edge.images import iter_batches
from padim_edge.naming import image_keys
from padim_edge.runtime import PadimModel
from padim_edge.runtime import pipeline as pipeline_mod
from padim_edge.runtime.cli import main as predict_main
from padim_edge.runtime.outputs import OVERLAY_NAME_MAX, TEMP_NAME_EXTRA, overlay_names
from padim_edge.runtime.pipeline import FilePipeline, predict_files
from tests.conftest import TRT_SIZE, write_images


@pytest.fixture(scope="module")
def model(small_onnx: Path) -> PadimModel:
    return PadimModel(small_onnx, device="cpu")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """11 images of three sizes in two folders, one of them unreadable."""
    root = tmp_path_factory.mktemp("mixed")
    files = write_images(root / "a", 6, seed=11, sizes=[(80, 96), (64, 64), (100, 90)])
    files += write_images(root / "b", 5, seed=12, sizes=[(72, 72)])
    (root / "a" / "img_003.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return sorted(files)


@pytest.fixture(scope="module")
def calibrated_onnx(small_onnx: Path, model: PadimModel, mixed: list[Path], tmp_path_factory) -> Path:
    """The small model with a threshold at the median score of ``mixed``: some images are anomalous."""
    import onnx

    from padim_edge import metadata
    from padim_edge.calibration.decision import bake_threshold
    from padim_edge.onnx_files import save_model, set_props

    scores = [r.score for r in predict_files(model, mixed) if r.ok]
    threshold = float(np.median(scores))
    proto = onnx.load(str(small_onnx))
    bake_threshold(proto, threshold)
    set_props(proto, metadata.encode_updates({"threshold": threshold}))
    path = tmp_path_factory.mktemp("calibrated") / "calibrated.onnx"
    save_model(proto, path, check=False)
    return path


def sequential(model: PadimModel, files: list[Path], batch_size: int) -> dict[str, object]:
    """The loop padim-predict ran before its pipeline: decode a batch, score it, next."""
    keys = dict(zip(files, image_keys(files), strict=True))
    out: dict[str, object] = {}
    for batch in iter_batches(files, batch_size, on_error=lambda path, exc: out.update({keys[path]: None})):
        for (file, _), pred in zip(
            batch, model.predict([image for _, image in batch], batch_size=batch_size), strict=True
        ):
            out[keys[file]] = pred
    return out


@pytest.mark.parametrize("decode_workers", [0, 1, 3])
def test_pipeline_scores_equal_the_sequential_loop_bit_for_bit(
    model: PadimModel, mixed: list[Path], decode_workers: int
) -> None:
    expected = sequential(model, mixed, 4)
    with FilePipeline(model, batch_size=4, decode_workers=decode_workers) as pipeline:
        results = list(pipeline.run(mixed))
    assert [r.key for r in results] == image_keys(mixed)  # input order, failures in place
    for result in results:
        want = expected[result.key]
        if want is None:
            assert not result.ok and result.prediction is None
            assert result.error.startswith("cannot decode image") and "img_003.png" in result.error
        else:
            assert result.ok and result.score == want.score, result.key
            np.testing.assert_array_equal(result.prediction.anomaly_map, want.anomaly_map)
    times = pipeline.times
    assert times.images == 10 and times.failed == 1 and times.graph > 0 and times.decode > 0


def test_predict_files_takes_folders_and_labels_like_predict(
    calibrated_onnx: Path, mixed: list[Path]
) -> None:
    model = PadimModel(calibrated_onnx, device="cpu")
    results = list(model.predict_files([mixed[0].parent.parent], batch_size=3))  # predict_files(model, ...)
    assert [r.key for r in results] == image_keys(mixed)
    expected = sequential(model, mixed, 3)
    labels = [r.is_anomalous for r in results if r.ok]
    assert labels == [expected[r.key].is_anomalous for r in results if r.ok]
    assert True in labels and False in labels


def test_pipeline_reads_ahead_a_bounded_number_of_files(
    model: PadimModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow consumer does not make the pipeline decode the whole archive ahead of it."""
    files = write_images(tmp_path, 40, seed=2)
    decoded: list[Path] = []
    lock = threading.Lock()
    real = pipeline_mod.load_image

    def counting(path):
        with lock:
            decoded.append(Path(path))
        return real(path)

    monkeypatch.setattr(pipeline_mod, "load_image", counting)
    ahead = []
    with FilePipeline(model, batch_size=2, decode_workers=2, prefetch=2) as pipeline:
        for done, _ in enumerate(pipeline.run(files), start=1):
            threading.Event().wait(0.01)  # the consumer is slower than the decoders
            with lock:
                ahead.append(len(decoded) - done)
    # the batch being scored, `prefetch` batches decoding, and what waits to be yielded (<= 2 batches)
    assert max(ahead) <= 2 * (1 + 2 + 1), ahead
    assert len(decoded) == 40


def test_leaving_early_stops_the_decoders(model: PadimModel, tmp_path: Path, monkeypatch) -> None:
    files = write_images(tmp_path, 30, seed=4)
    calls: list[Path] = []
    real = pipeline_mod.load_image
    monkeypatch.setattr(pipeline_mod, "load_image", lambda path: calls.append(path) or real(path))
    with FilePipeline(model, batch_size=2, decode_workers=1, prefetch=1) as pipeline:
        for _ in pipeline.run(files):
            break
    assert len(calls) <= 6  # not the 30 files
    assert pipeline._decoders is None and not [t for t in threading.enumerate() if "padim-" in t.name]


def test_overlay_names_are_unique_per_key_and_fit_the_file_system() -> None:
    keys = ["x.png", "x.jpg", "a/b.png", "a__b.png", "good/003.png", "CASE.png", "case.png"]
    names = overlay_names(keys)
    assert names["good/003.png"] == "good__003_overlay.png"  # unchanged where nothing clashes
    assert len(set(names.values())) == len(keys)
    assert len({n.casefold() for n in names.values()}) == len(keys)  # case-insensitive file systems
    assert names["x.png"].startswith("x-") and names["a/b.png"].startswith("a__b-")
    assert overlay_names(keys) == names  # the same names every run

    long = "é" * 200 + ".png"  # 400 bytes of UTF-8
    deep = "/".join(["folder" * 8] * 6) + "/003.png"
    names = overlay_names([long, deep, "short.png"])
    for key in (long, deep):
        name = names[key]
        assert len(name.encode("utf-8")) <= OVERLAY_NAME_MAX == 255 - TEMP_NAME_EXTRA, key
        assert name.endswith("_overlay.png") and name.encode("utf-8").decode("utf-8") == name
    assert names[long] != overlay_names(["é" * 201 + ".png"])["é" * 201 + ".png"]


def test_long_and_clashing_names_lose_no_score_and_no_overlay(small_onnx: Path, tmp_path: Path) -> None:
    data = tmp_path / "in"
    write_images(data, 2, seed=9)
    (data / "img_000.png").rename(data / "x.png")
    (data / "img_001.png").rename(data / f"{'s' * 230}.png")  # the atomic write's temp name: 244 + 14
    deep = data / ("d" * 120) / ("e" * 120)
    write_images(deep, 1, seed=10)
    write_images(data / "a", 1, seed=11)
    (data / "a" / "img_000.png").rename(data / "a" / "b.png")
    Image = pytest.importorskip("PIL.Image")
    Image.open(data / "x.png").convert("RGB").save(data / "x.jpg")
    Image.open(data / "a" / "b.png").save(data / "a__b.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(predict_main, [str(small_onnx), str(data), "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    overlays = json.loads((out / "overlays.json").read_text())
    assert len(scores) == 6 and sorted(overlays) == sorted(scores)
    assert f"{'s' * 230}.png" in scores and f"{'d' * 120}/{'e' * 120}/img_000.png" in scores
    files = sorted(p.name for p in out.glob("*_overlay.png"))
    assert sorted(overlays.values()) == files and len(files) == 6
    assert "6 overlays" in result.output


def test_overlays_none_and_anomalous(
    calibrated_onnx: Path, small_onnx: Path, mixed: list[Path], tmp_path
) -> None:
    data = mixed[0].parent.parent
    runner = CliRunner()
    out = tmp_path / "none"
    result = runner.invoke(
        predict_main, [str(small_onnx), str(data), "-o", str(out), "--overlays", "none", "-q"]
    )
    assert result.exit_code == 1 and "1 of 11 images could not be read" in result.output
    assert not list(out.glob("*.png")) and not (out / "overlays.json").exists()
    assert len(json.loads((out / "scores.json").read_text())) == 10

    result = runner.invoke(
        predict_main, [str(small_onnx), str(data), "-o", str(out), "--overlays", "anomalous"]
    )
    assert result.exit_code == 2 and "needs a model calibrated with a threshold" in result.output

    out = tmp_path / "anomalous"
    args = [str(calibrated_onnx), str(data), "-o", str(out), "--overlays", "anomalous", "-q"]
    assert runner.invoke(predict_main, args).exit_code == 1
    labels = json.loads((out / "labels.json").read_text())
    overlays = json.loads((out / "overlays.json").read_text())
    assert sorted(overlays) == sorted(k for k, flag in labels.items() if flag) and 0 < len(overlays) < 10
    assert sorted(overlays.values()) == sorted(p.name for p in out.glob("*_overlay.png"))


def test_output_inside_an_input_folder_is_not_scored(small_onnx: Path, tmp_path: Path) -> None:
    data = tmp_path / "imgs"
    write_images(data, 3, seed=1)
    runner = CliRunner()
    result = runner.invoke(predict_main, [str(small_onnx), str(data), "-o", str(data), "-q"])
    assert result.exit_code == 2 and f"--output {data} is an input folder" in result.output
    out = data / "scores"
    for _ in range(2):  # the second run finds the first one's overlays under data/ and skips them
        result = runner.invoke(predict_main, [str(small_onnx), str(data), "-o", str(out), "-q"])
        assert result.exit_code == 0, result.output
    assert "note: skipped 3 files inside --output" in result.output
    assert sorted(json.loads((out / "scores.json").read_text())) == [f"img_00{i}.png" for i in range(3)]


def test_an_odd_size_frame_for_a_fixed_size_model_fails_alone(small_trt_onnx: Path, tmp_path: Path) -> None:
    data = tmp_path / "frames"
    write_images(data, 7, seed=5, sizes=[TRT_SIZE])
    write_images(tmp_path / "odd", 1, seed=6, sizes=[(64, 48)])
    (tmp_path / "odd" / "img_000.png").rename(data / "img_006_odd.png")
    out = tmp_path / "out"
    result = CliRunner().invoke(predict_main, [str(small_trt_onnx), str(data), "-o", str(out), "-q"])
    assert result.exit_code == 1
    assert "1 of 8 images could not be read or scored" in result.output and "frame 6" not in result.output
    failed = json.loads((out / "failed.json").read_text())
    assert list(failed) == ["img_006_odd.png"]
    h, w = TRT_SIZE
    assert failed["img_006_odd.png"] == (
        f"{data / 'img_006_odd.png'}: a 64x48 (HxW) image, but this model was built for {h}x{w} frames "
        f"(padim-export --target tensorrt --input-size {h}x{w}); resize it to {h}x{w} or use a model "
        "exported for any size (the default target)"
    )
    assert len(json.loads((out / "scores.json").read_text())) == 7


def test_swapped_arguments_get_a_hint(small_onnx: Path, tmp_path: Path) -> None:
    image = write_images(tmp_path, 1)[0]
    result = CliRunner().invoke(predict_main, [str(image), str(small_onnx)])
    assert result.exit_code == 2
    hint = f"MODEL comes first: {image} is an image, not a model; did you mean: padim-predict {small_onnx}"
    assert f"{hint} {image}" in " ".join(result.output.split())


def test_ctrl_c_keeps_the_results_so_far(small_onnx: Path, tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "in"
    write_images(data, 9, seed=7)
    real, calls = PadimModel.predict, []

    def interrupted(self, images, **kwargs):
        calls.append(len(images))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, images, **kwargs)

    monkeypatch.setattr(PadimModel, "predict", interrupted)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        predict_main, [str(small_onnx), str(data), "-o", str(out), "--batch-size", "3"]
    )
    assert result.exit_code == 130 and "interrupted: 6 of 9 images done" in result.output, result.output
    assert sorted(json.loads((out / "scores.json").read_text())) == [f"img_00{i}.png" for i in range(6)]
    assert len(list(out.glob("*_overlay.png"))) == 6 and not list(out.glob(".*.tmp"))
    assert not [t for t in threading.enumerate() if "padim-" in t.name]


def test_bench_files_separates_decode_graph_and_write(small_onnx: Path, tmp_path: Path) -> None:
    """`padim-bench --files DIR --model M`: every row measured, the pipeline's stage times, both reports."""
    pytest.importorskip("psutil", reason="padim-bench needs the [bench] extra")
    from padim_edge.bench.cli import main as bench_main

    data = tmp_path / "frames"
    write_images(data, 6, seed=8)
    out = tmp_path / "report"
    args = ["--files", str(data), "--model", str(small_onnx), "--batch-sizes", "4", "-o", str(out), "-q"]
    result = CliRunner().invoke(bench_main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "bench.json").read_text())
    assert report["files"] == 6 and report["batch_size"] == 4 and report["frame"] == [80, 96]
    rows = ["decode", "graph", "sequential", "pipelined", "sequential + overlays", "pipelined + overlays"]
    assert list(report["rates"]) == rows and all(rate > 0 for rate in report["rates"].values())
    stages = report["stages"]["pipelined + overlays"]
    assert (
        stages["images"] == 6 and stages["decode_s"] > 0 and stages["graph_s"] > 0 and stages["write_s"] > 0
    )
    assert report["stages"]["pipelined"]["write_s"] == 0
    assert "| pipelined + overlays |" in (out / "bench.md").read_text()
    result = CliRunner().invoke(bench_main, ["--files", str(data), "-o", str(out)])
    assert (
        result.exit_code == 2
        and "--files DIR measures one model: give it with --model MODEL" in result.output
    )
