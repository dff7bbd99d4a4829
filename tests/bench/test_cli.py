"""``padim-bench``'s command line around a run: where it writes, what it prints, its exit code.

The run itself is replaced by hand-made rows (:mod:`tests.bench.fakes`), so these take milliseconds.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from padim_edge.bench import cli
from tests.bench import fakes

FAST_ARGS = ["--device", "cpu", "--in-process", "-q"]


def _invoke(monkeypatch: pytest.MonkeyPatch, result, args: list[str]):
    monkeypatch.setattr(cli, "run_benchmark", lambda config: result)
    return CliRunner().invoke(cli.main, [*FAST_ARGS, *args])


def test_default_output_is_a_fresh_folder_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rows = [fakes.row("fused", 1, 20.0), fakes.row("backbone", 1, 16.0)]
    outcome = _invoke(monkeypatch, fakes.result(rows), [])
    assert outcome.exit_code == 0, outcome.output
    (folder,) = tmp_path.iterdir()
    assert re.fullmatch(r"bench-\d{8}-\d{6}", folder.name), folder.name
    assert {p.name for p in folder.iterdir()} == {"bench.json", "bench.md", "bench.png"}
    assert not (tmp_path / "benchmarks").exists()
    assert str(folder / "bench.json") in outcome.stdout


def test_default_output_never_reuses_a_folder(tmp_path: Path) -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    first = cli.default_output(now, parent=tmp_path)
    assert first == tmp_path / "bench-20260102-030405"
    first.mkdir()
    second = cli.default_output(now, parent=tmp_path)
    assert second == tmp_path / "bench-20260102-030405-2"


def test_help_states_the_new_default() -> None:
    text = CliRunner().invoke(cli.main, ["--help"], terminal_width=200).output
    assert "bench-YYYYmmdd-HHMMSS" in text
    assert "benchmarks/results" not in text
