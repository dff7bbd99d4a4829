"""Reading a padim-edge model with clear errors, and writing calibrated ones (onnx only, no torch).

Writing goes through :mod:`padim_edge.onnx_files`, as the exporter's does: a model whose constants
pass 512 MiB keeps them in one external-data file beside it (``<name>.onnx.data``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx.external_data_helper
from google.protobuf.message import DecodeError

from padim_edge import graph_names, metadata
from padim_edge.calibration.errors import CalibrationError
from padim_edge.integrity import IntegrityError, verify_data_file
from padim_edge.metadata import ModelInfo
from padim_edge.onnx_files import data_file, graph_outputs, needs_external_data, save_model, set_props, sha256

__all__ = [
    "SourceModel",
    "data_file",
    "file_sha256",
    "load_model",
    "needs_external_data",
    "save_model",
    "set_props",
]


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


def file_sha256(path: Path) -> str:
    """SHA-256 of a model file, extended with its external-data file when one sits beside it."""
    return sha256([path, data_file(path)])


def check_data_file(path: Path) -> None:
    """Refuse a model whose external-data file is not the one it was saved with (size and SHA-256).

    A calibrated variant inherits the source's constants, so a mismatched pair would be written out as
    a new, self-consistent model that scores wrongly; the hash is therefore checked on every load
    (``always``), not once per file as the runtime does. The record is read without loading the weights;
    a file whose metadata cannot be read is left to :func:`load_model`'s own errors.

    Raises:
        CalibrationError: The data file is missing, or its size or hash differs (names both files).
    """
    # the weight-free metadata reader; imported here, as importing padim_edge.runtime loads onnxruntime
    from padim_edge.runtime.modelfile import ModelFileError, read_metadata

    try:
        text = read_metadata(path).get(metadata.prop("external_data"))
        record = metadata.KEYS["external_data"].decode(text) if text else None
    except (ModelFileError, OSError, ValueError):
        return
    try:
        verify_data_file(path, record, mode="always")
    except IntegrityError as exc:
        raise CalibrationError(f"cannot calibrate {path}: {exc}") from exc


def load_model(path: str | Path) -> SourceModel:
    """Read a padim-edge ONNX model.

    Raises:
        CalibrationError: The file is missing, is not ONNX, lacks its external-data file or has
            another model's (:func:`check_data_file`), or is an ONNX model that padim-export did not
            write.
    """
    path = Path(path)
    if not path.exists():
        raise CalibrationError(f"model file not found: {path}")
    if not path.is_file():
        raise CalibrationError(f"model path is not a file: {path}")
    check_data_file(path)
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
        info = metadata.parse(props, source=str(path), outputs=graph_outputs(proto))
    except metadata.NotAPadimModelError as exc:
        raise CalibrationError(str(exc)) from exc
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [graph_names.INPUT] or any(
        o not in outputs for o in (graph_names.ANOMALY_MAP, graph_names.SCORE)
    ):
        raise CalibrationError(f"{path}: unexpected graph inputs {inputs} / outputs {outputs}")
    return SourceModel(path=path, proto=proto, info=info, sha256=file_sha256(path))
