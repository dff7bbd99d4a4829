"""The compact heads: Sigma^-1 panels in int8 or float16, scaled per patch and column (numpy + onnx).

Both share one layout. Each packed panel ``W`` (``[P, rows, cols]``, see
:func:`~padim_edge.export.padim.graph_head.packed_blocks`) is stored as ``Q * c``: ``c`` ``[P, 1, cols]``
(one float32 scale per patch and column, from ``Sigma^-1`` itself) and ``Q`` in int8 (``|Q| <= 127``)
or float16 (``|Q| <= 1``). At run time each centred embedding row ``x = delta[p, n, :]`` is scaled by
its own maximum ``m = max |x|`` (a GlobalMaxPool over the last axis, the same op at opset 17 and 18),
so the low-precision MatMul sees bounded operands, and float32 undoes both scales::

    a  = x / step                     step = m / 63 (int8) or m (float16)
    t  = q(a)[lo:] @ Q                q: QuantizeLinear to uint8 (int8, MatMulInteger: int32) or a Cast
                                      to float16 (fp16, MatMul)
    d2 = step^2 * sum_c t_c * a_c * c_c          float32 (the unrounded a: the same as x_c * c_c * step,
                                      one [P, N, d] pass fewer), then clamped at 0 and square-rooted

**int8** (``MatMulInteger``, CPU EP; TensorRT does not import it, and onnxruntime's CUDA EP registers it
for int8 x int8 only, so on a GPU the node runs on the CPU): ``a`` is rounded to the integers
``-63..63`` and fed as uint8 with zero point 64. Seven bits, not eight, because onnxruntime's AVX2
kernel without VNNI multiplies uint8 by int8 with ``vpmaddubsw``, whose int16 pair sums saturate past
32767: ``127 * 127 * 2`` fits, ``255 * 127 * 2`` does not (measured on this machine: an 8-bit
activation with full-range int8 weights returned sums off by 97 %). The per-tensor alternative,
``DynamicQuantizeLinear`` (asymmetric uint8 0..255), then needs 7-bit weights and is about twice
less accurate on PaDiM Gaussians (``activation="tensor"``, kept for ``benchmarks/compact_head.py``).

**int8, split** (:func:`~.low_rank.low_rank_split`, :func:`~.panel_quantize.quantize_off_diagonal`): before
quantising, each patch's ``Sigma^-1 = U diag(mu) U^T + R`` with ``U`` the ``k`` eigenvectors of largest
variance, kept in float32 (two float MatMuls: ``p = x U``, ``r = x - p U^T``, and ``sum_i mu_i p_i^2``), and
only the remainder ``R`` in int8, applied to the residual ``r`` (the formulas above with ``x := r``,
``W := R``), its diagonal in float32. ``k`` (:func:`~.low_rank.low_rank_size`) is the fewest largest-variance
directions that bring the predicted int8 error under :data:`~.low_rank.SPLIT_ERROR`: 0 for well-conditioned
Gaussians (the compact form, about a quarter of the float32 head), up to the data's span when the images are
fewer than the dims (a training embedding's residual is then about zero), else up to ``ceil(d / 4)``.
Quantising all of ``Sigma^-1`` fails on ill-conditioned fits: ``1 / 0.01`` eigenvalues set the int8 scales
while normal embeddings are long along the data's largest variances, where ``Sigma^-1`` is small (24 images:
parity 1.73 against a tolerance of 0.14 on MobileNetV2-Rd152; with the split 5e-6). The split costs
``8 d k`` bytes a patch (the basis and its transpose), so an ill-conditioned fit's int8 head is larger than a
quarter.

Error bound (int8, per patch, exact integer MatMul, float32 rounding aside; ``x`` the residual and ``W``
the remainder's panel without its diagonal): with ``s_c = c_c``
the column steps (``Q`` was rounded, so ``|W - Q c| <= c / 2`` entrywise) and the activation step
``step`` (``|x - a step| <= step / 2``), the computed ``d2`` differs from ``x^T Sigma^-1 x`` by at most::

    sum_c |x_c| * ( step / 2 * sum_r |W_rc| + s_c / 2 * sum_r |x_r| + s_c * step / 4 * rows )

(sums over the panel's rows ``r >= lo``). On PaDiM-like Gaussians the relative error of ``d2`` is
about 5e-3 (median) and 2e-2 (99th percentile); ``tests/export/test_compact_head.py`` asserts both the
bound and those figures with margin.

**float16** (``MatMul``, CUDA / TensorRT EPs): ``|a| <= 1`` and ``|Q| <= 1``, so ``|t| <= rows <=
1792``: no float16 overflow whatever the input (an anomalous patch would otherwise reach 65504 and
turn into inf, and a blurred inf into NaN). Error bound, with ``u = 2^-11`` (float16 unit roundoff)
and ``k`` the accumulation length in float16 (``rows`` where the EP accumulates in float16, 0 where
it accumulates in float32 as the x86 CPU EP does after converting the panels back to float32)::

    |err| <= (3 + k) u * sum_c |x_c| * sum_r |x_r W_rc|    (to first order in u)

About 1e-4 relative on PaDiM Gaussians.

This module builds the run-time nodes; the numpy storage of the panels is in
:mod:`.panel_quantize` and the low-rank split in :mod:`.low_rank` (both re-exported here).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from padim_edge.export.padim.low_rank import (
    DATA_GAP,
    EIGEN_CHUNK,
    LOW_RANK_BASIS,
    LOW_RANK_BASIS_T,
    LOW_RANK_DIVISOR,
    LOW_RANK_WEIGHT,
    SPLIT_ERROR,
    low_rank_cap,
    low_rank_panel,
    low_rank_size,
    low_rank_split,
    residual_panels,
)
from padim_edge.export.padim.low_rank import low_rank_nodes as _low_rank_nodes
from padim_edge.export.padim.panel_nodes import HEAD_PREFIX, iter_bounded, panel_slices
from padim_edge.export.padim.panel_quantize import (
    CHUNK,
    WEIGHT_LEVELS,
    dequantize_panel,
    quantize_off_diagonal,
    quantize_panel,
)

__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_LEVELS",
    "ACTIVATION_ZERO_POINT",
    "CHUNK",
    "COLUMN_SCALE",
    "DATA_GAP",
    "DIAGONAL",
    "EIGEN_CHUNK",
    "LOW_RANK_BASIS",
    "LOW_RANK_BASIS_T",
    "LOW_RANK_DIVISOR",
    "LOW_RANK_WEIGHT",
    "PANEL_SUFFIX",
    "SPLIT_ERROR",
    "TENSOR_MODE_WEIGHT_LEVELS",
    "TINY",
    "WEIGHT_LEVELS",
    "activation_nodes",
    "dequantize_panel",
    "low_rank_cap",
    "low_rank_panel",
    "low_rank_size",
    "low_rank_split",
    "quantize_off_diagonal",
    "quantize_panel",
    "residual_panels",
    "scaled_squared",
]

#: Largest magnitude of a quantised activation: 7 bits, so uint8 x int8 pair sums fit int16 (see above).
ACTIVATION_LEVELS = 63
#: Zero point of the uint8 activations (``a + 64`` is in ``1..127``).
ACTIVATION_ZERO_POINT = 64
#: Weight levels of the ``tensor`` activation mode (DynamicQuantizeLinear's uint8 reaches 255).
TENSOR_MODE_WEIGHT_LEVELS = 63
#: int8 activation modes.
ACTIVATIONS = ("row", "tensor")
#: Row maxima below this are treated as this (an all-zero row would divide by zero).
TINY = 1e-30
#: Initializer name suffix of each precision's panels.
PANEL_SUFFIX = {"fp32": "", "fp16": "_fp16", "int8": "_int8"}
#: The ``[P, 1, d]`` float32 column scales of the compact heads.
COLUMN_SCALE = HEAD_PREFIX + "column_scale"
#: The int8 head's ``[P, 1, d]`` float32 diagonal of the quantised remainder, applied exactly.
DIAGONAL = HEAD_PREFIX + "diagonal"


def _name(name: str) -> str:
    return HEAD_PREFIX + name


def _row_scale_nodes(delta: str, precision: str) -> tuple[list[NodeProto], list[TensorProto], str]:
    """``step`` ``[P, N, 1]``: each row's max |x| over the activation levels (at least :data:`TINY`)."""
    n = _name
    levels = ACTIVATION_LEVELS if precision == "int8" else 1
    inits = [numpy_helper.from_array(np.array(TINY, dtype=np.float32), n("tiny"))]
    nodes = [
        helper.make_node("Abs", [delta], [n("delta_abs")], name=n("delta_abs")),
        helper.make_node("GlobalMaxPool", [n("delta_abs")], [n("row_max")], name=n("row_max")),
    ]
    row_max = n("row_max")
    if levels != 1:
        inits.append(numpy_helper.from_array(np.array(1.0 / levels, dtype=np.float32), n("inv_levels")))
        nodes.append(
            helper.make_node("Mul", [row_max, n("inv_levels")], [n("row_step_raw")], name=n("row_step_raw"))
        )
        row_max = n("row_step_raw")
    nodes.append(helper.make_node("Max", [row_max, n("tiny")], [n("row_step")], name=n("row_step")))
    return nodes, inits, n("row_step")


