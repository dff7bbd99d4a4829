"""Prometheus text exposition (format 0.0.4) for ``GET /metrics``, written by hand (no client library).

Metrics (``model`` is the model's name, empty for requests that name none):

* ``padim_requests_total{model, endpoint, status}``: requests answered, by HTTP status;
* ``padim_request_duration_seconds{model, endpoint}``: latency histogram, request in to response out;
* ``padim_queue_depth{model}``: frames waiting for a batch (gauge, read at scrape time);
* ``padim_batch_size{model}``: frames per session run (histogram);
* ``padim_frames_total{model}`` and ``padim_anomalies_total{model}``: frames scored and frames the
  model's baked threshold flagged (calibrated models only);
* ``padim_model_info{model, version, sha256, device}``: 1 per loaded model;
* ``padim_reloads_total{model, result}``: reloads, ``ok`` or ``failed``.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

#: Latency buckets in seconds (edge-box inference: a few ms to a few s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Batch-size buckets (frames).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

Labels = tuple  # label values, in the metric's label-name order


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: tuple[str, ...], values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value


class Metrics:
    """Counters and histograms of the service; thread-safe (batches are counted on runner threads).

    Attributes:
        depth_source: Called at scrape time, ``{model: frames waiting}`` (the registry sets it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.depth_source: Callable[[], dict[str, int]] | None = None
        self.requests: dict[Labels, int] = {}
        self.latency: dict[Labels, _Histogram] = {}
        self.batches: dict[Labels, _Histogram] = {}
        self.frames: dict[Labels, int] = {}
        self.anomalies: dict[Labels, int] = {}
        self.reloads: dict[Labels, int] = {}
        self.models: dict[str, Labels] = {}

    def request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        with self._lock:
            key = (model, endpoint, str(status))
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency.setdefault((model, endpoint), _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, model: str, size: int) -> None:
        """Count one session run of ``size`` frames."""
        with self._lock:
            self.batches.setdefault((model,), _Histogram(BATCH_BUCKETS)).observe(size)

    def scored(self, model: str, frames: int, anomalies: int) -> None:
        """Count frames scored and how many were flagged anomalous."""
        with self._lock:
            self.frames[(model,)] = self.frames.get((model,), 0) + frames
            self.anomalies[(model,)] = self.anomalies.get((model,), 0) + anomalies

    def reload(self, model: str, ok: bool) -> None:
        """Count one reload attempt."""
        with self._lock:
            key = (model, "ok" if ok else "failed")
            self.reloads[key] = self.reloads.get(key, 0) + 1

    def model_loaded(self, model: str, version: str, sha256: str, device: str) -> None:
        """Record the version a model name now serves (``padim_model_info``)."""
        with self._lock:
            self.models[model] = (model, version, sha256, device)

    def render(self) -> str:
        """The exposition text."""
        out: list[str] = []
        with self._lock:
            self._counter(out, "padim_requests_total", "Requests answered, by HTTP status.",
                          ("model", "endpoint", "status"), self.requests)  # fmt: skip
            self._histogram(out, "padim_request_duration_seconds", "Request latency in seconds.",
                            ("model", "endpoint"), self.latency)  # fmt: skip
            depths = self.depth_source() if self.depth_source else {}
            out.append("# HELP padim_queue_depth Frames waiting for a batch.")
            out.append("# TYPE padim_queue_depth gauge")
            out.extend(f'padim_queue_depth{{model="{_escape(m)}"}} {d}' for m, d in sorted(depths.items()))
            self._histogram(out, "padim_batch_size", "Frames per session run.", ("model",), self.batches)
            self._counter(out, "padim_frames_total", "Frames scored.", ("model",), self.frames)
            self._counter(out, "padim_anomalies_total", "Frames flagged anomalous by the model's threshold.",
                          ("model",), self.anomalies)  # fmt: skip
            self._counter(out, "padim_reloads_total", "Model reloads, ok or failed.", ("model", "result"),
                          self.reloads)  # fmt: skip
            info = {labels: 1 for labels in self.models.values()}
            out.append("# HELP padim_model_info The model version each name serves (always 1).")
            out.append("# TYPE padim_model_info gauge")
            names = ("model", "version", "sha256", "device")
            out.extend(f"padim_model_info{_labels(names, k)} {v}" for k, v in sorted(info.items()))
        return "\n".join(out) + "\n"

    @staticmethod
    def _counter(out: list[str], name: str, help_text: str, names: tuple[str, ...], values: dict) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} counter")
        out.extend(f"{name}{_labels(names, k)} {v}" for k, v in sorted(values.items()))

    @staticmethod
    def _histogram(out: list[str], name: str, help_text: str, names: tuple[str, ...], values: dict) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} histogram")
        for key, hist in sorted(values.items()):
            running = 0
            for bound, count in zip((*hist.buckets, float("inf")), hist.counts):
                running += count
                le = "+Inf" if bound == float("inf") else _number(bound)
                bucket = _labels(names, key, 'le="' + le + '"')
                out.append(f"{name}_bucket{bucket} {running}")
            out.append(f"{name}_sum{_labels(names, key)} {hist.total!r}")
            out.append(f"{name}_count{_labels(names, key)} {running}")
