"""Export never loses a model and never passes a wrong one: degenerate data, failed checks, bad outputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from padim_edge.atomic import OutputError
from padim_edge.export import pipeline
from padim_edge.export.cli import main as export_main
from padim_edge.integrity import sha256
from padim_edge.runtime import ModelLoadError, PadimModel
from tests.conftest import SMALL, write_images

SMALL_ARGS = ["--dims", "16", "--resize", "72", "--crop", "64", "--random-init", "--quiet"]


def test_identical_training_images_export_without_a_false_mismatch(tmp_path: Path) -> None:
    """All-identical (and all-black) images: scores near 0, Sigma^-1 = 100 I; parity holds on its floor."""
    for name, value in (("same", None), ("black", 0)):
        folder = tmp_path / name
        folder.mkdir()
        image = np.zeros((70, 80, 3), np.uint8) if value == 0 else write_images(tmp_path / "src", 1)[0]
        for i in range(4):
            if value == 0:
                Image.fromarray(image).save(folder / f"{i}.png")
            else:
                (folder / f"{i}.png").write_bytes(Path(image).read_bytes())
        run = pipeline.run_export(folder, tmp_path / f"{name}.onnx", progress=False, parity_images=2, **SMALL)
        assert run.parity is not None and run.parity.ok, run.parity
        assert run.parity.max_score < 1.0  # the degenerate case the floor exists for


def test_a_failed_parity_check_keeps_the_old_model(
    small_export, small_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, train_dir: Path
) -> None:
    target = tmp_path / "kept.onnx"
    target.write_bytes(small_onnx.read_bytes())
    before = sha256([target])
    bad = pipeline.Parity(images=2, max_abs_score=5.0, max_abs_map=5.0, max_score=10.0)
    monkeypatch.setattr(pipeline, "check_parity", lambda *a, **k: bad)
    with pytest.raises(pipeline.ParityError, match="nothing was written"):
        pipeline.run_export(train_dir, target, progress=False, seed=1, **SMALL)
    assert sha256([target]) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.onnx"]


def test_random_init_exports_with_one_seed_are_identical(train_dir: Path, tmp_path: Path) -> None:
    a = pipeline.run_export(train_dir, tmp_path / "a.onnx", progress=False, parity_images=0, seed=5, **SMALL)
    b = pipeline.run_export(train_dir, tmp_path / "b.onnx", progress=False, parity_images=0, seed=5, **SMALL)
    c = pipeline.run_export(train_dir, tmp_path / "c.onnx", progress=False, parity_images=0, seed=6, **SMALL)
    weights = [
        {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(r.export.files[0])).graph.initializer}
        for r in (a, b, c)
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
    conv = next(
        k
        for k in weights[0]
        if k.startswith(("padim_backbone", "features", "body", "/")) and "weight" in k.lower()
    )
    assert not np.array_equal(weights[0][conv], weights[2][conv])


def test_output_problems_are_found_before_the_fit(train_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a folder"):
        pipeline.run_export(train_dir, tmp_path, progress=False, **SMALL)
    runner = CliRunner()
    result = runner.invoke(export_main, ["--data", str(train_dir), "-o", str(tmp_path), *SMALL_ARGS])
    assert result.exit_code == 1 and "is a folder" in result.output and "fit " not in result.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(
        export_main, ["--data", str(train_dir), "-o", str(blocker / "m.onnx"), *SMALL_ARGS]
    )
    assert result.exit_code == 1 and "is a file, not a folder" in result.output
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        result = runner.invoke(
            export_main, ["--data", str(train_dir), "-o", str(locked / "m.onnx"), *SMALL_ARGS]
        )
        assert result.exit_code == 1 and "cannot write" in result.output
    result = runner.invoke(export_main, ["--data", str(train_dir), "--dims", "0", *SMALL_ARGS[2:]])
    assert result.exit_code == 2 and "--dims" in result.output


def test_demo_into_a_folder_that_holds_something_else(tmp_path: Path) -> None:
    (tmp_path / "demo_data").mkdir()
    (tmp_path / "demo_data" / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(export_main, ["--demo", "-o", str(tmp_path / "model.onnx"), "--quiet"])
    assert result.exit_code == 1
    assert "holds no complete padim-edge demo set" in result.output
    assert "delete that folder or choose another --output folder" in result.output
    assert "--overwrite)" in result.output and "python -m padim_edge.demo" in result.output
    assert (tmp_path / "demo_data" / "mine.txt").read_text() == "keep me"


def test_empty_batch_and_data_file_outside_the_folder(small_onnx: Path, small_export, tmp_path: Path) -> None:
    model = PadimModel(small_onnx, device="cpu")
    assert model.predict(np.zeros((0, 70, 70, 3), np.uint8)) == []
    assert model.predict([]) == []
    # a model whose external-data location points outside its folder: refused, and the message says so
    proto = onnx.load(str(small_onnx))
    onnx.save_model(
        proto,
        str(tmp_path / "m.onnx"),
        save_as_external_data=True,
        location="m.onnx.data",
        size_threshold=1024,
    )
    evil = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    for tensor in evil.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere/m.onnx.data"
    sub = tmp_path / "sub"
    sub.mkdir()
    onnx.save(evil, str(sub / "m.onnx"))
    with pytest.raises(ModelLoadError) as info:
        PadimModel(sub / "m.onnx", device="cpu")
    message = str(info.value)
    assert "is missing" not in message
    assert "outside" in message or "escape" in message, message


def test_local_fit_lists_every_unreadable_image_in_one_error(tmp_path: Path) -> None:
    """The local fit stops at its first bad file but names the later ones too (decoded, not fitted), so
    one run says what to fix; --skip-unreadable-style collection leaves them out instead."""
    from padim_edge.export.fit import frame_batches
    from padim_edge.images import UnreadableImagesError, list_images

    write_images(tmp_path, 7, sizes=[(32, 32)])
    for name in ("img_001.png", "img_005.png"):
        (tmp_path / name).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "img_006.png").write_bytes(b"not an image at all")
    paths = list_images(tmp_path)

    with pytest.raises(UnreadableImagesError) as caught:
        list(frame_batches(paths, 2, skip_unreadable=False, failures=[]))
    assert [Path(f).name for f, _ in caught.value.failures] == ["img_001.png", "img_005.png", "img_006.png"]
    assert str(caught.value).startswith("3 of 7 training images could not be read: ")
    assert "--skip-unreadable" in str(caught.value)

    failures: list[tuple[str, str]] = []
    frames = [f for batch in frame_batches(paths, 2, skip_unreadable=True, failures=failures) for f in batch]
    assert len(frames) == 4 and len(failures) == 3
