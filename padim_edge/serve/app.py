"""The ASGI application: routes, JSON errors, the access log and metrics, start and drain.

:func:`build_app` returns a plain ASGI callable (Starlette inside, wrapped by :class:`AccessLog`) for
uvicorn. The lifespan starts every model's batcher, installs the ``SIGHUP`` reload, and on shutdown
(uvicorn's ``SIGTERM`` handling: stop accepting, finish open requests) scores whatever is still
queued before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from padim_edge.serve.errors import RequestError
from padim_edge.serve.metrics import Metrics
from padim_edge.serve.registry import Registry, ReloadError
from padim_edge.serve.routes import Handlers, Limits, json_response

#: The access log's logger: one JSON object per request on stderr (``padim-serve --no-access-log``).
ACCESS_LOGGER = "padim_edge.serve.access"
#: Events (start, reload, drain): JSON lines too.
EVENT_LOGGER = "padim_edge.serve.events"


def _json_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def _now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def log_event(event: str, **fields: Any) -> None:
    """One JSON line on stderr: ``{"time", "event", ...}``."""
    _json_logger(EVENT_LOGGER).info(json.dumps({"time": _now(), "event": event, **fields}))


class AccessLog:
    """ASGI middleware: one JSON access-log line and the request metrics per HTTP request.

    Fields: ``time``, ``client``, ``method``, ``path``, ``status``, ``ms``, ``bytes_out``, and, when
    the request named one, ``model``, ``version``, ``frames``; ``error`` for refused requests.
    """

    def __init__(self, app: Any, metrics: Metrics, *, log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.logger = _json_logger(ACCESS_LOGGER) if log else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 500, "bytes": 0}

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            record = scope.get("padim", {})
            model, endpoint = record.get("model", ""), record.get("endpoint", "other")
            self.metrics.request(model, endpoint, state["status"], seconds)
            if self.logger is not None:
                client = scope.get("client")
                line = {
                    "time": _now(),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": state["status"],
                    "ms": round(seconds * 1000, 3),
                    "bytes_out": state["bytes"],
                    **{k: v for k, v in record.items() if k != "endpoint"},
                }
                self.logger.info(json.dumps(line))


def _error_response(request: Request, status: int, message: str, headers: dict[str, str] | None) -> Response:
    request.scope.setdefault("padim", {}).setdefault("endpoint", "other")
    request.scope["padim"]["error"] = message
    return json_response({"error": message}, status, headers)


async def _request_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestError)
    return _error_response(request, exc.status, exc.message, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no endpoint {request.url.path}; see GET /v2, /v2/models/NAME, POST /v1/predict"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return _error_response(request, exc.status_code, message, dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    return _error_response(request, 500, f"internal error: {type(exc).__name__}: {exc}"[:500], None)


class Service:
    """The ASGI application (``app``) and the drain it starts when the server is told to stop.

    Attributes:
        app: What uvicorn serves.
    """

    def __init__(self, app: Any, registry: Registry, handlers: Handlers) -> None:
        self.app = app
        self._registry = registry
        self._handlers = handlers

    def begin_drain(self) -> None:
        """Readiness turns 503 and queued frames run without waiting for batches to fill.

        Call on the event loop (uvicorn's signal handler: ``loop.call_soon_threadsafe``); uvicorn
        itself stops accepting connections and waits for the open requests.
        """
        if self._handlers.draining:
            return
        self._handlers.draining = True
        self._registry.flush()
        log_event("draining", queued_frames=sum(self._registry.queue_depths().values()))


def build_app(registry: Registry, metrics: Metrics, limits: Limits, *, access_log: bool = True) -> Service:
    """The service's ASGI application, and its drain.

    Args:
        registry: The opened models (batchers not started yet; the lifespan starts them).
        metrics: The metrics the routes and the access log count into.
        limits: Per-request limits.
        access_log: Write one JSON line per request on stderr.
    """
    handlers = Handlers(registry, metrics, limits)

    async def reload_all() -> None:
        for name in list(registry.entries):
            try:
                entry = await registry.reload(name)
                log_event("reload", model=name, version=entry.version, sha256=entry.sha256)
            except ReloadError as exc:
                log_event("reload_failed", model=name, error=str(exc))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        registry.start()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(reload_all()))
        for name, entry in sorted(registry.entries.items()):
            log_event("serving", model=name, version=entry.version, file=str(entry.path),
                      providers=list(entry.model.providers))  # fmt: skip
        yield
        service.begin_drain()
        await registry.close()
        log_event("stopped")

    v2 = "/v2/models/{name}"
    routes = [
        Route("/v2", handlers.server_metadata, methods=["GET"]),
        Route("/v2/health/live", handlers.live, methods=["GET"]),
        Route("/v2/health/ready", handlers.ready, methods=["GET"]),
        Route(v2, handlers.model_metadata, methods=["GET"]),
        Route(v2 + "/versions/{version}", handlers.model_metadata, methods=["GET"]),
        Route(v2 + "/ready", handlers.model_ready, methods=["GET"]),
        Route(v2 + "/versions/{version}/ready", handlers.model_ready, methods=["GET"]),
        Route(v2 + "/infer", handlers.infer, methods=["POST"]),
        Route(v2 + "/versions/{version}/infer", handlers.infer, methods=["POST"]),
        Route("/v2/repository/index", handlers.repository_index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", handlers.load, methods=["POST"]),
        Route("/v1/predict", handlers.predict, methods=["POST"]),
        Route("/metrics", handlers.metrics_text, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            RequestError: _request_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
    )
    service = Service(AccessLog(app, metrics, log=access_log), registry, handlers)
    return service
