"""PatchCore fit cost, part of benchmarks/patchcore.py: coreset selection time and peak fit memory.

* ``run_selection``: greedy coreset selection of ~190k real patch vectors (MobileNetV2 features of
  magnetic-tile training images, 784 per image) to 10 %, repeated; optionally beside the plain
  vectorised torch loop (one min-distance pass over the whole projected bank per pick).
* ``run_memory``: peak RSS (VmHWM) of whole PatchCore fits on 200 vs 1000 images, each in a fresh
  process, interleaved and repeated; synthetic 256x256 frames (the shared set has 714 training images).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MARKER = "PATCHCORE_FIT "


def tile_vectors(data: Path, weights: Path, count: int, *, progress: bool) -> np.ndarray:
    """``count`` patch vectors of the first magnetic-tile training images (mnv2, PatchCore embedding)."""
    from patchcore_accuracy import embed_all

    from padim_edge.export.pipeline import build_module
    from padim_edge.images import list_images

    module, _ = build_module("mnv2", method="patchcore", weights_file=weights)
    images = -(-count // module.patches)
    return embed_all(module, list_images(data / "train" / "good")[:images], progress=progress)[:count]


def plain_torch_greedy(z: np.ndarray, count: int, first: int) -> np.ndarray:
    """The baseline: one vectorised min-distance pass over the whole projected bank per pick."""
    import torch

    zt = torch.from_numpy(z)
    norms = (zt * zt).sum(1)
    min_dist = norms + norms[first] - 2 * (zt @ zt[first])
    picks, scratch = [first], torch.empty_like(norms)
    for _ in range(1, count):
        best = int(torch.argmax(min_dist))
        picks.append(best)
        torch.mv(zt, zt[best], out=scratch)
        scratch.mul_(-2).add_(norms).add_(norms[best])
        torch.minimum(min_dist, scratch, out=min_dist)
    return np.array(picks)


def run_selection(
    data: Path,
    weights: Path,
    *,
    vectors: int = 190_000,
    repeats: int = 3,
    baseline: bool = False,
    progress: bool,
) -> dict[str, Any]:
    """Time ``greedy_coreset`` (projection included) on ``vectors`` real patch vectors to 10 %."""
    import torch

    from padim_edge.export.patchcore import coreset

    x = tile_vectors(data, weights, vectors, progress=progress)
    count = coreset.coreset_size(len(x), 0.1)
    times, picks = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        got = coreset.greedy_coreset(x, count, projection_dims=128, seed=0)
        times.append(time.perf_counter() - start)
        assert picks is None or np.array_equal(picks, got), "the selection is not repeatable"
        picks = got
    out: dict[str, Any] = {
        "vectors": len(x),
        "dims": x.shape[1],
        "selected": count,
        "projection_dims": 128,
        "torch_threads": torch.get_num_threads(),
        "seconds": times,
        "median_s": float(np.median(times)),
        "source": "mnv2 ImageNet features of the first magnetic-tile training images (PatchCore embedding)",
    }
    if baseline:
        z = coreset.project_features(x, 128, 0)
        start = time.perf_counter()
        plain = plain_torch_greedy(z, count, coreset.first_index(len(z), 0))
        out["plain_torch_loop_s"] = time.perf_counter() - start
        out["plain_torch_loop_same_picks"] = float(np.mean(np.isin(plain, picks)))
    return out


def child(backbone: str, data: Path, count: int) -> dict[str, Any]:
    """One PatchCore fit in this (fresh) process; its memory and time."""
    from padim_edge.bench.system import peak_rss_mb, rss_mb
    from padim_edge.export.pipeline import build_module, fit
    from padim_edge.images import list_images

    paths = list_images(data)[:count]
    model, _ = build_module(backbone, method="patchcore", random_init=True)
    before = rss_mb()
    start = time.perf_counter()
    report = fit(model, paths, batch_size=16, device="cpu", progress=False)
    meta = model.metadata()
    return {
        "images": report.images,
        "fit_s": time.perf_counter() - start,
        "rss_before_fit_mb": before,
        "peak_rss_mb": peak_rss_mb(),
        "bank_size": meta["bank_size"],
        "selection": meta["coreset_selection"],
        "bank_mb": meta["bank_size"] * model.config.dims * 4 / 1e6,
    }


def run_child(backbone: str, data: Path, count: int) -> dict[str, Any]:
    """:func:`child` in a fresh interpreter."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, __file__, backbone, str(data), str(count)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"fit on {count} images failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len(MARKER) :])


def run_memory(
    *, backbone: str = "r18", counts: tuple[int, int] = (200, 1000), repeats: int = 2, progress: bool
) -> dict[str, Any]:
    """Peak RSS of fits on ``counts`` images, fresh process each, interleaved, ``repeats`` times."""
    from fit_memory import synthetic_images

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="patchcore-fit-") as tmp:
        data = synthetic_images(Path(tmp) / "frames", max(counts))
        for attempt in range(repeats):
            for count in counts:
                if progress:
                    print(f"fit memory: {count} images, attempt {attempt + 1}", file=sys.stderr, flush=True)
                runs.append(run_child(backbone, data, count))
    peak = {c: max(r["peak_rss_mb"] for r in runs if r["images"] == c) for c in counts}
    return {
        "backbone": backbone,
        "images": "synthetic 256x256 RGB PNGs (smooth noise)",
        "runs": runs,
        "peak_rss_mb": {str(c): v for c, v in peak.items()},
        "ratio": peak[counts[1]] / peak[counts[0]],
    }


if __name__ == "__main__":
    print(MARKER + json.dumps(child(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]))), flush=True)