def activation_nodes(
    delta: str, precision: str, activation: str
) -> tuple[list[NodeProto], list[TensorProto], str, str, str]:
    """Nodes giving ``(a, step, zero point)`` names: the MatMul's left operand and its scale.

    ``delta`` is any float32 tensor of rank 3 or more, scaled per row of its last axis (PatchCore's
    compact bank scales its ``[N, P, D]`` query patches with the same nodes).
    """
    n = _name
    if precision == "int8" and activation == "tensor":
        node = helper.make_node(
            "DynamicQuantizeLinear", [delta], [n("a"), n("row_step"), n("a_zero_point")], name=n("quantize")
        )
        return [node], [], n("a"), n("row_step"), n("a_zero_point")
    nodes, inits, step = _row_scale_nodes(delta, precision)
    nodes.append(helper.make_node("Div", [delta, step], [n("a_float")], name=n("a_float")))
    if precision == "fp16":
        nodes.append(helper.make_node("Cast", [n("a_float")], [n("a")], to=TensorProto.FLOAT16, name=n("a")))
        return nodes, inits, n("a"), step, ""
    # |x / step| <= 63 (up to one rounding of the division), so the rounded value is in -63..63 and
    # QuantizeLinear with scale 1 (round half to even, + 64, saturate) is Round + Add + Cast in one pass
    inits.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), n("unit_scale")))
    inits.append(numpy_helper.from_array(np.array(ACTIVATION_ZERO_POINT, dtype=np.uint8), n("a_zero_point")))
    nodes.append(
        helper.make_node(
            "QuantizeLinear", [n("a_float"), n("unit_scale"), n("a_zero_point")], [n("a")], name=n("a")
        )
    )
    return nodes, inits, n("a"), step, n("a_zero_point")


