"""One model's fit on a Ray cluster: shards of the image list on Ray tasks, partials merged in a tree.

Why Ray tasks and not Ray Data: a shard's result is one partial statistic (``P x d x d`` float64,
250 MB for R18-Rd100), not rows. Ray Data's ``map_batches`` would return one result per *batch* (a
partial of that size for every 16 images) or need a custom aggregation over table blocks; one task
per shard returns exactly one partial per worker, and merge tasks that take two partials as their
arguments form the reduce tree, each starting as soon as its two inputs exist (Ray schedules on the
dependencies), so merging overlaps the slowest shards' fitting.

Network per worker: its shard's file paths and the module's weights in (the ``state_dict`` is put in
the object store once and fetched once per node), one partial out; every merge moves one partial.
The tree has ``ceil(log2(shards))`` levels; a merge holds two partials plus its output.

Images are read by the workers, so every node must see the files at the same paths (a shared file
system); the driver only lists them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from tqdm import tqdm

from padim_edge.distributed.cluster import LOCAL, ClusterError, ClusterInfo, connect
from padim_edge.distributed.methods import ShardPlan, plan_for, state_of, writable
from padim_edge.export.fit import FitReport, skipped_or_raise


def split(paths: list[Path], shards: int, *, batch_size: int = 1) -> list[list[Path]]:
    """Contiguous shards of whole batches, near-equal (batch counts differ by at most one), none empty.

    Cut at the local fit's batch boundaries, every image is embedded in the same batch as in a local
    fit with this ``batch_size``: the backbone's float32 output depends on the batch it runs in (a
    batch of one takes other kernels), so only then do the shards' statistics merge to the local
    fit's up to float64 rounding.
    """
    batches = [paths[lo : lo + batch_size] for lo in range(0, len(paths), batch_size)]
    shards = max(1, min(shards, len(batches)))
    size, extra = divmod(len(batches), shards)
    out, start = [], 0
    for k in range(shards):
        stop = start + size + (1 if k < extra else 0)
        out.append([p for batch in batches[start:stop] for p in batch])
        start = stop
    return out


@ray.remote
def _fit_shard(
    plan: ShardPlan, state: dict[str, Any], paths: list[str], threads: int, batch_size: int, device: str
):
    """A worker: rebuild the module, fit its shard; returns (partial, [(file, reason)] it could not read)."""
    import torch

    torch.set_num_threads(threads)
    module = plan.build(state)
    failed: list[tuple[str, str]] = []
    partial = plan.partial_fit(
        module,
        [Path(p) for p in paths],
        batch_size=batch_size,
        device=device,
        on_error=lambda path, exc: failed.append((str(path), str(exc))),
    )
    return partial, failed


@ray.remote
def _merge(left: Any, right: Any) -> Any:
    """One node of the reduce tree (Chan et al. for PaDiM): ``left`` absorbs ``right``."""
    return writable(left).merge(right)


def tree_reduce(refs: list[Any], merge: Callable[[Any, Any], Any]) -> Any:
    """Merge object refs pairwise, level by level: ``ceil(log2(n))`` levels, ``n - 1`` merges.

    Args:
        refs: The leaves (object refs of partials), in shard order.
        merge: Submits one merge and returns its ref (``_merge.remote``).
    """
    if not refs:
        raise ValueError("nothing to reduce")
    level = list(refs)
    while len(level) > 1:
        nxt = [merge(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def tree_depth(shards: int) -> int:
    """Levels of merges :func:`tree_reduce` makes for ``shards`` leaves."""
    return math.ceil(math.log2(shards)) if shards > 1 else 0


def _resources(info: ClusterInfo, device: str, threads: int) -> tuple[str, dict[str, float]]:
    """The device tasks fit on and the resources each asks for (``auto``: CUDA when the cluster has GPUs)."""
    if device == "auto":
        device = "cuda" if info.gpus > 0 else "cpu"
    if device == "cuda":
        if info.gpus <= 0:
            raise ClusterError(f"--device cuda was requested but {info.describe()} has no GPU")
        return device, {"num_cpus": threads, "num_gpus": 1}
    return device, {"num_cpus": threads}


def default_workers(info: ClusterInfo, device: str, threads: int) -> int:
    """One worker per GPU (CUDA fit) or per ``threads`` CPUs."""
    if device == "cuda" or (device == "auto" and info.gpus > 0):
        return max(1, int(info.gpus))
    return max(1, int(info.cpus // threads))


def fit_statistics(
    model: Any,
    paths: list[Path],
    *,
    workers: int,
    threads: int = 1,
    batch_size: int = 16,
    device: str = "auto",
    info: ClusterInfo | None = None,
    progress: bool = True,
    skip_unreadable: bool = False,
) -> tuple[Any, str, tuple[tuple[str, str], ...]]:
    """Fit ``model``'s method on ``paths`` across ``workers`` Ray tasks.

    A worker skips the files of its shard it cannot decode and reports them; the good images of every
    shard are merged either way. The model itself is not changed (see :func:`fit`).

    Returns:
        (merged partial, device, ``(file, reason)`` of the skipped files in image order).

    Raises:
        UnreadableImagesError: Files could not be decoded and ``skip_unreadable`` is off: all of them
            are listed, from every shard, and the error's ``partial`` holds the merged fit of the rest.
        ValueError: Fewer than two readable images.
        ClusterError: A worker failed otherwise (its error), or the cluster lacks the device.
    """
    info = info or connect(LOCAL)
    device, resources = _resources(info, device, threads)
    plan = plan_for(model)
    state = ray.put(state_of(model))
    shards = split(paths, workers, batch_size=batch_size)
    submit = _fit_shard.options(num_returns=2, **resources)
    leaves, failures = zip(
        *(
            submit.remote(plan, state, [str(p) for p in shard], threads, batch_size, device)
            for shard in shards
        ),
        strict=True,
    )
    root = tree_reduce(list(leaves), _merge.options(num_cpus=1).remote)
    bad: dict[Any, list[tuple[str, str]]] = {}
    try:
        pending = list(failures)
        with tqdm(
            total=len(paths), desc=f"fit ({len(shards)} Ray workers)", unit="img", disable=not progress
        ) as bar:
            sizes = {ref: len(shard) for ref, shard in zip(failures, shards, strict=True)}
            while pending:
                (done,), pending = ray.wait(pending, num_returns=1)
                bad[done] = ray.get(done)
                bar.update(sizes[done])
        merged = ray.get(root)
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"the distributed fit failed on a worker: {_first_line(exc)}") from exc
    finally:
        del state
    listed = [item for ref in failures for item in bad[ref]]  # in image order, whichever shard came first
    skipped = skipped_or_raise(listed, len(paths), skip_unreadable=skip_unreadable, partial=merged)
    return merged, device, skipped


def fit(
    model: Any,
    paths: list[Path],
    *,
    workers: int | None = None,
    threads: int = 1,
    batch_size: int = 16,
    device: str = "auto",
    info: ClusterInfo | None = None,
    progress: bool = True,
    skip_unreadable: bool = False,
) -> FitReport:
    """Fit ``model`` in place on a Ray cluster: the distributed twin of :func:`padim_edge.export.fit.fit`.

    Args:
        model: A built, unfitted module (PaDiM; see :data:`padim_edge.distributed.methods.PLANS`).
        paths: Normal images, readable at these paths on every node; at least two.
        workers: Shards, one Ray task each (default: one per ``threads`` CPUs, or per GPU).
        threads: Torch threads (and Ray CPUs) per worker.
        batch_size: Images per forward pass on a worker.
        device: ``auto`` (CUDA when the cluster has GPUs), ``cpu`` or ``cuda``.
        info: The connected cluster (default: connect to a local instance).
        progress: Show a progress bar (advanced as shards finish).
        skip_unreadable: Fit without the files that cannot be decoded (the report's ``skipped``)
            instead of failing with all of them listed.

    Raises:
        ValueError: Fewer than two (readable) images.
        UnreadableImagesError: See :func:`fit_statistics`.
    """
    if len(paths) < 2:
        raise ValueError(f"need at least 2 normal images to fit, got {len(paths)}")
    info = info or connect(LOCAL)
    workers = workers or default_workers(info, device, threads)
    start = time.perf_counter()
    merged, used, skipped = fit_statistics(
        model,
        paths,
        workers=workers,
        threads=threads,
        batch_size=batch_size,
        device=device,
        info=info,
        progress=progress,
        skip_unreadable=skip_unreadable,
    )
    plan_for(model).install(model, merged)
    shards = len(split(paths, workers, batch_size=batch_size))
    return FitReport(
        images=merged.count,
        seconds=time.perf_counter() - start,
        device=f"{used} x {shards} Ray workers",
        skipped=skipped,
    )


def fitter(
    cluster: str | ClusterInfo = LOCAL, *, workers: int | None = None, threads: int = 1
) -> Callable[..., FitReport]:
    """The distributed fit as :func:`padim_edge.export.pipeline.run_export` takes it (``fitter=``).

    Args:
        cluster: A connected cluster, or an address to connect to now (a wrong one fails before the
            model is built).
        workers: Shards, one Ray task each (default: the cluster's CPUs / ``threads``, or its GPUs).
        threads: Torch threads per worker.

    Returns:
        ``fit(model, paths, *, batch_size, device, progress, skip_unreadable=False) -> FitReport``.
    """
    info = cluster if isinstance(cluster, ClusterInfo) else connect(cluster)

    def run(
        model: Any,
        paths: list[Path],
        *,
        batch_size: int,
        device: str,
        progress: bool,
        skip_unreadable: bool = False,
    ) -> FitReport:
        return fit(
            model,
            paths,
            workers=workers,
            threads=threads,
            batch_size=batch_size,
            device=device,
            info=info,
            progress=progress,
            skip_unreadable=skip_unreadable,
        )

    return run


def _first_line(exc: BaseException) -> str:
    """The useful line of a Ray error (its cause's message, not Ray's traceback banner)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {str(cause).strip().splitlines()[0] if str(cause).strip() else ''}"
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:500] if lines else type(exc).__name__
