"""Writing ``.onnx`` files safely: staged, checked, then renamed into place (onnx only, no torch).

Shared by the exporter, the calibrator and the benchmarks, so every model is written the same way:

* constants past :data:`AUTO_EXTERNAL_BYTES` (and always past the protobuf limit) go to one
  ``<name>.onnx.data`` file beside the model, and the model's metadata records that file's size and
  SHA-256 (:mod:`padim_edge.integrity`);
* both files are written into a temporary folder beside the target, checked (``onnx.checker``, and
  an optional caller's check such as the exporter's parity test), fsynced, and only then renamed over
  the old pair: the data file first, then the model. An interrupted or failed save leaves the old
  model as it was; a crash between the two renames leaves a pair the runtime refuses by name.
* the two renames (and an inline save's removal of an older data file) run under the pair's commit
  lock (:func:`padim_edge.atomic.locked`), so two processes saving to one path leave one writer's
  whole pair, and an inline save never deletes the data file another process has just committed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import onnx
import onnx.external_data_helper
from onnx import numpy_helper

from padim_edge import metadata
from padim_edge.atomic import OutputError, Stage, locked
from padim_edge.integrity import data_record, sha256
from padim_edge.naming import data_file

__all__ = [
    "AUTO_EXTERNAL_BYTES",
    "EXTERNAL_DATA_THRESHOLD",
    "ExternalData",
    "data_file",
    "default_opset",
    "graph_outputs",
    "graph_versions",
    "initializer_bytes",
    "needs_external_data",
    "pin_ir_version",
    "prefers_external_data",
    "relink_data_file",
    "save_model",
    "set_props",
    "sha256",
    "tensor_bytes",
]

#: Above this many bytes of constants the model must be written with external data (protobuf caps at 2 GiB).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000
#: Above this many bytes of constants ``auto`` writes external data even though protobuf could hold them:
#: onnxruntime memory-maps an external-data file, so opening the model costs about its size in RSS,
#: while inline constants are parsed and then copied out of the protobuf. Measured on WR50-Rd550 with
#: an int8 head (746 MB, benchmarks/results/compact_head.md): peak RSS 1.21x the file size with external
#: data, 1.51x inline (and 7x slower to open). R18-Rd100 (about 100 MB) stays one file.
AUTO_EXTERNAL_BYTES = 512 * 2**20

ExternalData = Literal["auto", "always", "never"]


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Bytes of one initializer's values (inline or external)."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return int({e.key: e.value for e in tensor.external_data}.get("length", 0))
    return len(tensor.raw_data) or numpy_helper.to_array(tensor).nbytes


def initializer_bytes(proto: onnx.ModelProto) -> int:
    """Bytes held by the model's initializers (inline or external)."""
    return sum(tensor_bytes(tensor) for tensor in proto.graph.initializer)


def needs_external_data(proto: onnx.ModelProto) -> bool:
    """Whether ``proto`` is too big to be written as one protobuf file."""
    return initializer_bytes(proto) > EXTERNAL_DATA_THRESHOLD


def default_opset(proto: onnx.ModelProto) -> int:
    """The model's opset of the default (``ai.onnx``) domain."""
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def pin_ir_version(proto: onnx.ModelProto) -> int:
    """Give ``proto`` the lowest IR version its opsets allow, dropping the IR-10-only fields.

    IR 10 added ``metadata_props`` on nodes, graphs and functions (the dynamo exporter fills them with
    its trace); onnxruntime 1.16 / 1.17 (JetPack 5's last wheels) refuse any IR above 9. Opsets 17 and
    18 need IR 8. Domains ``onnx.helper`` has no table for (``com.microsoft``) do not raise the version.

    Returns:
        The IR version set.
    """
    known = [o for o in proto.opset_import if o.domain in ("", "ai.onnx", "ai.onnx.ml", "ai.onnx.training")]
    graphs = [proto.graph]
    while graphs:  # subgraphs (If / Loop bodies) carry node metadata too
        graph = graphs.pop()
        if hasattr(graph, "metadata_props"):
            del graph.metadata_props[:]
        for node in graph.node:
            if hasattr(node, "metadata_props"):
                del node.metadata_props[:]
            graphs += [a.g for a in node.attribute if a.HasField("g")]
            graphs += [g for a in node.attribute for g in a.graphs]
    for function in proto.functions:
        if hasattr(function, "metadata_props"):
            del function.metadata_props[:]
        for node in function.node:
            if hasattr(node, "metadata_props"):
                del node.metadata_props[:]
    proto.ir_version = onnx.helper.find_min_ir_version_for(known) if known else 3
    return proto.ir_version


def graph_outputs(proto: onnx.ModelProto) -> dict[str, list[int | str | None]]:
    """``{output name: shape}`` of the graph (an int, a symbolic name or ``None`` per axis), as
    :func:`padim_edge.metadata.check_graph` takes it (onnxruntime's ``get_outputs()`` gives the same)."""
    return {
        output.name: [
            dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)
            for dim in output.type.tensor_type.shape.dim
        ]
        for output in proto.graph.output
    }


