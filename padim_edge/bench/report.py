"""Turn benchmark rows into ratios, target checks, JSON, a markdown report and a plot.

Ratios use the median (p50) time per image of rows measured in the same run, on the same device,
with the same thread count, batch size and frame size:

* head overhead = fused end-to-end / truncated backbone alone (what the Mahalanobis head and
  anomaly map add on top of the CNN; 1.0 would be free),
* speed-up = PyTorch eager module / fused ONNX graph.
"""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from padim_edge import atomic
from padim_edge.bench.runner import CONTENDED, BenchResult

#: The PaDiM paper's Table VII (Defard et al., ICPR 2021): seconds per image on one laptop CPU.
PAPER_HARDWARE = "Intel i7-4710HQ CPU @ 2.50GHz (paper)"
PAPER_TABLE7: list[dict[str, Any]] = [
    {"method": "SPADE", "seconds_per_image": 7.10},
    {"method": "VAE", "seconds_per_image": 0.21},
    {"method": "PaDiM R18-Rd100", "seconds_per_image": 0.23},
    {"method": "PaDiM WR50-Rd550", "seconds_per_image": 0.95},
]
#: anomalib's own ONNX export of PaDiM R18-Rd100 on this class of machine: quoted in the issue, NOT measured.
ANOMALIB_QUOTED: dict[str, Any] = {
    "model": "R18-Rd100",
    "what": "anomalib's ONNX export of the same PaDiM, CPU, as quoted in the issue (not measured here)",
    "ms_per_image": {"1": 26.0, "8": 23.0},
}
#: The issue's targets, checked on R18-Rd100, CPU EP, 2 threads, 224 frames.
TARGET_THREADS = 2
TARGETS = (
    ("head overhead (fused / backbone alone), batch 1", "overhead", 1, "<=", 1.5),
    ("head overhead (fused / backbone alone), batch 8", "overhead", 8, "<=", 1.25),
    ("speed-up (PyTorch eager / fused), batch 1", "speedup", 1, ">=", 3.0),
)


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["model"], row["device"], row["threads_label"], row["batch"], row["frame"])


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fused vs backbone-alone vs eager per (model, device, threads, batch, frame), from p50 per image."""
    groups: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        groups[_key(row)].setdefault(row["variant"], row)
    out = []
    for (model, device, threads, batch, frame), variants in groups.items():
        fused, backbone, eager = (variants.get(v) for v in ("fused", "backbone", "eager"))
        ms = {
            v: (r["per_image_ms"]["p50"] if r else None)
            for v, r in zip(("fused", "backbone", "eager"), (fused, backbone, eager), strict=True)
        }
        out.append(
            {
                "model": model,
                "device": device,
                "threads_label": threads,
                "threads": next(iter(variants.values()))["threads"],
                "batch": batch,
                "frame": frame,
                "fused_ms_per_image": ms["fused"],
                "backbone_ms_per_image": ms["backbone"],
                "eager_ms_per_image": ms["eager"],
                "head_overhead": ms["fused"] / ms["backbone"] if ms["fused"] and ms["backbone"] else None,
                "speedup_vs_eager": ms["eager"] / ms["fused"] if ms["fused"] and ms["eager"] else None,
                "background_cpu": max((r.get("background_cpu") or 0.0) for r in variants.values()),
            }
        )
    return out


def targets(rows: list[dict[str, Any]], *, frame: str = "224x224") -> list[dict[str, Any]]:
    """The issue's checks on R18-Rd100 fp32, CPU EP, 2 threads (else the largest thread count measured)."""
    candidates = [
        r for r in ratios(rows) if r["model"] == "R18-Rd100" and r["device"] == "cpu" and r["frame"] == frame
    ]
    counts = sorted({r["threads"] for r in candidates if r["threads"]})
    threads = TARGET_THREADS if TARGET_THREADS in counts else (counts[-1] if counts else None)
    out = []
    for name, metric, batch, op, bound in TARGETS:
        match = next((r for r in candidates if r["threads"] == threads and r["batch"] == batch), None)
        field = "head_overhead" if metric == "overhead" else "speedup_vs_eager"
        value = match[field] if match else None
        passed = None if value is None else (value <= bound if op == "<=" else value >= bound)
        out.append(
            {
                "check": name,
                "threads": threads,
                "batch": batch,
                "value": value,
                "target": f"{op} {bound:g}x",
                "passed": passed,
                "contended": bool(match and match["background_cpu"] > CONTENDED),
                "note": None if threads == TARGET_THREADS else f"{TARGET_THREADS} threads not measured",
            }
        )
    return out


def to_json(result: BenchResult) -> dict[str, Any]:
    """Everything the run measured plus the derived tables and the reference figures."""
    return {
        **result.to_dict(),
        "ratios": ratios(result.rows),
        "targets": targets(result.rows),
        "references": {
            "paper_table7": {"hardware": PAPER_HARDWARE, "rows": PAPER_TABLE7},
            "anomalib": ANOMALIB_QUOTED,
        },
    }


