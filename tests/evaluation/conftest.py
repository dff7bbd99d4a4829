"""Fixtures of padim-eval's tests: one category on disk and a placeholder model file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.evaluation.fakes import make_category


@pytest.fixture
def category(tmp_path: Path) -> Path:
    return make_category(tmp_path / "widget")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx")
    return path
