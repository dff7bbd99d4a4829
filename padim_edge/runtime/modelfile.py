"""Read a model file's ``metadata_props`` without onnx and without loading its weights.

The TensorRT EP's options depend on the model (its precision, its fixed frame size), and they must be
given when the session opens, before onnxruntime has read anything. An ``.onnx`` file is a protobuf
``ModelProto``; this walks its top-level fields, skipping the graph (the weights) with a seek, and
decodes only field 14 (``metadata_props``: ``key`` = 1, ``value`` = 2). :func:`external_locations`
walks one level deeper, the graph's initializers, for the external-data file names they point at
(skipping every tensor's bytes with a seek). Python 3.8 compatible.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Iterator

#: ``ModelProto.metadata_props`` field number.
METADATA_FIELD = 14
#: ``ModelProto.graph``, ``GraphProto.initializer`` and ``TensorProto.external_data`` field numbers.
GRAPH_FIELD, INITIALIZER_FIELD, EXTERNAL_DATA_FIELD = 7, 5, 13


class ModelFileError(ValueError):
    """The file is not a protobuf message this reader can walk."""


def _varint(stream: BinaryIO) -> int | None:
    """The next varint, or ``None`` at a clean end of the stream."""
    shift = result = 0
    while True:
        byte = stream.read(1)
        if not byte:
            if shift:
                raise ModelFileError("truncated varint")
            return None
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ModelFileError("varint too long")


def _fields(data: bytes) -> list[tuple[int, bytes]]:
    """``(field number, bytes)`` of the length-delimited fields of a small message held in memory."""
    import io

    stream = io.BytesIO(data)
    out = []
    while True:
        tag = _varint(stream)
        if tag is None:
            return out
        number, wire = tag >> 3, tag & 7
        if wire == 2:
            length = _varint(stream) or 0
            out.append((number, stream.read(length)))
        elif wire == 0:
            _varint(stream)
        elif wire in (1, 5):
            stream.read(8 if wire == 1 else 4)
        else:
            raise ModelFileError(f"unsupported wire type {wire}")


def _walk(stream: BinaryIO, end: int, source: object) -> Iterator[tuple[int, int, int]]:
    """``(field number, start, length)`` of each length-delimited field before ``end``.

    The stream is at ``start`` when a field is yielded, and is moved past the field afterwards whatever
    the caller read, so a field's bytes are skipped with a seek unless the caller reads them.
    """
    while stream.tell() < end:
        tag = _varint(stream)
        if tag is None:
            return
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _varint(stream)
        elif wire in (1, 5):
            stream.seek(8 if wire == 1 else 4, os.SEEK_CUR)
        elif wire == 2:
            length = _varint(stream)
            start = stream.tell()
            if length is None or start + length > end:
                raise ModelFileError(f"{source}: field {number} runs past the end of the file")
            yield number, start, length
            stream.seek(start + length)
        else:
            raise ModelFileError(f"{source} is not an ONNX model (protobuf wire type {wire} at top level)")


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ``.onnx`` file as a dict (empty when it has none).

    Raises:
        ModelFileError: The file is not a well-formed protobuf at the top level.
        OSError: It cannot be read.
    """
    props: dict[str, str] = {}
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        for number, _, length in _walk(stream, size, path):
            if number == METADATA_FIELD:
                entry = dict(_fields(stream.read(length)))
                props[entry.get(1, b"").decode("utf-8")] = entry.get(2, b"").decode("utf-8")
    return props


def external_locations(path: str | os.PathLike[str]) -> list[str]:
    """The external-data file names the graph's initializers point at, in first-use order (``[]``: none).

    onnxruntime opens these names relative to the model's folder; a padim-edge model has one,
    ``<the name it was saved under>.data``.

    Raises:
        ModelFileError: The file is not a well-formed protobuf down to its initializers.
        OSError: It cannot be read.
    """
    names: list[str] = []
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        for number, start, length in _walk(stream, size, path):
            if number != GRAPH_FIELD:
                continue
            for field, tensor, tensor_length in _walk(stream, start + length, path):
                if field != INITIALIZER_FIELD:
                    continue
                for item, _, item_length in _walk(stream, tensor + tensor_length, path):
                    if item != EXTERNAL_DATA_FIELD:
                        continue
                    entry = dict(_fields(stream.read(item_length)))
                    if entry.get(1) == b"location":
                        name = entry.get(2, b"").decode("utf-8", "replace")
                        if name not in names:
                            names.append(name)
    return names
