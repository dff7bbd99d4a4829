"""A padim-serve process on a free loopback port, for tests (always stopped by the fixture)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Seconds a server gets to load its models and answer /v2/health/ready.
START_SECONDS = 60.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m padim_edge.serve.cli MODELS --device cpu --port PORT OPTIONS`` (stderr to ``log``)."""

    def __init__(self, models: list[str], options: list[str], *, log: Path) -> None:
        self.models, self.options, self.log = models, options, log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "padim_edge.serve.cli", *self.models, "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--device", "cpu", "--threads", "1", *self.options]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as handle:
            self.proc = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"padim-serve exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}"
                )
            try:
                if self.request("GET", "/v2/health/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"padim-serve did not become ready in {START_SECONDS} s: {self.log.read_text()[-2000:]}"
        )

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, http.client.HTTPMessage, bytes]:  # fmt: skip
        """One request on a fresh connection: ``(status, headers, body)`` (headers: case-insensitive)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        status, _, raw = self.request(method, path, data, **kwargs)
        return status, json.loads(raw)

    def metrics(self) -> str:
        return self.request("GET", "/metrics")[2].decode()

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines the server wrote (access log and events)."""
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out
