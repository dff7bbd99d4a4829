"""File-naming rules, in one place (pure Python; the runtime imports this).

* A model ``model.onnx`` whose constants live outside it keeps them in ``model.onnx.data`` beside it.
* A calibrated variant of ``model.onnx`` is written beside it as ``model-<suffix>.onnx``.
* Per-image outputs (overlays, JSON keys) use the image's path relative to the common root of the
  inputs, in POSIX form; a file name is that key with ``/`` turned into ``__``.
* Commands that write many files default to a fresh, timestamped folder under the current directory.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path

#: Suffix of the external-data file beside a model.
DATA_SUFFIX = ".data"


def data_file(model: str | os.PathLike[str]) -> Path:
    """The external-data file a model uses: ``model.onnx`` -> ``model.onnx.data``."""
    model = Path(model)
    return model.with_name(model.name + DATA_SUFFIX)


def variant_file(model: str | os.PathLike[str], suffix: str) -> Path:
    """A calibrated variant's default path: ``dir/model.onnx`` + ``int8`` -> ``dir/model-int8.onnx``."""
    model = Path(model)
    return model.with_name(f"{model.stem}-{suffix}.onnx")


def common_root(files: Sequence[Path]) -> Path:
    """The deepest folder holding every file (a single file's own folder)."""
    if not files:
        raise ValueError("no files")
    parents = [str(Path(f).resolve().parent) for f in files]
    return Path(os.path.commonpath(parents))


def image_keys(files: Sequence[Path]) -> list[str]:
    """One key per image: its path relative to the common root of all of them, in POSIX form.

    The keys depend only on where the files are, not on how they were named on the command line:
    ``padim-predict a/ b/x.png`` and ``padim-predict a/*.png b/x.png`` give the same keys.
    """
    root = common_root(files)
    return [Path(f).resolve().relative_to(root).as_posix() for f in files]


def key_to_filename(key: str, suffix: str) -> str:
    """``scratch/003.png`` + ``_overlay.png`` -> ``scratch__003_overlay.png``."""
    stem = key.rsplit(".", 1)[0] if "." in Path(key).name else key
    return stem.replace("/", "__") + suffix


def timestamped_folder(prefix: str, parent: str | os.PathLike[str] = ".") -> Path:
    """A new folder name under ``parent`` that does not exist yet: ``<prefix>-YYYYmmdd-HHMMSS[-k]``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(parent) / f"{prefix}-{stamp}"
    candidate, k = base, 1
    while candidate.exists():
        candidate, k = base.with_name(f"{base.name}-{k}"), k + 1
    return candidate
