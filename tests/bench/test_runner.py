"""The benchmark runner, its worker and reports (tiny end-to-end runs); the CLI runs: test_cli_runs.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from padim_edge import graph_names
from padim_edge.bench import report, system, worker
from padim_edge.bench.cli import parse_devices, parse_frame, parse_int_list, parse_threads
from padim_edge.bench.runner import BenchConfig, BenchResult, plan_devices, run_benchmark
from tests.bench import fakes
from tests.bench.conftest import FAST, HAS_CUDA, TINY

# ------------------------------------------------------------------------------------ small helpers


def test_threads_and_cli_parsers() -> None:
    assert system.resolve_threads("all") == ("all", system.usable_cpus())
    assert system.resolve_threads(2) == ("2", 2)
    for bad in ("0", "x", "-1"):
        with pytest.raises(ValueError):
            system.resolve_threads(bad)
    assert parse_int_list("1, 2,4,2", name="x") == [1, 2, 4]
    assert parse_threads("1,ALL") == ["1", "all"]
    assert parse_frame("224") == (224, 224)
    assert parse_frame("480x640") == (480, 640)
    assert parse_devices(None) is None
    assert parse_devices("cpu,cuda") == ["cpu", "cuda"]
    import click

    for fn, arg in ((parse_frame, "0x3"), (parse_threads, "two"), (parse_devices, "tpu")):
        with pytest.raises(click.BadParameter):
            fn(arg)
    with pytest.raises(click.BadParameter):
        parse_int_list("1,0", name="x")


def test_machine_info_and_memory() -> None:
    info = system.machine_info()
    for key in ("cpu", "logical_cpus", "physical_cores", "memory_gb", "onnxruntime", "providers"):
        assert info[key], key
    assert "CPUExecutionProvider" in info["providers"]
    assert system.peak_rss_mb() >= system.rss_mb() * 0.5 > 0
    share = system.BackgroundLoad().fraction()
    assert share is None or 0.0 <= share <= 1.0


def test_input_name_matches_the_graph() -> None:
    assert worker.INPUT_NAME == graph_names.INPUT


def test_gpu_devices_are_skipped_cleanly_when_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("padim_edge.runtime.providers.available", lambda: ["CPUExecutionProvider"])
    devices, notes = plan_devices(["cpu", "cuda", "tensorrt"])
    assert devices == ["cpu"]
    assert [n.split(":")[0] for n in notes] == ["cuda", "tensorrt"]
    assert plan_devices(None) == (["cpu"], [])
    with pytest.raises(ValueError):
        plan_devices(["tpu"])


# ----------------------------------------------------------------------------- ratios and targets


def test_ratios_and_targets() -> None:
    rows = [
        fakes.row("fused", 1, 20.0),
        fakes.row("backbone", 1, 16.0),
        fakes.row("eager", 1, 70.0),
        fakes.row("fused", 8, 15.0),
        fakes.row("backbone", 8, 11.0),
        fakes.row("fused", 1, 30.0, threads=1),
    ]
    table = {(r["threads"], r["batch"]): r for r in report.ratios(rows)}
    assert table[(2, 1)]["head_overhead"] == pytest.approx(1.25)
    assert table[(2, 1)]["speedup_vs_eager"] == pytest.approx(3.5)
    assert table[(2, 8)]["eager_ms_per_image"] is None and table[(2, 8)]["speedup_vs_eager"] is None
    assert table[(1, 1)]["head_overhead"] is None
    checks = report.targets(rows)
    assert [c["passed"] for c in checks] == [True, False, True]  # 1.25 <= 1.5; 1.36 > 1.25; 3.5 >= 3
    assert all(c["threads"] == 2 for c in checks)
    markdown = report.render_markdown(BenchResult(machine=system.machine_info(), runs=[], rows=rows))
    assert "| PASS |" in markdown and "| FAIL |" in markdown
    assert "quoted" not in markdown and "not measured" not in markdown  # only figures a reader can check
    assert "0.950" in markdown  # the paper's WR50-Rd550 figure


# ------------------------------------------------------------------------------ end-to-end (tiny)


def test_tiny_run_rows(tiny_run: tuple[BenchResult, dict[str, Path]]) -> None:
    result, _ = tiny_run
    assert len(result.rows) == 6  # fused, backbone, eager x batch 1, 2
    assert {(r["variant"], r["batch"]) for r in result.rows} == {
        (v, b) for v in ("fused", "backbone", "eager") for b in (1, 2)
    }
    for row in result.rows:
        assert row["model"] == "R18-Rd16"
        assert row["frame"] == "48x80"
        assert row["threads"] == 1
        assert row["reps"] >= 3
        lat = row["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert row["per_image_ms"]["p50"] == pytest.approx(lat["p50"] / row["batch"])
        assert row["images_per_s"] > 0 and row["model_bytes"] > 0 and row["load_s"] > 0
        assert row["peak_rss_scope"] == "process"
    providers = {r["variant"]: r["provider"] for r in result.rows}
    assert providers == {
        "fused": "CPUExecutionProvider",
        "backbone": "CPUExecutionProvider",
        "eager": "torch-cpu",
    }


def test_tiny_run_outputs(tiny_run: tuple[BenchResult, dict[str, Path]]) -> None:
    result, paths = tiny_run
    data = json.loads(paths["json"].read_text())
    assert set(data) >= {"machine", "runs", "rows", "notes", "ratios", "targets", "references"}
    assert len(data["rows"]) == 6 and len(data["ratios"]) == 2
    assert data["runs"][0]["batch_sizes"] == [2, 1] and data["runs"][0]["policy"]["min_reps"] == 3
    assert data["references"]["paper_table7"]["rows"][2] == {
        "method": "PaDiM R18-Rd100",
        "seconds_per_image": 0.23,
    }
    assert report.load_result(paths["json"]).rows == result.rows
    markdown = paths["md"].read_text()
    for heading in ("## Table VII", "## Head overhead", "## All rows"):
        assert heading in markdown
    assert "## Targets" not in markdown and data["targets"] == []  # set for R18-Rd100 fp32, not R18-Rd16
    all_rows = markdown.split("## All rows")[1].split("\n\n")[1]
    assert len(all_rows.strip().splitlines()) == 2 + 6
    assert "48x80x3" in markdown
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_graph_is_opened_by_the_runtime_session_factory(
    tiny_run: tuple[BenchResult, dict[str, Path]], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backbone-alone graphs and the fused model go through one factory: the users' settings."""
    from padim_edge.runtime import session as session_module

    calls = []
    real = session_module.open_session

    def spy(path, **kwargs):
        calls.append((Path(path).name, kwargs))
        return real(path, **kwargs)

    monkeypatch.setattr(session_module, "open_session", spy)
    monkeypatch.setattr("padim_edge.runtime.model.open_session", spy)
    (fused,) = workdir.glob("*/padim.onnx")
    (backbone,) = workdir.glob("*/backbone.onnx")
    for variant, path in (("fused", fused), ("backbone", backbone)):
        spec = {"variant": variant, "path": str(path), "device": "cpu", "threads": 2}
        _run, facts = worker._open_ort(spec)
        assert facts["providers"] == ["CPUExecutionProvider"]
    assert [name for name, _ in calls] == ["padim.onnx", "backbone.onnx"]
    for _name, kwargs in calls:
        assert kwargs["device"] == "cpu"
        assert kwargs["threads"] == 2


