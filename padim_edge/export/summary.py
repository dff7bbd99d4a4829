"""What ``padim-export`` prints after a run: method, backbone, head, fit, parity, files, TensorRT."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from padim_edge.export.padim.settings import DEFAULT_BLOCKS, PANEL_ALIGN, block_bounds

if TYPE_CHECKING:
    from padim_edge.export.pipeline import ExportRun


def file_size(n: int) -> str:
    """``n`` bytes as MB or GB, for the summary."""
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def summary_lines(
    run: ExportRun,
    data: Path,
    size: tuple[int, int] | None,
    *,
    blocks: int | None = None,
    head_precision: str | None = None,
) -> list[str]:
    """The summary of an export: ``data`` the training folder, ``size`` the TensorRT target's frame size."""
    lines: list[str] = []
    config = run.model.config
    spec = config.spec
    facts = run.model.metadata()
    lines.append(f"method        {run.model.method}")
    kept = {"select": "of", "orthogonal": "projected from"}.get(
        str(facts.get("reduction")), "dims pooled from"
    )
    lines.append(
        f"backbone      {spec.name} ({spec.builder}, taps {', '.join(run.model.features.taps)}), "
        f"{config.dims} {kept} {facts.get('channels')} channels (seed {config.seed})"
    )
    if "bank_size" in facts:
        selection = facts.get("coreset_selection", {})
        how = ", ".join(f"{k} {v}" for k, v in selection.items() if k != "train_vectors")
        lines.append(
            f"memory bank   {facts['bank_size']} of {selection.get('train_vectors')} patch vectors "
            f"(coreset {facts['coreset']}, {how}), {head_precision or 'fp32'}"
        )
    lines.append(f"weights       {run.weights}")
    if run.model.method == "padim":  # the Mahalanobis head
        precision = head_precision or "fp32"
        used = len(block_bounds(config.dims, blocks or DEFAULT_BLOCKS, align=PANEL_ALIGN[precision])) - 1
        lines.append(f"head          {precision} Sigma^-1, {used} column block(s)")
    lines.append(f"images used   {run.fit.images} from {data}")
    for file, reason in run.fit.skipped:
        lines.append(f"skipped       {reason if file in reason else f'{file}: {reason}'}")
    lines.append(f"fit           {run.fit.seconds:.1f} s on {run.fit.device}")
    lines.append(
        f"geometry      resize {config.resize} -> crop {config.crop}, "
        f"{run.model.grid}x{run.model.grid} patches"
    )
    if run.parity is not None:  # checked on the staged graph, before anything was written
        p = run.parity
        frames = " (resized to the input size)" if size is not None else ""
        lines.append(
            f"parity        ONNX Runtime vs PyTorch on {p.images} training images{frames}: "
            f"max |d score| {p.max_abs_score:.2e}, max |d map| {p.max_abs_map:.2e} "
            f"(tolerance {p.tolerance:.1e} at max score {p.max_score:.3f}) ok"
        )
    for f in run.export.files:
        lines.append(f"wrote         {f} ({file_size(f.stat().st_size)})")
    from padim_edge.compat.check import tensorrt_lines  # onnx: imported once an export ran

    lines += tensorrt_lines(run.export.files[0], size)
    return lines
