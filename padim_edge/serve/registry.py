"""The models a service serves, by name, and their reload without dropping a request.

Each name maps to a :class:`ModelEntry`: one opened :class:`~padim_edge.runtime.PadimModel`, its
SHA-256, and its own :class:`~padim_edge.serve.batching.MicroBatcher`. A reload opens the file again
beside the serving entry (on a worker thread) and swaps the name to the new entry in one step of
the event loop; the old entry scores what was already queued on it, then retires. A request is
queued on the entry it looked up, so it is scored wholly by the old model or wholly by the new one.
A file that does not open keeps the old entry serving; the reason is kept and reported.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from padim_edge import graph_names
from padim_edge.integrity import sha256
from padim_edge.naming import data_file
from padim_edge.serve.batching import MicroBatcher
from padim_edge.serve.errors import RequestError
from padim_edge.serve.metrics import Metrics
from padim_edge.serve.protocol import datatype_of

#: Characters of the SHA-256 that make a model's version string.
VERSION_CHARS = 12


@dataclass(frozen=True)
class BatchSettings:
    """How every model's batcher batches (``--max-batch``, ``--max-delay-ms``, ``--max-queue``)."""

    max_batch: int = 8
    max_delay: float = 0.0
    max_queue: int = 64


@dataclass(frozen=True)
class ModelSettings:
    """How models are opened (``--device``, ``--threads``)."""

    device: str = "auto"
    threads: int | None = None


class ReloadError(RuntimeError):
    """A model file could not be (re)loaded; the previous version, if any, keeps serving."""


@dataclass
class ModelEntry:
    """One loaded version of a named model.

    Attributes:
        name: The name clients use (``/v2/models/{name}``).
        path: The model file.
        model: The opened :class:`~padim_edge.runtime.PadimModel`.
        sha256: SHA-256 of the file (and of its ``.onnx.data`` file, when it has one).
        loaded: Unix time of the load.
        executor: The thread its batches run on.
        outputs: ``(name, v2 datatype, shape)`` of each graph output, from the warm-up frame (``-1``: batch).
        batcher: Its micro-batcher (started by :meth:`Registry.start`).
    """

    name: str
    path: Path
    model: Any
    sha256: str
    loaded: float
    executor: ThreadPoolExecutor
    outputs: list[tuple[str, str, list[int]]]
    batcher: MicroBatcher | None = field(default=None, repr=False)

    @property
    def version(self) -> str:
        """The first :data:`VERSION_CHARS` hex digits of the SHA-256."""
        return self.sha256[:VERSION_CHARS]

    @property
    def calibrated(self) -> bool:
        """Whether the graph has the decision outputs (a threshold baked by padim-calibrate)."""
        return graph_names.IS_ANOMALOUS in self.model.outputs

    def check_frames(self, frames: np.ndarray) -> None:
        """Refuse frames a fixed-size model (TensorRT target) was not built for.

        Raises:
            RequestError: 400 naming the size the model takes.
        """
        from padim_edge.runtime import InputError

        try:
            self.model.check_size([(list(range(len(frames))), frames)])
        except InputError as exc:
            raise RequestError(400, f"model '{self.name}': {exc}") from None

    def describe(self) -> dict[str, Any]:
        """The padim part of the model's metadata response."""
        info = self.model.info
        return {
            "file": str(self.path),
            "sha256": self.sha256,
            "version": self.version,
            "loaded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded)),
            "providers": list(self.model.providers),
            "description": info.description,
            "calibrated": self.calibrated,
            "metadata": {key.split(".", 1)[-1]: value for key, value in sorted(info.raw.items())},
        }


def file_sha256(path: Path) -> str:
    """SHA-256 of a model file, extended with its external-data file when it has one."""
    return sha256([path, data_file(path)])


def open_entry(name: str, path: Path, settings: ModelSettings) -> ModelEntry:
    """Open ``path`` as the model ``name`` and run one warm-up frame (blocking).

    Raises:
        ReloadError: The file is missing, not a padim-edge model, changed while it was read, or the
            device is unavailable (one line, naming the file).
    """
    from padim_edge.runtime import ModelLoadError, PadimModel, ProviderError

    before = file_sha256(path) if path.is_file() else None
    try:
        model = PadimModel(path, device=settings.device, threads=settings.threads)
    except (ModelLoadError, ProviderError, ValueError, OSError) as exc:
        raise ReloadError(str(exc)) from exc
    except Exception as exc:  # any runner's failure: a reload must leave the serving version in place
        raise ReloadError(f"cannot load {path}: {type(exc).__name__}: {str(exc).strip()[:300]}") from exc
    if before is None or file_sha256(path) != before:
        raise ReloadError(
            f"{path} changed while it was being loaded; write a new file beside it, then rename it"
        )
    edge = model.info.input_size or (model.info.resize, model.info.resize)
    try:
        warm = model.run(np.zeros((1, *edge, 3), np.uint8))
    except Exception as exc:
        raise ReloadError(f"{path} loads but cannot score a frame: {str(exc).strip()[:300]}") from exc
    outputs = [(n, datatype_of(np.asarray(warm[n])), [-1, *np.shape(warm[n])[1:]]) for n in model.outputs]
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"padim-{name}")
    return ModelEntry(name, path, model, before, time.time(), executor, outputs)


