"""The int8 head's float32 low-rank split of Sigma^-1 (numpy + onnx).

Per patch ``Sigma^-1 = U diag(mu) U^T + R``, ``U`` the ``k`` eigenvectors of largest variance kept in
float32 and only the remainder ``R`` quantised (the reasoning and the bounds are in
:mod:`padim_edge.export.padim.compact_head`). Here: how many directions (:func:`low_rank_size`,
:data:`SPLIT_ERROR`), which (:func:`low_rank_split`), the remainder's panels (:func:`residual_panels`)
and the float32 nodes (:func:`low_rank_nodes`).
"""

from __future__ import annotations

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from padim_edge.export.padim.panel_nodes import HEAD_PREFIX, unpack_panels
from padim_edge.export.padim.panel_quantize import WEIGHT_LEVELS
from padim_edge.gaussian import EPSILON

#: The int8 head's float32 low-rank part: ``[P, d, k]`` orthonormal directions (the training data's
#: ``k`` largest variances) and ``[P, 1, k]`` their Sigma^-1 eigenvalues ``1 / (lambda + 0.01)``.
LOW_RANK_BASIS = HEAD_PREFIX + "low_rank_basis"
LOW_RANK_WEIGHT = HEAD_PREFIX + "low_rank_weight"
LOW_RANK_BASIS_T = HEAD_PREFIX + "low_rank_basis_t"
#: At most ``ceil(d / LOW_RANK_DIVISOR)`` directions in float32 when the data spans every direction.
LOW_RANK_DIVISOR = 4
#: The predicted relative int8 error (:func:`low_rank_size`) the float32 split brings the head to; the
#: parity tolerance is 3e-2 of the largest score.
SPLIT_ERROR = 0.05
#: Patches decomposed at a time (float64 eigendecompositions).
EIGEN_CHUNK = 64
#: An eigenvalue of Sigma^-1 below ``(1 - DATA_GAP) / EPSILON`` belongs to a direction the data spans.
DATA_GAP = 1e-3


