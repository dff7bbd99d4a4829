"""The head variants: rewrite a model's head to another precision (numpy + onnx, no torch).

PaDiM: the head's mean and packed Sigma^-1 panels are read from the model's own constants and the head
nodes rebuilt (:func:`padim_edge.export.padim.head_io.rewrite_head_precision`). PatchCore: its memory
bank and neighbour table, the same way (:func:`padim_edge.export.patchcore.head_io.rewrite_bank_precision`).
Everything else, whatever the backbone's precision, stays as it is. Going down (fp32 -> fp16 -> int8)
gives the same constants as an export at that precision; going up from a compact head cannot bring back
the fitted float32 values.
"""

from __future__ import annotations

import onnx

from padim_edge.calibration.errors import CalibrationError
from padim_edge.export.padim.compact_head import COLUMN_SCALE
from padim_edge.export.padim.graph_head import BYTES_PER_ENTRY
from padim_edge.export.padim.head_io import HeadError, head_layout, rewrite_head_precision
from padim_edge.export.patchcore import head_io as patchcore_head
from padim_edge.onnx_files import tensor_bytes

#: What each head precision means for where the model runs (summary warnings).
EP_NOTES = {
    "int8": "the int8 {what} uses MatMulInteger, which TensorRT does not import and the CUDA EP has for int8 "
    "x int8 only (the {what} feeds it uint8): run this model on the CPU EP; on a GPU that node would run on "
    "the CPU (use --head-precision fp16 there)",
    "fp16": "the x86 CPU EP converts float16 constants back to float32 when the session loads (float32 "
    "speed, and more memory than the file): the fp16 {what} is for the CUDA / TensorRT EPs",
}


def head_bytes(proto: onnx.ModelProto) -> int:
    """Bytes of the head's Sigma^-1 panels and their scales."""
    names = set(head_layout(proto).panels) | {COLUMN_SCALE}
    return sum(tensor_bytes(t) for t in proto.graph.initializer if t.name in names)


def rewrite(
    proto: onnx.ModelProto, precision: str, *, blocks: int | None = None
) -> tuple[list[str], list[str]]:
    """Rebuild ``proto``'s head in ``precision`` (with ``blocks`` column blocks, default: as many), in place.

    Returns:
        Summary lines and warnings.

    Raises:
        CalibrationError: No PaDiM or PatchCore head, the head is already in ``precision``, or ``blocks``
            for a PatchCore model.
    """
    if patchcore_head.is_patchcore_head(proto):
        return _rewrite_bank(proto, precision, blocks=blocks)
    try:
        layout = head_layout(proto)
        before = head_bytes(proto)
        rewrite_head_precision(proto, precision, blocks=blocks)
        after = head_bytes(proto)
        blocks = len(head_layout(proto).panels)
    except (HeadError, ValueError) as exc:
        raise CalibrationError(f"cannot rewrite the head: {exc}") from exc
    details = [
        f"head          {layout.precision} -> {precision} Sigma^-1 ({len(layout.panels)} -> {blocks} column "
        f"blocks, {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB)"
    ]
    return details, _warnings(layout.precision, precision, what="head")


def _rewrite_bank(
    proto: onnx.ModelProto, precision: str, *, blocks: int | None
) -> tuple[list[str], list[str]]:
    """PatchCore: the memory bank and its nearest-neighbour MatMul rebuilt in ``precision``."""
    if blocks is not None:
        raise CalibrationError("--head-blocks applies to PaDiM's Sigma^-1 only, not to a PatchCore bank")
    try:
        before = patchcore_head.bank_bytes(proto)
        layout = patchcore_head.rewrite_bank_precision(proto, precision)
        after = patchcore_head.bank_bytes(proto)
    except (HeadError, ValueError) as exc:
        raise CalibrationError(f"cannot rewrite the head: {exc}") from exc
    details = [
        f"head          {layout.precision} -> {precision} memory bank ({layout.rows} x {layout.dims}, "
        f"{before / 1e6:.1f} MB -> {after / 1e6:.1f} MB)"
    ]
    return details, _warnings(layout.precision, precision, what="bank")


def _warnings(before: str, precision: str, *, what: str) -> list[str]:
    """What to tell the user about a rewrite from ``before`` to ``precision`` (``what``: head or bank)."""
    warnings = []
    if BYTES_PER_ENTRY[precision] > BYTES_PER_ENTRY[before]:
        warnings.append(
            f"the {precision} {what} was rebuilt from the {before} {what}'s constants: it keeps their "
            "rounding; export (or calibrate) from the float32 model to get the fitted values back"
        )
    if precision in EP_NOTES:
        warnings.append(EP_NOTES[precision].format(what=what))
    return warnings
