"""Markdown and plot of benchmarks/patchcore.py's JSON (kept apart so ``--render-only`` needs no torch)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from padim_edge import atomic

PAPER_PADIM = "PaDiM (README / issue): image AUROC 0.886, pixel AUROC 0.754, PRO 0.748"


def _f(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _ms(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *["| " + " | ".join(r) + " |" for r in rows],
    ]


def _bank(label: str) -> int | None:
    """The bank size in a PatchCore row label (``...-m18816``)."""
    part = next((p for p in label.split(" ")[0].split("-") if p.startswith("m") and p[1:].isdigit()), None)
    return int(part[1:]) if part else None


def _dims(label: str) -> int | None:
    part = next((p for p in label.split("-") if p.startswith("d") and p[1:].isdigit()), None)
    return int(part[1:]) if part else None


def render_cpu_time(rows: list[dict[str, Any]]) -> list[str]:
    """The 1-thread CPU-time table, with each PatchCore row against PaDiM with the same backbone."""
    if not rows:
        return []
    body = []
    for r in sorted(rows, key=lambda r: (r["model"].replace("PatchCore-", "")[:3], r["model"], r["batch"])):
        stem = r["model"].replace("PatchCore-", "").split("-")[0]
        padim = next(
            (p for p in rows if p["model"].startswith(stem + "-Rd") and p["batch"] == r["batch"]), None
        )
        ratio = r["cpu_ms_per_image_median"] / padim["cpu_ms_per_image_median"] if padim else None
        body.append(
            [
                r["model"],
                str(r["batch"]),
                f"{_ms(r['cpu_ms_per_image_median'])} "
                f"({_ms(r['cpu_ms_per_image_min'])}-{_ms(r['cpu_ms_per_image_max'])})",
                _ms(r["wall_ms_per_image_median"]),
                "" if ratio is None or padim is r else f"{ratio:.2f}x",
            ]
        )
    return [
        "CPU time per image at ONE onnxruntime thread (process CPU time; models round-robin in one process; "
        "median over rounds, min-max): the work each model needs, robust to the other jobs on the machine.",
        "",
        *_table(["Model", "Batch", "CPU ms / image (spread)", "wall ms / image", "vs PaDiM"], body),
        "",
    ]


def _machine(section: dict[str, Any]) -> str:
    from padim_edge.bench.report import machine_line

    return machine_line(section["machine"]) if "machine" in section else "unknown"


def _head(section: dict[str, Any]) -> list[str]:
    quick = " **(quick smoke settings: not the numbers to quote)**" if section.get("quick") else ""
    return [
        f"**Machine:** {_machine(section)}.{quick}",
        f"**Command:** `{section.get('command', '?')}` (finished {section.get('finished', '?')}, "
        f"{section.get('seconds', 0):.0f} s).",
        "",
    ]


def render_accuracy(section: dict[str, Any]) -> list[str]:
    out = ["## Accuracy: magnetic tile, MobileNetV2 ImageNet weights", ""]
    if "skipped" in section:
        return [*out, f"Skipped: {section['skipped']}", ""]
    out += _head(section)
    out += [
        f"Fit on {section['train_images']} training images ({section['train_images']} x "
        f"{section['patches_per_image']} = {section['train_images'] * section['patches_per_image']} patch "
        f"vectors, dims {section['dims']}), resize {section['resize']} -> crop {section['crop']}; 630 test "
        "images (238 good, 392 defective); metrics by padim-eval's code on the exported graph through the "
        "runtime (CPU EP).",
        "",
    ]
    rows = []
    for row in section["rows"]:
        graph = row["graph"]["overall"]
        rows.append(
            [
                row["model"],
                str(row.get("bank_size", "")),
                _f(graph["image_auroc"]),
                _f(graph["pixel_auroc"]),
                _f(graph["pro"]),
                "" if "selection_s" not in row else f"{row['selection_s']:.0f}",
            ]
        )
    out += _table(["Model (graph)", "Bank", "Image AUROC", "Pixel AUROC", "PRO@0.3", "Selection s"], rows)
    out += ["", f"Reference level for PaDiM on this split: {PAPER_PADIM}.", ""]
    refs = [r for r in section["rows"] if "reference" in r]
    if refs:
        out += ["### Exported graph vs the float64 reference of the same method", ""]
        body = []
        for row in refs:
            ref, diff = row["reference"]["overall"], row["graph_vs_reference"]
            body.append(
                [
                    row["model"],
                    f"{_f(ref['image_auroc'])} / {_f(ref['pixel_auroc'])} / {_f(ref['pro'])}",
                    f"{diff['image_auroc']:+.1e} / {diff['pixel_auroc']:+.1e} / {diff['pro']:+.1e}",
                    f"{row['max_abs_score_difference']:.1e}",
                ]
            )
        out += _table(
            ["Model", "float64 reference: image / pixel / PRO", "graph - reference", "max |score diff|"], body
        )
        worst = max(abs(v) for r in refs for k, v in r["graph_vs_reference"].items() if k != "pro")
        out += ["", f"Largest AUROC difference graph vs reference: {worst:.1e} (goal: within 0.005).", ""]
    out += _approximation(section)
    return out


def _approximation(section: dict[str, Any]) -> list[str]:
    """Streaming vs exact greedy: the accuracy each selection loses against the exact one."""
    exact = {r["coreset"]: r for r in section["rows"] if r.get("selection", {}).get("mode") == "exact"}
    rows = []
    for row in section["rows"]:
        sel = row.get("selection", {})
        if sel.get("mode") != "streaming" or row["coreset"] not in exact:
            continue
        ref, got = exact[row["coreset"]]["graph"]["overall"], row["graph"]["overall"]
        rows.append(
            [
                f"{row['coreset']:g}",
                f"{sel['chunk_vectors']} vectors, oversample {sel['oversample']:g}",
                *(f"{got[k] - ref[k]:+.4f}" for k in ("image_auroc", "pixel_auroc", "pro")),
            ]
        )
    if not rows:
        return []
    return [
        "### The streaming bank against exact greedy",
        "",
        *_table(["Coreset", "Chunks", "d image AUROC", "d pixel AUROC", "d PRO"], rows),
        "",
    ]


def _latency_rows(section: dict[str, Any]) -> list[list[str]]:
    rows = section["rows"]
    index = {(r["model"], r["variant"], r["batch"]): r for r in rows}
    body = []
    for r in sorted(rows, key=lambda r: (r["model"][:3] != "R18", r["model"], r["batch"])):
        if r["variant"] != "fused":
            continue
        backbone = index.get((r["model"], "backbone", r["batch"]))
        padim = next(
            (
                p
                for p in rows
                if p["method"] == "padim" and p["variant"] == "fused" and p["batch"] == r["batch"]
                and p["model"].split("-")[0] == r["model"].replace("PatchCore-", "").split("-")[0]
            ),
            None,
        )  # fmt: skip
        body.append(
            [
                r["model"],
                str(r["batch"]),
                f"{_ms(r['ms_per_image_median'])} "
                f"({_ms(r['ms_per_image_min'])}-{_ms(r['ms_per_image_max'])})",
                _ms(backbone["ms_per_image_median"]) if backbone else "",
                f"{r['ms_per_image_median'] / backbone['ms_per_image_median']:.2f}x" if backbone else "",
                f"{r['ms_per_image_median'] / padim['ms_per_image_median']:.2f}x" if padim else "",
                f"{r['model_mb']:.0f}",
                f"{r['background_cpu_max']:.0%}",
            ]
        )
    return body


def render_latency(section: dict[str, Any]) -> list[str]:
    out = ["## Latency beside PaDiM (CPU EP, 224x224 frames, end to end through the runtime)", ""]
    out += _head(section)
    out += [
        f"Random-init backbones; PatchCore banks fitted on {section['fit_frames_patchcore']} synthetic "
        f"frames ({section['fit_frames_patchcore']} x 784 patch vectors, the size of a typical MVTec "
        f"category's training set), PaDiM on {section['fit_frames_padim']}. {section['threads']} threads. "
        f"{section['rounds']} rounds, each measuring every model in turn; ms per image = median of the "
        "rounds' p50 (min-max over rounds). `vs PaDiM`: against PaDiM's fused graph with the same backbone "
        "and batch.",
        "",
    ]
    headers = ["Model", "Batch", "ms / image (spread)", "backbone alone", "fused / backbone", "vs PaDiM"]
    out += _table([*headers, "MB", "bg CPU max"], _latency_rows(section))
    goal = next(
        (
            r
            for r in section["rows"]
            if r["model"].startswith("PatchCore-R18") and "-c0.01" in r["model"] and r["batch"] == 1
            and r["variant"] == "fused"
        ),
        None,
    )  # fmt: skip
    padim = next(
        (
            r
            for r in section["rows"]
            if r["model"] == "R18-Rd100" and r["batch"] == 1 and r["variant"] == "fused"
        ),
        None,
    )
    if goal and padim:
        ratio = goal["ms_per_image_median"] / padim["ms_per_image_median"]
        verdict = "PASS" if ratio <= 2.0 else "FAIL"
        out += [
            "",
            f"**Goal** R18 PatchCore coreset 0.01 within 2x of R18 PaDiM fused, batch 1, 2 threads (wall): "
            f"{ratio:.2f}x — **{verdict}**.",
        ]
    cpu = section.get("cpu_time", [])
    goal_cpu = next(
        (r for r in cpu if "PatchCore-R18" in r["model"] and "-c0.01-" in r["model"] and r["batch"] == 1),
        None,
    )
    padim_cpu = next((r for r in cpu if r["model"] == "R18-Rd100" and r["batch"] == 1), None)
    if goal_cpu and padim_cpu:
        ratio = goal_cpu["cpu_ms_per_image_median"] / padim_cpu["cpu_ms_per_image_median"]
        verdict = "PASS" if ratio <= 2.0 else "FAIL"
        out += ["", f"Same goal in 1-thread CPU time: {ratio:.2f}x — **{verdict}**."]
    out += ["", *render_cpu_time(cpu), *[f"- {n}" for n in section.get("notes", [])], ""]
    return out


def render_curve(section: dict[str, Any]) -> list[str]:
    out = ["## Cost per image against the bank size (R18, dims 256) and against dims", ""]
    out += _head(section)
    body = [
        [str(r["bank_size"]), r["model"].split("-")[2], str(r["batch"]), _ms(r["ms_per_image_median"])]
        for r in sorted(section["rows"], key=lambda r: (r["model"].split("-")[2], r["bank_size"], r["batch"]))
        if r["variant"] == "fused"
    ]
    out += _table(["Bank vectors", "Dims", "Batch", "ms / image, 2 threads (median of rounds)"], body)
    out += ["", *render_cpu_time(section.get("cpu_time", []))]
    return [*out, "![cost per image vs bank size](patchcore.png)", ""]


def render_fit(section: dict[str, Any]) -> list[str]:
    out = ["## Fit cost", ""]
    if "skipped" in section:
        return [*out, f"Skipped: {section['skipped']}", ""]
    out += _head(section)
    sel, mem = section["selection"], section["memory"]
    times = ", ".join(f"{t:.1f}" for t in sel["seconds"])
    verdict = "PASS" if sel["median_s"] <= 90 else "FAIL"
    out += [
        f"**Greedy coreset selection**: {sel['vectors']} vectors ({sel['source']}, dims {sel['dims']}) to "
        f"{sel['selected']} (10 %), JL projection to {sel['projection_dims']} dims included: {times} s "
        f"(median {sel['median_s']:.1f} s; goal under 90 s — **{verdict}**).",
    ]
    if "plain_torch_loop_s" in sel:
        out.append(f"The plain vectorised torch loop took {sel['plain_torch_loop_s']:.0f} s in the same run.")
    ratio_verdict = "PASS" if mem["ratio"] <= 1.5 else "FAIL"
    out += [
        "",
        f"**Peak fit RSS** ({mem['backbone']}, default coreset 0.1 and streaming bank; {mem['images']}; "
        "each fit in a fresh process):",
        "",
    ]
    body = [
        [str(r["images"]), f"{r['peak_rss_mb']:.0f}", f"{r['rss_before_fit_mb']:.0f}", str(r["bank_size"]),
         f"{r['bank_mb']:.0f}", f"{r['fit_s']:.0f}", r["selection"].get("mode", "")]
        for r in mem["runs"]
    ]  # fmt: skip
    out += _table(
        ["Images", "Peak RSS MB", "RSS before fit MB", "Bank", "Bank MB", "Fit s", "Selection"], body
    )
    out += ["", f"Peak RSS ratio {mem['ratio']:.2f}x (goal within 1.5x) — **{ratio_verdict}**.", ""]
    return out


def render(result: dict[str, Any]) -> str:
    out = ["# PatchCore in padim-edge: accuracy, latency, bank size, fit cost", ""]
    renderers = {
        "accuracy": render_accuracy,
        "latency": render_latency,
        "curve": render_curve,
        "fit": render_fit,
    }
    for part, renderer in renderers.items():
        if part in result:
            out += renderer(result[part])
    return "\n".join(out) + "\n"


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """ms / image against the bank size (log x), B=1 and B=8, with the backbone and PaDiM as lines."""
    curve = result.get("curve")
    if not curve:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [
        ("2 threads, wall", [r for r in curve["rows"] if r["variant"] == "fused"], "ms_per_image_median"),
        ("1 thread, CPU time", curve.get("cpu_time", []), "cpu_ms_per_image_median"),
    ]
    styles = iter(["o-", "s-", "o--", "s--"])
    for name, rows, key in series:
        for batch in sorted({r["batch"] for r in rows}):
            style = next(styles)
            picked = sorted(
                (
                    (_bank(r["model"]), r[key])
                    for r in rows
                    if r["batch"] == batch and _dims(r["model"]) == 256
                ),
                key=lambda t: t[0] or 0,
            )
            left.plot(
                [b for b, _ in picked],
                [v for _, v in picked],
                style,
                label=f"R18 d256, {name}, batch {batch}",
            )
            across = sorted(
                (_dims(r["model"]), r[key])
                for r in rows
                if r["batch"] == batch and _bank(r["model"]) == curve["dims_sweep"]["bank_size"]
            )
            right.plot([d for d, _ in across], [v for _, v in across], style, label=f"{name}, batch {batch}")
    latency = result.get("latency", {}).get("rows", [])
    for r in latency:
        if r["model"] == "R18-Rd100" and r["variant"] == "fused" and r["batch"] == 1:
            left.axhline(
                r["ms_per_image_median"], color="tab:red", lw=1, ls=":", label="PaDiM R18-Rd100, 2 threads"
            )
    for r in result.get("latency", {}).get("cpu_time", []):
        if r["model"] == "R18-Rd100" and r["batch"] == 1:
            left.axhline(
                r["cpu_ms_per_image_median"],
                color="tab:red",
                lw=1,
                ls="-.",
                label="PaDiM R18-Rd100, 1 thread CPU",
            )
    backbone = next(
        (
            r
            for r in latency
            if r["model"].startswith("PatchCore-R18") and r["variant"] == "backbone" and r["batch"] == 1
        ),
        None,
    )
    if backbone:
        left.axhline(
            backbone["ms_per_image_median"], color="grey", lw=1, ls=":", label="R18 backbone alone, batch 1"
        )
    left.set_xscale("log")
    left.set_xlabel("memory-bank vectors")
    left.set_ylabel("ms per image (median of rounds)")
    left.set_title("cost per image vs bank size (CPU EP, 224, batch 1 / 8)")
    right.set_xlabel("embedding dims")
    right.set_title(f"vs dims at bank {curve['dims_sweep']['bank_size']}")
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return atomic.write_bytes(path, buffer.getvalue())
