"""The streaming memory bank: fit memory set by the bank, not by the number of training images.

PatchCore's exact bank is the greedy coreset of *all* training patch features (WR50 at 224: 3.2 MB per
image before selection). :class:`CoresetBank` streams instead:

* vectors are buffered in a chunk of at most ``chunk_vectors`` rows;
* a full chunk (once more vectors arrive) is reduced to its own greedy coreset of
  ``min(1, oversample x fraction)`` of its rows, which joins the *union*; the raw chunk is dropped;
* :meth:`CoresetBank.select` reduces the last (partial) chunk the same way and runs one final greedy
  pass over the union down to ``round(fraction x all vectors seen)`` rows.

Peak memory is one chunk plus the union (``oversample x`` the final bank), whatever the number of
images. With a single chunk (``chunk_vectors=None``, or no more vectors than a chunk: a full chunk is
only reduced once more vectors arrive) the result is the exact greedy coreset. Otherwise it is the
greedy coreset of a union of per-chunk coresets, which covers the data nearly as well (every dropped
vector is within its chunk coreset's covering radius of a kept one); benchmarks/patchcore.py measures
the accuracy difference against exact greedy.

The same merge serves distributed fits: shards each stream into their own bank and hand on
:meth:`CoresetBank.partial` (``reduce=True``: coresets only); one bank merges them
(:meth:`CoresetBank.merge`) before the final pass. All chunks and shards share one seeded projection,
so the final pass measures every vector alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from padim_edge.export.patchcore import coreset
from padim_edge.export.patchcore import settings as defaults

#: Default chunk size in bytes of float32 vectors (the chunk buffer's memory).
DEFAULT_CHUNK_BYTES = 256 * 2**20
#: Default oversampling of the per-chunk coresets relative to the final fraction.
DEFAULT_OVERSAMPLE = 2.0


def patch_rows(embedding: np.ndarray) -> np.ndarray:
    """Embedding ``[N, D, h, w]`` -> float32 patch vectors ``[N * h * w, D]`` (image-major, row-major).

    The one layout rule of the bank's input: the torch fit and the INT8 bank refit both feed it this.
    """
    return np.ascontiguousarray(embedding.transpose(0, 2, 3, 1).reshape(-1, embedding.shape[1]), np.float32)


def default_chunk_vectors(dims: int) -> int:
    """Vectors per chunk for embeddings of ``dims`` channels: :data:`DEFAULT_CHUNK_BYTES` of float32."""
    return max(1, DEFAULT_CHUNK_BYTES // (4 * dims))


@dataclass(frozen=True)
class PartialCoreset:
    """What a bank (or a shard's bank) hands to a merge.

    Attributes:
        vectors: Selected float32 vectors ``[k, D]`` (per-chunk coresets and an unselected last chunk).
        seen: Vectors they stand for (all vectors the bank received).
        chunks: Chunks reduced so far.
    """

    vectors: np.ndarray
    seen: int
    chunks: int


class CoresetBank:
    """Streaming greedy-coreset memory bank (see the module docstring).

    Args:
        dims: Feature dimension ``D``.
        fraction: Final bank size as a fraction of all vectors received, in ``(0, 1]``.
        projection_dims: Johnson-Lindenstrauss dimension of every greedy pass.
        seed: Seed of the projection and of each pass's first pick.
        chunk_vectors: Rows per chunk; ``None`` keeps every vector (exact greedy, memory grows with data).
        oversample: Per-chunk coresets keep ``min(1, oversample x fraction)`` of their chunk (>= 1).
        progress: Progress bars on the greedy passes.
    """

    def __init__(
        self,
        dims: int,
        *,
        fraction: float = defaults.DEFAULT_CORESET,
        projection_dims: int = defaults.PROJECTION_DIMS,
        seed: int = 0,
        chunk_vectors: int | None = None,
        oversample: float = DEFAULT_OVERSAMPLE,
        progress: bool = False,
    ) -> None:
        coreset.coreset_size(1, fraction)  # validates the fraction
        if oversample < 1.0:
            raise ValueError(f"oversample must be >= 1, got {oversample}")
        if chunk_vectors is not None and chunk_vectors < 2:
            raise ValueError(f"chunk_vectors must be >= 2 (or None for exact), got {chunk_vectors}")
        self.dims = dims
        self.fraction = fraction
        self.projection_dims = projection_dims
        self.seed = seed
        self.chunk_vectors = chunk_vectors
        self.oversample = oversample
        self.progress = progress
        self._union: list[np.ndarray] = []
        self._buffer: np.ndarray | None = None
        self._filled = 0
        self._pending: list[np.ndarray] = []  # exact mode: every vector, unchunked
        self.seen = 0
        self.chunks = 0

    @property
    def settings(self) -> dict[str, object]:
        """How this bank selects, for the model's metadata."""
        if self.chunk_vectors is None:
            return {"mode": "exact"}
        return {"mode": "streaming", "chunk_vectors": self.chunk_vectors, "oversample": self.oversample}

    @property
    def stored(self) -> int:
        """Vectors held now (union of chunk coresets plus the current chunk)."""
        return sum(len(u) for u in self._union) + self._filled + sum(len(p) for p in self._pending)

    def add(self, vectors: np.ndarray) -> None:
        """Add patch feature vectors ``[n, D]`` (copied as float32).

        Raises:
            ValueError: Wrong shape or non-finite values.
        """
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[1] != self.dims:
            raise ValueError(f"expected vectors [n, {self.dims}], got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("feature vectors contain NaN or infinite values")
        self.seen += len(vectors)
        if self.chunk_vectors is None:
            self._pending.append(np.array(vectors, dtype=np.float32, copy=True))
            return
        start = 0
        while start < len(vectors):
            if self._buffer is None:
                self._buffer = np.empty((self.chunk_vectors, self.dims), dtype=np.float32)
            if self._filled == self.chunk_vectors:  # reduced only once more vectors come: a fit that
                self._reduce_chunk()  # fills exactly one chunk stays exact
            take = min(len(vectors) - start, self.chunk_vectors - self._filled)
            self._buffer[self._filled : self._filled + take] = vectors[start : start + take]
            self._filled += take
            start += take

    def _reduce_chunk(self) -> None:
        assert self._buffer is not None
        chunk = self._buffer[: self._filled]
        keep = coreset.coreset_size(len(chunk), min(1.0, self.oversample * self.fraction))
        picks = coreset.greedy_coreset(
            chunk,
            keep,
            projection_dims=self.projection_dims,
            seed=self.seed,
            progress=self.progress,
            desc=f"coreset chunk {self.chunks + 1}",
        )
        self._union.append(chunk[np.sort(picks)].copy())
        self.chunks += 1
        self._filled = 0

    def partial(self, *, reduce: bool = False) -> PartialCoreset:
        """The vectors a merge needs: the union of chunk coresets plus the current chunk.

        Args:
            reduce: Reduce the current (possibly partial) chunk to its coreset first, so that a shard hands
                on coresets only (at most ``oversample x fraction`` of its vectors); else it travels raw.
        """
        if reduce and self._filled:
            self._reduce_chunk()
        pieces = [*self._union, *self._pending]
        if self._filled:
            assert self._buffer is not None
            pieces.append(self._buffer[: self._filled].copy())
        vectors = np.concatenate(pieces) if pieces else np.empty((0, self.dims), dtype=np.float32)
        return PartialCoreset(vectors=vectors, seen=self.seen, chunks=self.chunks)

    def merge(self, other: CoresetBank | PartialCoreset) -> None:
        """Absorb another bank's (a shard's) vectors; the final pass then selects from both.

        Raises:
            ValueError: The other bank's vectors have another dimension.
        """
        part = other.partial() if isinstance(other, CoresetBank) else other
        if part.vectors.ndim != 2 or (len(part.vectors) and part.vectors.shape[1] != self.dims):
            raise ValueError(
                f"cannot merge vectors of shape {part.vectors.shape} into a {self.dims}-dim bank"
            )
        if len(part.vectors):
            self._union.append(np.asarray(part.vectors, dtype=np.float32))
        self.seen += part.seen
        self.chunks += part.chunks

    def select(self) -> np.ndarray:
        """The final bank ``[round(fraction x seen), D]``: the greedy pass over everything held.

        Rows are in pick order. The bank keeps its state (more vectors may still be added).

        Raises:
            ValueError: Nothing was added.
        """
        if len(self._pending) > 1:  # exact mode: one array, so the pass is greedy_coreset(all vectors)
            self._pending = [np.concatenate(self._pending)]
        if self.chunks and self._filled:  # streaming: the last chunk is reduced like the others
            self._reduce_chunk()
        if self.chunks:
            self._buffer = None  # the chunk buffer is not needed by the final pass
        pieces = [*self._union, *self._pending]
        if self._filled:
            assert self._buffer is not None
            pieces.append(self._buffer[: self._filled])
        held = sum(len(p) for p in pieces)
        if held == 0:
            raise ValueError("the memory bank is empty: add feature vectors before selecting")
        count = min(held, coreset.coreset_size(self.seen, self.fraction))
        z = coreset.project_pieces(pieces, self.projection_dims, self.seed)
        picks = coreset.greedy_on_projected(
            z, count, coreset.first_index(held, self.seed), progress=self.progress
        )
        del z
        offsets = np.cumsum([0] + [len(p) for p in pieces])
        piece_of = np.searchsorted(offsets, picks, side="right") - 1
        bank = np.empty((count, self.dims), dtype=np.float32)
        for i, piece in enumerate(pieces):
            rows = np.flatnonzero(piece_of == i)
            if rows.size:
                bank[rows] = piece[picks[rows] - offsets[i]]
        return bank