class Registry:
    """The served models by name.

    Args:
        entries: The models opened at start (:func:`open_entry`), by name.
        settings: How a reload opens a model.
        batching: How each model's batcher batches.
        metrics: Where batches and reloads are counted.
    """

    def __init__(
        self,
        entries: dict[str, ModelEntry],
        settings: ModelSettings,
        batching: BatchSettings,
        metrics: Metrics,
    ) -> None:
        self.entries = dict(entries)
        self.settings = settings
        self.batching = batching
        self.metrics = metrics
        self.reload_errors: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task] = set()
        metrics.depth_source = self.queue_depths
        for entry in self.entries.values():
            self._announce(entry)

    def _announce(self, entry: ModelEntry) -> None:
        device = entry.model.providers[0] if entry.model.providers else ""
        self.metrics.model_loaded(entry.name, entry.version, entry.sha256, device)

    def _attach(self, entry: ModelEntry) -> None:
        name = entry.name
        entry.batcher = MicroBatcher(
            entry.model.run,
            entry.executor,
            max_batch=self.batching.max_batch,
            max_delay=self.batching.max_delay,
            max_queue=self.batching.max_queue,
            on_batch=lambda size: self.metrics.batch(name, size),
        )
        entry.batcher.start()

    def start(self) -> None:
        """Start every model's batcher (on the running event loop)."""
        for entry in self.entries.values():
            self._attach(entry)

    async def close(self) -> None:
        """Score everything queued, then stop every batcher and worker thread."""
        await asyncio.gather(*(self._retire(e) for e in self.entries.values()), *self._retiring)

    def flush(self) -> None:
        """Stop every batcher waiting for its batch to fill (the start of a drain)."""
        for entry in self.entries.values():
            if entry.batcher is not None:
                entry.batcher.flush()

    def get(self, name: str, version: str | None = None) -> ModelEntry:
        """The entry serving ``name`` now.

        Raises:
            RequestError: 404 for an unknown name, or a version that is not the one loaded.
        """
        entry = self.entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self.entries)) or "none"
            raise RequestError(404, f"unknown model '{name}'; this server has: {known}")
        if version not in (None, "", entry.version, entry.sha256):
            raise RequestError(
                404, f"model '{name}' version '{version}' is not loaded (serving {entry.version})"
            )
        return entry

    def queue_depths(self) -> dict[str, int]:
        """Frames waiting per model name."""
        return {n: (e.batcher.queued if e.batcher else 0) for n, e in self.entries.items()}

    async def reload(self, name: str) -> ModelEntry:
        """Open the model's file again and swap it in; the old version finishes its queue first.

        Raises:
            RequestError: 404 for an unknown name.
            ReloadError: The file does not open; the old version keeps serving (reason kept in
                :attr:`reload_errors`).
        """
        old = self.get(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            old = self.entries[name]
            loop = asyncio.get_running_loop()
            try:
                new = await loop.run_in_executor(None, open_entry, name, old.path, self.settings)
            except ReloadError as exc:
                self.reload_errors[name] = str(exc)
                self.metrics.reload(name, ok=False)
                raise ReloadError(
                    f"reload of model '{name}' from {old.path} failed; still serving version "
                    f"{old.version}: {exc}"
                ) from exc
            self._attach(new)
            self.entries[name] = new  # the swap: requests looked up from here on go to the new version
            self.reload_errors.pop(name, None)
            self.metrics.reload(name, ok=True)
            self._announce(new)
            task = loop.create_task(self._retire(old))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
            return new

    @staticmethod
    async def _retire(entry: ModelEntry) -> None:
        if entry.batcher is not None:
            await entry.batcher.close()
        entry.executor.shutdown(wait=False)


def parse_model_args(models: tuple[str, ...]) -> dict[str, Path]:
    """``[NAME=]PATH`` arguments -> ``{name: path}`` (the name defaults to the file's stem).

    Raises:
        ValueError: A name given twice (one line naming it).
    """
    out: dict[str, Path] = {}
    for arg in models:
        name, sep, path = arg.partition("=")
        if not sep or os.path.exists(arg):
            name, path = Path(arg).stem, arg
        if not name or "/" in name:
            raise ValueError(f"model argument {arg!r}: the name before '=' must be non-empty, without '/'")
        if name in out:
            raise ValueError(f"two models are named '{name}' ({out[name]} and {path}); name them: NAME=PATH")
        out[name] = Path(path)
    return out
