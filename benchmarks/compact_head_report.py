"""The goals table and the markdown report of ``benchmarks/compact_head.py`` (from its JSON result)."""

from __future__ import annotations

import statistics
from typing import Any

from padim_edge.bench.report import machine_line

#: Issue 9's goals: (key, what, today, target text, operator, bound).
GOALS: list[dict[str, Any]] = [
    {"key": "r18_head", "goal": "R18-Rd100, fp32 backbone + int8 head, batch 1: fused / backbone alone",
     "today": "1.47x", "op": "<=", "bound": 1.15, "unit": "x"},
    {"key": "r18_int8", "goal": "R18-Rd100, INT8 backbone + int8 head, batch 1: fp32 fused / it (speed-up)",
     "today": "1.57x", "op": ">=", "bound": 2.5, "unit": "x"},
    {"key": "wr50_size", "goal": "WR50-Rd550, int8 head (6 blocks): file size (with external data)",
     "today": "2.6 GB", "op": "<=", "bound": 0.8, "unit": " GB"},
    {"key": "wr50_head", "goal": "WR50-Rd550, fp32 backbone + int8 head (6 blocks), batch 1: fused / backbone",  # noqa: E501
     "today": "2.75x", "op": "<=", "bound": 1.3, "unit": "x"},
    {"key": "wr50_rss", "goal": "WR50-Rd550, int8 head (6 blocks): peak RSS at load (+ 1st call) / file size",
     "today": "(measure)", "op": "<=", "bound": 1.3, "unit": "x"},
    {"key": "acc_image", "goal": "accuracy, int8 vs fp32 head (mnv2, magnetic tile): |d image AUROC|",
     "today": "-", "op": "<=", "bound": 0.005, "unit": ""},
    {"key": "acc_pixel", "goal": "accuracy, int8 vs fp32 head: |d pixel AUROC|",
     "today": "-", "op": "<=", "bound": 0.005, "unit": ""},
    {"key": "acc_pro", "goal": "accuracy, int8 vs fp32 head: |d PRO|",
     "today": "-", "op": "<=", "bound": 0.01, "unit": ""},
    {"key": "spearman", "goal": "scores, int8 vs fp32 head, same frames: Spearman, worst test set",
     "today": "-", "op": ">=", "bound": 0.999, "unit": ""},
]  # fmt: skip


