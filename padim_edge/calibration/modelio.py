"""Reading a padim-edge model with clear errors, and writing calibrated ones (onnx only, no torch).

Writing follows the exporter's rule: a model whose constants pass ~1.8 GB keeps them in one
external-data file beside it (``<name>.onnx.data``), since protobuf caps a file at 2 GiB.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx.external_data_helper
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from padim_edge import graph_names, metadata
from padim_edge.calibration.errors import CalibrationError
from padim_edge.metadata import ModelInfo

#: Above this many bytes of constants a model is written with external data (as the exporter does).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


@dataclass
class SourceModel:
    """A padim-edge model read from disk.

    Attributes:
        path: The ``.onnx`` file.
        proto: The model, external data loaded.
        info: Its parsed metadata.
        sha256: SHA-256 of the ``.onnx`` file (and of its ``.data`` file, when it has one).
    """

    path: Path
    proto: onnx.ModelProto
    info: ModelInfo
    sha256: str

    @property
    def props(self) -> dict[str, str]:
        """The raw ``metadata_props``."""
        return {p.key: p.value for p in self.proto.metadata_props}


def data_file(path: Path) -> Path:
    """The external-data file a model at ``path`` would use."""
    return path.with_name(path.name + ".data")


def file_sha256(path: Path) -> str:
    """SHA-256 of a model file, extended with its external-data file when one sits beside it."""
    digest = hashlib.sha256()
    for part in (path, data_file(path)):
        if part.is_file():
            with part.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def load_model(path: str | Path) -> SourceModel:
    """Read a padim-edge ONNX model.

    Raises:
        CalibrationError: The file is missing, is not ONNX, lacks its external-data file, or is an
            ONNX model that padim-export did not write.
    """
    path = Path(path)
    if not path.exists():
        raise CalibrationError(f"model file not found: {path}")
    if not path.is_file():
        raise CalibrationError(f"model path is not a file: {path}")
    try:
        proto = onnx.load(str(path))
    except DecodeError as exc:
        raise CalibrationError(f"{path} is not an ONNX model (protobuf decode failed: {exc})") from exc
    except Exception as exc:  # onnx raises several types for a missing external-data file
        if not data_file(path).exists() and (
            "data" in str(exc).lower() or isinstance(exc, FileNotFoundError)
        ):
            raise CalibrationError(
                f"{path} keeps its constants in an external-data file that is missing (expected "
                f"{data_file(path).name} beside it; copy both files together): {exc}"
            ) from exc
        raise CalibrationError(f"cannot read {path} as an ONNX model: {exc}") from exc
    if not proto.graph.node:
        raise CalibrationError(f"{path} is not an ONNX model (no graph in it)")
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        info = metadata.parse(props, source=str(path))
    except metadata.NotAPadimModelError as exc:
        raise CalibrationError(str(exc)) from exc
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [graph_names.INPUT] or any(
        o not in outputs for o in (graph_names.ANOMALY_MAP, graph_names.SCORE)
    ):
        raise CalibrationError(f"{path}: unexpected graph inputs {inputs} / outputs {outputs}")
    return SourceModel(path=path, proto=proto, info=info, sha256=file_sha256(path))


def set_props(proto: onnx.ModelProto, updates: dict[str, str | None]) -> None:
    """Set or (value ``None``) remove ``metadata_props`` entries, keeping the others in order."""
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in updates.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)


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


def save_model(proto: onnx.ModelProto, path: str | Path, *, check: bool = True) -> list[Path]:
    """Write ``proto`` to ``path``, with external data only when it is too big to inline.

    A stale ``<name>.data`` is deleted first (onnx appends to an existing one). ``proto`` is left as
    it was (with its tensors in memory), so it can be edited and saved again.

    Returns:
        The files written: the ``.onnx`` and, with external data, its ``.onnx.data``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    external = data_file(path)
    external.unlink(missing_ok=True)
    if needs_external_data(proto):
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
