"""INT8 benchmark (:mod:`int8_accuracy`): the goals and the Markdown report of its results JSON."""

from __future__ import annotations

from typing import Any

from int8_sets import MAX_AUROC_DELTA, SPEEDUP_TOLERANCE


def num(value: Any, fmt: str = ".4f") -> str:
    """``value`` formatted, ``-`` when missing."""
    return "-" if value is None else format(value, fmt)


def pct(value: float | None) -> str:
    """A share as a percentage, ``?`` when unknown."""
    return "?" if value is None else f"{value:.0%}"


def table(headers: list[str], body: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *["| " + " | ".join(row) + " |" for row in body],
    ]


def head(section: dict[str, Any]) -> list[str]:
    """Machine and command lines of a section."""
    from padim_edge.bench.markdown import machine_line

    quick = " **(quick smoke settings: not the numbers to quote)**" if section.get("quick") else ""
    machine = machine_line(section["machine"]) if "machine" in section else "unknown"
    return [
        f"**Machine:** {machine}.{quick}",
        f"**Command:** `{section.get('command', '?')}` (finished {section.get('finished', '?')}, "
        f"{section.get('seconds', 0):.0f} s).",
        "",
    ]


def with_delta(row: dict[str, Any], key: str) -> str:
    """``value (delta)``."""
    if row.get(key) is None:
        return "-"
    delta = row.get(f"{key}_delta")
    return f"{row[key]:.4f}" + ("" if delta is None else f" ({delta:+.4f})")


def low_cell(fid: dict[str, Any]) -> str:
    """The LOW? cell of a fidelity record."""
    if not fid:
        return "no report"
    return {True: "**LOW**", False: "no", None: "not measured"}[fid.get("low")]


