"""Presenting evaluation results: text and markdown tables, JSON, ROC curves and an image grid."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from padim_edge import atomic
from padim_edge.evaluation.metrics import PRO_MAX_FPR, CategoryResult, Confusion, MetricsRow, mean_row
from padim_edge.evaluation.predictions import CategoryPredictions
from padim_edge.geometry import Geometry
from padim_edge.images import load_image
from padim_edge.metadata import ModelInfo
from padim_edge.visualize import heatmap_overlay, save_png

PRO_HEADER = f"PRO@{PRO_MAX_FPR:.0%}"
COUNT_HEADERS = ("images", "good", "defective")
METRIC_HEADERS = ("image AUROC", "pixel AUROC", PRO_HEADER)
NO_MASKS = (
    "pixel AUROC and PRO: n/a, this category has no ground_truth/ masks (image labels come from the "
    "test/ folder names); add ground_truth/<defect>/<stem>_mask.png files for pixel metrics"
)


@dataclass(frozen=True)
class EvaluationSummary:
    """The results of one ``padim-eval`` run.

    Attributes:
        model_path: The model file.
        info: The model's metadata.
        providers: onnxruntime providers used.
        device: Device requested on the command line.
        root: The dataset root.
        categories: One result per category (one for a single-category root).
        multi: Whether the root held several categories (the headline is then their mean).
    """

    model_path: Path
    info: ModelInfo
    providers: Sequence[str]
    device: str
    root: Path
    categories: Sequence[CategoryResult]
    multi: bool = False

    @property
    def headline(self) -> MetricsRow:
        """The overall row of a single category, or the mean over categories."""
        if self.multi:
            return mean_row([c.overall for c in self.categories])
        return self.categories[0].overall

    @property
    def confusion(self) -> Confusion | None:
        """Decisions at the model's threshold, summed over categories (``None`` without a threshold)."""
        matrices = [c.confusion for c in self.categories if c.confusion is not None]
        if not matrices:
            return None
        total = matrices[0]
        for matrix in matrices[1:]:
            total = total + matrix
        return total

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``nan`` metrics are ``null``)."""
        head = self.headline.to_dict()
        out: dict[str, Any] = {
            "image_auroc": head["image_auroc"],
            "pixel_auroc": head["pixel_auroc"],
            "pro": head["pro"],
            "aggregate": "mean over categories" if self.multi else "overall",
            "images": head["images"],
            "good": head["good"],
            "defective": head["defective"],
            "pro_max_fpr": PRO_MAX_FPR,
            "pro_connectivity": 8,
            "per_defect": [
                {"category": c.name, "defect": row.name, **_without_name(row)}
                for c in self.categories
                for row in c.per_defect
            ],
            "categories": [
                {
                    "category": c.name,
                    "has_masks": c.has_masks,
                    "warnings": list(c.warnings),
                    **_without_name(c.overall),
                    **({"confusion": c.confusion.to_dict()} if c.confusion is not None else {}),
                }
                for c in self.categories
            ],
            "model": {
                "path": str(self.model_path),
                "method": self.info.method,
                "backbone": self.info.backbone,
                "dims": self.info.dims,
                "resize": self.info.resize,
                "crop": self.info.crop,
                "weights": self.info.weights,
                "train_images": self.info.train_images,
                "threshold": self.info.threshold,
                "precision": self.info.precision,
            },
            "providers": list(self.providers),
            "device": self.device,
            "root": str(self.root),
        }
        matrix = self.confusion
        if matrix is not None:
            out["confusion"] = matrix.to_dict()
        return out


def _without_name(row: MetricsRow) -> dict[str, Any]:
    values = row.to_dict()
    values.pop("name")
    return values


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4f}"


def _row_cells(row: MetricsRow, first: Sequence[str]) -> list[str]:
    return [
        *first,
        str(row.images),
        str(row.good),
        str(row.defective),
        _fmt(row.image_auroc),
        _fmt(row.pixel_auroc),
        _fmt(row.pro),
    ]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1) -> str:
    """Plain-text table with aligned columns: the first ``text_columns`` left-aligned, the rest right."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(cell).ljust(width) if i < text_columns else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def format_markdown_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, text_columns: int = 1
) -> str:
    """GitHub-flavoured markdown table (text columns left-aligned, numbers right-aligned)."""
    align = [":---" if i < text_columns else "---:" for i in range(len(headers))]
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(str(c) for c in cells) + " |" for cells in lines)


