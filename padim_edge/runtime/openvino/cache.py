"""The OpenVINO backend's disk cache: a model file's graph facts, its IR, and its compiled blobs.

A warm start must cost no more than an onnxruntime session's, so it reads nothing it can avoid: not
the ONNX file (OpenVINO's reader takes ~0.5 s for R18-Rd100), not the graph's IR, no resize rewrite,
and no ``CACHE_DIR`` (which hashes the whole graph, weights included, on every ``compile_model``). One
model file's entries share a name made of the file's identity:

* ``<name>.json``: the graph's input and output names, output shapes and whether it has the
  antialiased resize: all the runner needs before a shape is compiled;
* ``<name>.xml`` / ``.bin``: the graph as IR (float32 weights: ``compress_to_fp16=False``, never the
  default fp16 compression, which moves scores by 8e-4), read (~20 ms) when a new shape is compiled;
* ``<name>-<shape and settings>.blob``: ``CompiledModel.export_model()``, mapped from disk and given
  to ``Core.import_model``.

The identity is the stat key of :mod:`padim_edge.integrity` (resolved path, size, mtime, ctime, device,
inode) of the ``.onnx`` file and of its external-data file, plus the OpenVINO version: a file rewritten
in place gets a new ctime (which no user can set back), one replaced by a rename a new inode, so a
changed model never meets a stale entry. Writing the entries of a new identity deletes the older ones
of the same path. Writes are staged and renamed, so a reader never sees half an entry; a blob
OpenVINO refuses to import (another CPU, a damaged file) is compiled again; a cache that cannot be
written only costs the next start its speed. Python 3.8 compatible.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from padim_edge.atomic import write_bytes
from padim_edge.integrity import stat_key
from padim_edge.naming import data_file

#: Bumped when an entry's layout changes (old entries are then never read).
LAYOUT = "1"


def _digest(text: str, length: int = 24) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_identity(path: Path, version: str) -> str:
    """A digest of ``path``'s and its external-data file's stat keys, the OpenVINO version and layout."""
    parts = [stat_key(path)]
    data = data_file(path)
    if data.is_file():
        parts.append(stat_key(data))
    return _digest("|".join([*parts, version, LAYOUT]))


class ModelCache:
    """One model file's entries in a cache folder.

    Args:
        folder: The cache folder (created on the first write).
        path: The model file.
        version: ``openvino.get_version()``.
    """

    def __init__(self, folder: str | os.PathLike[str], path: Path, version: str) -> None:
        self.folder = Path(folder)
        self.prefix = _digest(str(path.resolve()), 16)
        self.name = f"{self.prefix}-{file_identity(path, version)}"
        #: Blobs mapped from disk, kept alive as long as the models imported from them.
        self.mapped: list[np.ndarray] = []

    def _file(self, suffix: str) -> Path:
        return self.folder / f"{self.name}{suffix}"

    def manifest(self) -> dict[str, Any] | None:
        """The graph facts saved by :meth:`save_manifest`, or ``None`` (a cold cache)."""
        try:
            value = json.loads(self._file(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def save_manifest(self, value: dict[str, Any]) -> None:
        """Save the graph facts; first delete the entries of this path's older identities."""
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            for old in self.folder.glob(f"{self.prefix}-*"):
                if not old.name.startswith(self.name):
                    old.unlink()
            write_bytes(self._file(".json"), json.dumps(value).encode("utf-8"))

    def ir(self) -> Path | None:
        """The saved IR's ``.xml``, or ``None``."""
        xml = self._file(".xml")
        return xml if xml.is_file() and xml.with_suffix(".bin").is_file() else None

    def save_ir(self, openvino: Any, model: Any) -> None:
        """Save ``model`` as IR with float32 weights (the ``.xml`` last: it marks the copy complete)."""
        xml = self._file(".xml")
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=str(self.folder)))
            try:
                openvino.save_model(model, str(stage / xml.name), compress_to_fp16=False)
                os.replace(stage / xml.with_suffix(".bin").name, xml.with_suffix(".bin"))
                os.replace(stage / xml.name, xml)
            finally:
                shutil.rmtree(stage, ignore_errors=True)

    def blob(self, shape: tuple[int, ...], config: dict[str, str]) -> Path:
        """The blob file of one input shape (``-1``: any size) compiled with ``config``."""
        return self._file(f"-{_digest(json.dumps([list(shape), sorted(config.items())]), 16)}.blob")

    def load(self, core: Any, shape: tuple[int, ...], config: dict[str, str]) -> Any:
        """The compiled model imported from its blob, or ``None`` (no blob, or one OpenVINO refuses)."""
        import openvino

        path = self.blob(shape, config)
        try:
            data = np.memmap(path, dtype=np.uint8, mode="c")  # copy-on-write: OpenVINO wants it writable
        except (OSError, ValueError):
            return None
        try:
            compiled = core.import_model(openvino.Tensor(data, shared_memory=True), "CPU", config)
        except Exception:  # a blob of another CPU or a damaged file: compile again
            return None
        self.mapped.append(data)
        return compiled

    def save(self, shape: tuple[int, ...], config: dict[str, str], compiled: Any) -> None:
        """Export ``compiled`` to its blob file."""
        with contextlib.suppress(OSError):
            self.folder.mkdir(parents=True, exist_ok=True)
            write_bytes(self.blob(shape, config), compiled.export_model().getbuffer())