def accuracy_goals(acc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (set, INT8 variant): both |deltas| <= MAX_AUROC_DELTA."""
    goals = []
    for name, section in acc["sets"].items():
        for label, row in section.get("rows", {}).items():
            if not label.startswith("int8"):
                continue
            deltas = [row.get("image_auroc_delta"), row.get("pixel_auroc_delta")]
            if row.get("error") or deltas[0] is None:
                verdict = "FAIL" if row.get("error") else "-"
            else:
                verdict = "PASS" if all(d is None or abs(d) <= MAX_AUROC_DELTA for d in deltas) else "FAIL"
            goals.append({"set": name, "variant": label, "deltas": deltas, "result": verdict})
    return goals


def latency_goals(lat: dict[str, Any]) -> list[dict[str, Any]]:
    """Fixed vs plain end-to-end speed-up (CPU time), per format with a plain row and batch."""
    rows = {(r["part"], r["variant"], r["batch"]): r for r in lat["rows"]}
    goals = []
    for batch in (1, 8):
        plain = rows.get(("fused", "int8-qoperator plain", batch))
        fixed = rows.get(("fused", "int8-qoperator default", batch))
        if plain is None or fixed is None:
            continue
        ratio = fixed["cpu_speedup_vs_fp32"] / plain["cpu_speedup_vs_fp32"]
        goals.append(
            {
                "batch": batch,
                "plain": plain["cpu_speedup_vs_fp32"],
                "fixed": fixed["cpu_speedup_vs_fp32"],
                "ratio": ratio,
                "result": "PASS" if ratio >= 1 - SPEEDUP_TOLERANCE else "FAIL",
            }
        )
    return goals


def synthetic_cell(fid: dict[str, Any], key: str) -> str:
    """``variant (variant - fp32)`` of a synthetic-defect AUROC pair, ``fp32`` value on the fp32 row."""
    pair = fid.get(key)
    if not pair:
        return "-"
    if pair[1] is None:
        return f"{pair[0]:.4f}"
    return f"{pair[1]:.4f} ({pair[1] - pair[0] + 0.0:+.4f})"


def _reference_synthetic(rows: dict[str, Any]) -> dict[str, Any]:
    """The fp32 row's synthetic AUROCs (every variant's report holds them as its reference values)."""
    for row in rows.values():
        fid = row.get("fidelity") or {}
        if fid.get("synthetic_image_auroc"):
            return {
                key: [fid[key][0], None] if fid.get(key) else None
                for key in ("synthetic_image_auroc", "synthetic_pixel_auroc")
            }
    return {}


def render_accuracy(acc: dict[str, Any]) -> list[str]:
    """The per-set tables."""
    out = [f"## Accuracy: {acc['model']}", "", *head(acc)]
    tests = "all" if acc["max_test"] is None else f"at most {acc['max_test']} (an even spread of the)"
    out += [
        "Each set: fit on `train/good` (an even spread of at most "
        f"{acc['max_train'] or 'all'} images), INT8 calibrated on {acc['calibration_images']} `train/good` "
        "frames, fidelity report on `test/good` (at most 50 frames; synthetic AUROC: those frames with "
        "and without one pasted defect each, Δ vs the fp32 model on the same set), metrics by "
        "padim-eval's code on "
        f"{tests} test images through the runtime (CPU EP). *plain*: `refit=False, float_convs=0` "
        "(before issue 12); *default*: what `--int8` does now (Gaussians refitted on the INT8 "
        "backbone's embeddings of the fit's own images; the same graph as plain, new constants); "
        "*refit + 2 float convs*: the other lever (the first two convs stay float32).",
        "",
    ]
    for name, section in acc["sets"].items():
        out += [f"### {name}", ""]
        if "skipped" in section:
            out += [f"Skipped: {section['skipped']}", ""]
            continue
        out += [
            f"{section['description']}: fitted on {section['train_images']} of {section['train_available']} "
            f"train/good images; {section['test_images']} test images ({section['defect_images']} "
            "defective).",
            "",
        ]
        body = []
        reference = _reference_synthetic(section["rows"])
        for label, row in section["rows"].items():
            fid = row.get("fidelity") or reference
            if row.get("error"):
                body.append([label, f"error: {row['error']}", *[""] * 9])
                continue
            body.append(
                [
                    label,
                    with_delta(row, "image_auroc"),
                    with_delta(row, "pixel_auroc"),
                    with_delta(row, "pro"),
                    synthetic_cell(fid, "synthetic_image_auroc"),
                    synthetic_cell(fid, "synthetic_pixel_auroc"),
                    num(fid.get("spearman")),
                    num(fid.get("map_error_median"), ".3f"),
                    num(fid.get("score_ratio_median"), ".3f"),
                    "" if label == "fp32" else low_cell(fid),
                    "" if label == "fp32" else num(row.get("calibration_seconds"), ".0f"),
                ]
            )
        out += table(
            [
                "variant", "image AUROC (Δ)", "pixel AUROC (Δ)", "PRO (Δ)", "synthetic image AUROC (Δ)",
                "synthetic pixel AUROC (Δ)", "Spearman", "median map error", "median score ratio", "LOW?",
                "calibration s",
            ],
            body,
        )  # fmt: skip
        out.append("")
    return out


def render_goals(result: dict[str, Any]) -> list[str]:
    """The goals table."""
    out = ["## Goals (issue 12)", ""]
    body = []
    if "accuracy" in result:
        for goal in accuracy_goals(result["accuracy"]):
            image, pixel = goal["deltas"]
            body.append(
                [
                    f"{goal['variant']}, {goal['set']}: \\|Δ image\\|, \\|Δ pixel\\| AUROC",
                    f"{num(image, '+.4f')}, {num(pixel, '+.4f')}",
                    f"<= {MAX_AUROC_DELTA}",
                    goal["result"]
                    if "default" in goal["variant"]
                    else f"{goal['result']} ({'lever' if 'float convs' in goal['variant'] else 'reference'})",
                ]
            )
    if "latency" in result:
        for goal in latency_goals(result["latency"]):
            body.append(
                [
                    f"int8-qoperator end-to-end speed-up vs fp32, batch {goal['batch']}: default / plain",
                    f"{goal['fixed']:.2f}x / {goal['plain']:.2f}x = {goal['ratio']:.3f}",
                    f">= {1 - SPEEDUP_TOLERANCE:.2f}",
                    goal["result"],
                ]
            )
    out += table(["goal", "measured", "target", "result"], body)
    out += [
        "",
        "The goal is on the *default* rows (what `padim-calibrate --int8` does now); *plain* rows are the "
        "behaviour before issue 12, shown for reference. Speed-ups are process CPU time at one thread.",
        "",
    ]
    return out


def render_latency(lat: dict[str, Any], *, kept: bool = False) -> list[str]:
    """The latency table; ``kept``: the section comes from an earlier run than the accuracy part."""
    out = [f"## Latency: {lat['model']}", ""]
    if kept:
        out += [
            f"**Kept from the run of {lat.get('finished', '?')}**: the latest run measured accuracy only "
            "(`--parts accuracy`); these timings were not re-run with it.",
            "",
        ]
    out += head(lat)
    out += [
        f"One onnxruntime thread, CPU EP; {lat['rounds']} interleaved rounds (every model once per round, "
        "one session alive at a time). Per round: process CPU time per call (mean) and wall time per call "
        "(median); the table gives the median over rounds with [min-max]. `fused` = `PadimModel.run` on "
        "uint8 frames; `backbone` = the same graph cut from the preprocessed frames to the tapped maps. "
        f"Other processes' CPU share per round: {', '.join(pct(b) for b in lat['background_cpu'])}.",
        "",
    ]
    body = [
        [
            r["part"],
            str(r["batch"]),
            r["variant"],
            f"{r['cpu_ms_median']:.1f} [{r['cpu_ms_min']:.1f}-{r['cpu_ms_max']:.1f}]",
            f"{r['cpu_speedup_vs_fp32']:.2f}x",
            f"{r['wall_ms_median']:.1f} [{r['wall_ms_min']:.1f}-{r['wall_ms_max']:.1f}]",
            f"{r['wall_speedup_vs_fp32']:.2f}x",
        ]
        for r in lat["rows"]
    ]
    out += table(
        ["part", "batch", "variant", "CPU ms / call", "CPU speed-up", "wall ms / call", "wall speed-up"], body
    )
    sizes = ", ".join(f"{k} {v:.1f} MB" for k, v in lat["file_mb"].items())
    return [*out, "", f"Files: {sizes}.", ""]


def render(result: dict[str, Any]) -> str:
    """The whole Markdown report."""
    from int8_predictors import render_fidelity

    lines = ["# INT8 vs float32: accuracy on three data sets, fidelity report, latency (issue 12)", ""]
    lines += [
        "Produced by `benchmarks/int8_accuracy.py` (its docstring says what is measured and how).",
        "",
    ]
    lines += render_goals(result)
    if "accuracy" in result:
        lines += render_accuracy(result["accuracy"])
        lines += render_fidelity(result["accuracy"])
    if "latency" in result:
        accuracy_run = (result.get("accuracy") or {}).get("command")
        kept = accuracy_run is not None and result["latency"].get("finished", "") < result["accuracy"].get(
            "finished", ""
        )
        lines += render_latency(result["latency"], kept=kept)
    return "\n".join(lines)
