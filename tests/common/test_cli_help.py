"""Every console script's ``--help`` works with only the base install (numpy, onnxruntime, click, Pillow,
tqdm): each runs in a subprocess whose import system refuses the optional extras' modules."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parents[2]
#: Modules of the optional extras (export, eval, calibrate, bench, ray): none may be imported by --help.
BLOCKED = (
    "torch",
    "torchvision",
    "onnx",
    "onnxscript",
    "onnxconverter_common",
    "onnxruntime.quantization",
    "scipy",
    "sklearn",
    "matplotlib",
    "psutil",
    "skimage",
    "ray",
    "pyarrow",
    "pandas",
    "openvino",
    "cv2",
    "starlette",
    "uvicorn",
)
#: Installs a finder that refuses BLOCKED (and their submodules), then runs one entry point's --help.
RUNNER = """
import importlib, sys

BLOCKED = {blocked!r}


class Refuse:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            message = f"No module named {{name!r}} (blocked: not in the base install)"
            raise ModuleNotFoundError(message, name=name)
        return None


sys.meta_path.insert(0, Refuse)
module, _, attr = {entry!r}.partition(":")
getattr(importlib.import_module(module), attr)(["--help"], prog_name={script!r})
"""


def _scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: console script -> ``module:function`` (no tomllib on 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    table = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+)\s*=\s*"([\w.]+:\w+)"', table, flags=re.M))


def _options(entry: str) -> list[str]:
    """Long option names of a click command (imported here, where every extra is installed)."""
    module, _, attr = entry.partition(":")
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command)
    return [o for p in command.params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")]


def test_every_console_script_is_covered() -> None:
    assert set(_scripts()) == {
        "padim-export",
        "padim-predict",
        "padim-eval",
        "padim-calibrate",
        "padim-bench",
        "padim-check",
        "padim-serve",
    }


@pytest.mark.parametrize("script", sorted(_scripts()))
def test_help_needs_only_the_base_install(script: str) -> None:
    entry = _scripts()[script]
    code = RUNNER.format(blocked=BLOCKED, entry=entry, script=script)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    outcome = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert f"Usage: {script}" in outcome.stdout
    for option in _options(entry):
        assert option in outcome.stdout, option


def test_the_blocker_blocks() -> None:
    """The finder does refuse a blocked module (so the test above can fail)."""
    code = RUNNER.format(blocked=BLOCKED, entry="json:dumps", script="x").replace(
        "getattr(importlib", "import onnx  # noqa\ngetattr(importlib"
    )
    outcome = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert outcome.returncode != 0 and "blocked: not in the base install" in outcome.stderr


@pytest.mark.parametrize(
    ("script", "args", "extra"),
    [
        ("padim-bench", ["--batch-sizes", "1"], "bench"),
        ("padim-calibrate", ["model.onnx"], "calibrate"),
        ("padim-check", ["model.onnx"], "check"),
        ("padim-export", ["--demo"], "export"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(script: str, args: list[str], extra: str) -> None:
    code = RUNNER.format(blocked=BLOCKED, entry=_scripts()[script], script=script).replace(
        '["--help"]', repr(args)
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outcome = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )
    assert outcome.returncode == 1, outcome.stderr[-2000:]
    (line,) = outcome.stderr.strip().splitlines()
    assert line.startswith(f"Error: {script} needs ") and f"pip install 'padim-edge[{extra}]'" in line, line