def low_rank_cap(dims: int, spanned: int) -> int:
    """The most directions the int8 head keeps in float32: the data's span when the data leaves some
    out (fewer images than dims), else ``ceil(dims / 4)``."""
    return spanned if 0 < spanned < dims else -(-dims // LOW_RANK_DIVISOR)


def low_rank_size(variances: np.ndarray, cap: int) -> int:
    """The fewest largest-variance directions to keep in float32 so the int8 remainder holds parity.

    Quantising ``Sigma^-1`` whole costs about ``(1 / 0.01) / 127`` per unit of an embedding's squared
    length, and normal embeddings are long along the largest variances ``lambda``; the predicted
    relative error after keeping ``k`` directions is ``sum_{j > k} lambda_j / (127 * 0.01 * d)``
    (measured: the parity error stayed below 0.3 of it). ``k`` is the smallest that brings it to
    :data:`SPLIT_ERROR` on every patch, at most ``cap``; 0 (the compact form, about a quarter of the
    float32 head) when the data is well conditioned.

    Args:
        variances: ``[P, d]`` per-patch variances, largest first.
        cap: The most directions to keep.
    """
    dims = variances.shape[-1]
    tails = np.cumsum(variances[:, ::-1], axis=1)[:, ::-1]  # tails[:, k] = sum_{j >= k} lambda_j
    predicted = np.concatenate([tails, np.zeros((len(tails), 1))], axis=1) / (WEIGHT_LEVELS * EPSILON * dims)
    needed = int((predicted > SPLIT_ERROR).sum(axis=1).max())  # predicted is non-increasing in k
    return min(needed, cap)


def low_rank_split(panels: list[np.ndarray], rank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The directions of largest variance of each patch's Gaussian, from its packed panels.

    Per patch, ``Sigma^-1 = V diag(mu) V^T`` (float64, :data:`EIGEN_CHUNK` patches at a time); the
    smallest ``mu = 1 / (lambda + 0.01)`` belong to the largest variances ``lambda``.

    Args:
        panels: The packed float32 panels of Sigma^-1.
        rank: Directions kept (default :func:`low_rank_size`, from the spectra).

    Returns:
        ``U`` ``[P, d, k]`` (float32, orthonormal columns) and ``mu`` ``[P, 1, k]`` (float32); ``k`` may be 0.
    """
    patches = panels[0].shape[0]
    dims = sum(p.shape[-1] for p in panels)
    mus, vectors, variances = [], [], []
    spanned = 0
    keep = dims if rank is None else rank
    for start in range(0, patches, EIGEN_CHUNK):
        full = unpack_panels(panels, slice(start, start + EIGEN_CHUNK)).astype(np.float64)
        mu, v = np.linalg.eigh(full)
        # a direction the data leaves out has mu = 1 / 0.01 exactly (up to float32 rounding)
        spanned = max(spanned, int((mu < (1 - DATA_GAP) / EPSILON).sum(axis=1).max()))
        variances.append(np.maximum(1.0 / mu - EPSILON, 0.0))
        mus.append(mu[:, :keep].astype(np.float32))
        vectors.append(v[:, :, : max(keep // 2, 1) if rank is None else keep].astype(np.float32))
    if rank is None:
        rank = low_rank_size(np.concatenate(variances), low_rank_cap(dims, spanned))
        if rank > vectors[0].shape[-1]:  # kept half the directions above; rare: decompose again
            return low_rank_split(panels, rank)
    basis = np.concatenate([v[:, :, :rank] for v in vectors])
    weight = np.concatenate([m[:, None, :rank] for m in mus])
    return basis, weight


def low_rank_panel(basis: np.ndarray, weight: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Packed panel ``[:, lo:, lo:hi]`` of ``U diag(mu) U^T`` (rows below the diagonal block doubled)."""
    panel = (basis[:, lo:, :] * weight) @ basis[:, lo:hi, :].transpose(0, 2, 1)
    panel[:, hi - lo :, :] *= 2.0
    return panel


def residual_panels(panels: list[np.ndarray], basis: np.ndarray, weight: np.ndarray) -> list[np.ndarray]:
    """The packed panels of ``Sigma^-1 - U diag(mu) U^T`` (what the int8 head quantises)."""
    out = []
    lo = 0
    for panel in panels:
        hi = lo + panel.shape[-1]
        out.append(panel - low_rank_panel(basis, weight, lo, hi))
        lo = hi
    return out


def _name(name: str) -> str:
    return HEAD_PREFIX + name


def low_rank_nodes(
    delta: str, basis: np.ndarray, weight: np.ndarray
) -> tuple[list[NodeProto], list[TensorProto]]:
    """float32 ``low_rank = sum_i mu_i (u_i . x)^2`` ``[P, N]`` and ``residual = x - U U^T x`` ``[P, N, d]``.

    ``U``'s directions are eigenvectors of Sigma^-1, so ``x^T Sigma^-1 x`` is exactly ``low_rank`` plus
    the remainder's quadratic form of the residual, which the int8 MatMul then computes. Normal
    embeddings are large along the directions of large variance, where Sigma^-1 is small: taking those
    out first leaves the int8 part a small residual, whatever the number of training images.
    """
    n = _name
    inits = [
        numpy_helper.from_array(basis, LOW_RANK_BASIS),
        numpy_helper.from_array(weight, LOW_RANK_WEIGHT),
        # stored, not a Transpose node: backbone quantisation tools re-sort graphs with one badly
        numpy_helper.from_array(np.ascontiguousarray(basis.transpose(0, 2, 1)), LOW_RANK_BASIS_T),
    ]
    nodes = [
        helper.make_node("MatMul", [delta, LOW_RANK_BASIS], [n("projection")], name=n("project")),
        helper.make_node("MatMul", [n("projection"), LOW_RANK_BASIS_T], [n("back")], name=n("back")),
        helper.make_node("Sub", [delta, n("back")], [n("residual")], name=n("residual")),
        helper.make_node("Mul", [n("projection"), n("projection")], [n("projection_sq")], name=n("proj_sq")),
        helper.make_node("Mul", [n("projection_sq"), LOW_RANK_WEIGHT], [n("low_rank_terms")], name=n("lr_w")),
        helper.make_node(
            "ReduceSum", [n("low_rank_terms"), n("axis2")], [n("low_rank")], keepdims=0, name=n("low_rank")
        ),
    ]
    return nodes, inits
