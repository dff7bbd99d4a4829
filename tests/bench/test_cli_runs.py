"""``padim-bench`` end to end on tiny models: options, labels from a model's metadata, failures."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from padim_edge.bench.cli import main
from padim_edge.bench.runner import BenchConfig, BenchResult, run_benchmark
from tests.bench.conftest import FAST, FAST_ARGS, TINY, TINY_ARGS


def test_cli_runs_and_skips_missing_gpu_providers(
    tiny_run: tuple[BenchResult, dict[str, Path]],
    workdir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("padim_edge.runtime.providers.available", lambda: ["CPUExecutionProvider"])
    args = [
        *TINY_ARGS,
        *FAST_ARGS,
        "--batch-sizes",
        "1",
        "--threads",
        "1",
        "--fit-frames",
        "4",
        "--frame-size",
        "64",
    ]
    args += [
        "--device",
        "cpu,cuda,tensorrt",
        "--in-process",
        "--workdir",
        str(workdir),
        "--output",
        str(tmp_path),
    ]
    outcome = CliRunner().invoke(main, [*args, "--no-eager", "-q"])
    assert outcome.exit_code == 0, outcome.output
    data = json.loads((tmp_path / "bench.json").read_text())
    assert [(r["variant"], r["device"]) for r in data["rows"]] == [("fused", "cpu"), ("backbone", "cpu")]
    assert any(n.startswith("cuda: skipped") for n in data["notes"])
    assert any(n.startswith("tensorrt: skipped") for n in data["notes"])
    assert (tmp_path / "bench.md").is_file() and (tmp_path / "bench.png").is_file()


def test_cli_model_file_is_labelled_from_its_metadata(
    tiny_run: tuple[BenchResult, dict[str, Path]], workdir: Path, tmp_path: Path
) -> None:
    (fused,) = workdir.glob("*/padim.onnx")
    proto = onnx.load(str(fused))
    for prop in proto.metadata_props:
        if prop.key == "padim_edge.precision":
            prop.value = "int8"  # pretend padim-calibrate made it
    variant = tmp_path / "model_int8.onnx"
    onnx.save(proto, str(variant))
    args = [*FAST_ARGS, "--batch-sizes", "1", "--threads", "1", "--device", "cpu", "--frame-size", "64x96"]
    args += [
        "--model",
        str(variant),
        "--no-backbone",
        "--in-process",
        "--output",
        str(tmp_path),
        "--name",
        "var",
    ]
    outcome = CliRunner().invoke(main, [*args, "-q"])
    assert outcome.exit_code == 0, outcome.output
    rows = json.loads((tmp_path / "var.json").read_text())["rows"]
    assert [(r["model"], r["variant"], r["precision"]) for r in rows] == [
        ("R18-Rd16 int8", "fused", "int8"),
        ("R18-Rd16 int8", "eager", "fp32"),
    ]


def test_cli_orthogonal_model_file_gets_its_label_and_eager_twin(
    train_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --reduction orthogonal model: labelled so, and its eager row built with the projection too."""
    from padim_edge.export import pipeline

    model = tmp_path / "orth.onnx"
    pipeline.run_export(
        train_dir, model, reduction="orthogonal", random_init=True, device="cpu", parity_images=0,
        progress=False, **TINY,
    )  # fmt: skip
    built = []
    original = pipeline.build_module
    monkeypatch.setattr(
        pipeline, "build_module", lambda *a, **k: built.append(k.get("reduction")) or original(*a, **k)
    )
    args = [*FAST_ARGS, "--batch-sizes", "1", "--threads", "1", "--device", "cpu", "--frame-size", "64x96"]
    args += ["--model", str(model), "--no-backbone", "--in-process", "--output", str(tmp_path), "--name", "o"]
    outcome = CliRunner().invoke(main, [*args, "-q"])
    assert outcome.exit_code == 0, outcome.output
    rows = json.loads((tmp_path / "o.json").read_text())["rows"]
    assert [(r["model"], r["variant"]) for r in rows] == [
        ("R18-Rd16 orthogonal fp32", "fused"),
        ("R18-Rd16 orthogonal fp32", "eager"),
    ]
    assert built == ["orthogonal"]


