"""Write a benchmark's outputs (JSON, markdown, PNG) and read them back.

The numbers live in :mod:`padim_edge.bench.analysis`, the markdown in :mod:`padim_edge.bench.markdown`
and the plot in :mod:`padim_edge.bench.plot`; their public names are re-exported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from padim_edge import atomic
from padim_edge.bench.analysis import (
    PAPER_HARDWARE,
    PAPER_TABLE7,
    TARGET_THREADS,
    TARGETS,
    contention_summary,
    ratios,
    reference_comparisons,
    targets,
)
from padim_edge.bench.config import BenchResult
from padim_edge.bench.markdown import machine_line, render_markdown
from padim_edge.bench.plot import plot

__all__ = [
    "PAPER_HARDWARE",
    "PAPER_TABLE7",
    "TARGETS",
    "TARGET_THREADS",
    "load_result",
    "machine_line",
    "plot",
    "ratios",
    "render_markdown",
    "summary_lines",
    "targets",
    "to_json",
    "write_all",
]


def to_json(result: BenchResult) -> dict[str, Any]:
    """Everything the run measured plus the derived tables and the reference figures."""
    return {
        **result.to_dict(),
        "ratios": ratios(result.rows),
        "targets": targets(result.rows),
        "comparisons": reference_comparisons(result.rows),
        "references": {"paper_table7": {"hardware": PAPER_HARDWARE, "rows": PAPER_TABLE7}},
    }


def summary_lines(result: BenchResult) -> list[str]:
    """The terminal summary: failed configurations, target checks and the comparisons with the paper, each
    with the contention warning beside it when other processes used the CPU, and one contention line for
    the whole run (``contended: ...``, the share the report's ``bg CPU`` column gives)."""
    lines = [
        f"FAILED: {f['model']} {f['variant']} on {f['device']}, threads {f['threads_label']}: {f['error']}"
        for f in result.failures
    ]
    for check in targets(result.rows):
        if check["value"] is None:
            continue
        verdict = "PASS" if check["passed"] else "FAIL"
        line = f"{check['check']}: {check['value']:.2f}x (target {check['target']}) {verdict}"
        lines.append(line + (f"  † {check['warning']}" if check["warning"] else ""))
    for c in reference_comparisons(result.rows):
        threads = "" if c["threads"] is None else f", {c['threads']} thread{'' if c['threads'] == 1 else 's'}"
        line = (
            f"{c['model']} fused, batch {c['batch']}{threads}: {c['measured_ms']:.3g} ms/image vs "
            f"{c['reference_ms']:.3g} ms, {c['what']}: {c['phrase']}"
        )
        lines.append(line + (f"  † {c['warning']}" if c["warning"] else ""))
    contended = contention_summary(result.rows)
    if contended:
        lines.append(f"warning: {contended}")
    return lines


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
