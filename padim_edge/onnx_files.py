"""Writing and identifying ``.onnx`` files: external data, size, hashes (onnx only, no torch).

Shared by the exporter and the calibrator, so both write big models the same way: constants past
the protobuf limit go to one ``<name>.onnx.data`` file beside the model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import onnx
from onnx import numpy_helper

#: Above this many bytes of constants the model is written with external data (protobuf caps at 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000

ExternalData = Literal["auto", "always", "never"]


def data_file(path: Path) -> Path:
    """The external-data file a model at ``path`` uses (``<name>.onnx.data``)."""
    return path.with_name(path.name + ".data")


def sha256(paths: Iterable[Path]) -> str:
    """Hex sha256 of the concatenated contents of the existing files among ``paths``, in 1 MiB chunks."""
    digest = hashlib.sha256()
    for part in paths:
        if part.is_file():
            with part.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def initializer_bytes(proto: onnx.ModelProto) -> int:
    """Bytes held by the model's initializers (inline or external)."""
    total = 0
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            total += int({e.key: e.value for e in tensor.external_data}.get("length", 0))
        else:
            total += len(tensor.raw_data) or numpy_helper.to_array(tensor).nbytes
    return total


def needs_external_data(proto: onnx.ModelProto) -> bool:
    """Whether ``proto`` is too big to be written as one protobuf file."""
    return initializer_bytes(proto) > EXTERNAL_DATA_THRESHOLD


def save_model(
    proto: onnx.ModelProto, path: str | Path, *, external_data: ExternalData = "auto", check: bool = True
) -> list[Path]:
    """Write ``proto`` to ``path``, with external data when asked or when it is too big to inline.

    A stale ``<name>.data`` is deleted first (onnx appends to an existing one). ``proto`` is left as
    it was (with its tensors in memory), so it can be edited and saved again.

    Args:
        proto: The model.
        path: The ``.onnx`` file to write.
        external_data: ``auto`` (only past :data:`EXTERNAL_DATA_THRESHOLD`), ``always`` or ``never``.
        check: Run the full ``onnx.checker`` on the written file.

    Returns:
        The files written: the ``.onnx`` and, with external data, its ``.onnx.data``.

    Raises:
        ValueError: ``never`` was asked for a model past the protobuf limit.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    external = data_file(path)
    external.unlink(missing_ok=True)
    too_big = needs_external_data(proto)
    if external_data == "never" and too_big:
        raise ValueError("the model's constants exceed the 2 GB protobuf limit; use external data")
    if external_data == "always" or (external_data == "auto" and too_big):
        onnx.save_model(
            proto,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=external.name,
            size_threshold=1024,
        )
        # saving moved the tensors out of ``proto``: read them back so the caller may keep using it
        onnx.external_data_helper.load_external_data_for_model(proto, str(path.parent))
        files = [path, external]
    else:
        onnx.save_model(proto, str(path))
        files = [path]
    if check:
        onnx.checker.check_model(str(path), full_check=True)
    return files