def test_cli_help_explains_every_option() -> None:
    outcome = CliRunner().invoke(main, ["--help"])
    assert outcome.exit_code == 0
    options = "--backbone --batch-sizes --threads --device --min-seconds --min-reps --max-seconds --warmup"
    options += (
        " --frame-size --output --name --no-eager --no-backbone --model --workdir --in-process --wait-idle"
    )
    more = ["--retries", "--dims", "--resize", "--crop", "--fit-frames", "--head-precision", "--quiet"]
    for option in [*options.split(), *more]:
        assert option in outcome.output, option


def test_cli_rejects_bad_values() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--batch-sizes", "1,x"]).exit_code == 2
    assert runner.invoke(main, ["--frame-size", "abc"]).exit_code == 2
    assert runner.invoke(main, ["--min-reps", "0"]).exit_code == 2


def test_head_precision_labels_and_column(
    tiny_run: tuple[BenchResult, dict[str, Path]], workdir: Path, tmp_path: Path
) -> None:
    """A --model with an int8 head is labelled from its metadata; --head-precision builds the variant."""
    from padim_edge.calibration.pipeline import calibrate

    (fused,) = workdir.glob("*/padim.onnx")
    variant = tmp_path / "model_head_int8.onnx"
    calibrate(fused, variant, variant="head-int8", progress=False)
    args = [*FAST_ARGS, "--batch-sizes", "1", "--threads", "1", "--device", "cpu", "--frame-size", "64x96"]
    args += ["--model", str(variant), "--no-backbone", "--no-eager", "--in-process", "-o", str(tmp_path)]
    outcome = CliRunner().invoke(main, [*args, "--name", "head", "-q"])
    assert outcome.exit_code == 0, outcome.output
    rows = json.loads((tmp_path / "head.json").read_text())["rows"]
    assert [(r["model"], r["precision"], r["head_precision"]) for r in rows] == [
        ("R18-Rd16 fp32 int8-head", "fp32", "int8")
    ]
    assert "| int8 |" in (tmp_path / "head.md").read_text()

    config = BenchConfig(
        backbones=["r18"],
        head_precisions=["fp32", "fp16"],
        batch_sizes=[1],
        threads=["1"],
        devices=["cpu"],
        policy=FAST,
        frame=(48, 80),
        fit_frames=4,
        eager=False,
        isolate=False,
        workdir=workdir,
        progress=False,
        **TINY,
    )
    result = run_benchmark(config)
    got = {(r["model"], r["variant"], r["head_precision"]) for r in result.rows}
    assert got == {
        ("R18-Rd16", "fused", "fp32"),
        ("R18-Rd16", "backbone", None),
        ("R18-Rd16 fp16-head", "fused", "fp16"),
        ("R18-Rd16 fp16-head", "backbone", None),
    }
    assert next(workdir.glob("*/padim-head-fp16.onnx")).is_file()


def test_cli_model_without_its_data_file_fails_the_run(
    tiny_run: tuple[BenchResult, dict[str, Path]], workdir: Path, tmp_path: Path
) -> None:
    """A model whose .onnx.data is missing is a failed configuration: reported, and the exit code is 1."""
    (fused,) = workdir.glob("*/padim.onnx")
    broken = tmp_path / "broken.onnx"
    onnx.save(onnx.load(str(fused)), str(broken), save_as_external_data=True, location="broken.onnx.data")
    (tmp_path / "broken.onnx.data").unlink()
    args = [*FAST_ARGS, "--batch-sizes", "1", "--threads", "1", "--device", "cpu", "--frame-size", "64"]
    args += [
        "--model",
        str(broken),
        "--no-backbone",
        "--no-eager",
        "--in-process",
        "-o",
        str(tmp_path / "out"),
    ]
    outcome = CliRunner().invoke(main, [*args, "-q"])
    assert outcome.exit_code == 1, outcome.output
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["rows"] == []
    (failure,) = data["failures"]
    assert (failure["model"], failure["variant"], failure["device"]) == ("R18-Rd16 fp32", "fused", "cpu")
    assert failure["error"].startswith("load:")
    assert "## FAILED" in (tmp_path / "out" / "bench.md").read_text()
