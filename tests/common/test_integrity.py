"""A model never scores with another model's external data: size always, hash once per file or always."""

from __future__ import annotations

from pathlib import Path

import pytest

from padim_edge import integrity


@pytest.fixture()
def pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"model")
    data = tmp_path / "m.onnx.data"
    data.write_bytes(b"A" * 1000)
    return model, integrity.data_record(data)


def test_matching_pair_passes_and_is_remembered(pair: tuple[Path, dict]) -> None:
    model, record = pair
    assert record["file"] == "m.onnx.data" and record["bytes"] == 1000
    integrity.verify_data_file(model, record, mode="once")
    assert integrity.cache_dir().joinpath("verified-data.json").is_file()
    integrity.verify_data_file(model, record, mode="always")
    integrity.verify_data_file(model, None)  # no external data: nothing to check


def test_same_size_other_content_is_refused(pair: tuple[Path, dict]) -> None:
    """The reported bug: a seed-0 graph with seed-7 data (same size) scored 10x off without a word."""
    model, record = pair
    (model.parent / "m.onnx.data").write_bytes(b"B" * 1000)
    for mode in ("once", "always"):
        with pytest.raises(
            integrity.IntegrityError, match=r"m\.onnx\.data is not the data file .*m\.onnx was saved"
        ):
            integrity.verify_data_file(model, record, mode=mode)
    integrity.verify_data_file(model, record, mode="size")  # size-only is the documented weaker mode


def test_once_mode_rehashes_a_changed_file(pair: tuple[Path, dict]) -> None:
    model, record = pair
    integrity.verify_data_file(model, record, mode="once")
    data = model.parent / "m.onnx.data"
    data.write_bytes(b"C" * 1000)  # new mtime: the cached verdict does not apply
    with pytest.raises(integrity.IntegrityError):
        integrity.verify_data_file(model, record, mode="once")


def test_truncated_and_missing(pair: tuple[Path, dict]) -> None:
    model, record = pair
    data = model.parent / "m.onnx.data"
    data.write_bytes(b"A" * 10)
    with pytest.raises(integrity.IntegrityError, match=r"has 10 bytes .* 1000-byte data file"):
        integrity.verify_data_file(model, record, mode="size")
    data.unlink()
    with pytest.raises(
        integrity.IntegrityError, match=r"which is missing; m\.onnx and m\.onnx\.data must come"
    ):
        integrity.verify_data_file(model, record)
    with pytest.raises(ValueError, match="verify mode"):
        integrity.verify_data_file(model, record, mode="sometimes")
