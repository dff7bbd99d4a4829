"""The PNG plot of a benchmark: latency per image and throughput against batch size (matplotlib)."""

from __future__ import annotations

import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from padim_edge import atomic
from padim_edge.bench.config import BenchResult


def _thread_order(label: str) -> tuple[int, int]:
    """Sort ``"2t"`` after ``"1t"``, GPU rows last."""
    return (1, 0) if label == "gpu" else (0, int(label.rstrip("t")))


def plot(result: BenchResult, path: str | Path) -> Path:
    """Latency per image and throughput against batch size, one line per model/variant/provider/threads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    series: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in result.rows:
        threads = "gpu" if row["threads"] is None else f"{row['threads']}t"
        key = (
            row["model"],
            row["variant"],
            row["provider"].replace("ExecutionProvider", ""),
            threads,
            row["frame"],
        )
        series[key].append(row)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    # Colour: model + variant + provider (+ frame); line style: thread count; marker: variant.
    colours = sorted({(k[0], k[1], k[2], k[4]) for k in series})
    palette = plt.get_cmap("tab10" if len(colours) <= 10 else "tab20")
    threads = sorted({k[3] for k in series}, key=_thread_order)
    thread_styles = {label: ["-", "--", ":", "-."][i % 4] for i, label in enumerate(threads)}
    markers = {"fused": "o", "backbone": "s", "eager": "^"}
    for key, points in sorted(series.items()):
        points.sort(key=lambda r: r["batch"])
        batches = [r["batch"] for r in points]
        label = " · ".join(key[:4]) + ("" if key[4] == "224x224" else f" · {key[4]}")
        style = {
            "color": palette(colours.index((key[0], key[1], key[2], key[4])) % palette.N),
            "linestyle": thread_styles[key[3]],
            "marker": markers.get(key[1], "D"),
            "markersize": 4,
            "label": label,
        }
        left.plot(batches, [r["per_image_ms"]["p50"] for r in points], **style)
        right.plot(batches, [r["images_per_s"] for r in points], **style)
    all_batches = sorted({r["batch"] for r in result.rows})
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis, ylabel in ((left, "p50 latency per image (ms)"), (right, "throughput (images / s)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xticks(all_batches)
        axis.xaxis.set_major_formatter(plain)
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.yaxis.set_major_formatter(plain)
        axis.set_xlabel("batch size")
        axis.set_ylabel(ylabel)
        axis.grid(True, which="both", alpha=0.3)
    left.set_title("Latency per image")
    right.set_title("Throughput")
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    cpu = result.machine.get("cpu", "")
    fig.suptitle(f"PaDiM end to end, {cpu}, onnxruntime {result.machine.get('onnxruntime')}", fontsize=10)
    rows_of_legend = math.ceil(len(series) / 3)
    fig.tight_layout(rect=(0, min(0.45, 0.04 * rows_of_legend + 0.02), 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=90, format="png")
    atomic.write_bytes(path, buffer.getvalue())
    plt.close(fig)
    return path
