"""The numbers of a benchmark: ratios between variants, the target checks, the paper's reference figures.

Ratios use the median (p50) time per image of rows measured in the same run, on the same device,
with the same thread count, batch size and frame size:

* head overhead = fused end-to-end / truncated backbone alone (what the Mahalanobis head and
  anomaly map add on top of the CNN; 1.0 would be free),
* speed-up = PyTorch eager module / fused ONNX graph.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from padim_edge.bench.config import CONTENDED

#: The PaDiM paper's Table VII (Defard et al., ICPR 2021): seconds per image on one laptop CPU.
PAPER_HARDWARE = "Intel i7-4710HQ CPU @ 2.50GHz (paper)"
PAPER_TABLE7: list[dict[str, Any]] = [
    {"method": "SPADE", "seconds_per_image": 7.10},
    {"method": "VAE", "seconds_per_image": 0.21},
    {"method": "PaDiM R18-Rd100", "seconds_per_image": 0.23},
    {"method": "PaDiM WR50-Rd550", "seconds_per_image": 0.95},
]
#: padim-edge's latency targets for its reference model, R18-Rd100 fp32, CPU EP, 2 threads, 224 frames.
TARGET_THREADS = 2
#: Row labels of that model: built by padim-bench, or a ``--model`` file of it.
TARGET_MODELS = ("R18-Rd100", "R18-Rd100 fp32")
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
    """The target checks on R18-Rd100 fp32, CPU EP, 2 threads (else the largest thread count measured).

    Only the checks whose ratio was measured: a run of another model, or without the eager or
    backbone-alone rows, has fewer (none for a model that is not R18-Rd100 fp32).
    """
    candidates = [
        r
        for r in ratios(rows)
        if r["model"] in TARGET_MODELS and r["device"] == "cpu" and r["frame"] == frame
    ]
    counts = sorted({r["threads"] for r in candidates if r["threads"]})
    threads = TARGET_THREADS if TARGET_THREADS in counts else (counts[-1] if counts else None)
    out = []
    for name, metric, batch, op, bound in TARGETS:
        match = next((r for r in candidates if r["threads"] == threads and r["batch"] == batch), None)
        field = "head_overhead" if metric == "overhead" else "speedup_vs_eager"
        value = match[field] if match else None
        if match is None or value is None:
            continue
        passed = value <= bound if op == "<=" else value >= bound
        out.append(
            {
                "check": name,
                "threads": threads,
                "batch": batch,
                "value": value,
                "target": f"{op} {bound:g}x",
                "passed": passed,
                "contended": match["background_cpu"] > CONTENDED,
                "background_cpu": match["background_cpu"],
                "warning": contention(match["background_cpu"]),
                "note": None if threads == TARGET_THREADS else f"targets are set at {TARGET_THREADS} threads",
            }
        )
    return out


def speed_phrase(reference: float, measured: float) -> str:
    """How ``measured`` compares with ``reference`` (both times): ``"4.0x faster"`` or ``"6.7x slower"``.

    Never a ratio below 1 with "faster" ("0.15x faster"): a slower time reads as the inverse, slower.

    Raises:
        ValueError: A time that is not positive.
    """
    if reference <= 0 or measured <= 0:
        raise ValueError(f"times must be positive, got {reference} and {measured}")
    ratio = reference / measured
    if round(ratio, 1) == 1.0:
        return "about as fast"
    return f"{ratio:.1f}x faster" if ratio > 1 else f"{1 / ratio:.1f}x slower"


def contention(background_cpu: float | None, *, brief: bool = False) -> str | None:
    """The warning for a figure timed while other processes used the CPU (``None``: not contended).

    Args:
        background_cpu: Share of the machine's CPU other processes used while the figure was timed.
        brief: The short form for a table cell (``"contended: 75% bg CPU"``).
    """
    if background_cpu is None or background_cpu <= CONTENDED:
        return None
    if brief:
        return f"contended: {background_cpu:.0%} bg CPU"
    return (
        f"contended: other processes used {background_cpu:.0%} of the CPU while it was timed "
        "(rerun on a quiet machine, or with --wait-idle / --retries)"
    )


#: Our model labels of the paper's Table VII rows.
_PAPER_MODELS = {
    label: f"PaDiM {model}" for model in ("R18-Rd100", "WR50-Rd550") for label in (model, f"{model} fp32")
}


def reference_comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Measured fused CPU rows against the paper's Table VII (batch 1).

    One entry per comparison: ``what`` (the reference), ``model``, ``threads``, ``batch``,
    ``measured_ms`` and ``reference_ms`` per image, ``phrase`` (``"4.0x faster"``), ``background_cpu``
    and ``warning`` (:func:`contention`, ``None`` when the row was timed on a quiet machine).
    """
    paper = {p["method"]: p["seconds_per_image"] * 1e3 for p in PAPER_TABLE7}
    out = []
    for row in rows:
        if row["variant"] != "fused" or row["device"] != "cpu" or row["frame"] != "224x224":
            continue
        references = []
        if row["batch"] == 1 and row["model"] in _PAPER_MODELS:
            references.append(("paper Table VII (i7-4710HQ)", paper[_PAPER_MODELS[row["model"]]]))
        measured = row["per_image_ms"]["p50"]
        for what, reference in references:
            out.append(
                {
                    "what": what,
                    "model": row["model"],
                    "threads": row["threads"],
                    "batch": row["batch"],
                    "measured_ms": measured,
                    "reference_ms": reference,
                    "phrase": speed_phrase(reference, measured),
                    "background_cpu": row.get("background_cpu"),
                    "warning": contention(row.get("background_cpu")),
                }
            )
    return out


def contention_summary(rows: list[dict[str, Any]]) -> str | None:
    """One line for the console when rows were timed while other processes used the CPU (else ``None``).

    It gives the range of the background CPU share over those rows, as the report's ``bg CPU`` column.
    """
    shares = [r["background_cpu"] for r in rows if (r.get("background_cpu") or 0.0) > CONTENDED]
    if not shares:
        return None
    low, high = f"{min(shares):.0%}", f"{max(shares):.0%}"
    span = low if low == high else f"{low}-{high}"
    return (
        f"contended: other processes used {span} of the CPU while {len(shares)} of {len(rows)} rows were "
        "timed; their figures are marked † in the report (rerun on a quiet machine, or with --wait-idle / "
        "--retries)"
    )
