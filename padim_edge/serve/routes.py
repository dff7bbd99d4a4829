"""The HTTP endpoints: Open Inference Protocol (``/v2``), ``/v1/predict``, ``/metrics``.

Every handler refuses a bad request with a :class:`~padim_edge.serve.errors.RequestError`, answered
as ``{"error": "..."}`` by :mod:`padim_edge.serve.app`. Each one notes the model it served in the
request's scope (``padim`` dict) for the access log and the metrics.
"""

from __future__ import annotations

import asyncio
import io
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from padim_edge import __version__, graph_names
from padim_edge.serve import protocol
from padim_edge.serve.batching import Overloaded
from padim_edge.serve.errors import RequestError
from padim_edge.serve.metrics import Metrics
from padim_edge.serve.registry import ModelEntry, Registry, ReloadError
from padim_edge.serve.uploads import decode_image, image_bytes

#: Bodies up to this size are decoded on the event loop; larger JSON tensors go to a worker thread.
INLINE_BYTES = 256 << 10
#: ``/v1/predict?output=``: what the response carries.
PREDICT_OUTPUTS = ("json", "map", "overlay")


@dataclass(frozen=True)
class Limits:
    """Per-request limits (``--max-request-bytes``, ``--timeout`` in seconds)."""

    max_request_bytes: int = 64 << 20
    timeout: float = 30.0


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response."""
    import json

    body = json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def note(request: Request, endpoint: str, model: str = "", **fields: Any) -> dict[str, Any]:
    """Record what the request was for (access log and metrics labels); returns the record."""
    record = request.scope.setdefault("padim", {})
    record["endpoint"] = endpoint
    if model:
        record["model"] = model
    record.update(fields)
    return record


class Handlers:
    """The route handlers of one service.

    Args:
        registry: The served models.
        metrics: Where results are counted.
        limits: Request size and time limits.
    """

    def __init__(self, registry: Registry, metrics: Metrics, limits: Limits) -> None:
        self.registry = registry
        self.metrics = metrics
        self.limits = limits
        self.draining = False

    # ------------------------------------------------------------------ helpers
    async def read_body(self, request: Request) -> bytes:
        """The request body, refused past ``--max-request-bytes`` (gzip / deflate bodies inflated).

        Raises:
            RequestError: 413 for a body (or its inflated form) over the limit.
        """
        limit = self.limits.max_request_bytes
        too_large = RequestError(
            413, f"request body over the service's limit of {limit} bytes (padim-serve --max-request-bytes)"
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > 4 * limit + (1 << 20):
            raise too_large  # not worth reading; the connection is closed after the answer
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
        if size > limit:
            raise too_large
        body = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding in ("gzip", "deflate"):
            inflater = zlib.decompressobj(31 if encoding == "gzip" else 15)
            try:
                body = inflater.decompress(body, limit + 1)
            except zlib.error as exc:
                raise RequestError(400, f"the {encoding} body cannot be inflated: {exc}") from None
            if len(body) > limit:
                raise too_large
        elif encoding != "identity":
            raise RequestError(415, f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
        return body

    async def score(
        self, request: Request, entry: ModelEntry, frames: np.ndarray, timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Queue ``frames`` on ``entry``'s batcher and wait for their outputs.

        Args:
            timeout: The request's own limit in seconds (``--timeout`` when ``None`` or longer).

        Raises:
            RequestError: 413 for more frames than the queue holds, 503 with Retry-After when the
                queue is full, 504 past the timeout.
        """
        assert entry.batcher is not None
        limit = self.limits.timeout if timeout is None else min(timeout, self.limits.timeout)
        if len(frames) > entry.batcher.max_queue:
            raise RequestError(
                413, f"the request holds {len(frames)} frames, more than the queue holds "
                f"(--max-queue {entry.batcher.max_queue}); send fewer frames per request"
            )  # fmt: skip
        try:
            future = entry.batcher.enqueue(frames)
        except Overloaded as exc:
            raise RequestError(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None
        note(
            request, request.scope["padim"]["endpoint"], entry.name, version=entry.version, frames=len(frames)
        )
        try:
            outputs = await asyncio.wait_for(future, limit)
        except asyncio.TimeoutError:
            raise RequestError(
                504, f"model '{entry.name}' did not answer within the timeout of {limit:g} s "
                f"({entry.batcher.queued} frames waiting); retry, or raise --timeout"
            ) from None  # fmt: skip
        flags = outputs.get(graph_names.IS_ANOMALOUS)
        anomalies = int(np.count_nonzero(flags)) if flags is not None else 0
        self.metrics.scored(entry.name, len(frames), anomalies)
        return outputs

    @staticmethod
    def version_headers(entry: ModelEntry) -> dict[str, str]:
        """Headers naming the model version that answered."""
        return {
            "X-Padim-Model": entry.name,
            "X-Padim-Model-Version": entry.version,
            "X-Padim-Sha256": entry.sha256,
        }

    # ------------------------------------------------------------------ v2: health and metadata
    async def server_metadata(self, request: Request) -> Response:
        note(request, "metadata")
        extensions = ["binary_tensor_data", "model_repository"]
        return json_response({"name": "padim-serve", "version": __version__, "extensions": extensions})

    async def live(self, request: Request) -> Response:
        note(request, "health")
        return json_response({"live": True})

    async def ready(self, request: Request) -> Response:
        note(request, "health")
        ready = not self.draining and bool(self.registry.entries)
        return json_response({"ready": ready}, 200 if ready else 503)

    async def model_ready(self, request: Request) -> Response:
        name = request.path_params["name"]
        note(request, "health", name)
        self.registry.get(name, request.path_params.get("version"))
        ready = not self.draining
        return json_response({"name": name, "ready": ready}, 200 if ready else 503)

    async def model_metadata(self, request: Request) -> Response:
        name = request.path_params["name"]
        note(request, "metadata", name)
        entry = self.registry.get(name, request.path_params.get("version"))
        model = entry.model
        size = model.info.input_size
        inputs = [{"name": graph_names.INPUT, "datatype": "UINT8", "shape": [-1, *(size or (-1, -1)), 3]}]
        outputs = [{"name": n, "datatype": t, "shape": shape} for n, t, shape in entry.outputs]
        body = {
            "name": name,
            "versions": [entry.version],
            "platform": "onnxruntime_onnx",
            "inputs": inputs,
            "outputs": outputs,
            "padim": {**entry.describe(), "last_reload_error": self.registry.reload_errors.get(name)},
        }
        return json_response(body, headers=self.version_headers(entry))

    # ------------------------------------------------------------------ v2: inference
    async def infer(self, request: Request) -> Response:
        name, version = request.path_params["name"], request.path_params.get("version")
        note(request, "infer", name)
        body = await self.read_body(request)  # first: a refusal before the body is read can reset the client
        entry = self.registry.get(name, version)
        header = request.headers.get(protocol.HEADER_LENGTH)
        outputs = list(entry.model.outputs)
        args = (body, header)
        kwargs = {"input_name": graph_names.INPUT, "output_names": outputs}
        if len(body) > INLINE_BYTES and header is None:  # JSON tensors: slow to parse, off the loop
            decoded = await run_in_threadpool(protocol.decode_infer_request, *args, **kwargs)
        else:
            decoded = protocol.decode_infer_request(*args, **kwargs)
        entry = self.registry.get(name, version)  # a reload may have swapped it while the body came
        for out, _ in decoded.outputs or []:
            if out not in entry.model.outputs:
                raise RequestError(
                    400, f"unknown output {out!r}: this model's outputs are {entry.model.outputs}"
                )
        entry.check_frames(decoded.frames)
        results = await self.score(request, entry, decoded.frames, decoded.timeout)
        encode = {
            "model_name": name,
            "model_version": entry.version,
            "request_id": decoded.id,
            "outputs": results,
            "requested": decoded.outputs,
            "binary_default": decoded.binary_default,
            "parameters": {"sha256": entry.sha256},
        }
        chosen = decoded.outputs or [(n, decoded.binary_default) for n in results]
        if all(binary for _, binary in chosen):
            payload, head = protocol.encode_infer_response(**encode)
        else:  # JSON floats: slow for big anomaly maps, off the loop
            payload, head = await run_in_threadpool(lambda: protocol.encode_infer_response(**encode))
        headers = self.version_headers(entry)
        if head is None:
            return Response(payload, headers=headers, media_type="application/json")
        headers[protocol.HEADER_LENGTH] = str(head)
        return Response(payload, headers=headers, media_type="application/octet-stream")

    # ------------------------------------------------------------------ v2: model repository (reload)
    async def repository_index(self, request: Request) -> Response:
        note(request, "repository")
        return json_response(
            [
                {"name": n, "version": e.version, "state": "READY"}
                for n, e in sorted(self.registry.entries.items())
            ]
        )

    async def load(self, request: Request) -> Response:
        name = request.path_params["name"]
        note(request, "repository", name)
        await self.read_body(request)  # a v2 client may send a body (config, files); they are not used
        old = self.registry.get(name)
        try:
            entry = await self.registry.reload(name)
        except ReloadError as exc:
            raise RequestError(400, str(exc)) from None
        note(request, "repository", name, version=entry.version)
        body = {
            "name": name,
            "version": entry.version,
            "sha256": entry.sha256,
            "previous_version": old.version,
        }
        return json_response(body, headers=self.version_headers(entry))

    # ------------------------------------------------------------------ v1: one encoded image
    async def predict(self, request: Request) -> Response:
        note(request, "predict")
        body = await self.read_body(request)  # first: a refusal before the body is read can reset the client
        query = request.query_params
        name = query.get("model")
        if name is None:
            if len(self.registry.entries) != 1:
                names = ", ".join(sorted(self.registry.entries))
                raise RequestError(400, f"several models are served ({names}): choose one with ?model=NAME")
            name = next(iter(self.registry.entries))
        note(request, "predict", name)
        self.registry.get(name)
        output = query.get("output", "json")
        if output not in PREDICT_OUTPUTS:
            raise RequestError(400, f"?output={output!r} is not one of {', '.join(PREDICT_OUTPUTS)}")
        data = image_bytes(body, request.headers.get("content-type", ""))
        frame = await run_in_threadpool(decode_image, data)
        entry = self.registry.get(name)
        batch = frame[None]
        entry.check_frames(batch)
        results = await self.score(request, entry, batch)
        score = float(results[graph_names.SCORE][0])
        reply: dict[str, Any] = {
            "model": name,
            "version": entry.version,
            "sha256": entry.sha256,
            "score": score,
        }
        if entry.calibrated:
            flag = bool(results[graph_names.IS_ANOMALOUS][0])
            reply["is_anomalous"] = flag
            reply["label"] = "anomalous" if flag else "ok"
            reply["normalized_score"] = float(results[graph_names.NORMALIZED_SCORE][0])
            reply["threshold"] = entry.model.info.threshold
        headers = self.version_headers(entry)
        if output == "json":
            return json_response(reply, headers=headers)
        anomaly_map = results[graph_names.ANOMALY_MAP][0]
        png = await run_in_threadpool(_picture, entry, frame, anomaly_map, reply, output)
        headers["X-Padim-Score"] = repr(score)
        if "label" in reply:
            headers["X-Padim-Label"] = reply["label"]
        return Response(png, headers=headers, media_type="image/png")

    # ------------------------------------------------------------------ metrics
    async def metrics_text(self, request: Request) -> Response:
        note(request, "metrics")
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _picture(
    entry: ModelEntry, frame: np.ndarray, anomaly_map: np.ndarray, reply: dict[str, Any], kind: str
) -> bytes:
    """The anomaly map as a colour heat map, or the annotated overlay (as padim-predict draws it), PNG."""
    from PIL import Image

    from padim_edge.geometry import Geometry
    from padim_edge.visualize import ColourScale, annotated_overlay, colorize, colour_scale

    info = entry.model.info
    scale = colour_scale(info) or ColourScale(
        float(anomaly_map.min()), max(float(anomaly_map.max()), 1e-6), "this image's range"
    )
    if kind == "map":
        picture = colorize(anomaly_map, vmin=scale.low, vmax=scale.high)
    else:
        view = Geometry(info.resize, info.crop).image_view(frame)
        label = None if "label" not in reply else ("ANOMALOUS" if reply["is_anomalous"] else "ok")
        picture = annotated_overlay(view, anomaly_map, scale, score=reply["score"], label=label)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()
