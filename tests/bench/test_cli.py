"""``padim-bench``'s command line around a run: where it writes, what it prints, its exit code.

The run itself is replaced by hand-made rows (:mod:`tests.bench.fakes`), so these take milliseconds.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from padim_edge.bench import analysis, cli, runner
from tests.bench import fakes

FAST_ARGS = ["--device", "cpu", "--in-process", "-q"]


def _invoke(monkeypatch: pytest.MonkeyPatch, result, args: list[str]):
    monkeypatch.setattr(runner, "run_benchmark", lambda config: result)
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


# ------------------------------------------------------------------ ratios read "faster" / "slower"


def test_speed_phrase_never_reads_a_fraction_faster() -> None:
    assert analysis.speed_phrase(230.0, 57.5) == "4.0x faster"
    assert analysis.speed_phrase(26.0, 176.0) == "6.8x slower"
    assert analysis.speed_phrase(26.0, 26.5) == "about as fast"
    with pytest.raises(ValueError):
        analysis.speed_phrase(26.0, 0.0)


def _r18_rows(ms: float, background_cpu: float) -> list[dict]:
    return [
        fakes.row(variant, batch, scale * ms, background_cpu=background_cpu)
        for batch in (1, 8)
        for variant, scale in (("fused", 1.0), ("backbone", 0.8), ("eager", 3.5))
    ]


def test_summary_and_markdown_word_ratios_as_faster_or_slower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = _invoke(monkeypatch, fakes.result(_r18_rows(176.0, 0.0)), ["-o", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    markdown = (tmp_path / "bench.md").read_text()
    for text in (outcome.stderr, markdown):
        assert "6.8x slower" in text  # 176 ms against anomalib's quoted 26 ms
        assert "1.3x faster" in text  # 176 ms against the paper's 230 ms
        assert not re.search(r"0\.\d+x faster", text)
        assert "contended" not in text.replace("treat them as contended", "")


def test_contention_warning_stands_beside_every_ratio_it_affects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = _invoke(monkeypatch, fakes.result(_r18_rows(20.0, 0.75)), ["-o", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    ratio_lines = [
        line for line in outcome.stderr.splitlines() if re.search(r"x \(target|x faster|x slower", line)
    ]
    assert len(ratio_lines) == 3 + 1 + 2  # 3 targets, paper at batch 1, anomalib at batches 1 and 8
    for line in ratio_lines:
        assert "contended: other processes used 75% of the CPU" in line, line
    data = json.loads((tmp_path / "bench.json").read_text())
    assert len(data["comparisons"]) == 3 and all(c["warning"] for c in data["comparisons"])
    assert all(t["warning"] for t in data["targets"])
    markdown = (tmp_path / "bench.md").read_text()
    targets = markdown.split("## Targets")[1].split("\n## ")[0]
    table_rows = [line for line in targets.splitlines() if line.startswith("| ") and "| Check |" not in line]
    assert len(table_rows) == 5
    for line in table_rows:
        assert "contended" in line, line
    versus = [line for line in markdown.splitlines() if "x faster" in line or "x slower" in line]
    assert versus and all("contended" in line for line in versus)
    ratios = markdown.split("## Head overhead")[1].split("\n## ")[0]
    assert ratios.count("x †") == 2 * 2 + 0  # fused/backbone and eager/fused, batches 1 and 8


# ------------------------------------------------------------------------ a failed configuration


def test_a_failed_configuration_is_reported_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure = {
        "model": "R18-Rd100",
        "variant": "fused",
        "device": "cpu",
        "threads_label": "1",
        "error": "load: ModelLoadError: model.onnx.data is missing",
    }
    rows = [fakes.row("backbone", 1, 16.0)]
    outcome = _invoke(monkeypatch, fakes.result(rows, failures=[failure]), ["-o", str(tmp_path)])
    assert outcome.exit_code == 1, outcome.output
    assert "FAILED: R18-Rd100 fused on cpu" in outcome.stderr
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["failures"] == [failure]
    assert "## FAILED: 1 configuration(s) measured nothing" in (tmp_path / "bench.md").read_text()
