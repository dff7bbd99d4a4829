"""PatchCore's compact banks: the memory bank in int8 or float16, scaled per bank vector (numpy + onnx).

The bank ``[M, D]`` is stored transposed, ``Q`` ``[D, M]``, with one float32 scale per bank vector
``c`` ``[M]``: ``m ~ q(m) = Q[:, m] * c_m`` (int8: ``c = max|m| / 127``, ``|Q| <= 127``; float16:
``c = max|m|``, ``|Q| <= 1``). The query patches are scaled as the PaDiM compact head scales its
centred embeddings (:func:`padim_edge.export.padim.compact_head.activation_nodes`, the same nodes):
per patch row by ``step = max|x| / 63`` (int8, rounded, uint8 with zero point 64: seven bits, so
onnxruntime's AVX2 uint8 x int8 kernel cannot saturate) or ``step = max|x|`` (float16). Then::

    t  = a @ Q                              int32 (MatMulInteger) or float16 (MatMul), [N, P, M]
    r  = ||q(m)||^2 - 2 t * step * c        float32; ||q(m)||^2 exact (float64 at export) of the stored m

and ``TopK(r, 1, smallest)`` picks the nearest stored vector (``||x||^2`` is the same for every ``m``).
The distance itself is **recomputed from differences** against that one dequantised vector,
``||x - q(m_hat)||`` (as the float32 head does): never from ``||x||^2 - 2 x.m + ||m||^2``, whose
cancellation turns the MatMul's error ``E`` into an error of ``sqrt(E)`` where distances are near 0.
The float16 operands are bounded (``|a| <= 1``, ``|Q| <= 1``, so ``|t| <= D``): no float16 overflow.

**Error bound** of the nearest distance ``d_hat`` against the exact ``d* = min_m ||x - m||`` of the
float32 bank, per patch. With ``e = max_m ||m - q(m)||`` (int8: ``<= c_m sqrt(D) / 2``; float16:
``<= 2^-11 ||m||``; :func:`storage_error` gives it exactly) and ``E`` the ranking error of ``r``::

    d* - e  <=  d_hat  <=  sqrt((d* + e)^2 + 2 E)        (so |d_hat - d*| <= e + sqrt(2 E))
    int8:     E = step * max_m ||q(m)||_1                (activation rounding, |x - a step| <= step / 2)
    float16:  E = 2 (1 + k) u sum_i |x_i| max_m |q(m)_i|,  u = 2^-11, k = 0 if the EP accumulates in
              float32 (the x86 CPU EP converts the bank back to float32 at load), else D

The ``sqrt(2E)`` term only appears where the ranking picks another vector than the nearest, i.e. where
another stored vector is within ``2E`` (squared) of the nearest: the chosen one is then nearly as near.
Measured on random Gaussian banks with near-duplicate queries and on the magnetic tile: see
``tests/export/patchcore/test_compact_bank.py`` and ``docs/patchcore.md``.

The re-weighted score gathers its ``N_b(m*)`` vectors from the same stored bank (dequantised), so its
support distances carry at most ``e`` each, and ``1 - softmax`` moves by at most ``e / 2``.
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from padim_edge import graph_names
from padim_edge.export.padim.compact_head import (
    ACTIVATION_LEVELS,
    TENSOR_MODE_WEIGHT_LEVELS,
    WEIGHT_LEVELS,
    activation_nodes,
)

#: Name of the stored (transposed) bank per precision, and of the per-vector scales.
BANK = {"fp16": graph_names.HEAD + "bank_fp16", "int8": graph_names.HEAD + "bank_int8"}
BANK_SCALE = graph_names.HEAD + "bank_scale"
#: float16 unit roundoff.
FP16_U = 2.0**-11


def _name(name: str) -> str:
    return graph_names.HEAD + name


def quantize_bank(
    bank: np.ndarray, precision: str, *, levels: int = WEIGHT_LEVELS
) -> tuple[np.ndarray, np.ndarray]:
    """``(Q [D, M], c [M])`` with ``bank[m] ~ Q[:, m] * c[m]`` (see the module docstring).

    An all-zero bank vector gets ``c = 1``. ``levels``: int8 only, the largest ``|Q|``.

    Raises:
        ValueError: ``precision`` is not ``int8`` or ``fp16``.
    """
    if precision not in BANK:
        raise ValueError(f"compact banks are int8 or fp16, got {precision!r}")
    bank = np.asarray(bank, dtype=np.float32)
    divisor = np.float32(levels if precision == "int8" else 1.0)
    scale = np.abs(bank).max(axis=1) / divisor
    scale[scale == 0] = 1.0
    scaled = bank / scale[:, None]
    stored = np.rint(scaled).astype(np.int8) if precision == "int8" else scaled.astype(np.float16)
    return np.ascontiguousarray(stored.T), scale.astype(np.float32)


def dequantize_bank(stored: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 ``[M, D]`` bank a compact head computes with: ``q(m) = Q[:, m] * c_m``."""
    return (stored.astype(np.float32) * scale[None, :]).T


def storage_error(bank: np.ndarray, precision: str) -> np.ndarray:
    """``||m - q(m)||`` per bank vector ``[M]`` (float64): the ``e`` of the error bound."""
    if precision == "fp32":
        return np.zeros(len(bank))
    stored = dequantize_bank(*quantize_bank(bank, precision)).astype(np.float64)
    return np.sqrt(((np.asarray(bank, dtype=np.float64) - stored) ** 2).sum(axis=1))


