"""PatchCore's ``--head-precision`` end to end: export, padim-calibrate (with every backbone variant and
the threshold outputs), the runtime, and padim-check on the TensorRT-target graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from padim_edge.calibration.pipeline import calibrate
from padim_edge.calibration.threshold import threshold_for_fpr
from padim_edge.compat.check import check_file
from padim_edge.export.patchcore import compact_bank
from padim_edge.export.patchcore import head_io as patchcore_head
from padim_edge.export.pipeline import run_export
from padim_edge.images import list_images, load_image
from padim_edge.runtime import PadimModel
from tests.export.patchcore.test_pipeline import SMALL, props

BANK_TYPES = {"fp32": onnx.TensorProto.FLOAT, "fp16": onnx.TensorProto.FLOAT16, "int8": onnx.TensorProto.INT8}
#: Median relative score change a bank precision may cause on the tiny model (measured: fp16 ~1e-4,
#: int8 ~3e-3; the stated per-patch bound is in compact_bank).
SCORE_RTOL = {"fp32": 1e-5, "fp16": 2e-3, "int8": 3e-2}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    from padim_edge.demo import make_demo_dataset

    return make_demo_dataset(
        tmp_path_factory.mktemp("demo"), train=12, test_good=6, test_defect_per_type=2, size=64
    )


@pytest.fixture(scope="module")
def exports(demo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny PatchCore model exported with each bank precision (the same fit: same seed and data)."""
    folder = tmp_path_factory.mktemp("pc_bank")
    out = {}
    for precision in ("fp32", "fp16", "int8"):
        out[precision] = folder / f"pc-{precision}.onnx"
        run = run_export(
            demo.train_dir, out[precision], method="patchcore", coreset=0.25, batch_size=6, parity_images=2,
            progress=False, head_precision=None if precision == "fp32" else precision, **SMALL,
        )  # fmt: skip
        assert run.parity is not None and run.parity.ok
    return out


def _bank_type(path: Path) -> int:
    proto = onnx.load(str(path))
    layout = patchcore_head.bank_layout(proto)
    name = patchcore_head.FP32_BANK if layout.precision == "fp32" else compact_bank.BANK[layout.precision]
    return next(t.data_type for t in proto.graph.initializer if t.name == name)


def _scores(path: Path, folder: Path) -> np.ndarray:
    images = [load_image(p) for p in list_images(folder)]
    return np.array([p.score for p in PadimModel(path, device="cpu").predict(images)])


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_export_with_a_compact_bank(exports: dict[str, Path], demo, precision: str) -> None:
    path = exports[precision]
    assert props(path)["padim_edge.head_precision"] == precision
    assert PadimModel(path, device="cpu").info.head_precision == precision
    assert _bank_type(path) == BANK_TYPES[precision]
    bank_bytes = patchcore_head.bank_bytes(onnx.load(str(path)))
    assert bank_bytes < patchcore_head.bank_bytes(onnx.load(str(exports["fp32"]))) * (
        0.55 if precision == "fp16" else 0.3
    )
    reference = _scores(exports["fp32"], demo.test_dir / "good")
    scores = _scores(path, demo.test_dir / "good")
    assert np.median(np.abs(scores - reference) / reference) < SCORE_RTOL[precision]


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_calibrate_head_variant_rewrites_the_bank_like_an_export(
    exports: dict[str, Path], precision: str, tmp_path: Path
) -> None:
    out = tmp_path / f"head-{precision}.onnx"
    report = calibrate(exports["fp32"], out, variant=f"head-{precision}", progress=False)
    assert any(line.startswith(f"head          fp32 -> {precision} memory bank") for line in report.details)
    assert props(out)["padim_edge.head_precision"] == precision
    built, direct = onnx.load(str(out)), onnx.load(str(exports[precision]))
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in built.graph.initializer}
    for tensor in direct.graph.initializer:
        if tensor.name.startswith("padim_head/"):
            np.testing.assert_array_equal(constants[tensor.name], onnx.numpy_helper.to_array(tensor))
    head = [n.op_type for n in built.graph.node if n.name.startswith("padim_head/")]
    assert sorted(head) == sorted(n.op_type for n in direct.graph.node if n.name.startswith("padim_head/"))
    with pytest.raises(Exception, match="already"):
        calibrate(out, tmp_path / "again.onnx", variant=f"head-{precision}", progress=False)
    with pytest.raises(Exception, match="--head-blocks applies to PaDiM"):
        calibrate(exports["fp32"], tmp_path / "b.onnx", variant="head-int8", head_blocks=2, progress=False)


