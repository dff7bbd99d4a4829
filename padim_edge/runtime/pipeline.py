"""Scoring image files with the graph kept busy: decoding and overlay writing overlap it (no torch).

``padim-predict``, ``padim-bench --files`` and the Ray scoring actors score files through
:class:`FilePipeline`. The files are cut into batches of ``batch_size`` in input order, as the
sequential loop always did, so every batch holds the same frames and the scores are the same bits:

* a pool of decode threads reads the next batches while the graph runs the current one (Pillow and
  onnxruntime release the GIL while they work);
* a pool of writer threads renders and writes the overlays
  (:class:`padim_edge.runtime.outputs.OverlayWriter`);
* at most ``prefetch`` decoded batches and ``2 * prefetch`` batches of overlays are in flight, so
  memory stays bounded on an archive of any size;
* results come out in input order, one :class:`FileResult` per file: a file that cannot be decoded,
  or whose size is not the one a fixed-size model (``--target tensorrt``) was built for, is a failed
  result naming the file; the others are still scored;
* a result is yielded once scored, while its overlay may still be in a writer's hands: leaving early
  (Ctrl-C, an error, ``close()``) cancels the decodes not started and waits for the overlays queued, so
  every result yielded has its overlay and every file written is complete.

Example:
    >>> from padim_edge.runtime import PadimModel
    >>> from padim_edge.runtime.pipeline import predict_files
    >>> model = PadimModel("model.onnx")
    >>> for result in predict_files(model, ["frames/"]):
    ...     print(result.key, result.score if result.ok else result.error)
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from padim_edge.images import ImageError, expand_paths, load_image
from padim_edge.naming import image_keys

#: Decoded batches read ahead of the graph.
PREFETCH = 2


class ScoringError(RuntimeError):
    """The graph failed on a batch (the execution provider, the model): the message names its files."""


@dataclass(frozen=True)
class FileResult:
    """One file's result, in input order.

    Attributes:
        key: The file's key (its path relative to the common folder of the inputs).
        path: The file.
        prediction: The :class:`padim_edge.runtime.Prediction`, or ``None`` when the file failed.
        error: Why the file could not be read or scored, naming it; ``None`` when it was scored.
        overlay: The overlay file written for it, if any.
    """

    key: str
    path: Path
    prediction: object | None = None
    error: str | None = None
    overlay: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the file was scored."""
        return self.error is None

    @property
    def score(self) -> float | None:
        """The image score (``None`` for a failed file)."""
        return None if self.prediction is None else self.prediction.score

    @property
    def is_anomalous(self) -> bool | None:
        """The label at the model's threshold (``None``: failed, or the model has no threshold)."""
        return None if self.prediction is None else self.prediction.is_anomalous