def _num(value: float | None, digits: int = 3) -> str:
    """Compact number: 3 significant digits, never scientific for the values seen here."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:.{decimals}f}"


def _table(headers: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def _threads(row: dict[str, Any]) -> str:
    if row["threads"] is None:
        return "—"
    return f"{row['threads']} (all)" if row["threads_label"] == "all" else str(row["threads"])


def _provider(row: dict[str, Any]) -> str:
    return row["provider"].replace("ExecutionProvider", " EP")


def _engine(row: dict[str, Any]) -> str:
    return f"{row['engine']} {row['engine_version']} · {_provider(row)}"


def machine_line(machine: dict[str, Any]) -> str:
    """One line naming the machine."""
    gpus = "; GPU: " + ", ".join(machine["gpus"]) if machine.get("gpus") else "; no GPU"
    isa = f" ({', '.join(machine['isa'])})" if machine.get("isa") else ""
    providers = ", ".join(p.replace("ExecutionProvider", "") for p in machine.get("providers", []))
    return (
        f"{machine['cpu']}{isa}, {machine['logical_cpus']} logical CPUs / {machine['physical_cores']} cores"
        f"{' (VM)' if machine.get('hypervisor') else ''}, {machine['memory_gb']} GB RAM, "
        f"{machine['os']}{gpus}; "
        f"Python {machine['python']}, onnxruntime {machine['onnxruntime']} (providers: {providers}), "
        f"torch {machine.get('torch') or 'absent'}"
    )


def render_markdown(result: BenchResult, *, title: str = "padim-edge latency benchmark") -> str:
    """The report: machine, Table VII comparison, targets, ratios, every row, notes."""
    rows = result.rows
    machine = result.machine
    frames = sorted({r["frame"] for r in rows}) or ["224x224"]
    policies = {json.dumps(run["policy"], sort_keys=True) for run in result.runs}
    out = [f"# {title}", ""]
    out.append(f"**Machine:** {machine_line(machine)}.")
    out.append("")
    out.append(
        f"**Input:** random uint8 RGB frames {', '.join(f + 'x3' for f in frames)} (H x W x C), end to end: "
        "host numpy batch in, host numpy anomaly maps and scores out; the graph does the resize, crop and "
        "normalisation."
    )
    for policy_text in sorted(policies):
        policy = json.loads(policy_text)
        out.append(
            f"**Timing:** {policy['warmup']} warm-up calls, then at least {policy['min_reps']} calls and "
            f"{policy['min_seconds']:g} s, whichever is later (cap: {policy['max_seconds']:g} s but at least "
            f"{policy['floor_reps']} calls, or {policy['max_reps']} calls); p50/p90/p99 over the timed calls."
        )
    isolated = all(run.get("isolate", True) for run in result.runs)
    out.append(
        "**Memory:** peak RSS of "
        + (
            "a fresh process per (model, engine, device, threads) configuration: its high-water mark after "
            "each batch size, sweeping batch sizes upwards (onnxruntime workers never import torch)."
            if isolated
            else "the benchmarking process itself (in-process run): NOT per model."
        )
        + " Host memory only."
    )
    fit_frames = result.runs[0].get("fit_frames", "?") if result.runs else "?"
    out.append(
        "**Models:** random-init backbones (latency does not depend on the weights), heads (PaDiM's "
        f"Gaussians, PatchCore's memory bank) fitted on {fit_frames} synthetic frames; sizes on disk include "
        "external data. `bg CPU` is the share of the "
        "machine's CPU other processes used while a row was timed "
        f"(rows above {CONTENDED:.0%} are marked †: treat them as contended)."
    )
    out.append("")

    out += ["## Table VII: paper vs this machine (batch 1, seconds per image)", ""]
    body = [
        [f"{p['method']}", PAPER_HARDWARE, _num(p["seconds_per_image"]), "paper Table VII"]
        for p in PAPER_TABLE7
    ]
    for ms_batch in ("1", "8"):
        body.append(
            [
                f"PaDiM {ANOMALIB_QUOTED['model']}, anomalib ONNX export (batch {ms_batch})",
                "this machine class, CPU",
                _num(ANOMALIB_QUOTED["ms_per_image"][ms_batch] / 1e3),
                "**quoted in the issue, not measured**",
            ]
        )
    for row in rows:
        if row["batch"] != 1:
            continue
        what = {
            "fused": "fused ONNX (padim-edge)",
            "backbone": "backbone alone ONNX",
            "eager": "PyTorch eager",
        }
        body.append(
            [
                f"{_title(row)}, {what[row['variant']]}",
                f"this machine, {_provider(row)}, threads {_threads(row)}",
                _num(row["per_image_ms"]["p50"] / 1e3) + _mark(row),
                f"measured, {row['frame']}",
            ]
        )
    out += [_table(["Method", "Hardware", "s / image", "Source"], body), ""]

    checks = targets(rows)
    out += ["## Targets (R18-Rd100, CPU EP, 2 threads, 224x224)", ""]
    body = []
    for check in checks:
        verdict = "not measured" if check["passed"] is None else ("PASS" if check["passed"] else "FAIL")
        if check["contended"]:
            verdict += " †"
        value = "—" if check["value"] is None else f"{check['value']:.2f}x"
        threads = check["threads"] if check["threads"] is not None else "—"
        body.append(
            [
                check["check"],
                str(threads),
                value,
                check["target"],
                verdict + (f" ({check['note']})" if check["note"] else ""),
            ]
        )
    r18 = {
        (r["batch"], r["threads"]): r
        for r in ratios(rows)
        if r["model"] == "R18-Rd100" and r["device"] == "cpu" and r["frame"] == "224x224"
    }
    threads = checks[0]["threads"]
    for batch in (1, 8):
        match = r18.get((batch, threads))
        quoted = ANOMALIB_QUOTED["ms_per_image"][str(batch)]
        value = match["fused_ms_per_image"] if match else None
        body.append(
            [
                f"fused ms/image vs anomalib ONNX (quoted {quoted:g} ms), batch {batch}",
                str(threads) if threads is not None else "—",
                "—" if value is None else f"{_num(value)} ms ({quoted / value:.2f}x faster)",
                "reference only",
                "info",
            ]
        )
    out += [_table(["Check", "Threads", "Measured", "Target", "Result"], body), ""]

    out += ["## Head overhead and speed-up (p50 ms per image)", ""]
    body = []
    for r in ratios(rows):
        body.append(
            [
                r["model"],
                r["device"],
                "—" if r["threads"] is None else str(r["threads"]),
                str(r["batch"]),
                r["frame"],
                _num(r["fused_ms_per_image"]),
                _num(r["backbone_ms_per_image"]),
                _num(r["eager_ms_per_image"]),
                "—" if r["head_overhead"] is None else f"{r['head_overhead']:.2f}x",
                "—" if r["speedup_vs_eager"] is None else f"{r['speedup_vs_eager']:.2f}x",
                f"{r['background_cpu']:.0%}" + (" †" if r["background_cpu"] > CONTENDED else ""),
            ]
        )
    headers = [
        "Model",
        "Device",
        "Threads",
        "Batch",
        "Frame",
        "fused",
        "backbone",
        "eager",
        "fused/backbone",
        "eager/fused",
        "bg CPU",
    ]
    out += [_table(headers, body), ""]

    out += ["## All rows", ""]
    body = []
    for r in rows:
        lat, img = r["latency_ms"], r["per_image_ms"]
        body.append(
            [
                r["model"],
                r["variant"],
                r["precision"],
                r.get("head_precision") or "—",
                _engine(r),
                _threads(r),
                str(r["batch"]),
                _num(lat["p50"]),
                _num(lat["p90"]),
                _num(lat["p99"]),
                _num(img["p50"]),
                _num(r["images_per_s"]),
                str(r["reps"]),
                "—" if r["model_bytes"] is None else _num(r["model_bytes"] / 1e6),
                _num(r["load_s"]),
                _num(r.get("first_call_s")),
                f"{r['peak_rss_mb']:.0f}" + ("" if r["peak_rss_scope"] == "subprocess" else " (process)"),
                "—" if r["background_cpu"] is None else f"{r['background_cpu']:.0%}" + _mark(r),
            ]
        )
    headers = [
        "Model", "Variant", "Prec.", "Head", "Engine · provider", "Threads", "Batch", "p50 ms", "p90 ms",
        "p99 ms", "p50 ms/img", "img/s", "reps", "size MB", "load s", "1st call s", "peak RSS MB", "bg CPU",
    ]  # fmt: skip
    out += [_table(headers, body), ""]
    out += [
        "`size MB`: model on disk (fused and backbone: .onnx plus external data; eager: the saved "
        "state_dict). `load s`: session creation (onnxruntime) or module construction plus state load "
        "(torch); `1st call s`: the first call after loading, smallest batch (cold start: lazy paging of "
        "memory-mapped external data, kernel selection). `img/s`: images / mean batch time.",
        "",
    ]
    if result.notes:
        out += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    return "\n".join(out)


def _title(row: dict[str, Any]) -> str:
    """``PaDiM R18-Rd100`` / ``PatchCore-R18-d256-c0.1-m18816``: the model with its method."""
    return f"PaDiM {row['model']}" if row.get("method", "padim") == "padim" else row["model"]


def _mark(row: dict[str, Any]) -> str:
    bg = row.get("background_cpu")
    return " †" if bg is not None and bg > CONTENDED else ""


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


def write_all(
    result: BenchResult, folder: str | Path, *, stem: str = "bench", title: str | None = None
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` to ``folder``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / f"{stem}.json", "md": folder / f"{stem}.md", "png": folder / f"{stem}.png"}
    atomic.write_json(paths["json"], to_json(result), indent=1)
    atomic.write_text(paths["md"], render_markdown(result, title=title or "padim-edge latency benchmark"))
    if result.rows:
        plot(result, paths["png"])
    else:
        del paths["png"]
    return paths


def load_result(path: str | Path) -> BenchResult:
    """Read a result back from its JSON file."""
    return BenchResult.from_dict(json.loads(Path(path).read_text()))
