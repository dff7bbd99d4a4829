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
    for ms, phrase in ((176.0, "1.3x faster"), (460.0, "2.0x slower")):  # against the paper's 230 ms
        out = tmp_path / str(ms)
        outcome = _invoke(monkeypatch, fakes.result(_r18_rows(ms, 0.0)), ["-o", str(out)])
        assert outcome.exit_code == 0, outcome.output
        markdown = (out / "bench.md").read_text()
        for text in (outcome.stderr, markdown):
            assert phrase in text
            assert not re.search(r"0\.\d+x (faster|slower)", text)
            assert "contended" not in text.replace("treat them as contended", "")


def test_contention_warning_stands_beside_every_ratio_it_affects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = _invoke(monkeypatch, fakes.result(_r18_rows(20.0, 0.75)), ["-o", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    ratio_lines = [
        line for line in outcome.stderr.splitlines() if re.search(r"x \(target|x faster|x slower", line)
    ]
    assert len(ratio_lines) == 3 + 1  # 3 targets, the paper at batch 1
    for line in ratio_lines:
        assert "contended: other processes used 75% of the CPU" in line, line
    data = json.loads((tmp_path / "bench.json").read_text())
    assert len(data["comparisons"]) == 1 and all(c["warning"] for c in data["comparisons"])
    assert len(data["targets"]) == 3 and all(t["warning"] for t in data["targets"])
    markdown = (tmp_path / "bench.md").read_text()
    targets = markdown.split("## Targets")[1].split("\n## ")[0]
    table_rows = [line for line in targets.splitlines() if line.startswith("| ") and "| Check |" not in line]
    assert len(table_rows) == 3
    for line in table_rows:
        assert "contended" in line, line
    versus = [line for line in markdown.splitlines() if "x faster" in line or "x slower" in line]
    assert versus and all("contended" in line for line in versus)
    ratios = markdown.split("## Head overhead")[1].split("\n## ")[0]
    assert ratios.count("x †") == 2 * 2 + 0  # fused/backbone and eager/fused, batches 1 and 8


def test_console_states_the_background_cpu_the_report_marks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --model run (no target rows) still says on the console that its figures were contended."""
    rows = [
        fakes.row("fused", 1, 120.0, threads=1, model="WR50-Rd550 int8", background_cpu=0.69),
        fakes.row("backbone", 1, 90.0, threads=1, model="WR50-Rd550 int8", background_cpu=0.84),
        fakes.row("eager", 1, 200.0, threads=1, model="WR50-Rd550 int8", background_cpu=0.05),
    ]
    outcome = _invoke(monkeypatch, fakes.result(rows), ["-o", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stderr.splitlines()[0] == (
        "warning: contended: other processes used 69%-84% of the CPU while 2 of 3 rows were timed; their "
        "figures are marked † in the report (rerun on a quiet machine, or with --wait-idle / --retries)"
    )
    markdown = (tmp_path / "bench.md").read_text()
    assert "| 69% † |" in markdown and "| 84% † |" in markdown
    quiet = _invoke(monkeypatch, fakes.result(_r18_rows(20.0, 0.05)), ["-o", str(tmp_path / "quiet")])
    assert "contended" not in quiet.stderr


def test_model_rows_are_checked_not_called_unmeasured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --model file of R18-Rd100 fp32 timed at 1 thread: its targets are checked at the threads timed."""
    rows = [
        fakes.row(variant, 1, ms, threads=1, model="R18-Rd100 fp32")
        for variant, ms in (("fused", 120.0), ("backbone", 90.0), ("eager", 200.0))
    ]
    outcome = _invoke(monkeypatch, fakes.result(rows), ["-o", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    markdown = (tmp_path / "bench.md").read_text()
    targets = markdown.split("## Targets")[1].split("\n## ")[0]
    note = "(targets are set at 2 threads) |"
    assert f"| head overhead (fused / backbone alone), batch 1 | 1 | 1.33x | <= 1.5x | PASS {note}" in targets
    assert f"| speed-up (PyTorch eager / fused), batch 1 | 1 | 1.67x | >= 3x | FAIL {note}" in targets
    assert "batch 8" not in targets  # not timed: no row at all, rather than a "not measured" one
    assert "head overhead (fused / backbone alone), batch 1: 1.33x (target <= 1.5x) PASS" in outcome.stderr
    paper = (
        "R18-Rd100 fp32 fused, batch 1, 1 thread: 120 ms/image vs 230 ms, paper Table VII (i7-4710HQ): 1.9x"
    )
    assert f"{paper} faster" in outcome.stderr.splitlines()
    texts = [markdown, (tmp_path / "bench.json").read_text(), outcome.output]
    for text in texts:
        assert "not measured" not in text and "anomalib" not in text
        assert not re.search(r"\bissues?\b|quoted", text, re.IGNORECASE)


def test_another_model_gets_no_targets_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [fakes.row(v, 1, 50.0, model="MNV2-Rd100 int8") for v in ("fused", "backbone", "eager")]
    outcome = _invoke(monkeypatch, fakes.result(rows), ["-o", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    markdown = (tmp_path / "bench.md").read_text()
    assert "## Targets" not in markdown and "not measured" not in markdown
    assert json.loads((tmp_path / "bench.json").read_text())["targets"] == []


# ------------------------------------------------------------------------ output faults, option ranges


def test_unwritable_output_is_one_line_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    def no_run(config: object) -> None:
        raise AssertionError("the run must not start")

    target = tmp_path / "ro" / "out"
    monkeypatch.setattr(Path, "mkdir", read_only)
    monkeypatch.setattr(runner, "run_benchmark", no_run)
    outcome = CliRunner().invoke(cli.main, [*FAST_ARGS, "-o", str(target)])
    assert outcome.exit_code == 1
    assert outcome.output == f"Error: cannot write to --output {target}: Read-only file system\n"


def test_a_write_failure_after_the_run_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from padim_edge.bench import report

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_all", full)
    outcome = _invoke(monkeypatch, fakes.result(_r18_rows(20.0, 0.0)), ["-o", str(tmp_path)])
    assert outcome.exit_code == 1 and outcome.exception is not None
    assert outcome.output == f"Error: could not write {tmp_path}: No space left on device\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--retries", "-1"], "Invalid value for '--retries': -1 is not in the range x>=0."),
        (["--warmup", "0"], "Invalid value for '--warmup': 0 is not in the range x>=1."),
        (["--min-reps", "0"], "Invalid value for '--min-reps': 0 is not in the range x>=1."),
        (["--fit-frames", "0"], "Invalid value for '--fit-frames': 0 is not in the range x>=1."),
        (["--dims", "-3"], "Invalid value for '--dims': -3 is not in the range x>=1."),
        (["--crop", "0"], "Invalid value for '--crop': 0 is not in the range x>=1."),
        (["--wait-idle", "-1"], "Invalid value for '--wait-idle': -1.0 is not in the range x>=0.0."),
        (
            ["--min-seconds", "3", "--max-seconds", "1"],
            "Invalid value for --max-seconds: 1 is below --min-seconds 3; the cap must be at least that",
        ),
    ],
)
def test_out_of_range_values_are_refused_not_replaced(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = _invoke(monkeypatch, None, args)
    assert outcome.exit_code == 2, outcome.output
    assert message in outcome.output


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
