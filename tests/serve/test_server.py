"""padim-serve against a real server process: protocol, parity with in-process predict, concurrency,
bad requests, metrics and the access log."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import write_images
from tests.serve.conftest import THRESHOLD
from tests.serve.helpers import binary_infer, frames, multipart, parse_binary, png
from tests.serve.server import ServerProcess

LIMIT = 1 << 20  # --max-request-bytes of the module's server


@pytest.fixture(scope="module")
def server(serve_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    models = [f"small={serve_models['small']}", str(serve_models["calibrated"])]
    proc = ServerProcess(
        models, ["--max-request-bytes", str(LIMIT)], log=tmp_path_factory.mktemp("serve") / "log"
    )
    proc.start()
    yield proc
    proc.stop()


def test_health_and_model_metadata(server: ServerProcess, serve_models: dict[str, Path]) -> None:
    assert server.json("GET", "/v2/health/live") == (200, {"live": True})
    assert server.json("GET", "/v2/health/ready") == (200, {"ready": True})
    status, meta = server.json("GET", "/v2/models/small")
    digest = hashlib.sha256(serve_models["small"].read_bytes()).hexdigest()
    assert status == 200
    assert meta["versions"] == [digest[:12]]
    assert meta["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
    assert meta["outputs"] == [
        {"name": "anomaly_map", "datatype": "FP32", "shape": [-1, 64, 64]},
        {"name": "score", "datatype": "FP32", "shape": [-1]},
    ]
    assert meta["padim"]["sha256"] == digest
    assert meta["padim"]["metadata"]["crop"] == "64" and meta["padim"]["calibrated"] is False
    status, meta = server.json("GET", "/v2/models/calibrated")
    assert [o["name"] for o in meta["outputs"]] == [
        "anomaly_map",
        "score",
        "is_anomalous",
        "normalized_score",
    ]
    assert meta["outputs"][2]["datatype"] == "BOOL" and meta["padim"]["calibrated"] is True
    status, index = server.json("POST", "/v2/repository/index")
    assert [m["name"] for m in index] == ["calibrated", "small"]


def test_tritonclient_scores_bit_identical(server: ServerProcess, serve_models, reference) -> None:
    import tritonclient.http as triton

    batch = frames(3, seed=3)
    expected = reference(serve_models["calibrated"]).predict(batch, batch_size=8)
    client = triton.InferenceServerClient(server.address)
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("calibrated")
        images = triton.InferInput("images", list(batch.shape), "UINT8")
        images.set_data_from_numpy(batch)  # binary-data extension
        result = client.infer("calibrated", [images], request_id="r-1")
        response = result.get_response()
        assert response["id"] == "r-1" and response["model_name"] == "calibrated"
        digest = hashlib.sha256(serve_models["calibrated"].read_bytes()).hexdigest()
        assert response["model_version"] == digest[:12] and response["parameters"]["sha256"] == digest
        np.testing.assert_array_equal(result.as_numpy("score"), [p.score for p in expected])
        np.testing.assert_array_equal(
            result.as_numpy("anomaly_map"), np.stack([p.anomaly_map for p in expected])
        )
        np.testing.assert_array_equal(result.as_numpy("is_anomalous"), [p.is_anomalous for p in expected])
        np.testing.assert_array_equal(
            result.as_numpy("normalized_score"), [p.normalized_score for p in expected]
        )
        compressed = client.infer("calibrated", [images], request_compression_algorithm="gzip")
        np.testing.assert_array_equal(compressed.as_numpy("score"), [p.score for p in expected])
        # JSON tensors both ways, one output asked for
        images = triton.InferInput("images", list(batch.shape), "UINT8")
        images.set_data_from_numpy(batch, binary_data=False)
        wanted = [triton.InferRequestedOutput("score", binary_data=False)]
        result = client.infer("calibrated", [images], outputs=wanted)
        assert [o["name"] for o in result.get_response()["outputs"]] == ["score"]
        np.testing.assert_array_equal(result.as_numpy("score"), np.float32([p.score for p in expected]))
    finally:
        client.close()


def test_plain_http_json_tensors_bit_identical(server: ServerProcess, serve_models, reference) -> None:
    batch = frames(2, 64, 72, seed=4)
    expected = reference(serve_models["small"]).predict(batch, batch_size=8)
    request = {
        "id": "plain",
        "inputs": [
            {"name": "images", "datatype": "UINT8", "shape": list(batch.shape), "data": batch.tolist()}
        ],
    }
    status, response = server.json("POST", "/v2/models/small/infer", request)
    assert status == 200 and response["id"] == "plain"
    outputs = {o["name"]: o for o in response["outputs"]}
    assert outputs["anomaly_map"]["shape"] == [2, 64, 64] and outputs["score"]["datatype"] == "FP32"
    np.testing.assert_array_equal(np.float32(outputs["score"]["data"]), [p.score for p in expected])
    maps = np.float32(outputs["anomaly_map"]["data"]).reshape(2, 64, 64)
    np.testing.assert_array_equal(maps, np.stack([p.anomaly_map for p in expected]))
    # the binary-data extension by hand, and /versions/{version}/infer
    body, headers = binary_infer(batch, outputs=["score"])
    version = response["model_version"]
    status, got_headers, raw = server.request(
        "POST", f"/v2/models/small/versions/{version}/infer", body, headers
    )
    assert status == 200 and got_headers["X-Padim-Model-Version"] == version
    _, out = parse_binary(raw, got_headers)
    np.testing.assert_array_equal(out["score"], [p.score for p in expected])


def test_predict_raw_and_multipart_match_in_process(
    server: ServerProcess, serve_models, reference, tmp_path: Path
) -> None:
    from padim_edge.images import load_image

    [path] = write_images(tmp_path, 1, seed=7)
    data = path.read_bytes()
    expected = reference(serve_models["small"]).predict(load_image(path))[0]
    status, raw = server.json("POST", "/v1/predict?model=small", data, headers={"Content-Type": "image/png"})
    assert status == 200
    assert raw["score"] == float(expected.score) and raw["model"] == "small" and "label" not in raw
    body, headers = multipart("image", path.name, data)
    assert server.json("POST", "/v1/predict?model=small", body, headers=headers) == (200, raw)


def test_predict_calibrated_label_map_and_overlay(server: ServerProcess, serve_models, reference) -> None:
    noise = frames(1, 90, 100, seed=5)[0]
    expected = reference(serve_models["calibrated"]).predict(noise)[0]
    assert expected.is_anomalous is True  # noise scores above the threshold
    status, reply = server.json("POST", "/v1/predict?model=calibrated", png(noise))
    assert status == 200
    assert reply["score"] == float(expected.score) and reply["label"] == "anomalous"
    assert reply["is_anomalous"] is True and reply["threshold"] == THRESHOLD
    assert reply["normalized_score"] == float(expected.normalized_score)
    for output, size in (("map", (64, 64)), ("overlay", None)):
        status, headers, body = server.request(
            "POST", f"/v1/predict?model=calibrated&output={output}", png(noise)
        )
        assert (
            status == 200
            and headers["Content-Type"] == "image/png"
            and headers["X-Padim-Label"] == "anomalous"
        )
        picture = np.asarray(Image.open(io.BytesIO(body)))
        assert picture.dtype == np.uint8 and picture.shape[2] == 3
        if size is not None:
            assert picture.shape[:2] == size
        else:  # the 64x64 view plus the colour bar and its labels, as padim-predict draws it
            assert picture.shape[0] == 64 and picture.shape[1] > 64


def _run_clients(count: int, work) -> list:
    """Run ``work(i)`` on ``count`` threads started together; returns results (or the exception)."""
    results: list = [None] * count
    barrier = threading.Barrier(count)

    def client(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            results[i] = work(i)
        except Exception as exc:  # reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    return results


def test_32_concurrent_clients_batched_by_size(server: ServerProcess, serve_models, reference) -> None:
    sizes = [(80, 96), (64, 64)]
    batches = [frames(1 + i % 2, *sizes[i % 2], seed=100 + i) for i in range(32)]
    model = reference(serve_models["small"])
    before = _batch_stats(server.metrics(), "small")

    def work(i: int):
        results = []
        for _ in range(3):
            body, headers = binary_infer(batches[i])
            status, got, raw = server.request("POST", "/v2/models/small/infer", body, headers)
            results.append((status, parse_binary(raw, got)[1] if status == 200 else raw))
        return results

    for i, results in enumerate(_run_clients(32, work)):
        assert not isinstance(results, Exception), results
        expected = model.predict(batches[i], batch_size=8)
        for status, out in results:
            assert status == 200, out
            # batch neighbours change the CPU EP's blocking: equal to float32 rounding, not bitwise
            np.testing.assert_allclose(out["score"], [p.score for p in expected], rtol=1e-5)
            np.testing.assert_allclose(
                out["anomaly_map"], np.stack([p.anomaly_map for p in expected]), rtol=1e-4, atol=1e-5
            )
    runs, frames_run = (a - b for a, b in zip(_batch_stats(server.metrics(), "small"), before, strict=True))
    assert frames_run == 3 * sum(len(b) for b in batches)
    assert runs < 3 * 32, "concurrent requests were never batched together"


def _batch_stats(text: str, model: str) -> tuple[int, int]:
    count = re.search(rf'padim_batch_size_count{{model="{model}"}} (\d+)', text)
    total = re.search(rf'padim_batch_size_sum{{model="{model}"}} ([\d.e+]+)', text)
    return (int(count.group(1)), int(float(total.group(1)))) if count and total else (0, 0)


def _gif() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frames(1, 8, 8)[0]).save(buffer, format="GIF")
    return buffer.getvalue()


def _infer_json(datatype: str, shape: list[int], data) -> bytes:
    return json.dumps(
        {"inputs": [{"name": "images", "datatype": datatype, "shape": shape, "data": data}]}
    ).encode()


SHORT_BINARY = (
    b'{"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1,2,2,3], '
    b'"parameters": {"binary_data_size": 12}}]}'
)
BAD_REQUESTS = [
    ("not an image", "/v1/predict?model=small", b"just some text, 31 bytes long..", {}, 400,
     "the body is not an image (31 bytes that are not PNG, JPEG, BMP or TIFF)"),
    ("GIF", "/v1/predict?model=small", _gif(), {}, 415, "image format GIF is not accepted"),
    ("truncated PNG", "/v1/predict?model=small", png(frames(1)[0])[:200], {}, 400,
     "the image cannot be decoded"),
    ("empty body", "/v1/predict?model=small", b"", {}, 400, "empty body"),
    ("unknown model v1", "/v1/predict?model=nope", png(frames(1)[0]), {}, 404, "unknown model 'nope'"),
    ("no model named", "/v1/predict", png(frames(1)[0]), {}, 400, "choose one with ?model=NAME"),
    ("bad output", "/v1/predict?model=small&output=gif", png(frames(1)[0]), {}, 400, "'gif' is not one of"),
    ("unknown model v2", "/v2/models/nope/infer", _infer_json("UINT8", [1, 2, 2, 3], [0] * 12), {}, 404,
     "unknown model 'nope'; this server has: calibrated, small"),
    ("malformed JSON", "/v2/models/small/infer", b'{"inputs": [', {}, 400, "malformed JSON"),
    ("wrong dtype", "/v2/models/small/infer", _infer_json("FP32", [1, 2, 2, 3], [0.5] * 12), {}, 400,
     "input 'images' has datatype 'FP32'; this model takes UINT8 [N, H, W, 3]"),
    ("wrong rank", "/v2/models/small/infer", _infer_json("UINT8", [2, 2, 3], [0] * 12), {}, 400,
     "has shape [2, 2, 3] (rank 3); expected rank 4, [N, H, W, 3] (add the batch dimension"),
    ("wrong channels", "/v2/models/small/infer", _infer_json("UINT8", [1, 2, 2, 4], [0] * 16), {}, 400,
     "has 4 channels in shape [1, 2, 2, 4]; expected 3"),
    ("data size", "/v2/models/small/infer", _infer_json("UINT8", [1, 2, 2, 3], [0] * 5), {}, 400,
     "'data' holds 5 values but shape [1, 2, 2, 3] needs 12"),
    ("values out of range", "/v2/models/small/infer", _infer_json("UINT8", [1, 1, 1, 3], [0, 256, 1]), {},
     400,
     "'data' must be integers 0-255"),
    ("unknown input", "/v2/models/small/infer", b'{"inputs": [{"name": "x"}]}', {}, 400,
     "this model has one input, 'images'; the request sent ['x']"),
    ("unknown output", "/v2/models/small/infer",
     b'{"inputs": [{"name": "images", "datatype": "UINT8", "shape": [1,1,1,3], "data": [1,2,3]}], '
     b'"outputs": [{"name": "is_anomalous"}]}', {}, 400,
     "unknown output 'is_anomalous': this model's outputs are ['anomaly_map', 'score']"),
    ("binary size", "/v2/models/small/infer", SHORT_BINARY + b"abc",
     {"Inference-Header-Content-Length": str(len(SHORT_BINARY))}, 400,
     "binary_data_size is 12 bytes; only 3 follow the JSON"),
    ("too large", "/v2/models/small/infer", b"0" * (LIMIT + 1), {}, 413,
     f"request body over the service's limit of {LIMIT} bytes (padim-serve --max-request-bytes)"),
    ("unknown endpoint", "/v3/anything", b"", {}, 404, "no endpoint /v3/anything"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "message"),
    [r[1:] for r in BAD_REQUESTS],
    ids=[r[0] for r in BAD_REQUESTS],
)
def test_bad_request_gets_json_error_and_server_keeps_serving(
    server: ServerProcess, path: str, body: bytes, headers: dict, status: int, message: str
) -> None:
    got, got_headers, raw = server.request("POST", path, body, headers)
    assert got == status, raw
    assert got_headers["Content-Type"] == "application/json"
    assert message in json.loads(raw)["error"]
    assert server.json("GET", "/v2/health/ready") == (200, {"ready": True})
    payload, headers = binary_infer(frames(1, 32, 32))
    assert server.request("POST", "/v2/models/small/infer", payload, headers)[0] == 200


def test_metrics_and_access_log(server: ServerProcess, serve_models, reference) -> None:
    noise = frames(4, 64, 64, seed=9)
    flagged = sum(bool(p.is_anomalous) for p in reference(serve_models["calibrated"]).predict(noise))
    text_before = server.metrics()
    body, headers = binary_infer(noise)
    assert server.request("POST", "/v2/models/calibrated/infer", body, headers)[0] == 200
    text = server.metrics()

    def value(text: str, pattern: str) -> float:
        found = re.search(re.escape(pattern) + r" ([\d.e+-]+)", text)
        return float(found.group(1)) if found else 0.0

    counter = 'padim_requests_total{model="calibrated",endpoint="infer",status="200"}'
    assert value(text, counter) == value(text_before, counter) + 1
    anomalies = 'padim_anomalies_total{model="calibrated"}'
    assert flagged == 4 and value(text, anomalies) == value(text_before, anomalies) + flagged
    assert 'padim_request_duration_seconds_bucket{model="calibrated",endpoint="infer",le="+Inf"}' in text
    assert 'padim_queue_depth{model="calibrated"} 0' in text
    assert 'padim_batch_size_bucket{model="calibrated",le="4"}' in text
    assert re.search(r'padim_model_info\{model="small",version="[0-9a-f]{12}",sha256="[0-9a-f]{64}"', text)
    for line in text.splitlines():  # exposition format: comments or `name{labels} value`
        assert line.startswith("# ") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? [\d.e+-]+", line), line
    lines = [line for line in server.log_lines() if line.get("path") == "/v2/models/calibrated/infer"]
    assert (
        lines
        and lines[-1]["status"] == 200
        and lines[-1]["frames"] == 4
        and lines[-1]["model"] == "calibrated"
    )
    assert set(lines[-1]) >= {"time", "client", "method", "status", "ms", "bytes_out", "version"}
    errors = [line for line in server.log_lines() if line.get("status") == 404 and "error" in line]
    assert all(line["error"] for line in errors)
