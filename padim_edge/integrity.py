"""Hashes and the external-data check: a model never scores with another model's constants.

A model too big for one protobuf keeps its constants in ``<name>.onnx.data`` beside it. Two such files
can be mixed up (copied from different exports, one of them half-copied) and onnxruntime would load
the pair and score wrongly without a word. So at save time the model's metadata records the data
file's name, size and SHA-256 (:func:`data_record`), and at load time :func:`verify_data_file` checks:

* ``size`` always (a ``stat``; catches truncated and half-copied files);
* the SHA-256 according to the mode: ``always``; ``once`` (the default), which hashes a file the first
  time it is seen and remembers ``(path, size, mtime, ctime, device, inode) -> sha256`` in the user's
  cache folder, so a device pays the hash (about 1-2 s per GB) once per file, not per start; or
  ``size`` only. The ctime is in the key because a file rewritten in place keeps its inode and can
  get its size and mtime back (``touch -d``), but no user can set its ctime back.

A save to the same path commits the data file, then the model, under a lock
(:func:`padim_edge.atomic.locked`); a reader opening the model in the instant between those two
renames sees the new data file beside the old model, which the hash check refuses, saying another
process is saving the model (``size`` mode only catches it when the sizes differ).

The record itself is checked first (:func:`padim_edge.metadata.external_data_problem`): its ``file``
must be a plain name, since a model's data file sits beside it. A model whose pair was renamed (both
files) is told apart from one whose data file is missing: the data-file name is stored in the graph.

Pure Python (hashlib); the runtime imports this.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from padim_edge import atomic, metadata
from padim_edge.naming import DATA_SUFFIX, data_file

#: How :func:`verify_data_file` checks the external-data file.
VERIFY_MODES = ("once", "always", "size")


class IntegrityError(RuntimeError):
    """A model's external-data file is not the one it was saved with."""


def sha256(paths: Iterable[str | os.PathLike[str]]) -> str:
    """Hex SHA-256 of the concatenated contents of the existing files among ``paths``, in 1 MiB chunks."""
    digest = hashlib.sha256()
    for part in paths:
        part = Path(part)
        if part.is_file():
            with part.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def data_record(data_path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a model's metadata says about its external-data file: ``{file, bytes, sha256}``."""
    data_path = Path(data_path)
    return {"file": data_path.name, "bytes": data_path.stat().st_size, "sha256": sha256([data_path])}


def cache_dir() -> Path:
    """padim-edge's folder in the user's cache (``$XDG_CACHE_HOME/padim-edge`` or ``~/.cache/padim-edge``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "padim-edge"


def _cache_file() -> Path:
    return cache_dir() / "verified-data.json"


def stat_key(path: Path) -> str:
    stat = path.stat()
    return (
        f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_dev}|{stat.st_ino}"
    )


def _read_cache() -> dict[str, str]:
    try:
        values = json.loads(_cache_file().read_text())
        return values if isinstance(values, dict) else {}
    except (OSError, ValueError):
        return {}


def _remember(key: str, digest: str) -> None:
    values = _read_cache()
    values[key] = digest
    if len(values) > 256:  # keep the newest entries only
        values = dict(list(values.items())[-256:])
    # a read-only home: the next start hashes again, which is only slower
    with contextlib.suppress(OSError):
        atomic.write_text(_cache_file(), json.dumps(values, indent=1))


def verify_data_file(
    model_path: str | os.PathLike[str], record: dict[str, Any] | None, *, mode: str = "once"
) -> None:
    """Check that the external-data file beside ``model_path`` is the one ``record`` describes.

    Args:
        model_path: The ``.onnx`` file.
        record: Its ``external_data`` metadata (``None``: the model has no external data, or predates
            the record; nothing to check).
        mode: ``once``, ``always`` or ``size`` (see the module docstring).

    Raises:
        IntegrityError: The data file is missing, or its size or hash differs; the message names both
            files and what to do.
        ValueError: Unknown ``mode``.
    """
    if mode not in VERIFY_MODES:
        raise ValueError(f"verify mode must be one of {', '.join(VERIFY_MODES)}, got {mode!r}")
    if not record:
        return
    model_path = Path(model_path)
    problem = metadata.external_data_problem(record)
    if problem:
        raise IntegrityError(f"{model_path}: metadata key {metadata.prop('external_data')} {problem}")
    data_path = model_path.with_name(record["file"])
    advice = (
        f"{model_path.name} and {data_path.name} must come from the same export: copy both files together "
        "from where the model was written"
    )
    if not data_path.is_file():
        raise IntegrityError(_missing(model_path, data_path, advice))
    size = data_path.stat().st_size
    if size != record["bytes"]:
        raise IntegrityError(
            f"{data_path} has {size} bytes but {model_path} was saved with a {record['bytes']}-byte data "
            f"file (truncated, or from another model){_saving(model_path)}; {advice}"
        )
    if mode == "size":
        return
    key = stat_key(data_path)
    if mode == "once" and _read_cache().get(key) == record["sha256"]:
        return
    digest = sha256([data_path])
    if digest != record["sha256"]:
        raise IntegrityError(
            f"{data_path} is not the data file {model_path} was saved with (sha256 {digest[:12]}... instead "
            f"of {record['sha256'][:12]}...): its constants belong to another model{_saving(model_path)}; "
            f"{advice}"
        )
    if mode == "once":
        _remember(key, digest)


def renamed_pair_error(model_path: Path, saved_data: str) -> str | None:
    """The message for a model whose pair was renamed (both files), or ``None`` if it was not.

    The graph names its data file by the name it was saved under (``part.onnx`` -> ``part.onnx.data``)
    and onnxruntime opens that name, so ``part.onnx`` + ``part.onnx.data`` renamed to ``new.onnx`` +
    ``new.onnx.data`` cannot load. ``saved_data`` is the name the graph (or the record) holds.
    """
    expected = data_file(model_path)
    if saved_data == expected.name or not expected.is_file() or model_path.with_name(saved_data).exists():
        return None
    saved_model = saved_data[: -len(DATA_SUFFIX)] if saved_data.endswith(DATA_SUFFIX) else None
    back = (
        f"rename both back ({saved_model} and {saved_data})"
        if saved_model
        else f"name the data file {saved_data}"
    )
    return (
        f"{model_path} was saved under another name: its graph names its data file {saved_data}, not "
        f"{expected.name}, so a renamed pair does not load; {back}, or keep the new names and point it "
        f"at {expected.name} with padim_edge.onnx_files.relink_data_file('{model_path}')"
    )


def _missing(model_path: Path, data_path: Path, advice: str) -> str:
    renamed = renamed_pair_error(model_path, data_path.name)
    if renamed:
        return renamed
    return f"{model_path} needs its external-data file {data_path}, which is missing; {advice}"


def _saving(model_path: Path) -> str:
    """A note while a save to ``model_path`` is committing (the mix seen is its window), else ``""``."""
    lock = atomic.lock_path(model_path)
    if atomic.fcntl is None or not lock.exists():
        return ""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return ""
    try:
        atomic.fcntl.flock(fd, atomic.fcntl.LOCK_SH | atomic.fcntl.LOCK_NB)
    except OSError:
        return f" (another process is saving {model_path.name} right now: open it again when that save ends)"
    finally:
        os.close(fd)  # closing releases a lock taken here
    return ""
