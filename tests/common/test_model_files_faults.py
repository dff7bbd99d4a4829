"""Model files under faults: concurrent saves to one path, a killed save's staging folder, a data file
rewritten in place, a renamed pair, external data outside the model's folder (small onnx.helper
graphs, no fit)."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from padim_edge import atomic, integrity, metadata, onnx_files
from padim_edge.integrity import IntegrityError, verify_data_file
from tests.common.test_metadata_validation import padim_graph

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64 * 1024  # floats: a 256 KiB data file


def _model(value: float) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.full(SIZE, value, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [SIZE])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [SIZE])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, metadata.encode({"seed": int(value)}))
    return model


def _whole_model(path: Path) -> float:
    """The one writer whose model is on disk: its pair checks out and every constant is its value."""
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    text = props.get(metadata.prop("external_data"))
    verify_data_file(path, metadata.KEYS["external_data"].decode(text) if text else None, mode="always")
    weights = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0])
    assert np.all(weights == weights[0]), "constants from two writers"
    assert int(props[metadata.prop("seed")]) == int(weights[0]), "the .onnx of one writer, data of another"
    return float(weights[0])


def _writer(path: str, value: float, external: str, pause: float, barrier) -> None:
    """One saving process; ``pause`` seconds between its renames (a writer descheduled mid-commit)."""
    if pause:
        real = os.replace

        def slow_replace(src, dst):
            real(src, dst)
            time.sleep(pause)

        atomic.os.replace = slow_replace  # this child process only
    barrier.wait()
    onnx_files.save_model(_model(value), path, external_data=external, check=False)


@pytest.mark.parametrize(
    ("externals", "pauses"),
    [
        (("always", "always"), (0.0, 0.0)),
        (("always", "always"), (0.05, 0.0)),
        (("never", "always"), (0.0, 0.05)),  # the inline writer must not delete the other's fresh data
    ],
)
def test_two_processes_saving_one_path_leave_one_whole_pair(
    tmp_path: Path, externals: tuple[str, str], pauses: tuple[float, float]
) -> None:
    path = tmp_path / "m.onnx"
    context = multiprocessing.get_context("fork")
    for round_ in range(6):
        values = (10.0 * round_ + 1, 10.0 * round_ + 2)
        barrier = context.Barrier(2)
        workers = [
            context.Process(target=_writer, args=(str(path), values[i], externals[i], pauses[i], barrier))
            for i in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert [w.exitcode for w in workers] == [0, 0]
        winner = _whole_model(path)
        assert winner in values
        if externals[values.index(winner)] == "never":  # an inline winner leaves no data file behind
            assert not onnx_files.data_file(path).exists()
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def _save_when(event, path: Path, value: float) -> None:
    event.wait(30)
    onnx_files.save_model(_model(value), path, external_data="always", check=False)


def test_a_save_waits_for_the_commit_lock(tmp_path: Path) -> None:
    """While another holder has the pair's lock, a commit waits, and then lands whole."""
    path = tmp_path / "m.onnx"
    onnx_files.save_model(_model(1.0), path, external_data="always", check=False)
    context = multiprocessing.get_context("fork")
    go = context.Event()
    writer = context.Process(target=_save_when, args=(go, path, 2.0))
    writer.start()  # before the lock is taken: a forked child must not inherit it
    with atomic.locked(path):
        go.set()
        time.sleep(1.0)
        assert writer.is_alive() and _whole_model(path) == 1.0  # staged, waiting for the lock
        assert atomic.lock_path(path).exists()
        assert integrity._saving(path) == (
            " (another process is saving m.onnx right now: open it again when that save ends)"
        )
    writer.join(60)
    assert writer.exitcode == 0 and _whole_model(path) == 2.0
    assert not atomic.lock_path(path).exists() and integrity._saving(path) == ""


KILLED_SAVE = """
import os, signal, sys
import numpy as np, onnx
from onnx import helper, numpy_helper
from padim_edge import onnx_files
w = numpy_helper.from_array(np.ones(65536, np.float32), "w")
g = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
    [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [65536])],
    [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [65536])], [w])
model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
def die(staged):
    os.kill(os.getpid(), signal.SIGKILL)  # the export is killed with both files staged
onnx_files.save_model(model, sys.argv[1], external_data="always", verify=die)
"""


def test_a_killed_saves_stage_folder_is_removed_by_the_next_save(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)], cwd=ROOT, check=False)
    assert killed.returncode == -signal.SIGKILL
    (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(atomic.STAGE_PREFIX)]
    assert (left / "m.onnx.data").stat().st_size == SIZE * 4 and not path.exists()
    # one from another host, a fresh one without an owner and a live save's (this process) stay
    other_host = tmp_path / f"{atomic.STAGE_PREFIX}otherhost"
    other_host.mkdir()
    (other_host / atomic.STAGE_OWNER).write_text("another-host 1\n")
    no_owner = tmp_path / f"{atomic.STAGE_PREFIX}noowner"
    no_owner.mkdir()
    old = tmp_path / f"{atomic.STAGE_PREFIX}old"  # untouched for hours, owner unknown
    old.mkdir()
    stamp = time.time() - atomic.STALE_STAGE_SECONDS - 60
    os.utime(old, (stamp, stamp))
    expected = (
        f"removed 2 staging folder(s) left in {tmp_path} by an interrupted save (0.3 MB): "
        + ", ".join(sorted([old.name, left.name]))
    )
    with pytest.warns(atomic.StaleStageWarning, match="^" + re.escape(expected) + "$"):
        onnx_files.save_model(_model(2.0), path, external_data="always", check=False)
    assert not left.exists() and not old.exists() and other_host.is_dir() and no_owner.is_dir()
    assert _whole_model(path) == 2.0
    with atomic.Stage(tmp_path) as live, warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing stale now: no warning
        onnx_files.save_model(_model(3.0), path, external_data="always", check=False)
        assert live.dir.is_dir()
    assert _whole_model(path) == 3.0
    shutil.rmtree(other_host)
    shutil.rmtree(no_owner)


