"""Human-readable one-line summaries of metadata records."""

from __future__ import annotations

from typing import Any


def _figure(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def fidelity_summary(record: dict[str, Any]) -> str:
    """One line for a fidelity report (:attr:`ModelInfo.fidelity`), led by its verdict when it is not ok.

    Example: ``synthetic-defect image AUROC 0.9412 -> 0.9388, synthetic-defect pixel AUROC 0.9650 ->
    0.9641, Spearman 0.9980, map error median 0.012 (worst 0.031), score ratio 1.004 (vs r18.onnx
    (fp32 backbone / fp32 head), 45 frames: held-out split of --data)``.
    """
    reference, source = record.get("reference", "?"), record.get("source", "?")
    where = f"vs {reference}, {record.get('frames', 0)} frames: {source}"
    if record.get("error"):
        return f"NOT MEASURED: {record['error']} ({where})"
    text = ""
    for name in ("synthetic_image_auroc", "synthetic_pixel_auroc"):
        pair = record.get(name)
        if pair:
            kind = name.split("_")[1]
            text += f"synthetic-defect {kind} AUROC {_figure(pair[0], 4)} -> {_figure(pair[1], 4)}, "
    text += (
        f"Spearman {_figure(record.get('spearman'), 4)}, map error median "
        f"{_figure(record.get('map_error_median'))} (worst {_figure(record.get('map_error_worst'))}), score "
        f"ratio {_figure(record.get('score_ratio_median'))}"
    )
    for name in ("image_auroc", "pixel_auroc"):
        pair = record.get(name)
        if pair:
            text += f", {name.replace('_', ' ')} {_figure(pair[0])} -> {_figure(pair[1])}"
    text += f" ({where})"
    if record.get("low"):
        return "LOW FIDELITY: " + text
    if record.get("verdict") == "not enough evidence":
        return "NOT ENOUGH EVIDENCE: " + text
    return text
