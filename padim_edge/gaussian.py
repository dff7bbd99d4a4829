"""Per-patch Gaussian statistics: streamed, mergeable, in float64 (numpy; no torch import).

PaDiM's fit is a stream of sufficient statistics: per patch position a count, a mean and a scatter
matrix (the sum of outer products of the centred embeddings). Memory is set by the model
(``patches x dims x dims`` float64), never by the number of images.

* :meth:`GaussianStatistics.update` folds in a batch with the pairwise update of Chan, Golub and
  LeVeque (1979), which stays accurate where the naive ``E[xx^T] - mu mu^T`` loses digits. It accepts
  numpy arrays or torch tensors and keeps the accumulators with the data (a CUDA fit accumulates on
  the GPU) without importing torch itself.
* :meth:`GaussianStatistics.merge` combines two partial results with the same formula, so shards fitted
  on different workers reduce to exactly the statistics of one pass (up to float64 rounding).
* :meth:`GaussianStatistics.finalize` gives the float32 mean and inverse covariance the graph bakes:
  ``Sigma = scatter / (n - 1) + 0.01 I`` (unbiased, as ``numpy.cov``), inverted in float64.

Used by the torch fit (:mod:`padim_edge.export.fit`), the INT8 refit in calibration (torch-free) and
the distributed fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: PaDiM's covariance regulariser: Sigma = sample covariance + EPSILON * I.
EPSILON = 0.01
#: Bytes of one ``[chunk, d, d]`` float64 temporary (the update's outer products, the inversion's
#: factors): a WR50-Rd550 chunk of 512 patches took 1.2 GB per temporary, about 5 GB in the inversion.
TEMPORARY_BYTES = 64 * 2**20
#: Most patches per chunk (small dims).
MAX_CHUNK = 512
#: float64 ``[d, d]`` temporaries alive at once at the peak of :meth:`GaussianStatistics.finalize`
#: (the covariance, its Cholesky factor, the factor's inverse and its product; numpy's solve copies
#: its right-hand side too).
FINALIZE_TEMPORARIES = 5


def patch_chunk(dims: int) -> int:
    """Patches per chunk for ``dims``: :data:`MAX_CHUNK`, fewer where a ``[chunk, d, d]`` float64
    temporary would pass :data:`TEMPORARY_BYTES` (27 at d = 550), at least 1."""
    return max(1, min(MAX_CHUNK, TEMPORARY_BYTES // (8 * dims * dims)))


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _to_numpy(x: Any) -> np.ndarray:
    if _is_torch(x):
        return x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


class GaussianStatistics:
    """Running per-patch count, mean and scatter matrix in float64.

    Args:
        chunk: Patches updated, merged or inverted at a time, which bounds the temporary memory of each
            step (default: :func:`patch_chunk`, at most :data:`TEMPORARY_BYTES` per ``[chunk, d, d]``
            float64 temporary).

    Attributes:
        count: Samples folded in.
        mean: ``[P, d]`` float64 running mean (``None`` before the first update).
        scatter: ``[P, d, d]`` float64 sum of centred outer products (``None`` before the first update).
    """

    def __init__(self, *, chunk: int | None = None) -> None:
        self.chunk = chunk
        self.count = 0
        self.mean: Any = None
        self.scatter: Any = None

    @property
    def shape(self) -> tuple[int, int] | None:
        """``(patches, dims)`` once anything was folded in."""
        return None if self.mean is None else (int(self.mean.shape[0]), int(self.mean.shape[1]))

    def update(self, embedding: Any) -> None:
        """Fold in a batch of embeddings.

        Args:
            embedding: ``[B, dims, h, w]`` numpy array or torch tensor (any float dtype; promoted to
                float64 where the accumulators live: numpy on the CPU, torch on the tensor's device).

        Raises:
            ValueError: The batch's ``dims`` or patch count differs from earlier batches.
        """
        batch, dims = int(embedding.shape[0]), int(embedding.shape[1])
        if batch == 0:
            return
        flat = embedding.reshape(batch, dims, -1)
        if _is_torch(flat):
            x = flat.permute(2, 0, 1).double()  # [P, B, d]
        else:
            x = np.ascontiguousarray(np.asarray(flat, dtype=np.float64).transpose(2, 0, 1))
        patches = int(x.shape[0])
        if self.mean is None:
            self.mean = x[:, 0, :] * 0.0
            self.scatter = self.mean[:, :, None] * self.mean[:, None, :]
        elif self.shape != (patches, dims):
            raise ValueError(f"embedding of {patches} patches x {dims} dims does not fit {self.shape}")
        total = self.count + batch
        step = self.chunk or patch_chunk(dims)
        for lo in range(0, patches, step):
            xs = x[lo : lo + step]
            batch_mean = xs.mean(axis=1)
            centred = xs - batch_mean[:, None, :]
            scatter = self.scatter[lo : lo + step]
            scatter += centred.swapaxes(1, 2) @ centred
            if self.count:
                delta = batch_mean - self.mean[lo : lo + step]
                scatter += (self.count * batch / total) * (delta[:, :, None] * delta[:, None, :])
                self.mean[lo : lo + step] += delta * (batch / total)
            else:
                self.mean[lo : lo + step] = batch_mean
        self.count = total

    def merge(self, other: GaussianStatistics) -> GaussianStatistics:
        """Fold another partial result into this one (Chan et al.'s parallel formula), in place.

        Returns:
            ``self``.

        Raises:
            ValueError: The two were accumulated over different shapes.
        """
        if other.count == 0:
            return self
        if self.count == 0:
            self.count = other.count
            self.mean, self.scatter = _to_numpy(other.mean).copy(), _to_numpy(other.scatter).copy()
            return self
        if self.shape != other.shape:
            raise ValueError(f"cannot merge statistics of shapes {self.shape} and {other.shape}")
        self.to_numpy()
        other_mean, other_scatter = _to_numpy(other.mean), _to_numpy(other.scatter)
        total = self.count + other.count
        delta = other_mean - self.mean
        weight = self.count * other.count / total
        step = self.chunk or patch_chunk(self.mean.shape[1])
        for lo in range(0, self.mean.shape[0], step):
            d = delta[lo : lo + step]
            self.scatter[lo : lo + step] += other_scatter[lo : lo + step]
            self.scatter[lo : lo + step] += weight * (d[:, :, None] * d[:, None, :])
        self.mean += delta * (other.count / total)
        self.count = total
        return self

    def to_numpy(self) -> GaussianStatistics:
        """Move the accumulators to numpy float64 on the CPU (for merging, pickling, finalising)."""
        if self.mean is not None and not isinstance(self.mean, np.ndarray):
            self.mean, self.scatter = _to_numpy(self.mean), _to_numpy(self.scatter)
        return self

    def __getstate__(self) -> dict[str, Any]:
        self.to_numpy()
        return dict(self.__dict__)

    def covariance(self, *, epsilon: float = EPSILON) -> np.ndarray:
        """``[P, d, d]`` float64 ``scatter / (n - 1) + epsilon I``."""
        self._check_count()
        self.to_numpy()
        dims = self.mean.shape[1]
        return self.scatter / (self.count - 1) + epsilon * np.eye(dims)

    def finalize(self, *, epsilon: float = EPSILON) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``[P, d]`` and inverse covariance ``[P, d, d]``, float32 numpy.

        The covariance is inverted in float64, one chunk of patches at a time (float64 only per chunk:
        the peak is the scatter, the float32 inverse and :data:`FINALIZE_TEMPORARIES` chunk-sized
        temporaries); a Cholesky factorisation first proves each one positive definite.

        Raises:
            ValueError: Fewer than two samples were seen.
            numpy.linalg.LinAlgError: A covariance is not positive definite (cannot happen with
                ``epsilon > 0`` unless the embeddings hold NaN or infinite values).
        """
        self._check_count()
        self.to_numpy()
        patches, dims = self.mean.shape
        eye = np.eye(dims)
        diagonal = np.arange(dims)
        inverse = np.empty((patches, dims, dims), dtype=np.float32)
        step = self.chunk or patch_chunk(dims)
        for lo in range(0, patches, step):
            cov = self.scatter[lo : lo + step] / (self.count - 1)
            cov[:, diagonal, diagonal] += epsilon
            factor = np.linalg.cholesky(cov)
            del cov
            factor_inv = np.linalg.solve(factor, np.broadcast_to(eye, factor.shape))
            del factor
            inverse[lo : lo + step] = factor_inv.swapaxes(1, 2) @ factor_inv
        return self.mean.astype(np.float32), inverse

    def _check_count(self) -> None:
        if self.count < 2:
            raise ValueError(f"need at least 2 images to estimate a covariance, got {self.count}")
