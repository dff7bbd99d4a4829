"""padim-predict --video: frames scored in order, live drops counted, frames converted to RGB, labels."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from padim_edge.runtime.video import (
    Frame,
    FrameBuffer,
    VideoError,
    load_cv2,
    parse_source,
    run_video,
)

needs_cv2 = pytest.mark.skipif(
    importlib.util.find_spec("cv2") is None,
    reason="padim-edge[video] (opencv-python-headless) is not installed",
)
#: Frame size (H, W) and rate of the generated videos.
SIZE, FPS = (80, 96), 10.0


def _frames(count: int, size: tuple[int, int] = SIZE, seed: int = 0) -> list[np.ndarray]:
    """Distinct textured RGB frames (stripes at a per-frame phase, noise): each scores differently."""
    rng = np.random.default_rng(seed)
    h, w = size
    xx = np.mgrid[0:h, 0:w][1]
    out = []
    for i in range(count):
        base = 128 + 50 * np.sin(xx / (2.0 + i % 5) + i) + rng.normal(0, 10, (h, w))
        rgb = np.stack([base, base * 0.8 + 30, 255 - base], axis=-1)
        out.append(rgb.clip(0, 255).astype(np.uint8))
    return out


def _write_video(path: Path, frames: list[np.ndarray]) -> Path:
    """An MJPG AVI (every frame a key frame: decoding is deterministic and frame-exact)."""
    cv2 = load_cv2()
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _decode(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` as cv2 decodes it, in RGB (the reference the run must match)."""
    cv2 = load_cv2()
    capture, out = cv2.VideoCapture(str(path)), []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        out.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    capture.release()
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class MeanModel:
    """A stand-in model: score = the frame's mean, anomalous above 120; optional delay per run."""

    def __init__(self, delay: float = 0.0, input_size: tuple[int, int] | None = None) -> None:
        self.info = SimpleNamespace(
            input_size=input_size, threshold=120.0, resize=72, crop=64, get=lambda key, default=None: default
        )
        self.delay, self.runs = delay, 0

    def predict(self, images, *, batch_size: int = 8):
        images = [images] if isinstance(images, np.ndarray) else images
        self.runs += 1
        time.sleep(self.delay)
        return [
            SimpleNamespace(
                score=float(image.mean()),
                anomaly_map=np.full((64, 64), float(image.mean()), np.float32),
                is_anomalous=bool(image.mean() > 120.0),
            )
            for image in images
        ]


class ListSource:
    """A source of given frames; ``live`` ones come as fast as they can, as a camera that never waits."""

    def __init__(self, frames, *, live: bool, fail_after: int | None = None, name: str = "test source"):
        self.items, self.live, self.fail_after, self.name = frames, live, fail_after, name
        self.fps, self.released = FPS, False

    def frames(self, every: int = 1):
        for index in range(len(self.items)):
            if self.fail_after is not None and index == self.fail_after:
                raise VideoError(f"{self.name} stopped delivering frames after {index}")
            if index % every == 0:
                yield Frame(index, index / FPS, self.items[index])

    def release(self) -> None:
        self.released = True


def test_sources_are_told_apart() -> None:
    assert parse_source("0").kind == "camera" and parse_source("0").target == 0 and parse_source("2").live
    assert parse_source("rtsp://10.0.0.5:554/stream").kind == "url"
    assert parse_source("http://cam.local/video.mjpg").live
    pipeline = "nvarguscamerasrc ! video/x-raw(memory:NVMM) ! nvvidconv ! video/x-raw,format=BGRx ! appsink"
    assert parse_source(pipeline).kind == "gstreamer"
    assert parse_source("line3/belt.mp4") == parse_source("file://line3/belt.mp4")
    assert not parse_source("line3/belt.mp4").live


def test_missing_opencv_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from padim_edge import extras

    monkeypatch.setattr(extras, "_importable", lambda module: module != "cv2")
    with pytest.raises(extras.MissingExtraError) as info:
        load_cv2()
    assert str(info.value) == (
        "padim-predict --video needs opencv-python-headless, which is not installed: "
        "pip install 'padim-edge[video]'"
    )


@needs_cv2
def test_a_video_gives_one_result_per_frame_equal_to_scoring_its_frames(
    small_onnx: Path, tmp_path: Path
) -> None:
    from padim_edge.runtime import PadimModel

    video = _write_video(tmp_path / "belt.avi", _frames(11))
    decoded = _decode(video)
    assert len(decoded) == 11
    model = PadimModel(small_onnx, device="cpu")
    expected = [p.score for p in model.predict(decoded, batch_size=1)]
    run = run_video(model, str(video), tmp_path / "out", batch_size=4)
    lines = _lines(tmp_path / "out" / "frames.jsonl")
    assert [line["frame"] for line in lines] == list(range(11))
    assert [line["time"] for line in lines] == pytest.approx([i / FPS for i in range(11)], abs=1e-3)
    assert [line["score"] for line in lines] == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert len(set(expected)) == 11  # the frames differ, so the order is checked
    assert all(line["label"] is None for line in lines)  # an uncalibrated model
    assert (run.frames, run.scored, run.failed, run.dropped) == (11, 11, 0, 0)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["frames"] == 11 and summary["dropped"] == 0 and summary["error"] is None

    every = run_video(model, str(video), tmp_path / "every3", 3, batch_size=4)
    lines = _lines(tmp_path / "every3" / "frames.jsonl")
    assert [line["frame"] for line in lines] == [0, 3, 6, 9]
    assert [line["score"] for line in lines] == pytest.approx(expected[::3], rel=1e-5, abs=1e-6)
    assert every.frames == 4 and every.dropped == 0


