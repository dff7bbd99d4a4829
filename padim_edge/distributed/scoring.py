"""Batch scoring of an archive on a Ray cluster: an actor pool of torch-free ``PadimModel``\\ s.

The image list (files and folders, expanded and keyed exactly as the local ``padim-predict`` does) is
cut into shards of ``shard_size`` images in list order, a multiple of the batch size, so every
batch holds the same frames as it would locally and the scores are the same bits. Ray Data turns the
shards into a dataset whose ``map_batches`` runs on a pool of actors, each holding one
:class:`padim_edge.runtime.PadimModel` (CPU, CUDA or TensorRT execution provider; numpy +
onnxruntime, never torch). An actor decodes and scores a shard and returns it as Parquet bytes; the
driver writes ``OUTPUT/shards/part-<index>-<digest>.parquet`` atomically as each arrives. The digest
covers the model's bytes, the shard's keys and the options, so a re-run skips every shard already
written and recomputes only the missing ones (idempotent per shard; an interrupted run resumes).

A file that cannot be decoded is a row with its error (its shard is complete); a shard whose scoring
fails (the execution provider, the model) is reported with its files and not written, and the other
shards are. Combined ``scores.json`` / ``labels.json`` / ``failed.json`` have the local
``padim-predict`` format and keys; ``summary.json`` says what ran.

Actors read the images and only the driver writes, so the input files must be visible to every node
at the same paths; the output folder only to the driver.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from padim_edge import __version__, atomic
from padim_edge.images import expand_paths
from padim_edge.integrity import sha256
from padim_edge.naming import image_keys
from padim_edge.runtime.outputs import RESULT_FILES, write_results
from padim_edge.runtime.pipeline import FilePipeline, ScoringError

SHARDS = "shards"
SUMMARY = "summary.json"
#: Default images per output shard (rounded up to a multiple of the batch size).
SHARD_SIZE = 1024


class ShardError(RuntimeError):
    """Scoring a shard failed beyond single unreadable images (the message names the files)."""


@dataclass(frozen=True)
class Shard:
    """A slice of the image list: its index, output file name, files and keys."""

    index: int
    name: str
    paths: list[str]
    keys: list[str]


def plan_shards(
    files: list[Path], keys: list[str], *, shard_size: int, batch_size: int, identity: str
) -> list[Shard]:
    """Cut the list into shards of ``shard_size`` (rounded up to a multiple of ``batch_size``).

    Args:
        files: Image files, in the local ``padim-predict`` order.
        keys: Their keys (:func:`padim_edge.naming.image_keys`).
        shard_size: Images per shard.
        batch_size: Images per model run.
        identity: What else the results depend on (model bytes, options): part of every file name.
    """
    size = -(-max(1, shard_size) // batch_size) * batch_size
    shards = []
    for index, lo in enumerate(range(0, len(files), size)):
        chunk = keys[lo : lo + size]
        digest = hashlib.sha256("\n".join([identity, *chunk]).encode()).hexdigest()[:16]
        shards.append(
            Shard(index, f"part-{index:05d}-{digest}.parquet", [str(f) for f in files[lo : lo + size]], chunk)
        )
    return shards


def score_shard(
    model: Any, paths: list[str], keys: list[str], *, batch_size: int, maps: bool, decode_threads: int = 1
) -> bytes:
    """Decode and score one shard; returns its Parquet file's bytes (a row per key, in order).

    Files go through :class:`padim_edge.runtime.pipeline.FilePipeline` (``decode_threads`` decode threads
    beside the graph), as in the local ``padim-predict``: a file that cannot be decoded, or whose size is
    not a fixed-size model's, is a row with its error.

    Columns: ``key``, ``score`` (float64 holding the model's float32 score; null where unreadable),
    ``is_anomalous`` (null without a threshold), ``error`` (null, or why the file was unreadable) and,
    with ``maps``, ``anomaly_map`` (float16 ``[crop, crop]`` row-major bytes).

    Raises:
        ShardError: The model failed on a batch (the message lists its files).
    """
    scores: dict[str, tuple[float, bool | None, bytes | None]] = {}
    errors: dict[str, str] = {}
    # the local padim-predict's pipeline: the same batches, so the same bits; the next batch decodes
    # in a thread while the graph runs this one
    with FilePipeline(model, batch_size=batch_size, decode_workers=decode_threads) as pipeline:
        try:
            for result in pipeline.run(paths, keys):
                if not result.ok:
                    errors[result.key] = str(result.error)
                    continue
                pred = result.prediction
                picture = pred.anomaly_map.astype(np.float16).tobytes() if maps else None
                scores[result.key] = (pred.score, pred.is_anomalous, picture)
        except ScoringError as exc:
            raise ShardError(str(exc)) from exc
    columns: dict[str, Any] = {
        "key": pa.array(keys, pa.string()),
        "score": pa.array([scores[k][0] if k in scores else None for k in keys], pa.float64()),
        "is_anomalous": pa.array([scores[k][1] if k in scores else None for k in keys], pa.bool_()),
        "error": pa.array([errors.get(k) for k in keys], pa.string()),
    }
    if maps:
        columns["anomaly_map"] = pa.array([scores[k][2] if k in scores else None for k in keys], pa.binary())
    sink = io.BytesIO()
    pq.write_table(pa.table(columns), sink)
    return sink.getvalue()


class ShardScorer:
    """A Ray Data actor: one ``PadimModel``, scoring whole shards (rows of the shard dataset)."""

    def __init__(self, model: str, device: str, threads: int | None, batch_size: int, maps: bool) -> None:
        from padim_edge.runtime import PadimModel

        self.model = PadimModel(model, device=device, threads=threads)
        self.batch_size = batch_size
        self.maps = maps

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out: dict[str, list] = {"index": [], "name": [], "parquet": [], "error": [], "torch": []}
        for index, name, paths, keys in zip(
            batch["index"], batch["name"], batch["paths"], batch["keys"], strict=True
        ):
            try:
                data = score_shard(
                    self.model,
                    json.loads(paths),
                    json.loads(keys),
                    batch_size=self.batch_size,
                    maps=self.maps,
                )
                error = ""
            except Exception as exc:  # the shard is reported, the other shards go on
                data, error = b"", str(exc) if isinstance(exc, ShardError) else f"{type(exc).__name__}: {exc}"
            out["index"].append(int(index))
            out["name"].append(str(name))
            out["parquet"].append(data)
            out["error"].append(error)
            out["torch"].append("torch" in sys.modules)  # the scoring workers stay torch-free
        return out


@dataclass
class ScoreRun:
    """What :func:`score` did.

    Attributes:
        images: Images in the list.
        shards: Shards in the plan.
        skipped: Shards already written by an earlier run (not recomputed).
        written: Shards written by this run.
        failed_images: ``{key: reason}`` for unreadable images.
        shard_errors: ``{shard file: error}`` for shards not written (re-run to retry them).
        seconds: Wall time.
        torch_in_workers: Whether any scoring worker had torch imported (it must not).
        files: The combined files written (scores.json, ...).
    """

    images: int
    shards: int
    skipped: int = 0
    written: int = 0
    scored: int = 0
    failed_images: dict[str, str] = field(default_factory=dict)
    shard_errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    torch_in_workers: bool = False
    files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every image scored and every shard written."""
        return not self.failed_images and not self.shard_errors


def score(
    model: str | Path,
    inputs: list[str | Path],
    output: str | Path,
    *,
    actors: int | None = None,
    threads: int | None = 1,
    batch_size: int = 8,
    shard_size: int = SHARD_SIZE,
    device: str = "auto",
    maps: bool = False,
    info: Any = None,
    progress: bool = True,
) -> ScoreRun:
    """Score images with an actor pool on Ray; Parquet shards plus the local ``padim-predict`` JSONs.

    Args:
        model: The ``.onnx`` model (every node must read it at this path).
        inputs: Image files and folders (folders searched recursively), as ``padim-predict`` takes.
        output: Folder for ``shards/``, ``scores.json``, ``labels.json``, ``failed.json``, ``summary.json``.
        actors: Actors in the pool (default: one per ``threads`` CPUs, or one per GPU).
        threads: onnxruntime intra-op threads per actor (``None``: onnxruntime's default).
        batch_size: Images per model run.
        shard_size: Images per output shard.
        device: As ``padim-predict --device``; ``auto`` asks one GPU per actor where the cluster has GPUs.
        maps: Also store each anomaly map (float16) in the shards.
        info: The connected cluster (default: a local instance).
        progress: Progress bars.

    Raises:
        ImageError: An input path does not exist or holds no image.
        padim_edge.runtime.ModelLoadError: The model cannot be opened (checked on the driver first).
        padim_edge.distributed.cluster.ClusterError: The actor pool could not run.
    """
    import ray

    from padim_edge.distributed.cluster import LOCAL, ClusterError, connect
    from padim_edge.runtime import PadimModel

    start = time.perf_counter()
    output = atomic.check_output_folder(output, what="--output")
    info = info or connect(LOCAL)
    files = [file for _, file in expand_paths(inputs)]
    keys = image_keys(files)
    labelled = (
        PadimModel(model, device="cpu", threads=1).info.threshold is not None
    )  # fail fast on a bad model
    identity = f"{sha256([model])} maps={maps} padim-edge={__version__}"
    shards = plan_shards(files, keys, shard_size=shard_size, batch_size=batch_size, identity=identity)
    folder = output / SHARDS
    folder.mkdir(exist_ok=True)
    todo = [s for s in shards if not (folder / s.name).is_file()]
    run = ScoreRun(images=len(files), shards=len(shards), skipped=len(shards) - len(todo))
    gpu = device in ("cuda", "tensorrt") or (device == "auto" and info.gpus > 0)
    if gpu and info.gpus <= 0:
        raise ClusterError(f"--device {device} was requested but {info.describe()} has no GPU")
    if actors is None:
        actors = max(1, int(info.gpus)) if gpu else max(1, int(info.cpus // (threads or 1)))
    if todo:
        from tqdm import tqdm

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # one bar of ours, per image
        rows = [
            {"index": s.index, "name": s.name, "paths": json.dumps(s.paths), "keys": json.dumps(s.keys)}
            for s in todo
        ]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            ShardScorer,
            fn_constructor_kwargs={
                "model": str(model),
                "device": device,
                "threads": threads,
                "batch_size": batch_size,
                "maps": maps,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(actors, len(todo))),
            num_cpus=threads or 1,
            num_gpus=1 if gpu else 0,
        )
        sizes = {s.name: len(s.keys) for s in todo}
        try:
            with tqdm(total=sum(sizes.values()), desc="score (Ray)", unit="img", disable=not progress) as bar:
                for row in dataset.iter_rows():
                    name = str(row["name"])
                    if row["error"]:
                        run.shard_errors[name] = str(row["error"])
                    else:
                        atomic.write_bytes(folder / name, bytes(row["parquet"]))
                        run.written += 1
                    run.torch_in_workers |= bool(row["torch"])
                    bar.update(sizes[name])
        except ray.exceptions.RayError as exc:
            raise ClusterError(
                f"the scoring actors failed: {_cause(exc)} ({run.written} shards written)"
            ) from exc
    results: list[tuple[str, float, bool | None]] = []
    for shard in shards:
        if (folder / shard.name).is_file():
            table = pq.read_table(
                folder / shard.name, columns=["key", "score", "is_anomalous", "error"]
            ).to_pydict()
            for key, value, flag, error in zip(
                table["key"], table["score"], table["is_anomalous"], table["error"], strict=True
            ):
                if error is None:
                    results.append((key, value, flag))
                else:
                    run.failed_images[key] = error
    run.scored = len(results)
    written = write_results(output, results, run.failed_images, labelled=labelled)
    for stale in set(RESULT_FILES) - set(written):  # from an earlier run of this folder
        (output / stale).unlink(missing_ok=True)
    run.files = [output / name for name in written]
    run.seconds = time.perf_counter() - start
    summary = {
        "model": str(model),
        "cluster": info.describe(),
        "images": run.images,
        "scored": run.scored,
        "failed_images": len(run.failed_images),
        "shards": run.shards,
        "skipped": run.skipped,
        "written": run.written,
        "shard_errors": run.shard_errors,
        "actors": actors,
        "threads_per_actor": threads,
        "device": device,
        "seconds": round(run.seconds, 3),
        "torch_in_workers": run.torch_in_workers,
    }
    run.files.append(atomic.write_json(output / SUMMARY, summary))
    return run


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1][:400] if lines else ''}"
