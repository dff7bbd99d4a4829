"""padim-serve under pressure: a full queue (503 + Retry-After), timeouts, reload under load (no failed
or mixed request; a broken file keeps the old model), SIGHUP, and the SIGTERM drain."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.serve.helpers import binary_infer, frames, parse_binary
from tests.serve.server import ServerProcess


def _queued(server: ServerProcess, model: str, frames: int, seconds: float = 20.0) -> None:
    """Wait (bounded) until ``frames`` frames wait in ``model``'s queue."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if f'padim_queue_depth{{model="{model}"}} {frames}' in server.metrics():
            return
        time.sleep(0.02)
    pytest.fail(f"the queue never held {frames} frames: {server.metrics()}")


def _send_in_background(server: ServerProcess, batches: list[np.ndarray], model: str = "small") -> tuple:
    results: list = [None] * len(batches)

    def send(i: int) -> None:
        body, headers = binary_infer(batches[i])
        status, got, raw = server.request("POST", f"/v2/models/{model}/infer", body, headers)
        results[i] = (status, parse_binary(raw, got)[1] if status == 200 else json.loads(raw))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    return threads, results


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a client hung"


def test_full_queue_answers_503_while_accepted_requests_succeed(
    start_server, serve_models, reference
) -> None:
    # batches wait up to 1.5 s to fill, so four single-frame requests sit in a queue of four
    server = start_server([str(serve_models["small"])], "--max-delay-ms", "1500", "--max-queue", "4")
    batches = [frames(1, seed=20 + i) for i in range(4)]
    threads, results = _send_in_background(server, batches)
    _queued(server, "small", 4)
    body, headers = binary_infer(frames(1, seed=30))
    for _ in range(3):
        status, got, raw = server.request("POST", "/v2/models/small/infer", body, headers)
        assert status == 503
        assert int(got["Retry-After"]) >= 1
        assert "the queue is full (4 frames waiting, --max-queue 4); retry later" in json.loads(raw)["error"]
    body, headers = binary_infer(frames(5, seed=31))
    status, _, raw = server.request("POST", "/v2/models/small/infer", body, headers)
    assert (
        status == 413
        and "holds 5 frames, more than the queue holds (--max-queue 4)" in json.loads(raw)["error"]
    )
    _join(threads)
    model = reference(serve_models["small"])
    for batch, (status, out) in zip(batches, results, strict=True):
        assert status == 200, out
        np.testing.assert_allclose(out["score"], [p.score for p in model.predict(batch)], rtol=1e-5)
    text = server.metrics()
    assert 'padim_requests_total{model="small",endpoint="infer",status="503"} 3' in text
    assert 'padim_batch_size_bucket{model="small",le="2"} 0' in text  # the four ran as one batch
    assert 'padim_batch_size_bucket{model="small",le="4"} 1' in text


def test_request_timeout_answers_504(start_server, serve_models) -> None:
    server = start_server([str(serve_models["small"])], "--max-delay-ms", "1500", "--timeout", "0.2")
    body, headers = binary_infer(frames(1))
    started = time.monotonic()
    status, _, raw = server.request("POST", "/v2/models/small/infer", body, headers)
    assert status == 504 and time.monotonic() - started < 1.4
    assert "model 'small' did not answer within the timeout of 0.2 s" in json.loads(raw)["error"]
    # the v2 request parameter `timeout` (microseconds) shortens it further
    request = json.loads(body[: int(headers["Inference-Header-Content-Length"])])
    request["parameters"]["timeout"] = 50_000
    head = json.dumps(request).encode()
    status, _, raw = server.request(
        "POST",
        "/v2/models/small/infer",
        head + frames(1).tobytes(),
        {"Inference-Header-Content-Length": str(len(head))},
    )
    assert status == 504 and "within the timeout of 0.05 s" in json.loads(raw)["error"]
    assert server.json("GET", "/v2/health/ready")[0] == 200


