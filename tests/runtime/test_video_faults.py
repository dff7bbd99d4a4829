"""padim-predict --video when the input goes wrong: sources that stop, stall or drop, corrupt and
odd-size frames, missing files and GStreamer: one line for the run, or one error for the frame.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from padim_edge.runtime.video import (
    MAX_BAD_FRAMES,
    OpenCVSource,
    VideoError,
    load_cv2,
    run_video,
)
from tests.conftest import TRT_SIZE
from tests.runtime.test_video import (
    ListSource,
    MeanModel,
    _frames,
    _lines,
    _write_video,
    needs_cv2,
)


def test_a_source_that_stops_keeps_the_frames_before(tmp_path: Path) -> None:
    frames = _frames(8, (8, 8))
    source = ListSource(frames, live=True, fail_after=5, name="camera 0")
    run = run_video(MeanModel(), source, tmp_path, batch_size=2, buffer_frames=10)
    assert run.error == "camera 0 stopped delivering frames after 5"
    assert [line["frame"] for line in _lines(tmp_path / "frames.jsonl")] == [0, 1, 2, 3, 4]
    assert json.loads((tmp_path / "summary.json").read_text())["error"] == run.error


@needs_cv2
def test_a_stream_that_ends_midway_is_one_line_and_keeps_its_frames(small_onnx: Path, tmp_path: Path) -> None:
    """A live source whose reads start failing (an unplugged camera) ends the run with one line."""
    from padim_edge.runtime.cli import main

    video = _write_video(tmp_path / "belt.avi", _frames(7))
    source = OpenCVSource(str(video), live=True)  # a "camera" that delivers 7 frames, then nothing
    run = run_video(MeanModel(), source, tmp_path / "out", buffer_frames=20)
    assert run.error == f"file {video} stopped delivering frames after 7 (disconnected, the stream ended, " \
        "or no frame within --timeout)"  # fmt: skip
    assert len(_lines(tmp_path / "out" / "frames.jsonl")) == 7

    done = CliRunner().invoke(main, [str(small_onnx), "--video", "7"])
    assert done.exit_code == 1
    assert done.output.splitlines()[-1] == (
        "Error: camera 7 could not be opened (no such device, or in use by another program); list "
        "cameras with `v4l2-ctl --list-devices`"
    )


@needs_cv2
def test_a_url_that_drops_or_stalls_midway_is_one_line_and_keeps_its_frames(tmp_path: Path) -> None:
    """An HTTP stream that sends half its bytes, then closes (or goes silent past --timeout)."""
    import http.server

    data = _write_video(tmp_path / "belt.avi", _frames(12)).read_bytes()
    release = threading.Event()

    class Half(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/x-msvideo")
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            if self.path.endswith("stall.avi"):
                release.wait(10)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Half)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name in ("drop.avi", "stall.avi"):
            url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
            start = time.monotonic()
            run = run_video(MeanModel(), url, tmp_path / name, timeout=1.0, buffer_frames=20)
            assert time.monotonic() - start < 6.0
            assert run.error == (
                f"url {url} stopped delivering frames after {run.frames} (disconnected, the stream ended, or "
                "no frame within --timeout)"
            )
            assert 3 <= run.frames < 12 and run.dropped == 0
            lines = _lines(tmp_path / name / "frames.jsonl")
            assert [line["frame"] for line in lines] == list(range(run.frames))
    finally:
        release.set()
        server.shutdown()
        server.server_close()


@needs_cv2
def test_a_corrupt_frame_is_an_error_for_that_frame_only(small_onnx: Path, tmp_path: Path) -> None:
    from padim_edge.runtime.cli import main

    video = _write_video(tmp_path / "belt.avi", _frames(9))
    data = bytearray(video.read_bytes())
    starts = [k for k in range(len(data) - 1) if data[k] == 0xFF and data[k + 1] == 0xD8]
    assert len(starts) == 9
    data[starts[4] : starts[4] + 600] = b"A" * 600  # frame 4's JPEG header is gone
    video.write_bytes(bytes(data))
    done = CliRunner().invoke(main, [str(small_onnx), "--video", str(video), "-o", str(tmp_path / "out")])
    assert done.exit_code == 1
    assert done.output.splitlines()[-1] == "Error: 1 of 9 frames failed (their 'error' lines say why)"
    lines = _lines(tmp_path / "out" / "frames.jsonl")
    assert [line["frame"] for line in lines] == list(range(9))
    assert lines[4]["error"] == "frame 4 could not be decoded (corrupt or missing data)"
    assert all("score" in line for k, line in enumerate(lines) if k != 4)
    assert lines[5]["time"] == pytest.approx(0.5)  # the frames after it keep their own positions


@needs_cv2
def test_many_bad_frames_in_a_row_give_up_on_the_file(tmp_path: Path) -> None:
    video = _write_video(tmp_path / "belt.avi", _frames(MAX_BAD_FRAMES + 8))
    data = bytearray(video.read_bytes())
    starts = [k for k in range(len(data) - 1) if data[k] == 0xFF and data[k + 1] == 0xD8]
    assert len(starts) == MAX_BAD_FRAMES + 8
    for start in starts[2:]:
        data[start : start + 600] = b"A" * 600
    video.write_bytes(bytes(data))
    run = run_video(MeanModel(), str(video), tmp_path / "out")
    assert run.scored == 2 and run.failed == MAX_BAD_FRAMES
    assert run.error == (
        f"file {video}: {MAX_BAD_FRAMES} frames in a row from frame 2 could not be decoded; giving up "
        "(corrupt file)"
    )


@needs_cv2
def test_unreadable_or_missing_video_and_silent_url_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.avi").write_text("not a video")
    with pytest.raises(VideoError) as info:
        OpenCVSource(str(tmp_path / "notes.avi"))
    assert str(info.value) == (
        f"cannot read video {tmp_path / 'notes.avi'}: OpenCV could not open it (not a video, damaged, or a "
        "codec this OpenCV lacks)"
    )
    with pytest.raises(VideoError, match=r"^video file not found: .*gone\.mp4$"):
        OpenCVSource(str(tmp_path / "gone.mp4"))

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/line3.mjpg"
    start = time.monotonic()
    try:
        with pytest.raises(VideoError) as info:
            OpenCVSource(url, timeout=1.0)
    finally:
        for conn in held:
            conn.close()
        server.close()
    assert time.monotonic() - start < 6.0
    assert str(info.value) == (
        f"{url} did not answer within 1 s (--timeout): check the address and that the stream is running"
    )


@needs_cv2
def test_gstreamer_pipeline_without_gstreamer_is_one_line(small_onnx: Path) -> None:
    from padim_edge.runtime import video
    from padim_edge.runtime.cli import main

    if video._has_gstreamer(load_cv2()):
        pytest.skip("this OpenCV has GStreamer")
    cv2 = load_cv2()
    done = CliRunner().invoke(main, [str(small_onnx), "--video", "videotestsrc num-buffers=3 ! appsink"])
    assert done.exit_code == 1
    assert done.output.splitlines()[-1] == (
        "Error: 'videotestsrc num-buffers=3 ! appsink' looks like a GStreamer pipeline ('!'), but this "
        f"OpenCV ({cv2.__version__}) has no GStreamer backend (pip's opencv-python-headless wheels have "
        "none; JetPack's OpenCV has one): use an OpenCV built with GStreamer, or give a file, camera index "
        "or URL"
    )


def test_fixed_size_model_fails_only_the_frames_of_another_size(small_trt_onnx: Path, tmp_path: Path) -> None:
    from padim_edge.runtime import PadimModel

    model = PadimModel(small_trt_onnx, device="cpu")
    frames = _frames(2, TRT_SIZE) + _frames(1, (80, 96)) + _frames(2, TRT_SIZE, seed=1)
    run = run_video(model, ListSource(frames, live=False), tmp_path, batch_size=8)
    lines = _lines(tmp_path / "frames.jsonl")
    expected = [p.score for p in model.predict([frames[k] for k in (0, 1, 3, 4)])]
    assert [line.get("score") for k, line in enumerate(lines) if k != 2] == pytest.approx(expected, rel=1e-5)
    assert lines[2]["error"].startswith(
        f"frame 2 is 80x96 (HxW); this model was built for {TRT_SIZE[0]}x{TRT_SIZE[1]} frames"
    )
    assert (run.scored, run.failed) == (4, 1)