@pytest.mark.parametrize("backbone", ["int8-qoperator", "int8-qdq", "fp16"])
def test_every_bank_precision_on_every_backbone_with_a_threshold(
    exports: dict[str, Path], demo, backbone: str, tmp_path: Path
) -> None:
    held_out = demo.test_dir / "good"
    for precision in ("fp32", "fp16", "int8"):
        out = tmp_path / f"{backbone}-{precision}.onnx"
        source = exports[precision]
        calibrate(source, out, variant=backbone, data=held_out, target_fpr=0.2, progress=False)
        model = PadimModel(out, device="cpu")
        assert model.info.head_precision == precision and model.info.precision == backbone.split("-")[0]
        assert _bank_type(out) == BANK_TYPES[precision]  # the backbone variants leave the bank alone
        assert model.outputs == ["anomaly_map", "score", "is_anomalous", "normalized_score"]
        scores = _scores(out, held_out)
        assert np.all(np.isfinite(scores))
        assert model.info.threshold == threshold_for_fpr(scores, 0.2).threshold
    # and the other order in one call: backbone then bank
    both = tmp_path / "both.onnx"
    calibrate(exports["fp32"], both, variant=f"{backbone}+head-int8", data=held_out, progress=False)
    model = PadimModel(both, device="cpu")
    assert model.info.head_precision == "int8" and model.info.precision == backbone.split("-")[0]
    assert np.all(np.isfinite(_scores(both, held_out)))


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_tensorrt_target_graph_with_a_compact_bank(demo, tmp_path: Path, precision: str) -> None:
    out = tmp_path / f"trt-{precision}.onnx"
    run_export(
        demo.train_dir, out, method="patchcore", coreset=0.25, batch_size=6, parity_images=1, progress=False,
        head_precision=precision, target="tensorrt", input_size=(64, 64), **SMALL,
    )  # fmt: skip
    report = check_file(out)
    by_target = {t.target.name: t for t in report.targets}
    for name, target in by_target.items():
        failing = [f.rule for f in target.findings if f.effect == "fails"]
        if precision == "fp16" or not target.target.tensorrt:
            assert failing == [], (name, failing)  # fp16: every TensorRT version; int8: onnxruntime CPU
        else:
            # the int8 bank is CPU-only: MatMulInteger on uint8 activations is what TensorRT rejects
            assert target.status in ("fails", "exempt"), (name, target.status)
            assert target.exempt or {"uint8-intermediate", "integer-ops"} & set(failing)


def test_cli_export_head_precision_for_patchcore(demo, tmp_path: Path) -> None:
    from padim_edge.export.cli import main

    out = tmp_path / "pc.onnx"
    args = [
        "--data",
        str(demo.train_dir),
        "--backbone",
        "r18",
        "--resize",
        "72",
        "--crop",
        "64",
        "--random-init",
    ]
    args += [
        "--method",
        "patchcore",
        "--dims",
        "16",
        "--coreset",
        "0.1",
        "--head-precision",
        "int8",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(main, [*args, "--parity-images", "1"])
    assert result.exit_code == 0, result.output
    assert "patch vectors (coreset 0.1, mode streaming" in result.output and "), int8" in result.output
    assert props(out)["padim_edge.head_precision"] == "int8" and _bank_type(out) == onnx.TensorProto.INT8


def test_padim_bench_times_each_bank_precision(tmp_path: Path) -> None:
    from padim_edge.bench.runner import BenchConfig, run_benchmark
    from padim_edge.bench.timing import TimingPolicy

    config = BenchConfig(
        backbones=["r18"], method="patchcore", coreset=0.5, dims=16, resize=72, crop=64, batch_sizes=[1],
        threads=["1"], devices=["cpu"], fit_frames=2, backbone=False, eager=False, isolate=False,
        head_precisions=["fp32", "int8"], workdir=tmp_path, progress=False,
        policy=TimingPolicy(warmup=1, min_reps=2, min_seconds=0.0, max_seconds=1.0, floor_reps=1),
    )  # fmt: skip
    rows = run_benchmark(config).rows
    assert {(r["model"], r["head_precision"]) for r in rows} == {
        ("PatchCore-R18-d16-c0.5-m64", "fp32"),
        ("PatchCore-R18-d16-c0.5-m64 int8-head", "int8"),
    }
