"""The serve extra claims Python 3.8 (JetPack 5): its modules are linted as 3.8 code and compile with 3.8."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
SERVE = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "padim_edge" / "serve").glob("*.py"))


def test_serve_modules_are_linted_as_python38() -> None:
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = [k for k, v in config["tool"]["ruff"]["per-file-target-version"].items() if v == "py38"]
    assert [f for f in SERVE if not any(fnmatch.fnmatchcase(f, p) for p in patterns)] == []


@pytest.mark.skipif(not PY38.is_file(), reason=f"no Python 3.8 interpreter at {PY38} (JetPack 5's Python)")
def test_serve_modules_compile_with_python38(tmp_path: Path) -> None:
    assert "padim_edge/serve/batching.py" in SERVE
    for name in SERVE:
        shutil.copy(ROOT / name, tmp_path / name.replace("/", "__"))
    done = subprocess.run(
        [str(PY38), "-m", "py_compile", *[str(p) for p in sorted(tmp_path.glob("*.py"))]],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