def scaled_squared(
    delta: str,
    panels: Iterable[np.ndarray],
    *,
    dims: int,
    precision: str,
    activation: str = "row",
) -> tuple[list[NodeProto], list[TensorProto]]:
    """Nodes for ``squared`` ``[P, N]`` with int8 or float16 panels (see the module docstring).

    Args:
        delta: Name of the centred ``[P, N, d]`` float32 embeddings.
        panels: Float32 packed panels in column order, consumed one at a time.
        dims: ``d``.
        precision: ``int8`` or ``fp16``.
        activation: int8: ``row`` (per-row 7-bit, the default) or ``tensor`` (DynamicQuantizeLinear).
    """
    if precision not in ("int8", "fp16"):
        raise ValueError(f"compact heads are int8 or fp16, got {precision!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    n = _name
    levels = TENSOR_MODE_WEIGHT_LEVELS if activation == "tensor" else WEIGHT_LEVELS
    low_nodes: list[NodeProto] = []
    low_inits: list[TensorProto] = []
    split = False
    if precision == "int8":
        panels = list(panels)
        basis, weight = low_rank_split(panels)
        split = basis.shape[-1] > 0
        if split:
            panels = residual_panels(panels, basis, weight)
            low_nodes, low_inits = _low_rank_nodes(delta, basis, weight)
            delta = n("residual")
    nodes, inits, a, step, zero_point = activation_nodes(delta, precision, activation)
    nodes = low_nodes + nodes
    inits = low_inits + inits
    suffix = PANEL_SUFFIX[precision]
    partials: list[str] = []
    scales: list[np.ndarray] = []
    diagonals: list[np.ndarray] = []

    for i, (lo, hi, panel) in enumerate(iter_bounded(panels, dims)):
        if precision == "int8":
            q, c, g = quantize_off_diagonal(panel, levels=levels)
            diagonals.append(g)
        else:
            q, c = quantize_panel(panel, precision, levels=levels)
        del panel
        name = n(f"inv_covariance_{i}{suffix}")
        inits.append(numpy_helper.from_array(q, name))
        scales.append(c)
        slice_nodes, slice_inits, rows, _ = panel_slices(a, dims=dims, lo=lo, hi=hi, index=i, columns=False)
        nodes += slice_nodes
        inits += slice_inits
        if precision == "int8":
            nodes.append(
                helper.make_node(
                    "MatMulInteger", [rows, name, zero_point], [n(f"t_{i}")], name=n(f"matmul_{i}")
                )
            )
        else:
            nodes.append(helper.make_node("MatMul", [rows, name], [n(f"t_{i}")], name=n(f"matmul_{i}")))
        partials.append(n(f"t_{i}"))
    inits.append(numpy_helper.from_array(np.concatenate(scales, axis=2), COLUMN_SCALE))
    if diagonals:
        inits.append(numpy_helper.from_array(np.concatenate(diagonals, axis=2), DIAGONAL))
    if len(partials) > 1:
        nodes.append(helper.make_node("Concat", partials, [n("t")], axis=2, name=n("concat")))
    else:
        nodes.append(helper.make_node("Identity", partials, [n("t")], name=n("t")))
    nodes.append(helper.make_node("Cast", [n("t")], [n("t_float")], to=TensorProto.FLOAT, name=n("t_float")))
    if (
        precision == "int8" and activation == "tensor"
    ):  # DynamicQuantizeLinear gives no unrounded a: x * c * step, then the sum
        nodes += [
            helper.make_node(
                "Mul", [delta, COLUMN_SCALE], [n("delta_column_scaled")], name=n("column_scaled")
            ),
            helper.make_node("Mul", [n("delta_column_scaled"), step], [n("weights")], name=n("row_scaled")),
            helper.make_node(
                "Mul", [n("t_float"), n("weights")], [n("off_products")], name=n("off_products")
            ),
            helper.make_node("Mul", [delta, DIAGONAL], [n("delta_diagonal")], name=n("delta_diagonal")),
            helper.make_node("Mul", [n("delta_diagonal"), delta], [n("on_products")], name=n("on_products")),
            helper.make_node(
                "Add", [n("off_products"), n("on_products")], [n("products")], name=n("products")
            ),
            helper.make_node(
                "ReduceSum",
                [n("products"), n("axis2")],
                [n("squared_residual")],
                keepdims=0,
                name=n("reduce"),
            ),
            _total(split),
        ]
        return nodes, inits
    # x_c * c_c * step == (x_c / step) * c_c * step^2: the row scale moves past the sum, onto [P, N, 1];
    # int8 adds the exact diagonal: g_c x_c^2 == (x_c / step) * g_c (x_c / step) * step^2
    if precision == "int8":
        nodes += [
            helper.make_node("Mul", [n("t_float"), COLUMN_SCALE], [n("t_scaled")], name=n("column_scaled")),
            helper.make_node("Mul", [n("a_float"), DIAGONAL], [n("a_diagonal")], name=n("a_diagonal")),
            helper.make_node("Add", [n("t_scaled"), n("a_diagonal")], [n("weights")], name=n("weights")),
            helper.make_node("Mul", [n("weights"), n("a_float")], [n("products")], name=n("products")),
        ]
    else:
        nodes += [
            helper.make_node("Mul", [n("a_float"), COLUMN_SCALE], [n("weights")], name=n("column_scaled")),
            helper.make_node("Mul", [n("t_float"), n("weights")], [n("products")], name=n("products")),
        ]
    nodes += [
        helper.make_node(
            "ReduceSum", [n("products"), n("axis2")], [n("row_sums")], keepdims=1, name=n("reduce")
        ),
        helper.make_node("Mul", [step, step], [n("row_step_squared")], name=n("row_step_squared")),
        helper.make_node(
            "Mul", [n("row_sums"), n("row_step_squared")], [n("squared_kept")], name=n("row_scaled")
        ),
    ]
    if precision != "int8":
        nodes.append(
            helper.make_node("Squeeze", [n("squared_kept"), n("axis2")], [n("squared")], name=n("squeeze"))
        )
        return nodes, inits
    nodes += [
        helper.make_node(
            "Squeeze", [n("squared_kept"), n("axis2")], [n("squared_residual")], name=n("squeeze")
        ),
        _total(split),
    ]
    return nodes, inits


def _total(split: bool) -> NodeProto:
    """``squared``: the float32 low-rank part plus the int8 remainder's, or the int8 part alone."""
    n = _name
    if split:
        return helper.make_node(
            "Add", [n("low_rank"), n("squared_residual")], [n("squared")], name=n("squared")
        )
    return helper.make_node("Identity", [n("squared_residual")], [n("squared")], name=n("squared"))
