"""INT8 benchmark (:mod:`int8_accuracy`): does a label-free fidelity figure predict the AUROC loss?

One row per (set, variant) with a fidelity report and AUROC deltas. The loss is ``fp32 - variant``
AUROC on the labelled test split (a gain is a negative loss); ``|Δ|`` is its absolute value. The
predictors: the synthetic-defect AUROC drops (``fp32 - variant`` on held-out normal frames with pasted
defects; :mod:`padim_edge.calibration.synthetic_defects`), the normal-frame Spearman (a predictor
correlates *negatively* with the loss) and the median map error.
"""

from __future__ import annotations

from typing import Any

from int8_report import low_cell, num, table
from int8_sets import MAX_AUROC_DELTA, finite

#: (key, label, sign): sign -1 where a low value predicts a large loss.
PREDICTORS = (
    ("synthetic_image_drop", "synthetic-defect image AUROC drop", 1),
    ("synthetic_pixel_drop", "synthetic-defect pixel AUROC drop", 1),
    ("spearman", "normal-frame Spearman", -1),
    ("map_error_median", "median map error", 1),
)
#: (key, label) of the losses measured on the labelled test split.
LOSSES = (
    ("image_loss", "image loss"),
    ("pixel_loss", "pixel loss"),
    ("image_abs", "\\|Δ image\\|"),
    ("pixel_abs", "\\|Δ pixel\\|"),
)


def _drop(pair: list[float] | None) -> float | None:
    return None if not pair or pair[0] is None or pair[1] is None else pair[0] - pair[1]


def fidelity_rows(acc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (set, variant) with a fidelity report and AUROC deltas, by synthetic image drop."""
    from padim_edge.calibration import settings

    out = []
    for name, section in acc["sets"].items():
        for label, row in section.get("rows", {}).items():
            fid = row.get("fidelity") or {}
            if label == "fp32" or fid.get("spearman") is None or row.get("image_auroc_delta") is None:
                continue
            pixel = row.get("pixel_auroc_delta")
            syn_image, syn_pixel = (
                _drop(fid.get("synthetic_image_auroc")),
                _drop(fid.get("synthetic_pixel_auroc")),
            )
            out.append(
                {
                    "set": name,
                    "variant": label,
                    "spearman": fid["spearman"],
                    "map_error_median": fid.get("map_error_median"),
                    "synthetic_image_drop": syn_image,
                    "synthetic_pixel_drop": syn_pixel,
                    "synthetic_low": None
                    if syn_image is None
                    else bool(
                        syn_image > settings.MAX_SYNTHETIC_AUROC_DROP
                        or (syn_pixel is not None and syn_pixel > settings.MAX_SYNTHETIC_PIXEL_AUROC_DROP)
                    ),
                    "low": fid.get("low"),
                    "image_loss": 0.0 - row["image_auroc_delta"],
                    "pixel_loss": None if pixel is None else 0.0 - pixel,
                    "image_abs": abs(row["image_auroc_delta"]),
                    "pixel_abs": None if pixel is None else abs(pixel),
                }
            )
    return sorted(out, key=lambda r: -(r["synthetic_image_drop"] or 0.0))


def _rank_corr(rows: list[dict[str, Any]], a: str, b: str) -> float | None:
    from padim_edge.calibration.fidelity_figures import spearman

    pairs = [(r[a], r[b]) for r in rows if r.get(a) is not None and r.get(b) is not None]
    if len(pairs) < 3:
        return None
    return finite(spearman([p[0] for p in pairs], [p[1] for p in pairs]))


def fidelity_correlation(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Rank correlation of every predictor with every loss, ``<predictor>_vs_<loss>``, sign as measured."""
    return {f"{p}_vs_{loss}": _rank_corr(rows, p, loss) for p, _, _ in PREDICTORS for loss, _ in LOSSES}


def flag_agreement(rows: list[dict[str, Any]]) -> dict[str, int]:
    """How the flags meet real losses over :data:`MAX_AUROC_DELTA` (image or pixel, ``fp32 - variant``)."""
    counts = {
        "real_losses": 0,
        "synthetic_caught": 0,
        "synthetic_false": 0,
        "report_caught": 0,
        "report_false": 0,
    }
    for r in rows:
        real = r["image_loss"] > MAX_AUROC_DELTA or (r["pixel_loss"] or 0.0) > MAX_AUROC_DELTA
        counts["real_losses"] += real
        for flag, key in (("synthetic_low", "synthetic"), ("low", "report")):
            if r.get(flag):
                counts[f"{key}_caught" if real else f"{key}_false"] += 1
    return counts


def render_fidelity(acc: dict[str, Any]) -> list[str]:
    """The section: every row's predictors beside its loss, then the correlations and the flags."""
    rows = fidelity_rows(acc)
    out = ["## Does a fidelity figure predict the AUROC loss?", ""]
    if not rows:
        return [*out, "No rows with both a fidelity report and AUROCs.", ""]
    body = [
        [
            r["set"], r["variant"], num(r["image_loss"], "+.4f"), num(r["pixel_loss"], "+.4f"),
            num(r["synthetic_image_drop"], "+.4f"), num(r["synthetic_pixel_drop"], "+.4f"),
            low_cell({"low": r["synthetic_low"]}), f"{r['spearman']:.4f}", num(r["map_error_median"], ".3f"),
            low_cell({"low": r["low"]}),
        ]
        for r in rows
    ]  # fmt: skip
    out += table(
        [
            "set", "variant", "image loss", "pixel loss", "synthetic image drop", "synthetic pixel drop",
            "synthetic LOW?", "Spearman", "median map error", "report LOW?",
        ],
        body,
    )  # fmt: skip
    corr = fidelity_correlation(rows)
    out += [
        "",
        f"Loss = fp32 AUROC - variant AUROC on the labelled test split (negative: the variant gained); "
        "synthetic drop = the same on held-out `test/good` frames with and without pasted synthetic "
        "defects (no labels needed). *synthetic LOW?*: a synthetic drop over its limit; *report LOW?*: "
        "the whole report (synthetic drops, Spearman, map error). Rank correlation (Spearman) of each "
        f"predictor with each loss across these {len(rows)} rows (a good predictor: large and positive; "
        "for the normal-frame Spearman large and *negative*):",
        "",
    ]
    out += table(
        ["predictor", *[label for _, label in LOSSES]],
        [
            [label, *[num(corr[f"{key}_vs_{loss}"], "+.3f") for loss, _ in LOSSES]]
            for key, label, _ in PREDICTORS
        ],
    )
    flags = flag_agreement(rows)
    out += [
        "",
        f"Rows losing more than {MAX_AUROC_DELTA} image or pixel AUROC: {flags['real_losses']}. Synthetic "
        f"flags: {flags['synthetic_caught']} of them caught, {flags['synthetic_false']} false alarms; whole "
        f"report: {flags['report_caught']} caught, {flags['report_false']} false alarms. The synthetic "
        "limits (`MAX_SYNTHETIC_*_DROP` in `padim_edge/calibration/settings.py`) were set on these rows. "
        "Every real loss here is at most 0.015, about the sampling noise of AUROC on 60 good / 120-392 "
        "defective test images, so no figure can rank them well: the rank correlations above are all weak.",
        "",
    ]
    return out
