"""Writing files so that a crash never leaves a half-written one behind (pure Python).

Every file padim-edge writes goes through here: it is written to a temporary name in the target's
own folder, flushed to disk (``fsync``) and renamed over the target, so the target is either the old
complete file or the new complete file, never a truncated one. Groups of files that belong together
(a model and its external-data file) are staged in a temporary folder beside the targets and renamed
into place one after the other once every one of them is complete (:class:`Stage`).

Files get the usual permissions (``0666`` minus the umask), like ``open()`` would give them, not the
``0600`` of :mod:`tempfile`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode() -> int:
    """Permissions a new regular file gets from ``open()``: ``0o666`` minus the process umask."""
    return 0o666 & ~_umask()


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (renames) to disk, where the platform allows it."""
    with contextlib.suppress(OSError):  # not possible on every file system / platform
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Atomically replace ``path`` with ``data`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], value: object, *, indent: int = 2) -> Path:
    """Atomically replace ``path`` with ``value`` as JSON (and a final newline)."""
    return write_text(path, json.dumps(value, indent=indent) + "\n")


class Stage:
    """A temporary folder beside the targets, where a group of files is written before it replaces them.

    Use as a context manager: write each file at :meth:`path`, then :meth:`commit` renames them over
    their targets in the order given. Leaving the block without committing (an error, Ctrl-C) deletes
    the staged files and leaves every target as it was.

    Args:
        folder: The folder the targets live in (created if needed).

    Example:
        >>> with Stage(out.parent) as stage:
        ...     write_model(stage.path(out.name))
        ...     stage.commit([out.name])
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=".padim-stage-", dir=self.folder))
        self.committed = False

    def path(self, name: str) -> Path:
        """Where to write the file that will become ``folder/name``."""
        return self.dir / name

    def commit(self, names: Sequence[str]) -> list[Path]:
        """fsync every staged file, then rename each over ``folder/<name>`` in order.

        Returns:
            The target paths, in order.
        """
        staged = [self.dir / name for name in names]
        for file in staged:
            fsync_file(file)
            os.chmod(file, default_mode())
        targets = []
        for file in staged:
            target = self.folder / file.name
            os.replace(file, target)
            targets.append(target)
        fsync_dir(self.folder)
        self.committed = True
        return targets

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class OutputError(OSError):
    """An output location cannot be written (a folder where a file is wanted, read-only, no space)."""


def check_output_file(path: str | os.PathLike[str], *, what: str = "output") -> Path:
    """Check, before any long work, that ``path`` can be written as a file.

    Creates the parent folders, and creates and deletes a probe file there, so a read-only location or
    a missing permission is found now and not after an hour of fitting.

    Raises:
        OutputError: ``path`` is a folder, or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file name (e.g. {path / 'model.onnx'})")
    check_output_folder(path.parent, what=f"{what} folder")
    return path


def check_output_folder(folder: str | os.PathLike[str], *, what: str = "output folder") -> Path:
    """Check that ``folder`` exists or can be created, and that files can be written in it.

    Raises:
        OutputError: ``folder`` is a file, or cannot be created or written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".padim-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"cannot write to {what} {folder}: {exc.strerror or exc}") from exc
    return folder


def free_bytes(folder: str | os.PathLike[str]) -> int:
    """Free space on the file system holding ``folder`` (or its nearest existing parent)."""
    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_free_space(folder: str | os.PathLike[str], needed: int, *, what: str = "the output") -> None:
    """Refuse to start work whose output will not fit: ``needed`` bytes plus a 10 % margin.

    Raises:
        OutputError: ``folder``'s file system has less free space; the message gives both sizes.
    """
    free = free_bytes(folder)
    if needed * 1.1 > free:
        raise OutputError(
            f"{what} needs about {needed / 1e9:.2f} GB and {Path(folder)} has {free / 1e9:.2f} GB free"
        )


def write_failure(path: str | os.PathLike[str], exc: OSError) -> OutputError:
    """The one-line error for an OS error while writing ``path``: ``could not write <path>: <reason>``."""
    return OutputError(f"could not write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def write_errors(
    path: str | os.PathLike[str] | None, *, error: Callable[[str], Exception] = OutputError
) -> Iterator[None]:
    """Turn an OS error raised in the block (disk full, a permission lost) into one line.

    Command-line tools wrap their write stages in this, with ``error=click.ClickException``, so a
    full disk at the end of a long run prints ``could not write <path>: <reason>`` and not a traceback.

    Args:
        path: What the block writes (a file or a folder), named in the message; ``None``: nothing is
            written and errors pass through unchanged.
        error: The exception type raised, built from the message (default :class:`OutputError`).

    Raises:
        OutputError: Or ``error``: ``could not write <path>: <strerror>``; an :class:`OutputError`
            raised inside keeps its own message.
    """
    try:
        yield
    except OSError as exc:
        if path is None or (error is OutputError and isinstance(exc, OutputError)):
            raise
        message = str(exc) if isinstance(exc, OutputError) else str(write_failure(path, exc))
        raise error(message) from exc
