"""The markdown report of a benchmark: machine, Table VII comparison, targets, ratios, every row."""

from __future__ import annotations

import json
import math
from typing import Any

from padim_edge.bench.analysis import ANOMALIB_QUOTED, PAPER_HARDWARE, PAPER_TABLE7, ratios, targets
from padim_edge.bench.config import CONTENDED, BenchResult


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