def _category_rows(result: CategoryResult) -> list[list[str]]:
    rows = [_row_cells(row, [row.name]) for row in result.per_defect]
    rows.append(_row_cells(result.overall, ["overall"]))
    return rows


def _summary_rows(summary: EvaluationSummary) -> list[list[str]]:
    rows = [_row_cells(c.overall, [c.name]) for c in summary.categories]
    rows.append(_row_cells(summary.headline, ["mean"]))
    return rows


def format_confusion(matrix: Confusion) -> str:
    """One line: counts, precision and recall at the threshold."""
    return (
        f"at threshold {matrix.threshold:.6g}: TP {matrix.tp}  FP {matrix.fp}  TN {matrix.tn}  "
        f"FN {matrix.fn}  precision {_fmt(matrix.precision)}  recall {_fmt(matrix.recall)}"
    )


def _model_line(summary: EvaluationSummary) -> str:
    info = summary.info
    threshold = "no threshold" if info.threshold is None else f"threshold {info.threshold:.6g}"
    return (
        f"{summary.model_path} ({info.method} {info.backbone}, {info.dims} dims, resize {info.resize}, "
        f"crop {info.crop}, {info.precision}, {threshold})"
    )


def format_text(summary: EvaluationSummary) -> str:
    """The human-readable report ``padim-eval`` prints."""
    head = summary.headline
    lines = [
        f"model      {_model_line(summary)}",
        f"providers  {', '.join(summary.providers) or 'n/a'}",
        f"data       {summary.root} "
        f"({head.images} test images: {head.good} good, {head.defective} defective)",
        f"PRO        per-region overlap integrated to FPR {PRO_MAX_FPR:g}, normalised; 8-connected regions",
        "",
    ]
    headers = ["defect", *COUNT_HEADERS, *METRIC_HEADERS]
    for result in summary.categories:
        if summary.multi:
            lines.append(f"== {result.name} ==")
        lines.append(format_table(headers, _category_rows(result)))
        if not result.has_masks:
            lines.append(NO_MASKS)
        if result.confusion is not None:
            lines.append(format_confusion(result.confusion))
        lines.append("")
    if summary.multi:
        lines.append("== mean over categories ==")
        lines.append(format_table(["category", *COUNT_HEADERS, *METRIC_HEADERS], _summary_rows(summary)))
        if summary.confusion is not None:
            lines.append(format_confusion(summary.confusion) + " (all categories)")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_markdown(summary: EvaluationSummary) -> str:
    """The report as a markdown document (``metrics.md``)."""
    head = summary.headline
    lines = [
        "# padim-eval",
        "",
        f"- model: `{_model_line(summary)}`",
        f"- providers: {', '.join(summary.providers) or 'n/a'}",
        f"- data: `{summary.root}` ({head.images} test images: {head.good} good, {head.defective} defective)",
        f"- PRO: per-region overlap integrated to FPR {PRO_MAX_FPR:g}, normalised; 8-connected regions",
        "",
    ]
    headers = ["defect", *COUNT_HEADERS, *METRIC_HEADERS]
    if summary.multi:
        lines += ["## Mean over categories", ""]
        lines.append(
            format_markdown_table(["category", *COUNT_HEADERS, *METRIC_HEADERS], _summary_rows(summary))
        )
        lines.append("")
    for result in summary.categories:
        lines += [f"## {result.name}", ""]
        lines.append(format_markdown_table(headers, _category_rows(result)))
        lines.append("")
        if not result.has_masks:
            lines += [NO_MASKS, ""]
        if result.confusion is not None:
            lines += [format_confusion(result.confusion), ""]
        if result.warnings:
            lines += [f"**Warning:** {line}" for line in result.warnings] + [""]
    return "\n".join(lines).rstrip() + "\n"


def write_json(summary: EvaluationSummary, path: str | Path) -> Path:
    """Write :meth:`EvaluationSummary.to_dict` as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, summary.to_dict())
    return path


def write_markdown(summary: EvaluationSummary, path: str | Path) -> Path:
    """Write :func:`format_markdown` to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, format_markdown(summary))
    return path