def graph_versions(proto: onnx.ModelProto) -> dict[str, int]:
    """``{"opset": ..., "ir_version": ...}``: the metadata keys that say what a runtime must support."""
    return {"opset": default_opset(proto), "ir_version": int(proto.ir_version)}


def prefers_external_data(proto: onnx.ModelProto) -> bool:
    """Whether ``auto`` writes ``proto`` with external data (past :data:`AUTO_EXTERNAL_BYTES`, or too big)."""
    return initializer_bytes(proto) > min(AUTO_EXTERNAL_BYTES, EXTERNAL_DATA_THRESHOLD)


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


def save_model(
    proto: onnx.ModelProto,
    path: str | Path,
    *,
    external_data: ExternalData = "auto",
    check: bool = True,
    verify: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Write ``proto`` to ``path`` atomically, with external data when asked or when it is too big to inline.

    ``proto`` is left usable (its tensors in memory), so it can be edited and saved again; its
    ``external_data`` metadata is set to describe the written data file, or removed.

    Args:
        proto: The model.
        path: The ``.onnx`` file to write.
        external_data: ``auto`` (past :data:`AUTO_EXTERNAL_BYTES` of constants), ``always`` or ``never``
            (only below the protobuf limit).
        check: Run the full ``onnx.checker`` on the written file before it replaces anything.
        verify: Called with the staged ``.onnx`` path (its data file beside it) before it replaces
            anything; raising there keeps the old model and writes nothing.

    Returns:
        The files written: the ``.onnx`` and, with external data, its ``.onnx.data``.

    Raises:
        ValueError: ``never`` was asked for a model past the protobuf limit.
        OutputError: ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give the .onnx file to write")
    if external_data == "never" and needs_external_data(proto):
        raise ValueError("the model's constants exceed the 2 GB protobuf limit; use external data")
    external = external_data == "always" or (external_data == "auto" and prefers_external_data(proto))
    data_name = data_file(path).name
    set_props(proto, {metadata.prop("external_data"): None})
    with Stage(path.parent) as stage:
        staged = stage.path(path.name)
        if external:
            onnx.save_model(
                proto,
                str(staged),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_name,
                size_threshold=1024,
            )
            record = data_record(stage.path(data_name))
            set_props(proto, metadata.encode_updates({"external_data": record}))
            onnx.save_model(proto, str(staged))  # tensors are external references now: the model alone
            # saving moved the tensors out of ``proto``: read them back so the caller may keep using it
            onnx.external_data_helper.load_external_data_for_model(proto, str(stage.dir))
        else:
            onnx.save_model(proto, str(staged))
        if check:
            onnx.checker.check_model(str(staged), full_check=True)
        if verify is not None:
            verify(staged)
        if external:
            files = stage.commit([data_name, path.name])
        else:  # a data file of an earlier save is stale now: removed inside the same locked commit
            files = stage.commit([path.name], remove=[data_name])
    return files[::-1]  # the model first


def update_props(path: str | Path, updates: dict[str, str | None]) -> Path:
    """Rewrite only the ``.onnx`` of a saved model with its metadata ``updates`` applied, atomically.

    The constants are not read: an external-data file stays as it is (and its recorded size and hash
    stay valid), so adding a report to a 2 GB model costs a small write, not a copy of the model. The
    read, edit and write hold the pair's commit lock: a save to the same path meanwhile waits, rather
    than its new data file ending beside this old model.
    """
    path = Path(path)
    with Stage(path.parent) as stage, locked(path):
        proto = onnx.load(str(path), load_external_data=False)
        set_props(proto, updates)
        onnx.save_model(proto, str(stage.path(path.name)))
        return stage.commit([path.name], lock=False)[0]


def relink_data_file(path: str | Path) -> Path:
    """Make a renamed pair load: point ``path``'s graph (and its record) at ``data_file(path)``.

    The graph names its data file by the name the model was saved under, so ``part.onnx`` +
    ``part.onnx.data`` renamed to ``new.onnx`` + ``new.onnx.data`` does not load. This rewrites only the
    ``.onnx`` (the constants are not read or copied), after checking that ``new.onnx.data`` is the
    data file the model was saved with (size and SHA-256).

    Returns:
        ``path``.

    Raises:
        padim_edge.integrity.IntegrityError: ``data_file(path)`` is missing or is another model's.
    """
    from padim_edge.integrity import verify_data_file

    path = Path(path)
    name = data_file(path).name
    with Stage(path.parent) as stage, locked(path):
        proto = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
        text = props.get(metadata.prop("external_data"))
        record = metadata.KEYS["external_data"].decode(text) if text else None
        if record is not None:
            record = {**record, "file": name}
            verify_data_file(path, record, mode="always")
            set_props(proto, metadata.encode_updates({"external_data": record}))
        for tensor in proto.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = name
        onnx.save_model(proto, str(stage.path(path.name)))
        return stage.commit([path.name], lock=False)[0]
