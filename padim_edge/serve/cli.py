"""``padim-serve``: serve models over HTTP (Open Inference Protocol / KServe v2, and ``/v1/predict``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from padim_edge.cli_options import command_settings, device_option, threads_option

#: The serve extra's modules (checked before anything imports them).
SERVE_MODULES = ("starlette", "uvicorn")


def _require_serve() -> None:
    from padim_edge.extras import MissingExtraError, require

    try:
        require("padim-serve", "runtime")
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from exc
    absent = [m for m in SERVE_MODULES if importlib.util.find_spec(m) is None]
    if absent:
        raise click.ClickException(
            f"padim-serve needs {', '.join(absent)}, which is not installed: pip install 'padim-edge[serve]'"
        )


@click.command(
    context_settings=command_settings(100),
    epilog="\b\nEndpoints:\n"
    "  GET  /v2/health/live, /v2/health/ready     liveness, readiness\n"
    "  GET  /v2/models/NAME                       inputs, outputs, padim metadata, SHA-256\n"
    "  POST /v2/models/NAME/infer                 uint8 [N,H,W,3] in (JSON or binary tensors)\n"
    "  POST /v2/repository/models/NAME/load       reload NAME from its file (SIGHUP: all models)\n"
    "  POST /v1/predict?model=NAME&output=json|map|overlay   an encoded image (raw or multipart)\n"
    "  GET  /metrics                              Prometheus text\n"
    "\b\nSIGTERM stops accepting connections, finishes the requests in flight, then exits.",
)
@click.argument("models", metavar="[NAME=]MODEL...", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@device_option()
@threads_option("CPU intra-op threads per model (default: all cores).")
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Most frames per session run; concurrent requests for one model and frame size share a run.",
)
@click.option(
    "--max-delay-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Wait up to this long for a batch to fill. 0: run as soon as the model is free (frames that "
    "arrive during a run form the next batch).",
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Most frames waiting per model; more get 503 with Retry-After.",
)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(min=1024),
    default=64 << 20,
    show_default=True,
    help="Largest request body (413 past it).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds a request may wait for its result (504 past it).",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One JSON line per request on stderr.",
)
def main(
    models: tuple[str, ...],
    host: str,
    port: int,
    device: str,
    threads: int | None,
    max_batch: int,
    max_delay_ms: float,
    max_queue: int,
    max_request_bytes: int,
    timeout: float,
    access_log: bool,
) -> None:
    """Serve padim-edge MODELs over HTTP until SIGTERM.

    Each MODEL is an .onnx file, served under its file name without .onnx, or NAME=FILE. Every
    response names the model version that answered (the first 12 hex digits of the file's SHA-256).
    """
    _require_serve()
    import uvicorn

    from padim_edge.serve.app import build_app
    from padim_edge.serve.metrics import Metrics
    from padim_edge.serve.registry import (
        BatchSettings,
        ModelSettings,
        Registry,
        ReloadError,
        open_entry,
        parse_model_args,
    )
    from padim_edge.serve.routes import Limits
    from padim_edge.serve.server import DrainingServer

    try:
        paths: dict[str, Path] = parse_model_args(models)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="MODEL") from exc
    settings = ModelSettings(device=device, threads=threads)
    entries = {}
    for name, path in paths.items():
        try:
            entries[name] = open_entry(name, path, settings)
        except ReloadError as exc:
            raise click.ClickException(f"model '{name}': {exc}") from exc
    batching = BatchSettings(max_batch=max_batch, max_delay=max_delay_ms / 1000.0, max_queue=max_queue)
    registry = Registry(entries, settings, batching, Metrics())
    service = build_app(registry, registry.metrics, Limits(max_request_bytes, timeout), access_log=access_log)
    config = uvicorn.Config(
        service.app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="on",
        server_header=False,
    )
    DrainingServer(config, service).run()


if __name__ == "__main__":  # python -m padim_edge.serve.cli
    main()