def write_roc_png(result: CategoryResult, path: str | Path) -> Path:
    """Plot the image-level and pixel-level ROC curves of a category side by side (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.6), dpi=100)
    FigureCanvasAgg(figure)
    for axes, curve, title in (
        (figure.add_subplot(1, 2, 1), result.image_roc, "image-level ROC"),
        (figure.add_subplot(1, 2, 2), result.pixel_roc, "pixel-level ROC"),
    ):
        axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
        if curve.fpr.size:
            axes.plot(curve.fpr, curve.tpr, linewidth=2, label=f"AUROC {_fmt(curve.auroc)}")
            axes.legend(loc="lower right")
        elif curve is result.pixel_roc and not result.has_masks:
            axes.text(0.5, 0.5, "needs ground_truth/ masks", ha="center", va="center")
        else:
            axes.text(0.5, 0.5, "undefined (one class only)", ha="center", va="center")
        axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false-positive rate", ylabel="true-positive rate")
        axes.set_title(f"{result.name}: {title}")
        axes.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic.write_bytes(path, buffer.getvalue())
    return path


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def grid_indices(scores: np.ndarray, per_side: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``per_side`` highest scores (highest first) and lowest scores (lowest first).

    With fewer than ``2 * per_side`` images the two sets are shrunk so they do not overlap (a single
    image appears in the top row only).
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    count = min(per_side, max(1, order.size // 2))
    top = order[:count]
    bottom = order[::-1][: min(count, order.size - count)]
    return top, bottom


def write_grid_png(
    predictions: CategoryPredictions,
    path: str | Path,
    *,
    per_side: int = 6,
    cell: int = 224,
) -> Path:
    """Draw the highest- and lowest-scoring test images with heat-map overlays and mask outlines.

    Every overlay uses the same color scale (1st to 99.9th percentile of the category's anomaly values),
    so colors compare across cells. Each cell is labelled ``<defect>/<file>`` and its score.

    Args:
        predictions: A category's predictions (images are re-read from disk, only those shown).
        path: PNG file to write.
        per_side: Images in each of the two rows.
        cell: Edge of each overlay in pixels.
    """
    maps = predictions.maps
    step = max(1, maps.size // 1_000_000)
    vmin, vmax = (float(v) for v in np.percentile(maps.reshape(-1)[::step], [1.0, 99.9]))
    top, bottom = grid_indices(predictions.scores, per_side)
    samples = predictions.category.samples
    columns = max(top.size, 1)
    pad, title_h, label_h = 8, 22, 34
    font, small = _font(14), _font(12)
    width = pad + columns * (cell + pad)
    height = pad + 2 * (title_h + cell + label_h + pad)
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    y = pad
    for title, indices in (
        (f"{predictions.category.name}: highest scores", top),
        (f"{predictions.category.name}: lowest scores", bottom),
    ):
        draw.text((pad, y + 3), title, fill=(240, 240, 240), font=font)
        y += title_h
        for column, index in enumerate(indices):
            sample = samples[int(index)]
            view = Geometry(predictions.resize, predictions.crop).image_view(load_image(sample.path))
            mask = predictions.masks[int(index)] if predictions.masks is not None else np.zeros(1, bool)
            overlay = heatmap_overlay(
                view, maps[int(index)], vmin=vmin, vmax=vmax, contour_mask=mask if mask.any() else None
            )
            tile = Image.fromarray(overlay)
            if tile.size != (cell, cell):  # crisp pixels when enlarging, smooth when shrinking
                upscale = tile.width < cell
                tile = tile.resize(
                    (cell, cell), Image.Resampling.NEAREST if upscale else Image.Resampling.BILINEAR
                )
            x = pad + column * (cell + pad)
            canvas.paste(tile, (x, y))
            color = (255, 140, 120) if sample.is_anomalous else (150, 230, 150)
            draw.text((x, y + cell + 2), _fit(draw, sample.label, small, cell), fill=color, font=small)
            score = f"score {predictions.scores[int(index)]:.5g}"
            draw.text((x, y + cell + 17), score, fill=(230, 230, 230), font=small)
        y += cell + label_h + pad
    return save_png(np.asarray(canvas), path)
