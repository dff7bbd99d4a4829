"""The streaming memory bank: exact when one chunk holds everything, chunk coresets + a final pass else."""

from __future__ import annotations

import numpy as np
import pytest

from padim_edge.export.patchcore import coreset
from padim_edge.export.patchcore.bank import CoresetBank, PartialCoreset

DIMS = 10


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, DIMS)) * 4
    return (centres[rng.integers(0, 6, n)] + rng.normal(size=(n, DIMS))).astype(np.float32)


def feed(bank: CoresetBank, x: np.ndarray, step: int = 37) -> CoresetBank:
    for lo in range(0, len(x), step):  # batches that do not line up with the chunks
        bank.add(x[lo : lo + step])
    return bank


def exact(x: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    count = coreset.coreset_size(len(x), fraction)
    return x[coreset.brute_force_greedy(x, count, projection_dims=8, seed=seed)]


@pytest.mark.parametrize("chunk", [None, 1000, 400])
def test_one_chunk_is_the_exact_greedy_coreset(chunk: int | None) -> None:
    x = vectors(400)
    bank = feed(CoresetBank(DIMS, fraction=0.1, projection_dims=8, chunk_vectors=chunk), x)
    assert bank.chunks == 0 and bank.stored == 400  # a full chunk is only reduced when more vectors come
    np.testing.assert_array_equal(bank.select(), exact(x, 0.1))
    assert bank.settings["mode"] == ("exact" if chunk is None else "streaming")


def test_streaming_is_chunk_coresets_then_a_final_pass() -> None:
    x = vectors(1000, seed=1)
    bank = feed(CoresetBank(DIMS, fraction=0.05, projection_dims=8, chunk_vectors=300, oversample=3.0), x)
    assert bank.seen == 1000 and bank.chunks == 3 and bank.stored == 3 * 45 + 100  # union + current chunk
    union = []
    for lo in (0, 300, 600):
        chunk = x[lo : lo + 300]
        keep = coreset.coreset_size(300, 0.15)
        union.append(chunk[np.sort(coreset.brute_force_greedy(chunk, keep, projection_dims=8, seed=0))])
    last = x[900:]  # the last, partial chunk is reduced the same way
    keep = coreset.coreset_size(100, 0.15)
    union.append(last[np.sort(coreset.brute_force_greedy(last, keep, projection_dims=8, seed=0))])
    union = np.concatenate(union)
    final = union[coreset.brute_force_greedy(union, 50, projection_dims=8, seed=0)]
    np.testing.assert_allclose(bank.select(), final, atol=0)
    assert bank.select().shape == (50, DIMS)  # round(0.05 * 1000), in pick order, repeatable
    assert bank.stored == 3 * 45 + 15  # after select: the union of chunk coresets, not the 1000 vectors


def test_memory_is_bounded_by_chunk_plus_union() -> None:
    bank = CoresetBank(DIMS, fraction=0.02, projection_dims=8, chunk_vectors=500, oversample=2.0)
    for seed in range(8):
        bank.add(vectors(500, seed=seed))
        assert bank.stored <= 500 + 0.04 * bank.seen + bank.chunks
    assert bank.seen == 4000 and bank.stored == 7 * 20 + 500  # the last full chunk waits for more


def test_shards_merge_into_one_final_pass() -> None:
    x = vectors(1500, seed=2)
    settings = {"fraction": 0.05, "projection_dims": 8, "chunk_vectors": 300}
    shards = [feed(CoresetBank(DIMS, **settings), x[lo : lo + 500]) for lo in (0, 500, 1000)]
    parts = [shard.partial(reduce=True) for shard in shards]  # what shards send: plain arrays, counts
    assert [len(p.vectors) for p in parts] == [30 + 20] * 3  # chunk coresets of 300 and 200 vectors
    merged = CoresetBank(DIMS, **settings)
    for part in parts:
        merged.merge(PartialCoreset(vectors=part.vectors.copy(), seen=part.seen, chunks=part.chunks))
    assert (merged.seen, merged.chunks) == (1500, 6)
    union = np.concatenate([p.vectors for p in parts])
    final = union[coreset.brute_force_greedy(union, 75, projection_dims=8, seed=0)]
    np.testing.assert_array_equal(merged.select(), final)
    # merging banks directly is the same as merging what they hand on
    direct = CoresetBank(DIMS, **settings)
    for shard in shards:
        direct.merge(shard)
    np.testing.assert_array_equal(direct.select(), final)


def test_streaming_covers_the_data_nearly_as_well_as_exact() -> None:
    """The covering radius (the greedy objective) of the streamed bank stays close to the exact one's."""
    x = vectors(2000, seed=3)
    streamed = feed(CoresetBank(DIMS, fraction=0.05, projection_dims=None, chunk_vectors=500), x).select()
    exact_bank = feed(CoresetBank(DIMS, fraction=0.05, projection_dims=None), x).select()

    def radius(bank: np.ndarray) -> float:
        return float(np.sqrt(((x[:, None] - bank[None]) ** 2).sum(-1).min(axis=1)).max())

    assert radius(exact_bank) <= radius(streamed) <= 1.5 * radius(exact_bank)


def test_errors() -> None:
    with pytest.raises(ValueError, match="coreset fraction"):
        CoresetBank(DIMS, fraction=0)
    with pytest.raises(ValueError, match="oversample must be >= 1"):
        CoresetBank(DIMS, oversample=0.5)
    bank = CoresetBank(DIMS, chunk_vectors=10)
    with pytest.raises(ValueError, match="the memory bank is empty"):
        bank.select()
    with pytest.raises(ValueError, match=r"expected vectors \[n, 10\]"):
        bank.add(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN or infinite"):
        bank.add(np.full((3, DIMS), np.inf, dtype=np.float32))
    with pytest.raises(ValueError, match="cannot merge"):
        bank.merge(PartialCoreset(vectors=np.zeros((2, 3), dtype=np.float32), seen=2, chunks=0))