def test_the_hash_cache_catches_an_in_place_rewrite_with_size_and_mtime_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "m.onnx"
    onnx_files.save_model(_model(1.0), path, external_data="always", check=False)
    other = tmp_path / "other" / "m.onnx"
    onnx_files.save_model(_model(5.0), other, external_data="always", check=False)
    record = metadata.KEYS["external_data"].decode(
        {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}[
            metadata.prop("external_data")
        ]
    )
    data = onnx_files.data_file(path)
    verify_data_file(path, record, mode="once")  # hashed and remembered
    before = data.stat()
    time.sleep(0.05)  # past the file system's timestamp tick
    with data.open("r+b") as handle:  # same inode, same size
        handle.write(onnx_files.data_file(other).read_bytes())
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = data.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    with pytest.raises(IntegrityError, match="its constants belong to another model"):
        verify_data_file(path, record, mode="once")


def _tiny_pair(folder: Path, name: str = "part.onnx") -> Path:
    path = folder / name
    onnx_files.save_model(padim_graph(), path, external_data="always")
    return path


def test_a_consistently_renamed_pair_names_the_real_cause_and_can_be_relinked(tmp_path: Path) -> None:
    from padim_edge.calibration.errors import CalibrationError
    from padim_edge.calibration.modelio import load_model
    from padim_edge.runtime.model import ModelLoadError, PadimModel

    part = _tiny_pair(tmp_path)
    new = tmp_path / "new.onnx"
    part.rename(new)
    onnx_files.data_file(part).rename(onnx_files.data_file(new))
    expected = (
        f"{new} was saved under another name: its graph names its data file part.onnx.data, not "
        "new.onnx.data, so a renamed pair does not load; rename both back (part.onnx and part.onnx.data), "
        f"or keep the new names and point it at new.onnx.data with "
        f"padim_edge.onnx_files.relink_data_file('{new}')"
    )
    with pytest.raises(ModelLoadError, match="^" + re.escape(expected) + "$"):
        PadimModel(new, device="cpu")
    with pytest.raises(CalibrationError, match="^" + re.escape(f"cannot calibrate {new}: {expected}") + "$"):
        load_model(new)
    onnx_files.relink_data_file(new)
    model = PadimModel(new, device="cpu")
    assert model.predict(np.full((8, 8, 3), 7, np.uint8))[0].score == 7.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.onnx", "new.onnx.data"]


def test_a_missing_data_file_is_named(tmp_path: Path) -> None:
    from padim_edge.runtime.model import ModelLoadError, PadimModel

    path = _tiny_pair(tmp_path)
    onnx_files.data_file(path).unlink()
    expected = (
        f"{path} keeps its constants in part.onnx.data beside it, which is missing: copy both files together "
        "as padim-export wrote them"
    )
    with pytest.raises(ModelLoadError, match="^" + re.escape(expected) + "$"):
        PadimModel(path, device="cpu")


@pytest.mark.parametrize("where", ["absolute", "parent"])
def test_external_data_outside_the_folder_is_named_outside(tmp_path: Path, where: str) -> None:
    from padim_edge.runtime.model import ModelLoadError, PadimModel

    source = _tiny_pair(tmp_path / "src")
    location = str(onnx_files.data_file(source)) if where == "absolute" else "../src/part.onnx.data"
    proto = onnx.load(str(source), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path = tmp_path / "model" / "part.onnx"
    path.parent.mkdir()
    onnx.save(proto, str(path))
    expected = (
        f"{path} refers to its external-data file as {location!r}, which is outside the model's folder "
        f"{path.parent}; onnxruntime refuses that (a padim-edge model keeps part.onnx.data beside it): "
        "re-save the model, or copy the data file beside it and point the graph at it with "
        "padim_edge.onnx_files.relink_data_file"
    )
    with pytest.raises(ModelLoadError, match="^" + re.escape(expected) + "$"):
        PadimModel(path, device="cpu")
    shutil.copy(onnx_files.data_file(source), onnx_files.data_file(path))  # the advice works
    onnx_files.relink_data_file(path)
    assert PadimModel(path, device="cpu").predict(np.full((8, 8, 3), 3, np.uint8))[0].score == 3.0


def test_a_record_naming_a_file_outside_the_folder_is_refused_by_name(tmp_path: Path) -> None:
    path = _tiny_pair(tmp_path)
    record = {"file": "../part.onnx.data", "bytes": 4, "sha256": "a" * 64}
    expected = (
        f"{path}: metadata key padim_edge.external_data names the data file '../part.onnx.data', which is "
        "outside the model's folder (a model's data file must sit beside it)"
    )
    with pytest.raises(IntegrityError, match="^" + re.escape(expected) + "$"):
        verify_data_file(path, record)
    with pytest.raises(IntegrityError, match=re.escape("lacks 'file'")):
        verify_data_file(path, {"bytes": 4, "sha256": "a" * 64})