def ranking_nodes(
    patches: str, bank: np.ndarray, precision: str, *, activation: str = "row"
) -> tuple[list[NodeProto], list[TensorProto], str]:
    """Nodes ranking every stored bank vector for every patch: ``r`` ``[N, P, M]`` (see above).

    Args:
        patches: Name of the ``[N, P, D]`` float32 patch vectors.
        bank: ``[M, D]`` float32 memory bank.
        precision: ``int8`` or ``fp16``.
        activation: int8 only: ``row`` (per-patch 7-bit, the default) or ``tensor``
            (``DynamicQuantizeLinear``, 8-bit per tensor, then a 7-bit bank; see :data:`ACTIVATIONS`).

    Returns:
        Nodes, initializers (the stored bank, its scales and squared norms among them) and the name of ``r``.
    """
    levels = TENSOR_MODE_WEIGHT_LEVELS if activation == "tensor" else WEIGHT_LEVELS
    stored, scale = quantize_bank(bank, precision, levels=levels)
    exact = dequantize_bank(stored, scale).astype(np.float64)
    norms = np.einsum("ij,ij->i", exact, exact).astype(np.float32)
    n = _name
    nodes, inits, a, step, zero_point = activation_nodes(patches, precision, activation)
    inits += [
        numpy_helper.from_array(stored, BANK[precision]),
        numpy_helper.from_array(scale, BANK_SCALE),
        numpy_helper.from_array(norms, n("bank_sq")),
        numpy_helper.from_array((-2.0 * scale).astype(np.float32), n("bank_scale_neg2")),
    ]
    if precision == "int8":
        matmul = helper.make_node(
            "MatMulInteger", [a, BANK[precision], zero_point], [n("t")], name=n("bank_matmul")
        )
    else:
        matmul = helper.make_node("MatMul", [a, BANK[precision]], [n("t")], name=n("bank_matmul"))
    nodes += [
        matmul,
        helper.make_node("Cast", [n("t")], [n("t_float")], to=TensorProto.FLOAT, name=n("t_float")),
        helper.make_node("Mul", [n("t_float"), n("bank_scale_neg2")], [n("t_scaled")], name=n("t_scaled")),
        helper.make_node("Mul", [n("t_scaled"), step], [n("t_dot")], name=n("t_dot")),
        helper.make_node("Add", [n("t_dot"), n("bank_sq")], [n("partial")], name=n("partial")),
    ]
    return nodes, inits, n("partial")


def gather_nodes(indices: str, output: str, precision: str, *, index_rank: int) -> list[NodeProto]:
    """Nodes gathering dequantised bank vectors: ``output`` ``[*indices.shape, D]`` float32."""
    n = _name
    base = output.removeprefix(graph_names.HEAD)
    perm = [*range(1, index_rank + 1), 0]
    nodes = [
        helper.make_node("Gather", [BANK[precision], indices], [n(f"{base}_q")], axis=1, name=n(f"{base}_q")),
        helper.make_node(
            "Cast", [n(f"{base}_q")], [n(f"{base}_f")], to=TensorProto.FLOAT, name=n(f"{base}_f")
        ),
        helper.make_node("Gather", [BANK_SCALE, indices], [n(f"{base}_c")], axis=0, name=n(f"{base}_c")),
        helper.make_node("Mul", [n(f"{base}_f"), n(f"{base}_c")], [n(f"{base}_t")], name=n(f"{base}_t")),
        helper.make_node("Transpose", [n(f"{base}_t")], [output], perm=perm, name=output),
    ]
    return nodes


def ranking_error(rows: np.ndarray, bank: np.ndarray, precision: str, *, accumulation: int = 0) -> np.ndarray:
    """``E`` per query row ``[K]``: a bound on the error of the ranking ``r`` (module docstring, float64).

    Args:
        rows: ``[K, D]`` query patch vectors.
        bank: ``[M, D]`` float32 memory bank (quantised here as the graph quantises it).
        precision: ``fp32``, ``fp16`` or ``int8`` (``fp32``: 0, float32 rounding aside).
        accumulation: float16 only: ``k``, the MatMul's accumulation length in float16 (0 for float32
            accumulation, as on the x86 CPU EP).
    """
    rows = np.asarray(rows, dtype=np.float64)
    if precision == "fp32":
        return np.zeros(len(rows))
    stored = np.abs(dequantize_bank(*quantize_bank(bank, precision)).astype(np.float64))
    if precision == "int8":
        step = np.abs(rows).max(axis=1) / ACTIVATION_LEVELS
        return step * stored.sum(axis=1).max()
    return 2.0 * (1 + accumulation) * FP16_U * (np.abs(rows) @ stored.max(axis=0))


def distance_bounds(
    rows: np.ndarray, bank: np.ndarray, precision: str, nearest: np.ndarray, *, accumulation: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """How far below and above the exact nearest distances ``nearest`` ``[K]`` the graph's may be.

    ``(e, sqrt((d* + e)^2 + 2E) - d*)`` per row, with ``e`` the largest storage error of the bank and
    ``E`` :func:`ranking_error` (float32 rounding aside).
    """
    e = float(storage_error(bank, precision).max())
    big_e = ranking_error(rows, bank, precision, accumulation=accumulation)
    nearest = np.asarray(nearest, dtype=np.float64)
    return np.full(len(rows), e), np.sqrt((nearest + e) ** 2 + 2.0 * big_e) - nearest
