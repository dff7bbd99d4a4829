"""padim-serve on loopback against in-process ``PadimModel.predict``: requests/s, p50 / p99 latency.

R18-Rd100 (random-init), one 480x640 frame a request (``/v2`` binary tensor, ``/v1/predict`` PNG), closed-
loop clients in this process, rounds alternating in-process and server rows, the concurrency-1 overhead also
timed A/B call by call (docs/serve.md). Usage: ``python benchmarks/serve.py [--rounds 3] [--workdir DIR]``.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from typing import Any

import click
import harness as h
import numpy as np
import psutil
from PIL import Image

from padim_edge.bench.system import BackgroundLoad, wait_for_idle
from padim_edge.bench.system import package_version as version
from padim_edge.runtime import PadimModel
from padim_edge.serve.uploads import decode_image

HEIGHT, WIDTH = 480, 640
CONCURRENCY = (1, 4, 16)
SERVER_OPTIONS = ["--device", "cpu", "--max-batch", "8", "--max-queue", "256", "--no-access-log"]
Request = tuple[str, bytes, dict[str, str]]
#: The HTTP stack: uvicorn and the HTTP parser / event loop it picks (httptools and uvloop when installed).
HTTP_PACKAGES = ("uvicorn", "starlette", "httptools", "uvloop")
KINDS = {"v2": "server /v2 infer, binary tensor", "v1": "server /v1/predict, PNG"}


def _ready(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v2/health/ready")
        return conn.getresponse().status == 200
    except OSError:
        return False


@contextmanager
def serving(model: Path, workdir: Path) -> Iterator[tuple[int, Any]]:
    """padim-serve in a subprocess: ``(port, its psutil.Process)`` once it is ready; stopped afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = workdir / "server.log"
    command = [sys.executable, "-m", "padim_edge.serve.cli", f"m={model}", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command + SERVER_OPTIONS, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while not _ready(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise click.ClickException(f"padim-serve did not start: {log.read_text()[-1000:]}")
                time.sleep(0.2)
            yield port, psutil.Process(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def requests_for(frame: np.ndarray, encoded: bytes) -> dict[str, Request]:
    """``kind -> (path, body, headers)`` of one request carrying ``frame``."""
    tensor = {"name": "images", "datatype": "UINT8", "shape": [1, *frame.shape],
              "parameters": {"binary_data_size": frame.nbytes}}  # fmt: skip
    head = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    length = {"Inference-Header-Content-Length": str(len(head))}
    return {
        "v2": ("/v2/models/m/infer", head + frame.tobytes(), length),
        "v1": ("/v1/predict", encoded, {"Content-Type": "image/png"}),
    }


def poster(port: int, request: Request, failed: list[int]) -> tuple[Any, http.client.HTTPConnection]:
    """``(post, conn)``: ``post()`` sends ``request`` on keep-alive ``conn``; a non-200 joins ``failed``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post() -> None:
        conn.request("POST", *request[:2], request[2])
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            failed.append(response.status)

    return post, conn


def load(port: int, request: Request, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` closed-loop threads for ``seconds`` (after one warm-up request each)."""
    latencies, failed = [], []
    barrier, stop_at = threading.Barrier(clients + 1), [float("inf")]

    def client() -> None:
        post, conn = poster(port, request, failed)
        post()
        barrier.wait()
        while time.perf_counter() < stop_at[0]:
            latencies.append(h.clock(post))
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    for t in threads:
        t.join(timeout=seconds + 120)
    rps = round(len(latencies) / (time.perf_counter() - start), 2)
    return {"rps": rps, **h.percentiles(latencies), "requests": len(latencies), "failures": len(failed)}


def measure_round(model: Any, port: int, frame: np.ndarray, png: bytes, seconds: float, pairs: int) -> dict:
    """In-process rows, then every server row, then the call-by-call concurrency-1 pairs."""
    batch, requests = np.stack([frame] * 8), requests_for(frame, png)
    local = {"v2": lambda: model.predict(frame), "v1": lambda: model.predict(decode_image(png))}
    row: dict[str, Any] = {
        "in_process": {
            "predict": h.timed(local["v2"], seconds),
            "decode_predict": h.timed(local["v1"], seconds),
            "batch8": h.timed(lambda: model.predict(batch, batch_size=8), seconds, per_call=8),
        },
        "server": {k: {str(c): load(port, requests[k], c, seconds) for c in CONCURRENCY} for k in KINDS},
        "paired_c1": {},
    }
    for kind, call in local.items():  # a: in-process, b: the same frame through the server
        post, conn = poster(port, requests[kind], [])
        row["paired_c1"][kind] = h.paired(call, post, pairs)
        conn.close()
    return row


def markdown(result: dict[str, Any]) -> str:
    """The report: every row, then the goals."""
    ip, sv, g = result["in_process"], result["server"], result["goals"]

    cells = itemgetter("rps", "p50_ms", "p99_ms")
    body = [
        ["in-process predict(frame)", 1, *cells(ip["predict"])],
        ["in-process PNG decode + predict", 1, *cells(ip["decode_predict"])],
        ["in-process predict(8 frames, batch 8), ms per batch", "-", *cells(ip["batch8"])],
        *([label, c, *cells(sv[kind][str(c)])] for kind, label in KINDS.items() for c in CONCURRENCY),
    ]
    met = {True: "met", False: "not met"}
    lines = [
        *h.header(result, "padim-serve vs in-process predict (loopback)"),
        f"Model: {result['model']}; frame {HEIGHT}x{WIDTH} RGB; server `{result['server_command']}`; HTTP: "
        f"{result['http_stack']}. Server, load generator (one thread per client) and in-process runs share "
        f"the cores. Median of {result['rounds']} rounds of {result['row_seconds']} s per row, rounds "
        f"alternating in-process and server; other processes' CPU share (median): {result['background']}.",
        "",
        *h.table(["path", "concurrency", "requests/s (frames/s)", "p50 ms", "p99 ms"], body),
        "",
        f"- concurrency 16, /v2: {g['c16_rps']} requests/s = {g['c16_share']:.0%} of in-process batch-8 "
        f"{g['batch8_rps']} frames/s (goal >= 90 %): **{met[g['c16_met']]}** (/v1: {g['c16_v1_share']:.0%});",
        f"- concurrency 1, /v1 PNG, calls interleaved pair by pair: median overhead over in-process decode + "
        f"predict {g['c1_v1_paired_overhead_ms']} ms (goal <= 2 ms): **{met[g['c1_met']]}**; /v2 vs predict: "
        f"{g['c1_v2_paired_overhead_ms']} ms. Separate rows (not interleaved): /v1 {g['c1_v1_p50']} vs "
        f"{g['decode_predict_p50']} ms, /v2 {g['c1_v2_p50']} vs {g['predict_p50']} ms.",
        "",
        f"Failed requests: {result['failures']}.",
        "",
    ]
    if (result.get("background_share") or 0) > 0.3:
        lines += ["**Caution:** a busy machine: figures are slower and c1 differences within the noise.", ""]
    return "\n".join(lines)


def summary(per_round: list[dict[str, Any]], background: list[float]) -> dict[str, Any]:
    """The medians over rounds, the goals and the failures."""
    med = h.median_of(per_round)
    ip, sv, c1 = med["in_process"], med["server"], med["paired_c1"]
    goals = {
        "batch8_rps": ip["batch8"]["rps"], "c16_rps": sv["v2"]["16"]["rps"],
        "c16_share": sv["v2"]["16"]["rps"] / ip["batch8"]["rps"],
        "c16_v1_share": sv["v1"]["16"]["rps"] / ip["batch8"]["rps"],
        "predict_p50": ip["predict"]["p50_ms"], "decode_predict_p50": ip["decode_predict"]["p50_ms"],
        "c1_v1_p50": sv["v1"]["1"]["p50_ms"], "c1_v2_p50": sv["v2"]["1"]["p50_ms"],
        "c1_v1_paired_overhead_ms": c1["v1"]["overhead_p50_ms"],
        "c1_v2_paired_overhead_ms": c1["v2"]["overhead_p50_ms"],
    }  # fmt: skip
    goals.update(c16_met=goals["c16_share"] >= 0.9, c1_met=goals["c1_v1_paired_overhead_ms"] <= 2.0)
    share = statistics.median(background) if background else None
    failures = sum(r["server"][k][c]["failures"] for r in per_round for k in KINDS for c in sv[k])
    text = "unknown" if share is None else f"{share:.0%}"
    return {**med, "goals": goals, "failures": failures, "background": text, "background_share": share}


@click.command(context_settings=h.CONTEXT)
@click.option("--rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--seconds", type=click.FloatRange(min=1), default=6.0, show_default=True, help="Per row.")
@click.option("--pairs", type=click.IntRange(min=5), default=40, show_default=True, help="Paired c=1 calls.")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=300, show_default=True, help="Wait, s.")
@h.measurement("serve", markdown)
def main(work: Path, rounds: int, seconds: float, pairs: int, idle_timeout: float) -> dict[str, Any]:
    """padim-serve against in-process predict (see the module docstring)."""
    frame, buffer = h.textured_frame(np.random.default_rng(99), HEIGHT, WIDTH), io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(frame).save(buffer, format="PNG")
    (work / "train").mkdir(exist_ok=True)
    for i in range(0 if (work / "r18-rd100.onnx").is_file() else 16):
        Image.fromarray(h.textured_frame(rng, HEIGHT, WIDTH)).save(work / "train" / f"{i:02d}.png")
    model_path = h.r18_model(work / "train", work / "r18-rd100.onnx")
    model, per_round, background = PadimModel(model_path, device="cpu"), [], []
    wait_for_idle(timeout=idle_timeout, log=h.log)
    with serving(model_path, work) as (port, server):
        for r in range(rounds):
            if r:
                wait_for_idle(timeout=idle_timeout / 4, log=h.log)
            meter, server_cpu = BackgroundLoad(), sum(server.cpu_times()[:2])
            per_round.append(measure_round(model, port, frame, buffer.getvalue(), seconds, pairs))
            h.log(f"round {r + 1}/{rounds}: {per_round[-1]}")
            if (share := meter.fraction()) is not None:  # the server's own CPU time is not background
                wall = os.cpu_count() * (time.perf_counter() - meter.wall)
                background.append(max(0.0, share - (sum(server.cpu_times()[:2]) - server_cpu) / wall))
    return {
        "http_stack": ", ".join(f"{n} {version(n)}" if version(n) else f"no {n}" for n in HTTP_PACKAGES),
        "model": "R18-Rd100, resize 256, crop 224, random-init",
        "server_command": "padim-serve m=r18-rd100.onnx " + " ".join(SERVER_OPTIONS), "rounds": rounds,
        "row_seconds": seconds, **summary(per_round, background), "per_round": per_round,
    }  # fmt: skip


if __name__ == "__main__":
    main()
