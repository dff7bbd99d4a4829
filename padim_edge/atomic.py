"""Writing files so that a crash never leaves a half-written one behind (pure Python).

Every file padim-edge writes goes through here: it is written to a temporary name in the target's
own folder, flushed to disk (``fsync``) and renamed over the target, so the target is either the old
complete file or the new complete file, never a truncated one. Groups of files that belong together
(a model and its external-data file) are staged in a temporary folder beside the targets and renamed
into place one after the other once every one of them is complete (:class:`Stage`).

Two processes saving the same group (two exports to one path) must not interleave their renames, or one
writer's model ends beside the other's data file. So a group's commit holds an exclusive advisory lock
(``flock``) on a lock file beside its last target, ``.<name>.lock`` (:func:`locked`): commits to one
path run one after the other, and whoever commits last leaves its whole group. The kernel drops the lock
of a killed process, so a crash never leaves a lock to clear by hand; the file itself is removed by its
holder. A staging folder left by a killed save is removed by the next save into that folder
(:func:`clean_stale_stages`), never one a live save is still writing.

Files get the usual permissions (``0666`` minus the umask), like ``open()`` would give them, not the
``0600`` of :mod:`tempfile`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; commits there are not serialised
    fcntl = None  # type: ignore[assignment]

#: Name prefix of :class:`Stage` folders.
STAGE_PREFIX = ".padim-stage-"
#: File in a stage folder naming its writer: ``<host> <pid>``.
STAGE_OWNER = ".owner"
#: A stage folder untouched this long is stale even when its writer cannot be checked (another host,
#: or a pid that was reused): no save stages for hours.
STALE_STAGE_SECONDS = 6 * 3600


class StaleStageWarning(UserWarning):
    """Staging folders left by a killed save were removed."""


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


def lock_path(target: str | os.PathLike[str]) -> Path:
    """The lock file of the group whose last file is ``target``: ``dir/m.onnx`` -> ``dir/.m.onnx.lock``."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def locked(target: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the exclusive commit lock of ``target``'s group for the block (waiting for other holders).

    The lock file is created, locked, checked to still be the file at its path (a holder that finished
    meanwhile removed it: lock the new one), and removed before it is unlocked, so none is left behind.
    Where ``flock`` is missing (Windows), the block runs unlocked.
    """
    path = lock_path(target)
    if fcntl is None:  # pragma: no cover
        yield
        return
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and (current.st_ino, current.st_dev) == (
                os.fstat(fd).st_ino,
                os.fstat(fd).st_dev,
            ):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the holder before us removed this file: lock the one at the path now
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)  # closing releases the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's live process
        return True
    return True


def _last_touched(folder: Path) -> float:
    times = [folder.lstat().st_mtime]
    with contextlib.suppress(OSError):
        times += [entry.lstat().st_mtime for entry in folder.iterdir()]
    return max(times)


def _stage_is_stale(folder: Path, now: float) -> bool:
    """A stage folder whose writer is gone: a dead pid on this host, or untouched for hours."""
    try:
        if now - _last_touched(folder) > STALE_STAGE_SECONDS:
            return True
        host, pid = (folder / STAGE_OWNER).read_text().split()
        return host == socket.gethostname() and not _pid_alive(int(pid))
    except (OSError, ValueError):  # no owner file (being created, or an older save): age decides
        return False


def _tree_bytes(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def clean_stale_stages(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the stage folders in ``folder`` that a killed save left behind, and warn that it did.

    A stage folder is stale when its writer (``.owner``: host and pid) was on this host and is no
    longer running, or when nothing in it changed for :data:`STALE_STAGE_SECONDS`. A live writer's
    folder, here or on another host sharing the folder, is left alone.

    Returns:
        The folders removed.

    Warns:
        StaleStageWarning: Names how many folders were removed, where, and how many bytes they held.
    """
    folder = Path(folder)
    now = time.time()
    removed, freed = [], 0
    with contextlib.suppress(OSError):
        for entry in sorted(folder.iterdir()):
            if not entry.name.startswith(STAGE_PREFIX) or entry.is_symlink() or not entry.is_dir():
                continue
            if _stage_is_stale(entry, now):
                size = _tree_bytes(entry)
                shutil.rmtree(entry, ignore_errors=True)
                if not entry.exists():
                    removed.append(entry)
                    freed += size
    if removed:
        warnings.warn(
            f"removed {len(removed)} staging folder(s) left in {folder} by an interrupted save "
            f"({freed / 1e6:.1f} MB): {', '.join(p.name for p in removed)}",
            StaleStageWarning,
            stacklevel=3,
        )
    return removed


class Stage:
    """A temporary folder beside the targets, where a group of files is written before it replaces them.

    Use as a context manager: write each file at :meth:`path`, then :meth:`commit` renames them over
    their targets in the order given, under the group's lock (:func:`locked`). Leaving the block
    without committing (an error, Ctrl-C) deletes the staged files and leaves every target as it was.
    Opening a stage first removes stale stage folders a killed save left in ``folder``
    (:func:`clean_stale_stages`).

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
        clean_stale_stages(self.folder)
        self.dir = Path(tempfile.mkdtemp(prefix=STAGE_PREFIX, dir=self.folder))
        try:
            (self.dir / STAGE_OWNER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        self.committed = False

    def path(self, name: str) -> Path:
        """Where to write the file that will become ``folder/name``."""
        return self.dir / name

    def commit(self, names: Sequence[str], *, remove: Sequence[str] = (), lock: bool = True) -> list[Path]:
        """fsync every staged file, then rename each over ``folder/<name>`` in order, as one unit.

        The renames, and the removal of ``remove``, run under the lock of the last name (the group's
        commit point, :func:`locked`): another process committing to the same targets waits, so the
        targets end as one writer's whole group, never a mix.

        Args:
            names: Staged files, in rename order (the one that makes the group valid last).
            remove: Files in ``folder`` that the new group makes stale (a data file the new model no
                longer uses), removed after the renames.
            lock: ``False`` when the caller already holds :func:`locked` on the last name.

        Returns:
            The target paths, in order.
        """
        staged = [self.dir / name for name in names]
        for file in staged:
            fsync_file(file)
            os.chmod(file, default_mode())
        targets = []
        with locked(self.folder / names[-1]) if lock else contextlib.nullcontext():
            for file in staged:
                target = self.folder / file.name
                os.replace(file, target)
                targets.append(target)
            for name in remove:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.folder / name)
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
