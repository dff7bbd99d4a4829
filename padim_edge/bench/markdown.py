"""The markdown report of a benchmark: machine, Table VII comparison, targets, ratios, every row."""

from __future__ import annotations

import json
import math
from typing import Any

from padim_edge.bench.analysis import (
    PAPER_HARDWARE,
    PAPER_TABLE7,
    contention,
    ratios,
    reference_comparisons,
    targets,
)
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
    """The report: machine, failed configurations, Table VII comparison, targets, ratios, every row, notes."""
    out = [f"# {title}", "", *_header(result), ""]
    out += _failures(result)
    out += _table7(result.rows)
    out += _targets(result.rows)
    out += _ratios(result.rows)
    out += _all_rows(result.rows)
    if result.notes:
        out += ["## Notes", ""] + [f"- {note}" for note in result.notes] + [""]
    return "\n".join(out)


def _header(result: BenchResult) -> list[str]:
    """Machine, input, timing policy, memory scope and model lines."""
    frames = sorted({r["frame"] for r in result.rows}) or ["224x224"]
    out = [f"**Machine:** {machine_line(result.machine)}.", ""]
    out.append(
        f"**Input:** random uint8 RGB frames {', '.join(f + 'x3' for f in frames)} (H x W x C), end to end: "
        "host numpy batch in, host numpy anomaly maps and scores out; the graph does the resize, crop and "
        "normalisation."
    )
    for policy_text in sorted({json.dumps(run["policy"], sort_keys=True) for run in result.runs}):
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
        "external data. `bg CPU` is the share of the machine's CPU other processes used while a row was "
        f"timed: rows and ratios above {CONTENDED:.0%} are marked † and say so beside the figure (treat them "
        "as contended)."
    )
    return out


def _failures(result: BenchResult) -> list[str]:
    """The configurations that measured nothing (the run exits non-zero when there is one)."""
    if not result.failures:
        return []
    body = [
        [f["model"], f["variant"], f["device"], str(f["threads_label"]), f["error"]] for f in result.failures
    ]
    heading = f"## FAILED: {len(result.failures)} configuration(s) measured nothing"
    return [heading, "", _table(["Model", "Variant", "Device", "Threads", "Error"], body), ""]


def _table7(rows: list[dict[str, Any]]) -> list[str]:
    """The paper's Table VII and this run's batch-1 rows, with ratios."""
    body = [
        [f"{p['method']}", PAPER_HARDWARE, _num(p["seconds_per_image"]), "paper Table VII", "—"]
        for p in PAPER_TABLE7
    ]
    versus = {
        (c["model"], c["threads"]): c
        for c in reference_comparisons(rows)
        if c["batch"] == 1 and c["what"].startswith("paper")
    }
    what = {"fused": "fused ONNX (padim-edge)", "backbone": "backbone alone ONNX", "eager": "PyTorch eager"}
    for row in rows:
        if row["batch"] != 1:
            continue
        match = versus.get((row["model"], row["threads"])) if row["variant"] == "fused" else None
        body.append(
            [
                f"{_title(row)}, {what[row['variant']]}",
                f"this machine, {_provider(row)}, threads {_threads(row)}",
                _num(row["per_image_ms"]["p50"] / 1e3) + _mark(row),
                f"measured, {row['frame']}",
                _versus(match) if match else "—",
            ]
        )
    headers = ["Method", "Hardware", "s / image", "Source", "vs paper (same model)"]
    heading = "## Table VII: paper vs this machine (batch 1, seconds per image)"
    return [heading, "", _table(headers, body), ""]


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    """The target checks that were measured (none: no section)."""
    checks = targets(rows)
    if not checks:
        return []
    body = []
    for check in checks:
        verdict = "PASS" if check["passed"] else "FAIL"
        if check["warning"]:
            verdict += f" † ({contention(check['background_cpu'], brief=True)})"
        body.append(
            [
                check["check"],
                str(check["threads"]),
                f"{check['value']:.2f}x",
                check["target"],
                verdict + (f" ({check['note']})" if check["note"] else ""),
            ]
        )
    heading = "## Targets (R18-Rd100 fp32, CPU EP, 2 threads, 224x224)"
    return [heading, "", _table(["Check", "Threads", "Measured", "Target", "Result"], body), ""]


def _ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Head overhead and speed-up per (model, device, threads, batch, frame)."""
    body = []
    for r in ratios(rows):
        mark = " †" if contention(r["background_cpu"]) else ""
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
                "—" if r["head_overhead"] is None else f"{r['head_overhead']:.2f}x{mark}",
                "—" if r["speedup_vs_eager"] is None else f"{r['speedup_vs_eager']:.2f}x{mark}",
                f"{r['background_cpu']:.0%}" + (" † contended" if mark else ""),
            ]
        )
    headers = [
        "Model", "Device", "Threads", "Batch", "Frame", "fused", "backbone", "eager", "fused/backbone",
        "eager/fused", "bg CPU",
    ]  # fmt: skip
    return ["## Head overhead and speed-up (p50 ms per image)", "", _table(headers, body), ""]


def _all_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Every measured row, with the column legend."""
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
    legend = (
        "`size MB`: model on disk (fused and backbone: .onnx plus external data; eager: the saved "
        "state_dict). `load s`: session creation (onnxruntime) or module construction plus state load "
        "(torch); `1st call s`: the first call after loading, smallest batch (cold start: lazy paging of "
        "memory-mapped external data, kernel selection). `img/s`: images / mean batch time."
    )
    return ["## All rows", "", _table(headers, body), "", legend, ""]


def _versus(comparison: dict[str, Any]) -> str:
    """``"4.0x faster"``, with the contention warning beside it when the row was contended."""
    warning = contention(comparison["background_cpu"], brief=True)
    return comparison["phrase"] + (f" † ({warning})" if warning else "")


def _title(row: dict[str, Any]) -> str:
    """``PaDiM R18-Rd100`` / ``PatchCore-R18-d256-c0.1-m18816``: the model with its method."""
    return f"PaDiM {row['model']}" if row.get("method", "padim") == "padim" else row["model"]


def _mark(row: dict[str, Any]) -> str:
    bg = row.get("background_cpu")
    return " †" if bg is not None and bg > CONTENDED else ""