@dataclass
class StageTimes:
    """Where a run's time went, in seconds.

    Attributes:
        decode: Busy time of the decode threads, summed over them (read + decode + to RGB).
        graph: Time in the graph (``PadimModel.predict``), in the scoring thread.
        write: Busy time of the writer threads, summed over them (overlay render + PNG + write).
        wait_decode: Time the scoring thread waited for a batch to be decoded (decode-bound runs).
        wait_write: Time the scoring thread waited for overlays (write-bound runs).
        wall: Wall time from the first file to the last result.
        images: Files scored.
        failed: Files that could not be read or scored.
    """

    decode: float = 0.0
    graph: float = 0.0
    write: float = 0.0
    wait_decode: float = 0.0
    wait_write: float = 0.0
    wall: float = 0.0
    images: int = 0
    failed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to a stage (thread-safe)."""
        with self._lock:
            setattr(self, name, getattr(self, name) + seconds)

    def to_dict(self) -> dict[str, float]:
        """The numbers, rounded, for a report."""
        names = ("decode", "graph", "write", "wait_decode", "wait_write", "wall")
        out: dict[str, float] = {f"{name}_s": round(getattr(self, name), 4) for name in names}
        out.update(images=self.images, failed=self.failed)
        return out


def default_decode_workers() -> int:
    """Decode threads by default: 2 (one keeps a 2-core box's graph fed; more only add contention)."""
    return max(1, min(2, os.cpu_count() or 1))


def size_error(path: Path, shape: Sequence[int], size: Sequence[int]) -> str:
    """The failure of a frame of another size than a fixed-size (``--target tensorrt``) model's."""
    h, w = size[0], size[1]
    return (
        f"{path}: a {shape[0]}x{shape[1]} (HxW) image, but this model was built for {h}x{w} frames "
        f"(padim-export --target tensorrt --input-size {h}x{w}); resize it to {h}x{w} or use a model "
        "exported for any size (the default target)"
    )


def decode(path: Path) -> tuple[np.ndarray | None, str | None]:
    """Decode one file: ``(image, None)``, or ``(None, reason)`` naming the file."""
    try:
        return load_image(path), None
    except ImageError as exc:
        return None, str(exc)
    except Exception as exc:  # e.g. a Pillow guard that is not an ImageError: this file, not the run
        return None, f"cannot decode image {path}: {type(exc).__name__}: {exc}"


class FilePipeline:
    """Scores files batch by batch while the next batches decode and the last ones' overlays are written.

    Use as a context manager (or call :meth:`close`), and iterate :meth:`run`:

    >>> with FilePipeline(model, batch_size=8) as pipeline:
    ...     for result in pipeline.run(files):
    ...         ...
    >>> pipeline.times.to_dict()

    Args:
        model: A :class:`padim_edge.runtime.PadimModel` (or anything with its ``predict`` and ``info``).
        batch_size: Files per batch (a batch may come out smaller where files fail).
        decode_workers: Decode threads (default :func:`default_decode_workers`); 0 decodes in the
            scoring thread, one batch at a time (the sequential loop).
        write_workers: Overlay threads (default 1; 0 writes them in the scoring thread).
        overlays: An :class:`padim_edge.runtime.outputs.OverlayWriter`, or ``None`` for no overlays.
        prefetch: Batches decoded ahead of the graph.
    """

    def __init__(
        self,
        model,
        *,
        batch_size: int = 8,
        decode_workers: int | None = None,
        write_workers: int = 1,
        overlays=None,
        prefetch: int = PREFETCH,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.batch_size = batch_size
        self.decode_workers = default_decode_workers() if decode_workers is None else max(0, decode_workers)
        self.write_workers = max(0, write_workers) if overlays is not None else 0
        self.overlays = overlays
        self.prefetch = max(1, prefetch)
        #: Overlays queued for the writers before the scoring thread waits for them.
        self.max_writes = 2 * self.prefetch * batch_size
        self.size = getattr(model.info, "input_size", None)
        self.times = StageTimes()
        self._decoders = (
            ThreadPoolExecutor(self.decode_workers, thread_name_prefix="padim-decode")
            if self.decode_workers
            else None
        )
        self._writers = (
            ThreadPoolExecutor(self.write_workers, thread_name_prefix="padim-write")
            if self.write_workers
            else None
        )
        self._decoding: deque = deque()  # (first index, decode futures) of the batches read ahead

    def __enter__(self) -> FilePipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel the decodes not started and wait for those running and for every overlay being written."""
        for _, futures in self._decoding:
            for future in futures:
                future.cancel()
        self._decoding = deque()
        for pool in (self._decoders, self._writers):
            if pool is not None:
                pool.shutdown(wait=True)
        self._decoders = self._writers = None

    # -- stages -------------------------------------------------------------------------------------

    def _decode(self, path: Path) -> tuple[np.ndarray | None, str | None]:
        start = time.perf_counter()
        try:
            return decode(path)
        finally:
            self.times.add("decode", time.perf_counter() - start)

    def _write(self, key: str, image: np.ndarray, prediction) -> str | None:
        start = time.perf_counter()
        try:
            return self.overlays.add(
                key, image, prediction.anomaly_map, prediction.score, prediction.is_anomalous
            )
        finally:
            self.times.add("write", time.perf_counter() - start)

    def _submit_decodes(self, files: Sequence[Path]) -> list:
        if self._decoders is None:
            return [_Done(self._decode(path)) for path in files]
        return [self._decoders.submit(self._decode, path) for path in files]

    def _score(self, batch: list[tuple[int, Path, np.ndarray]]) -> list:
        if not batch:
            return []
        start = time.perf_counter()
        try:
            return self.model.predict([image for _, _, image in batch], batch_size=self.batch_size)
        except Exception as exc:
            files = ", ".join(str(path) for _, path, _ in batch)
            raise ScoringError(f"scoring failed on the batch {files}: {type(exc).__name__}: {exc}") from exc
        finally:
            self.times.add("graph", time.perf_counter() - start)

    def run(
        self, files: Sequence[str | os.PathLike[str]], keys: Sequence[str] | None = None
    ) -> Iterator[FileResult]:
        """Score ``files``; yields one :class:`FileResult` per file, in order.

        Args:
            files: Image files.
            keys: Their keys (default :func:`padim_edge.naming.image_keys`).

        Raises:
            ScoringError: The graph failed on a batch.
            OSError: An overlay could not be written (disk full, ...).
        """
        files = [Path(f) for f in files]
        if not files:
            return
        keys = list(keys) if keys is not None else image_keys(files)
        if len(keys) != len(files):
            raise ValueError(f"{len(keys)} keys for {len(files)} files")
        start = time.perf_counter()
        chunks = iter(range(0, len(files), self.batch_size))
        decoding = self._decoding = deque()
        writing: deque = deque()

        def read_ahead() -> None:
            while len(decoding) < (self.prefetch if self._decoders is not None else 1):
                lo = next(chunks, None)
                if lo is None:
                    return
                hi = min(lo + self.batch_size, len(files))
                decoding.append((lo, self._submit_decodes(files[lo:hi])))

        try:
            read_ahead()
            while decoding:
                lo, futures = decoding.popleft()
                read_ahead()
                waited = time.perf_counter()
                decoded = [future.result() for future in futures]
                self.times.add("wait_decode", time.perf_counter() - waited)
                results: list[FileResult | None] = [None] * len(decoded)
                batch: list[tuple[int, Path, np.ndarray]] = []
                for i, (image, error) in enumerate(decoded):
                    path, key = files[lo + i], keys[lo + i]
                    if (
                        image is not None
                        and self.size is not None
                        and tuple(image.shape[:2]) != tuple(self.size)
                    ):
                        image, error = None, size_error(path, image.shape, self.size)
                    if image is None:
                        results[i] = FileResult(key, path, error=error)
                    else:
                        batch.append((i, path, image))
                predictions = self._score(batch)
                for (i, path, image), prediction in zip(batch, predictions):
                    key, overlay = keys[lo + i], None
                    if self.overlays is not None and self.overlays.wanted(prediction.is_anomalous):
                        if self._writers is None:
                            overlay = self._write(key, image, prediction)
                        else:
                            writing.append(self._writers.submit(self._write, key, image, prediction))
                            overlay = self.overlays.names[key]
                    results[i] = FileResult(key, path, prediction=prediction, overlay=overlay)
                waited = time.perf_counter()
                while writing and (len(writing) > self.max_writes or writing[0].done()):
                    writing.popleft().result()  # an OSError (disk full) ends the run here
                self.times.add("wait_write", time.perf_counter() - waited)
                for result in results:
                    if result.ok:
                        self.times.images += 1
                    else:
                        self.times.failed += 1
                    yield result
            waited = time.perf_counter()
            while writing:
                writing.popleft().result()
            self.times.add("wait_write", time.perf_counter() - waited)
        finally:
            self.times.wall += time.perf_counter() - start
            for _, futures in decoding:
                for future in futures:
                    future.cancel()


class _Done:
    """A finished "future" (the in-thread path)."""

    def __init__(self, value) -> None:
        self.value = value

    def result(self):
        return self.value

    def cancel(self) -> bool:
        return False


def predict_files(
    model,
    paths: Iterable[str | os.PathLike[str]],
    *,
    batch_size: int = 8,
    decode_workers: int | None = None,
    overlays=None,
) -> Iterator[FileResult]:
    """Score image files and folders (searched recursively), pipelined; one result per file, in order.

    Keys are the files' paths relative to the common folder of all of them, as ``padim-predict``'s.

    Args:
        model: A :class:`padim_edge.runtime.PadimModel`.
        paths: Image files and folders.
        batch_size: Files per graph run.
        decode_workers: Decode threads (see :class:`FilePipeline`).
        overlays: An :class:`padim_edge.runtime.outputs.OverlayWriter`, or ``None``.

    Raises:
        padim_edge.images.ImageError: A path does not exist or a folder holds no image.
        ScoringError: The graph failed on a batch.
    """
    files = [file for _, file in expand_paths(paths)]
    with FilePipeline(
        model, batch_size=batch_size, decode_workers=decode_workers, overlays=overlays
    ) as pipeline:
        yield from pipeline.run(files)