def _ratio(section: dict[str, Any], a: str, b: str, field: str = "ms") -> dict[str, float] | None:
    timing = section.get("timing", {}).get(field, {})
    if a not in timing or b not in timing:
        return None
    values = [x / y for x, y in zip(timing[a], timing[b], strict=True)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def _measured(result: dict[str, Any], key: str) -> tuple[float | None, str]:
    """The value a goal is judged on, and how it reads (median [range] over rounds where timed)."""
    r18, wr50, acc = result.get("r18", {}), result.get("wr50", {}), result.get("accuracy", {})
    if key in ("r18_head", "r18_int8", "wr50_head"):
        section, (a, b) = {
            "r18_head": (r18, ("fp32 + int8 head", "backbone alone")),
            "r18_int8": (r18, ("fp32", "int8 backbone + int8 head")),
            "wr50_head": (wr50, ("fp32 + int8 head", "backbone alone")),
        }[key]
        ratio = _ratio(section, a, b)
        if ratio is None:
            return None, "not measured"
        return ratio[
            "median"
        ], f"{ratio['median']:.2f}x [{ratio['min']:.2f}-{ratio['max']:.2f}, {ratio['n']} rounds]"
    if key == "wr50_size":
        size = wr50.get("bytes", {}).get("fp32 + int8 head")
        return (None, "not measured") if size is None else (size / 1e9, f"{size / 1e9:.3f} GB")
    if key == "wr50_rss":
        probes = [
            p
            for p in wr50.get("rss", [])
            if p["model"] == "fp32 + int8 head" and p["session"] == "runtime default"
        ]
        if not probes or "error" in probes[0]:
            return None, "not measured"
        p = probes[0]
        value = p["peak_after_run_mb"] * 2**20 / p["bytes"]
        return value, f"{value:.2f}x ({p['peak_after_run_mb']:.0f} MB peak, file {p['bytes'] / 2**20:.0f} MB)"
    metrics = acc.get("metrics")
    if not metrics:
        return None, "not measured"
    if key == "spearman":
        worst_set = min(acc["spearman"]["int8"], key=acc["spearman"]["int8"].get)
        value = acc["spearman"]["int8"][worst_set]
        return value, f"{value:.5f} (worst set: {worst_set})"
    field = {"acc_image": "image_auroc", "acc_pixel": "pixel_auroc", "acc_pro": "pro"}[key]
    ref, got = metrics["fp32"]["overall"][field], metrics["int8"]["overall"][field]
    return abs(got - ref), f"{got - ref:+.4f} ({ref:.4f} -> {got:.4f})"


def goals(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every goal with its measured value and PASS / FAIL (``-`` when not measured)."""
    rows = []
    for spec in GOALS:
        value, text = _measured(result, spec["key"])
        passed = (
            None
            if value is None
            else (value <= spec["bound"] if spec["op"] == "<=" else value >= spec["bound"])
        )
        rows.append(
            {
                "goal": spec["goal"],
                "today": spec["today"],
                "target": f"{spec['op']} {spec['bound']:g}{spec['unit']}",
                "value": value,
                "measured": text,
                "result": "-" if passed is None else ("PASS" if passed else "FAIL"),
            }
        )
    return rows


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _bg(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return "?" if not known else f"{100 * sum(known) / len(known):.0f}% (max {100 * max(known):.0f}%)"


def _range(values: dict[str, float] | None, unit: str = "") -> str:
    if values is None:
        return "-"
    return f"{values['median']:.2f}{unit} [{values['min']:.2f}-{values['max']:.2f}]"


def _timing_rows(section: dict[str, Any], reference: str) -> list[list[str]]:
    rows = []
    cpu = section["timing"].get("cpu_ms", {})
    for name, ms in section["ms"].items():
        size = section.get("bytes", {}).get(name)
        cpu_ms = statistics.median(cpu[name]) if name in cpu else None
        rows.append(
            [
                name,
                f"{ms['median']:.1f} [{ms['min']:.1f}-{ms['max']:.1f}]",
                _range(_ratio(section, name, reference), "x"),
                "-" if cpu_ms is None else f"{cpu_ms:.1f}",
                _range(_ratio(section, name, reference, "cpu_ms") if cpu else None, "x"),
                "-" if size is None else f"{size / 1e6:.1f}",
                _bg(section["timing"]["background"][name]),
            ]
        )
    return rows


def render(result: dict[str, Any]) -> str:
    """The markdown report."""
    settings = result["settings"]
    out = ["# Compact head (issue 9): int8 / fp16 Sigma^-1", ""]
    out += [
        f"**Machine:** {machine_line(result['machine'])}; load average at start "
        f"{', '.join(f'{v:.1f}' for v in result['machine'].get('loadavg') or [])}.",
        "",
    ]
    out += [
        f"**Settings:** CPU EP, {settings['threads']} intra-op threads, random uint8 {settings['frame']} "
        f"frames, batch {settings['batch']}, end to end through `padim_edge.runtime` (the backbone alone "
        f"through the runtime's session factory). Interleaved: {settings['rounds']} rounds x "
        f"{settings['reps']} calls "
        f"(WR50-Rd550: {settings['wr50_rounds']} x {settings['wr50_reps']}), one session alive at a time; "
        "values are the median over rounds of each round's median call, [min-max] over rounds; ratios are "
        "taken within a round. `CPU ms`: this process's CPU time per call (median over rounds): at 1 thread "
        "the work done, whatever the load; at 2 threads it also counts onnxruntime's spin-waiting. "
        "`bg CPU` = share of the machine other processes used while timing.",
        f"**Run:** `{settings['command']}`, {settings['started']} -> {settings['finished']}.",
        "",
        "## Goals",
        "",
    ]
    out += _table(
        ["Goal", "Issue's today", "Target", "Measured", "Result"],
        [[g["goal"], g["today"], g["target"], g["measured"], g["result"]] for g in result["goals"]],
    )
    out.append("")
    for key, title, reference in (
        ("r18", "R18-Rd100", "backbone alone"),
        ("wr50", "WR50-Rd550", "backbone alone"),
    ):
        section = result.get(key)
        if not section:
            continue
        out += [f"## {title}, batch 1 (ms per call)", ""]
        headers = ["Model", "wall ms [range]", f"/ {reference}", "CPU ms", f"CPU / {reference}", "size MB"]
        out += _table([*headers, "bg CPU"], _timing_rows(section, reference))
        out.append("")
        if key == "r18":
            speedup = _ratio(section, "fp32", "int8 backbone + int8 head")
            old = _ratio(section, "fp32", "int8 backbone")
            if speedup and old:
                out += [
                    f"fp32 fused / INT8 backbone + fp32 head: {old['median']:.2f}x; / INT8 backbone + int8 "
                    f"head: {speedup['median']:.2f}x faster.",
                    "",
                ]
        if section.get("rss"):
            out += [f"### {title}: peak RSS of a fresh process opening the model (MB)", ""]
            rows = []
            for p in section["rss"]:
                if "error" in p:
                    rows.append([p["model"], p["session"], "-", "-", "-", "-", p["error"]])
                    continue
                size = p["bytes"] / 2**20
                storage = "external" if p["external_data"] else "inline"
                peaks = [f"{p['peak_after_load_mb']:.0f}", f"{p['peak_after_run_mb']:.0f}"]
                ratio = f"{p['peak_after_run_mb'] / size:.2f}x"
                rows.append(
                    [p["model"], storage, p["session"], f"{size:.0f}", *peaks, ratio, f"{p['load_s']:.1f}"]
                )
            headers = ["Model", "storage", "session", "file MiB", "peak after load", "peak after 1st call"]
            out += _table([*headers, "peak / file", "load s"], rows)
            out.append("")
    acc = result.get("accuracy")
    if acc and acc.get("metrics"):
        out += ["## Accuracy: MobileNetV2 (ImageNet weights), magnetic tile, dims 100, 256 -> 224", ""]
        rows = []
        for name, m in acc["metrics"].items():
            o = m["overall"]
            rho = acc["spearman"].get(name)
            worst = "-" if rho is None else f"{min(rho.values()):.5f}"
            rows.append(
                [
                    f"{name} head",
                    f"{o['image_auroc']:.4f}",
                    f"{o['pixel_auroc']:.4f}",
                    f"{o['pro']:.4f}",
                    worst,
                ]
            )
        out += _table(["Head", "image AUROC", "pixel AUROC", "PRO@0.3", "Spearman vs fp32 (worst set)"], rows)
        per_set = [
            f"{name}: " + ", ".join(f"{k} {v:.5f}" for k, v in rho.items())
            for name, rho in acc["spearman"].items()
        ]
        out += ["", "Spearman per set: " + "; ".join(per_set), ""]
    ops = result.get("ops")
    if ops:
        shape = f"{ops['grid']}x{ops['grid']} patches, d = {ops['dims']}, {ops['blocks']} blocks"
        out += [f"## Head alone, {shape}: op choice", ""]
        rows = []
        for name, err in ops["errors"].items():
            ms = ops["timing"]["ms"][name]
            errors = [f"{err['median']:.2e}", f"{err['p99']:.2e}", f"{err['max']:.2e}"]
            timing = f"{statistics.median(ms):.1f} [{min(ms):.1f}-{max(ms):.1f}]"
            rows.append([name, f"{err['panel_bytes'] / 1e6:.1f}", *errors, timing])
        out += _table(["Head", "panels MB", "rel. err d^2 median", "p99", "max", "ms [range]"], rows)
        out.append("")
    return "\n".join(out) + "\n"
