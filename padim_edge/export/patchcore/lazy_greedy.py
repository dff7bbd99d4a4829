"""The state machine of the fast exact greedy coreset (:func:`.fast_greedy.fast_greedy` runs it).

The lazy hot set, the batched GEMM refresh, the block pruning and the certified float32 filter are
described in :mod:`padim_edge.export.patchcore.fast_greedy`; this module holds their implementation.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from padim_edge.export.patchcore.canonical_distances import squared_distances

__all__ = ["UNIT_ROUNDOFF_F32", "LazyGreedy", "numpy_mm_t", "torch_mm_t"]

UNIT_ROUNDOFF_F32 = 2.0**-24
_EXACT_CHUNK_ROWS = 16384
_TILE_ELEMENTS = 1 << 20  # float32 elements of one GEMM output tile (4 MiB, cache resident)
_TILE_ROWS = 2048
_TILE_COLS = 512
_ROUND_GROWTH = 2  # each refresh round of a flush takes twice as many rows as the previous one
_PARALLEL_PAIRS = 1 << 22  # (row, centre) pairs from which a refresh is split between threads
_MERGE_PAIRS = 1 << 15  # stamp groups are merged when that recomputes fewer (row, centre) pairs


def torch_mm_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.mm(torch.from_numpy(a), torch.from_numpy(b).T).numpy()


def numpy_mm_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b.T


class LazyGreedy:
    """State of the fast exact selector (see the module docstring)."""

    def __init__(
        self,
        z: np.ndarray,
        count: int,
        first: int,
        *,
        hot_size: int,
        n_blocks: int,
        pool: ThreadPoolExecutor | None,
        use_torch: bool,
    ) -> None:
        n, dim = z.shape
        self.n, self.count = n, count
        self.hot_size = max(1, min(hot_size, n))
        self.n_blocks = n_blocks if 0 < n_blocks < count else 0
        self.pool = pool
        self.workers = pool._max_workers if pool is not None else 1
        self.mm_t = torch_mm_t if use_torch else numpy_mm_t
        self.use_torch = use_torch
        # za = [z, 1] and centres qa = [-2 q, |q|^2], so that za @ qa.T = |q|^2 - 2 z.q comes out
        # of a single GEMM, without extra passes over the tile to scale and shift it.
        self.za = np.empty((n, dim + 1), dtype=np.float32)
        self.za[:, :dim] = z
        self.za[:, dim] = 1.0
        self.z = self.za[:, :dim]
        sqn = np.einsum("ij,ij->i", self.z, self.z, dtype=np.float32)
        norms = np.sqrt(sqn)
        # |(|z|^2 + |q|^2 - 2 z.q)_float32 - d_exact| <= (gamma_d + gamma_(d+1) + 2u) (|z| + |q|)^2
        # for any summation order, FMA or not (gamma_m ~ m u, u = 2^-24); the canonical float64
        # value is within ~1e-13 relative of d_exact. c0 is about 4 times that worst case.
        c0 = 8.0 * (dim + 8) * UNIT_ROUNDOFF_F32
        self.err = (c0 * (norms.astype(np.float64) + float(norms.max())) ** 2).astype(np.float32)
        self.sqn_minus_err = sqn - self.err  # (za @ qa.T) + sqn_minus_err = d~ - e
        self.qa = np.empty((count, dim + 1), dtype=np.float32)
        self.picks = np.empty(count, dtype=np.int64)
        self.t = 0
        self._add_center(first)
        # values[i] = exact min over the first stamp[i] centres: an upper bound of the current one.
        self.values = np.empty(n, dtype=np.float64)
        for start in range(0, n, _EXACT_CHUNK_ROWS):
            stop = min(start + _EXACT_CHUNK_ROWS, n)
            self.values[start:stop] = squared_distances(self.z[start:stop], self.z[first])
        self.stamp = np.ones(n, dtype=np.int64)
        # Hot set: rows kept exact at every step, in ascending order; outside_bound bounds the rest.
        self.hot_rows = np.empty(0, dtype=np.int64)
        self.hot_values = np.empty(0, dtype=np.float64)
        self.hot_za: np.ndarray | torch.Tensor = np.empty((0, dim + 1), dtype=np.float32)
        self.hot_bias = np.empty(0, dtype=np.float32)
        self.outside_bound = math.inf
        # Blocks: Voronoi cells of the first n_blocks picks (their "seeds"), built once.
        self.block_of: np.ndarray | None = None
        self.block_radius = np.empty(0)
        self.seed_gap = np.empty((0, 0), dtype=np.float32)  # lower bounds of |seed_b - centre_j|
        self.gap_filled = 0
        self.stats = {"flushes": 0, "rounds": 0, "pairs": 0, "pruned_pairs": 0, "exact": 0}

    def _add_center(self, row: int) -> None:
        dim = self.z.shape[1]
        centre = self.qa[self.t]
        np.multiply(self.z[row], np.float32(-2.0), out=centre[:dim])
        centre[dim] = np.dot(self.z[row], self.z[row])
        self.picks[self.t] = row
        self.t += 1

    # --------------------------------------------------------------------------------------------
    # Refresh: exact min_dist of given rows against given centres, through a certified GEMM.
    # --------------------------------------------------------------------------------------------
    def _refresh_rows(self, rows: np.ndarray, gram: np.ndarray, cols: np.ndarray) -> int:
        """Lowers ``values[rows]`` with centres ``cols``, given ``gram = za[rows] @ qa[cols].T``.

        Returns:
            The number of canonical distances evaluated.
        """
        lower = gram.min(axis=1)
        lower += self.sqn_minus_err[rows]  # certified lower bound of min over cols of d(row, q)
        old = self.values[rows]
        unsure = np.flatnonzero(lower < old)
        if not unsure.size:
            return 0
        u_rows = rows[unsure]
        # The new value min(old, min_q d) is at most limit = min(old, d~_min + e). Centres with
        # d~ - e > limit cannot reach it; all others are evaluated exactly.
        limit = np.minimum(old[unsure], lower[unsure] + 2.0 * self.err[u_rows].astype(np.float64))
        cut = (limit - self.sqn_minus_err[u_rows]).astype(np.float32)
        cut = np.nextafter(cut, np.float32(np.inf))  # rounded up: a superset of the candidates
        sub = gram if unsure.size == rows.size else gram[unsure]
        flat = np.flatnonzero(sub <= cut[:, None])
        pair_row, pair_col = np.divmod(flat, gram.shape[1])
        exact = squared_distances(self.z[u_rows[pair_row]], self.z[self.picks[cols[pair_col]]])
        starts = np.flatnonzero(np.r_[True, pair_row[1:] != pair_row[:-1]])
        hit = unsure[pair_row[starts]]
        old[hit] = np.minimum(old[hit], np.minimum.reduceat(exact, starts))
        self.values[rows[hit]] = old[hit]
        return exact.size

    def _refresh_part(self, rows: np.ndarray, centres: np.ndarray, cols: np.ndarray, col_step: int) -> int:
        """Refreshes one row chunk against all of ``cols``, one cache-sized tile at a time."""
        a = self.za[rows]
        exact = 0
        for lo in range(0, cols.size, col_step):
            hi = min(lo + col_step, cols.size)
            exact += self._refresh_rows(rows, self.mm_t(a, centres[lo:hi]), cols[lo:hi])
        return exact

    def _refresh_task(self, rows: np.ndarray, cols: np.ndarray) -> None:
        """Refreshes ``rows`` against centres ``cols`` and stamps them as up to date.

        Row chunks touch disjoint rows, so a large task is split between the worker threads; each
        runs single-threaded GEMMs, and torch and numpy release the GIL while computing.
        """
        row_step = max(_TILE_ROWS, _TILE_ELEMENTS // max(cols.size, 1))
        parallel = self.pool is not None and rows.size * cols.size >= _PARALLEL_PAIRS
        if parallel:
            row_step = min(row_step, -(-rows.size // self.workers))
        col_step = max(_TILE_COLS, _TILE_ELEMENTS // max(min(rows.size, row_step), 1))
        centres = self.qa[cols]
        parts = [rows[lo : lo + row_step] for lo in range(0, rows.size, row_step)]
        if parallel and len(parts) > 1:
            jobs = [self.pool.submit(self._refresh_part, p, centres, cols, col_step) for p in parts]
            exact = sum(job.result() for job in jobs)
        else:
            exact = sum(self._refresh_part(p, centres, cols, col_step) for p in parts)
        self.stats["exact"] += exact
        self.stats["pairs"] += rows.size * cols.size
        self.stamp[rows] = self.t

    def _refresh_dense(self, rows: np.ndarray) -> None:
        """Refreshes rows against every centre picked since their stamps, grouped by stamp."""
        t = self.t
        stamps = self.stamp[rows]
        order = np.argsort(stamps, kind="stable")
        rows, stamps = rows[order], stamps[order]
        cuts = np.flatnonzero(stamps[1:] != stamps[:-1]) + 1
        # Consecutive stamp groups are merged when recomputing a few already counted centres is
        # cheaper than another round of small GEMMs (min is idempotent, so this stays exact).
        groups: list[list[int]] = []
        for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, rows.size].tolist(), strict=True):
            since = int(stamps[lo])
            if since >= t:
                continue
            if groups and groups[-1][1] == lo and (hi - lo) * (since - groups[-1][2]) <= _MERGE_PAIRS:
                groups[-1][1] = hi
            else:
                groups.append([lo, hi, since])
        for lo, hi, since in groups:
            self._refresh_task(rows[lo:hi], np.arange(since, t))

    def _refresh(self, rows: np.ndarray) -> None:
        """Refreshes rows, skipping the centres that the block bounds prove to be too far."""
        if self.block_of is None:
            self._refresh_dense(rows)
            return
        self._fill_seed_gap()
        t = self.t
        blocks = self.block_of[rows]
        order = np.argsort(blocks, kind="stable")
        rows, blocks = rows[order], blocks[order]
        starts = np.flatnonzero(np.r_[True, blocks[1:] != blocks[:-1]])
        stops = np.r_[starts[1:], rows.size]
        since_of = np.minimum.reduceat(self.stamp[rows], starts)
        max_value = np.maximum.reduceat(self.values[rows], starts)
        reach_of = self.block_radius[blocks[starts]] + np.sqrt(max_value) * (1.0 + 1e-6)
        dense = []
        for lo, hi, since, reach, block in zip(
            starts.tolist(),
            stops.tolist(),
            since_of.tolist(),
            reach_of.tolist(),
            blocks[starts].tolist(),
            strict=True,
        ):
            if since >= t:
                continue
            # |z - q| >= |seed - q| - radius >= sqrt(max value) for every row of the group when
            # the gap reaches `reach`: such a centre cannot lower any of these values.
            near = np.flatnonzero(self.seed_gap[block, since:t] < reach)
            if 2 * near.size > t - since:
                dense.append(rows[lo:hi])
                continue
            self.stats["pruned_pairs"] += (hi - lo) * (t - since - near.size)
            if near.size:
                self._refresh_task(rows[lo:hi], near + since)
            else:
                self.stamp[rows[lo:hi]] = t
        if dense:
            self._refresh_dense(np.concatenate(dense))

    def _build_blocks(self) -> None:
        """Assigns every row to a near seed (one of the first picks) and refreshes it fully."""
        t, n = self.t, self.n
        cols = np.arange(t)
        centres = self.qa[:t]
        self.block_of = np.empty(n, dtype=np.int64)
        radius2 = np.zeros(t)
        step = max(_TILE_ROWS, _TILE_ELEMENTS // t)
        for lo in range(0, n, step):
            rows = np.arange(lo, min(lo + step, n))
            gram = self.mm_t(self.za[lo : lo + rows.size], centres)
            nearest = gram.argmin(axis=1)
            self.block_of[rows] = nearest
            # d~ + e: a certified upper bound of |z - seed|^2 for the assigned seed.
            upper = gram[np.arange(rows.size), nearest] + self.sqn_minus_err[rows] + 2.0 * self.err[rows]
            np.maximum.at(radius2, nearest, upper.astype(np.float64))
            self.stats["exact"] += self._refresh_rows(rows, gram, cols)
            self.stats["pairs"] += rows.size * t
        self.stamp[:] = t
        self.block_radius = np.sqrt(radius2) * (1.0 + 1e-6)
        self.seed_gap = np.empty((t, self.count), dtype=np.float32)
        self.gap_filled = 0
        self._fill_seed_gap()

    def _fill_seed_gap(self) -> None:
        """Stores lower bounds of ``|seed_b - centre_j|`` for the centres picked since last time."""
        lo, hi = self.gap_filled, self.t
        if hi <= lo:
            return
        seeds = self.picks[: self.seed_gap.shape[0]]
        gram = self.mm_t(self.za[seeds], self.qa[lo:hi])
        gram += self.sqn_minus_err[seeds][:, None]  # d~ - e <= d
        np.maximum(gram, 0.0, out=gram)
        np.sqrt(gram, out=gram)
        gram *= np.float32(1.0 - 1e-6)
        self.seed_gap[:, lo:hi] = gram
        self.gap_filled = hi

    # --------------------------------------------------------------------------------------------
    # Hot set and main loop
    # --------------------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Refreshes the rows with the largest stale values until a new hot set is certified."""
        self.stats["flushes"] += 1
        t, values, stamp = self.t, self.values, self.stamp
        if self.hot_rows.size:
            values[self.hot_rows] = self.hot_values
            stamp[self.hot_rows] = t
        if self.block_of is None and self.n_blocks and t >= self.n_blocks:
            self._build_blocks()
        k = batch = self.hot_size
        while True:
            self.stats["rounds"] += 1
            stale = np.flatnonzero(stamp < t)
            if not stale.size:
                stale_max = -math.inf
                break
            stale_values = values[stale]
            stale_max = float(stale_values.max())
            if np.count_nonzero(values[stamp >= t] > stale_max) >= k:
                break
            if stale.size > batch:
                stale = stale[np.argpartition(stale_values, stale.size - batch)[stale.size - batch :]]
            self._refresh(stale)
            batch *= _ROUND_GROWTH
        # Hot set: the k largest fresh values (with ties); all of them exceed every stale value.
        fresh = np.flatnonzero(stamp >= t)
        fresh_values = values[fresh]
        if fresh.size > k:
            threshold = np.partition(fresh_values, fresh.size - k)[fresh.size - k]
            keep = fresh_values >= threshold
            below = fresh_values[~keep]
            if below.size:
                stale_max = max(stale_max, float(below.max()))
            fresh = fresh[keep]
        self.hot_rows = fresh  # ascending, so np.argmax over the hot set picks the lowest index
        self.hot_values = values[fresh]
        hot_za = self.za[fresh]
        self.hot_za = torch.from_numpy(hot_za) if self.use_torch else hot_za
        self.hot_bias = self.sqn_minus_err[fresh]
        self.outside_bound = stale_max

    def _update_hot(self, best: int) -> None:
        """Lowers the hot values with the newest centre, hot row ``best`` (float32 filter, then exact)."""
        row = int(self.hot_rows[best])
        centre = self.qa[self.t - 1]
        if self.use_torch:
            approx = torch.mv(self.hot_za, torch.from_numpy(centre)).numpy()
        else:
            approx = self.hot_za @ centre
        approx += self.hot_bias  # d~ - e
        self.hot_values[best] = 0.0  # d(c, c) is exactly 0 in the canonical formula as well
        hit = np.flatnonzero(approx <= self.hot_values)
        if hit.size:
            exact = squared_distances(self.z[self.hot_rows[hit]], self.z[row])
            self.hot_values[hit] = np.minimum(self.hot_values[hit], exact)

    def run(self, progress: bool = False, desc: str = "coreset") -> np.ndarray:
        """Runs the selection and returns the picks (int64, pick order)."""
        bar = None
        if progress:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                warnings.warn("tqdm is not installed: no progress bar", stacklevel=3)
            else:
                bar = tqdm(total=self.count, initial=1, desc=desc, unit="pick", mininterval=0.5, leave=False)
        while self.t < self.count:
            best = int(np.argmax(self.hot_values)) if self.hot_values.size else -1
            if best < 0 or self.hot_values[best] <= self.outside_bound:
                self._flush()
                best = int(np.argmax(self.hot_values))
                if self.hot_values[best] == 0.0 and self.outside_bound <= 0.0:
                    # Every value is 0: the brute force picks index 0 from now on.
                    self.picks[self.t :] = 0
                    if bar is not None:
                        bar.update(self.count - self.t)
                    self.t = self.count
                    break
            self._add_center(int(self.hot_rows[best]))
            self._update_hot(best)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return self.picks