@needs_cv2
def test_cli_writes_jsonl_and_an_annotated_video(small_onnx: Path, tmp_path: Path) -> None:
    from padim_edge.runtime.cli import main

    cv2 = load_cv2()
    video = _write_video(tmp_path / "belt.avi", _frames(6))
    done = CliRunner().invoke(main, [str(small_onnx), "--video", str(video), "--every", "2"])
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [row["frame"] for row in rows] == [0, 2, 4]
    assert "video: 3 frames" in done.stderr and "0 dropped" in done.stderr

    out = tmp_path / "annotated.avi"
    args = [str(small_onnx), "--video", str(video), "-o", str(tmp_path / "out"), "--video-out", str(out)]
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    assert len(_lines(tmp_path / "out" / "frames.jsonl")) == 6
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6 and capture.get(cv2.CAP_PROP_FPS) == FPS
    assert int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == 64  # the model's 64 x 64 view, then the bar
    capture.release()

    done = CliRunner().invoke(main, [str(small_onnx), "--video", str(video), "--video-out", "x.gif"])
    assert done.exit_code == 1 and done.output.splitlines()[-1] == (
        "Error: --video-out x.gif: unknown video type '.gif'; use one of .avi, .m4v, .mkv, .mov, .mp4"
    )
    done = CliRunner().invoke(main, [str(small_onnx), str(video), "--every", "2"])
    assert done.exit_code == 2 and "Error: --every needs --video SOURCE" in done.output
    for extra in ([str(video)], ["--overlays", "all"], ["-o", str(tmp_path / "x"), "--files-from", "-"]):
        done = CliRunner().invoke(main, [str(small_onnx), "--video", str(video), *extra], input="")
        wrong = {"--overlays": "--overlays", "-o": "--files-from"}.get(extra[0], "PATH...")
        assert done.exit_code == 2
        assert f"Error: {wrong} does not apply to --video, which scores one source" in done.output
    assert not (tmp_path / "x").exists()


@needs_cv2
def test_gray_and_bgra_frames_become_rgb_and_16_bit_frames_fail() -> None:
    from padim_edge.runtime.video import _to_rgb

    cv2 = load_cv2()
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    rgb, error = _to_rgb(cv2, gray, 0)
    assert error is None and rgb.shape == (3, 4, 3) and (rgb == gray[..., None]).all()
    bgra = np.zeros((3, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 200, 255  # blue, opaque
    rgb, error = _to_rgb(cv2, bgra, 1)
    assert error is None and rgb[0, 0].tolist() == [0, 0, 200]
    assert _to_rgb(cv2, np.zeros((3, 4), np.uint16), 7) == (
        None,
        "frame 7 has uint16 pixels; only 8-bit video is scored",
    )
    assert _to_rgb(cv2, None, 2) == (None, "frame 2 could not be decoded")


def test_a_slow_scorer_drops_frames_of_a_live_source_and_counts_them(tmp_path: Path) -> None:
    frames = _frames(1, (8, 8)) * 300
    source = ListSource(frames, live=True)
    buffers: list[FrameBuffer] = []
    original = FrameBuffer.put

    def put(self: FrameBuffer, frame: Frame) -> bool:
        buffers.append(self)
        time.sleep(0.0005)  # a 2000 frames/s camera
        return original(self, frame)

    FrameBuffer.put = put  # type: ignore[method-assign]
    try:
        run = run_video(MeanModel(delay=0.01), source, tmp_path, batch_size=2, buffer_frames=3)
    finally:
        FrameBuffer.put = original  # type: ignore[method-assign]
    lines = _lines(tmp_path / "frames.jsonl")
    assert run.dropped > 100 and run.frames == len(lines) and run.frames + run.dropped == 300
    indices = [line["frame"] for line in lines]
    assert indices == sorted(set(indices)) and indices[-1] == 299  # in order, newest frame kept
    assert buffers[0].high_water == 3 and source.released


def test_buffer_never_exceeds_its_bound_over_10000_frames() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    for live in (False, True):
        source = ListSource([image] * 10_000, live=live)
        sizes: list[int] = []
        original = FrameBuffer.put

        def put(self: FrameBuffer, frame: Frame, original=original, sizes=sizes) -> bool:
            ok = original(self, frame)
            sizes.append(len(self.items))
            return ok

        FrameBuffer.put = put  # type: ignore[method-assign]
        try:
            run = run_video(MeanModel(delay=0.0002), source, None, results=open("/dev/null", "w"))  # noqa: SIM115
        finally:
            FrameBuffer.put = original  # type: ignore[method-assign]
        assert max(sizes) <= 16 and run.buffer_high_water <= 16  # 2 x batch size 8
        assert run.frames + run.dropped == 10_000
        if not live:
            assert run.dropped == 0 and run.frames == 10_000


def test_labels_anomaly_count_and_ctrl_c_keeps_what_was_written(tmp_path: Path) -> None:
    frames = [np.full((8, 8, 3), value, np.uint8) for value in (10, 200, 30, 250, 20, 40)]
    run = run_video(MeanModel(), ListSource(frames, live=False), tmp_path / "a", batch_size=2)
    lines = _lines(tmp_path / "a" / "frames.jsonl")
    assert [line["label"] for line in lines] == ["ok", "anomalous", "ok", "anomalous", "ok", "ok"]
    assert run.anomalies == 2 and "2 anomalous" in run.line()

    class Interrupted(MeanModel):
        def predict(self, images, *, batch_size: int = 8):
            if self.runs == 2:
                raise KeyboardInterrupt
            return super().predict(images, batch_size=batch_size)

    run = run_video(Interrupted(), ListSource(frames, live=False), tmp_path / "b", batch_size=2)
    assert run.interrupted and run.frames == 4
    assert [line["frame"] for line in _lines(tmp_path / "b" / "frames.jsonl")] == [0, 1, 2, 3]
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["interrupted"] is True