def test_backbone_graphs_get_the_runtimes_tensorrt_options(
    tiny_run: tuple[BenchResult, dict[str, Path]],
    workdir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the TensorRT EP the backbone-alone rows get the same options builder as the fused model."""
    import onnxruntime as ort

    from padim_edge.runtime import providers, tensorrt

    monkeypatch.setattr(providers, "available", lambda: [providers.TENSORRT, providers.CPU])
    monkeypatch.setattr(tensorrt, "default_cache_dir", lambda: tmp_path / "trt")
    calls = {}

    def fake_open(path, *, device, threads, tensorrt, spin=True):  # no GPU: a CPU session, options recorded
        calls[Path(path).name] = tensorrt
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    monkeypatch.setattr("padim_edge.runtime.session.open_session", fake_open)
    monkeypatch.setattr("padim_edge.runtime.model.open_session", fake_open)
    (fused,) = workdir.glob("*/padim.onnx")
    (backbone,) = workdir.glob("*/backbone.onnx")
    for variant, path in (("fused", fused), ("backbone", backbone)):
        worker._open_ort({"variant": variant, "path": str(path), "device": "tensorrt", "threads": 2})
    options = calls["backbone.onnx"]
    assert options == worker.tensorrt_options({"path": str(backbone), "device": "tensorrt"})
    assert options["trt_engine_cache_enable"] is True and options["trt_timing_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "trt" / "engines")
    assert options["trt_profile_min_shapes"].startswith("images:") and "trt_max_workspace_size" in options
    assert (tmp_path / "trt" / "engines").is_dir()
    assert set(options) == set(calls["padim.onnx"])  # the fused model's session: the same builder
    assert worker.tensorrt_options({"path": str(backbone), "device": "cpu"}) is None


def test_load_failure_is_a_note_not_a_crash(tmp_path: Path) -> None:
    spec = {
        "job": "measure",
        "engine": "ort",
        "variant": "fused",
        "path": str(tmp_path / "missing.onnx"),
        "device": "cpu",
        "threads": 1,
        "threads_label": "1",
        "batch_sizes": [1],
        "frame": [32, 32],
        "policy": FAST.to_dict(),
        "isolate": False,
    }
    result = worker.run_job(spec, isolate=False)
    assert result["points"] == [] and "ModelLoadError" in result["error"]


def test_isolated_worker_reports_its_own_rss(
    tiny_run: tuple[BenchResult, dict[str, Path]], workdir: Path
) -> None:
    config = BenchConfig(
        backbones=["r18"],
        batch_sizes=[1],
        threads=["1"],
        devices=["cpu"],
        policy=FAST,
        frame=(64, 64),
        fit_frames=4,
        eager=False,
        backbone=False,
        isolate=True,
        workdir=workdir,
        progress=False,
        **TINY,
    )
    (row,) = run_benchmark(config).rows
    assert row["peak_rss_scope"] == "subprocess"
    # A fresh torch-free onnxruntime process running a 12 MB model: far below a torch process.
    assert 0 < row["rss_before_load_mb"] < row["peak_rss_mb"] < 400


@pytest.mark.skipif(not HAS_CUDA, reason="CUDAExecutionProvider is not in this onnxruntime build")
def test_cuda_rows(tiny_run: tuple[BenchResult, dict[str, Path]], workdir: Path) -> None:
    config = BenchConfig(
        backbones=["r18"],
        batch_sizes=[1, 2],
        devices=["cuda"],
        policy=FAST,
        frame=(64, 64),
        fit_frames=4,
        isolate=False,
        workdir=workdir,
        progress=False,
        **TINY,
    )
    result = run_benchmark(config)
    fused = [r for r in result.rows if r["variant"] == "fused"]
    assert fused and all(r["provider"] == "CUDAExecutionProvider" and r["threads"] is None for r in fused)


def test_contended_configurations_are_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from padim_edge.bench import runner

    def result(busy: float) -> dict:
        return {"load": {}, "points": [{"batch": 1, "background_cpu": busy}], "error": None}

    subject = runner.Subject("R18-Rd100", "m.onnx", None, None, {}, "fp32")
    job = {"device": "cpu", "threads_label": "1"}
    outcomes = [(subject, "fused", job, result(0.6)), (subject, "eager", job, result(0.01))]
    attempts = iter([result(0.3), result(0.05)])
    calls = []
    monkeypatch.setattr(runner, "_measure", lambda config, j: calls.append(j) or next(attempts))
    notes: list[str] = []
    runner._retry_contended(BenchConfig(retries=3, progress=False), outcomes, notes)
    assert len(calls) == 2  # 0.6 -> 0.3 (still busy) -> 0.05 (clean): two more measurements of one config
    assert runner.background(outcomes[0][3]) == 0.05 and runner.background(outcomes[1][3]) == 0.01
    assert notes and "repeated" in notes[0]
