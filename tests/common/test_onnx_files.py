"""Saving models: staged and atomic (an interrupted or failed save keeps the old model), external data
with its size and hash recorded, the permissions a service user needs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from padim_edge import metadata, onnx_files
from padim_edge.atomic import OutputError, check_output_file, write_text
from padim_edge.integrity import sha256


def _model(value: float, size: int = 4096) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.full(size, value, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [size])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [size])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, metadata.encode({"seed": int(value)}))
    return model


def _weight(path: Path) -> float:
    model = onnx.load(str(path))
    return float(numpy_helper.to_array(model.graph.initializer[0])[0])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("external", ["never", "always"])
def test_a_failing_write_keeps_the_old_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, external: str
) -> None:
    """Fault injection: the writer dies half-way (disk full, SIGINT) -> old pair intact, no temp files."""
    path = tmp_path / "m.onnx"
    onnx_files.save_model(_model(1.0), path, external_data=external)
    before = sha256([path, onnx_files.data_file(path)])
    real_save = onnx.save_model

    def dying_save(proto, f, *args, **kwargs):
        Path(f).write_bytes(b"\x08\x07 half a protobuf")  # a truncated file, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save_model", dying_save)
    with pytest.raises(KeyboardInterrupt):
        onnx_files.save_model(_model(2.0), path, external_data=external)
    monkeypatch.setattr(onnx, "save_model", real_save)
    assert sha256([path, onnx_files.data_file(path)]) == before
    assert _weight(path) == 1.0
    assert _leftovers(tmp_path) == []


def test_a_failed_verification_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    onnx_files.save_model(_model(1.0), path)

    def reject(staged: Path) -> None:
        assert staged.parent != tmp_path and staged.is_file()
        raise RuntimeError("parity failed")

    with pytest.raises(RuntimeError, match="parity failed"):
        onnx_files.save_model(_model(2.0), path, verify=reject)
    assert _weight(path) == 1.0 and _leftovers(tmp_path) == []


def test_external_data_is_recorded_and_both_files_are_readable(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    proto = _model(3.0)
    files = onnx_files.save_model(proto, path, external_data="always")
    data = onnx_files.data_file(path)
    assert files == [path, data]
    record = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    recorded = metadata.KEYS["external_data"].decode(record["padim_edge.external_data"])
    assert recorded == {"file": "m.onnx.data", "bytes": data.stat().st_size, "sha256": sha256([data])}
    mode = 0o666 & ~_umask()
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == mode, file  # not tempfile's 0600
    assert numpy_helper.to_array(proto.graph.initializer[0])[0] == 3.0  # caller's proto still usable
    # saving the same name inline drops the stale data file and the record
    onnx_files.save_model(proto, path, external_data="never")
    assert not data.exists()
    assert "padim_edge.external_data" not in {p.key for p in onnx.load(str(path)).metadata_props}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_output_checks(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a folder"):
        check_output_file(tmp_path)
    with pytest.raises(OutputError, match="is a folder"):
        onnx_files.save_model(_model(1.0), tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_file(blocker / "m.onnx")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputError, match="cannot write"):
            check_output_file(locked / "m.onnx")
    target = write_text(tmp_path / "sub" / "r.json", "{}")
    assert target.read_text() == "{}" and _leftovers(target.parent) == []


def test_auto_writes_external_data_past_the_memory_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``auto`` externalises past AUTO_EXTERNAL_BYTES (memory-mapped at load); ``never`` still may inline."""
    model = _model(3.0)  # 16 KiB of constants
    assert [f.name for f in onnx_files.save_model(model, tmp_path / "small.onnx")] == ["small.onnx"]
    monkeypatch.setattr(onnx_files, "AUTO_EXTERNAL_BYTES", 8 * 1024)
    assert onnx_files.prefers_external_data(model) and not onnx_files.needs_external_data(model)
    files = onnx_files.save_model(model, tmp_path / "auto.onnx")
    assert [f.name for f in files] == ["auto.onnx", "auto.onnx.data"]
    assert _weight(tmp_path / "auto.onnx") == 3.0
    inline = onnx_files.save_model(model, tmp_path / "never.onnx", external_data="never")
    assert [f.name for f in inline] == ["never.onnx"]


def test_update_props_rewrites_the_model_alone(tmp_path: Path) -> None:
    """A metadata update leaves the external-data file as it was (not rewritten), and the model loads."""
    path = tmp_path / "m.onnx"
    onnx_files.save_model(_model(3.0), path, external_data="always")
    data = onnx_files.data_file(path)
    before, mtime = data.read_bytes(), data.stat().st_mtime_ns
    onnx_files.update_props(path, {"padim_edge.note": "updated"})
    assert data.read_bytes() == before and data.stat().st_mtime_ns == mtime
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["padim_edge.note"] == "updated"
    assert props[metadata.prop("external_data")]  # the integrity record is kept
    assert _weight(path) == 3.0
    assert _leftovers(tmp_path) == []
