"""PaDiM settings, stdlib only: the reduction and the head's. The CLIs' ``--help`` and the benchmarks
read them without importing numpy, onnx or torch (:mod:`.graph_head` re-exports the head's names).
"""

from __future__ import annotations

#: How the tapped channels become the embedding (``--reduction``); see :mod:`.reduction`.
REDUCTIONS = ("select", "orthogonal")
DEFAULT_REDUCTION = "select"
REDUCTION_HELP = {
    "select": "the paper's fixed random channel subset (an index-select, free in the graph)",
    "orthogonal": "a fixed random semi-orthogonal projection W^T x (Kim et al. 2021; one 1x1 convolution "
    "per tapped map: 35 M multiply-adds per image for R18-Rd100, 773 M for WR50-Rd550, about +0.4 / +4 ms "
    "on 2 CPU cores)",
}


def one_of(value: str, choices: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``choices``.

    Raises:
        ValueError: Any other value (the message names ``what`` and the choices).
    """
    if value not in choices:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_reduction(reduction: str) -> str:
    """``reduction`` if it is one of :data:`REDUCTIONS` (else ``ValueError``)."""
    return one_of(reduction, REDUCTIONS, "reduction")


#: Column blocks of the packed symmetric Sigma^-1 storage; measured in benchmarks/.
DEFAULT_BLOCKS = 3
#: The head's precisions: what its Sigma^-1 panels are stored in and its MatMul runs in.
HEAD_PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISION = "fp32"
#: Bytes per stored Sigma^-1 entry.
BYTES_PER_ENTRY = {"fp32": 4, "fp16": 2, "int8": 1}
#: Column-block boundaries fall on multiples of this. onnxruntime's integer GEMM (MLAS) packs the right
#: operand in panels 16 columns wide, once per patch and call (3-D weights are not prepacked): a 33-column
#: block costs 48. Measured on the R18-Rd100 int8 head alone, batch 1: blocks [0, 32, 64, 100] run
#: about 10-25 % faster than [0, 33, 67, 100]. float32 batch-1 MatMul does not pack, so it keeps the
#: even split.
PANEL_ALIGN = {"fp32": 1, "fp16": 16, "int8": 16}


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`HEAD_PRECISIONS` (else ``ValueError``)."""
    return one_of(precision, HEAD_PRECISIONS, "head precision")


#: Which execution providers each precision is for (the ``--head-precision`` help and the README).
PRECISION_HELP = {
    "fp32": "float32 panels: every EP; the reference",
    "fp16": "float16 panels and MatMul (float32 scaling around it): CUDA / TensorRT EPs. The x86 CPU EP "
    "converts them back to float32 when the session loads (float32 speed and memory)",
    "int8": "int8 panels, MatMulInteger with uint8 activations: the CPU EP, a quarter of the bytes. TensorRT "
    "does not import MatMulInteger and the CUDA EP has it for int8 x int8 only, so GPUs run that node on the "
    "CPU: use fp16 there",
}


def block_bounds(dims: int, blocks: int, *, align: int = 1) -> list[int]:
    """Column-block boundaries of ``Sigma^-1``: ascending integers from 0 to ``dims``.

    ``blocks`` even blocks, their inner boundaries rounded to multiples of ``align`` (blocks that
    become empty are dropped, so there can be fewer).
    """
    blocks = max(1, min(blocks, dims))
    return align_bounds([round(i * dims / blocks) for i in range(blocks + 1)], align)


def align_bounds(bounds: list[int], align: int) -> list[int]:
    """``bounds`` with every inner boundary rounded to a multiple of ``align`` (duplicates dropped)."""
    dims = bounds[-1]
    if align <= 1:
        return list(bounds)
    inner = {align * round(b / align) for b in bounds[1:-1]}
    return [0, *sorted(b for b in inner if 0 < b < dims), dims]