def test_sigterm_drains_requests_in_flight(start_server, serve_models, reference) -> None:
    server = start_server([str(serve_models["small"])], "--max-delay-ms", "1500")
    batches = [frames(1 + i % 2, seed=40 + i) for i in range(3)]
    threads, results = _send_in_background(server, batches)
    _queued(server, "small", 4)
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    _join(threads)
    assert time.monotonic() - started < 1.2  # the drain runs the queue without waiting out the 1.5 s
    model = reference(serve_models["small"])
    for batch, (status, out) in zip(batches, results, strict=True):
        assert status == 200, out
        np.testing.assert_allclose(out["score"], [p.score for p in model.predict(batch)], rtol=1e-5)
    # uvicorn re-raises the signal after its graceful shutdown (exit by SIGTERM: a clean stop for systemd)
    assert server.proc is not None and server.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    events = [line for line in server.log_lines() if "event" in line]
    assert [e["event"] for e in events[-2:]] == ["draining", "stopped"]
    assert events[-2]["queued_frames"] == 4
    assert events[-1]["event"] == "stopped"
    with pytest.raises(OSError):
        server.request("GET", "/v2/health/live", timeout=2)


def test_reload_under_load_never_fails_or_mixes(
    start_server, serve_models, reference, tmp_path: Path
) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    served = tmp_path / "line.onnx"
    shutil.copy(serve_models["small"], served)
    server = start_server([str(served)], "--max-batch", "4")
    versions = {}
    for key in ("small", "other"):
        from padim_edge.serve.registry import file_sha256

        versions[file_sha256(serve_models[key])[:12]] = reference(serve_models[key])
    old, new = list(versions)
    batch = frames(2, seed=50)
    expected = {v: np.float32([p.score for p in m.predict(batch)]) for v, m in versions.items()}
    assert not np.allclose(expected[old], expected[new], rtol=1e-3)  # the two models are told apart
    stop = threading.Event()
    log: list[tuple[float, float, int, str | None, np.ndarray | None]] = []

    def client() -> None:
        body, headers = binary_infer(batch)
        for _ in range(2000):  # bounded; stopped by the event long before
            if stop.is_set():
                return
            sent = time.monotonic()
            status, got, raw = server.request("POST", "/v2/models/line/infer", body, headers)
            if status == 200:
                head, out = parse_binary(raw, got)
                log.append((sent, time.monotonic(), status, head["model_version"], out["score"]))
            else:
                log.append((sent, time.monotonic(), status, None, None))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    admin = triton.InferenceServerClient(server.address)
    try:
        time.sleep(0.5)
        staged = tmp_path / "staged.onnx"
        shutil.copy(serve_models["other"], staged)
        os.replace(staged, served)  # a new file, renamed into place
        admin.load_model("line")
        swapped = time.monotonic()
        time.sleep(0.5)
        staged.write_bytes(b"not an onnx file")
        os.replace(staged, served)
        with pytest.raises(InferenceServerException) as failed:
            admin.load_model("line")
        assert f"reload of model 'line' from {served} failed; still serving version {new}" in str(
            failed.value
        )
        meta = admin.get_model_metadata("line")
        assert (
            meta["versions"] == [new] and "is not a readable ONNX model" in meta["padim"]["last_reload_error"]
        )
        time.sleep(0.3)
        shutil.copy(serve_models["small"], staged)
        os.replace(staged, served)
        hup = time.monotonic()
        server.signal(signal.SIGHUP)  # reload every model
        deadline = time.monotonic() + 20
        while admin.get_model_metadata("line")["versions"] != [old] and time.monotonic() < deadline:
            time.sleep(0.05)
        back = time.monotonic()
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
        admin.close()
    assert not any(t.is_alive() for t in threads)
    assert len(log) > 20
    assert all(status == 200 for _, _, status, _, _ in log), [s for _, _, s, _, _ in log if s != 200]
    for sent, done, _, version, scores in log:
        assert version in expected
        np.testing.assert_allclose(scores, expected[version], rtol=1e-5)  # wholly one model's scores
        if swapped < sent and done < hup:
            assert version == new  # sent after the swap, answered before the SIGHUP
        if sent > back:
            assert version == old
    seen = {version for _, _, _, version, _ in log}
    assert seen == {old, new}
    text = server.metrics()
    assert 'padim_reloads_total{model="line",result="ok"} 2' in text
    assert 'padim_reloads_total{model="line",result="failed"} 1' in text
    assert re.search(rf'padim_model_info\{{model="line",version="{old}"', text)
