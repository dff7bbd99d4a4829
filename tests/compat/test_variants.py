"""padim-check on every variant we write: exactly the documented findings, nothing for the TensorRT graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from padim_edge.calibration.pipeline import calibrate
from padim_edge.compat.check import check_file, format_report
from padim_edge.compat.rules import BLOCKING, NOTE
from tests.conftest import SMALL, TRT_SIZE, write_images

#: What the default graph (and every variant made from it) shows on each TensorRT version.
DEFAULT_GRAPH_FINDINGS = {
    "tensorrt-8.5": {("resize-antialias", "changes numbers"), ("opset-range", NOTE)},
    "tensorrt-8.6": {("resize-antialias", "changes numbers"), ("opset-range", NOTE)},
    "tensorrt-10": {("resize-antialias", "fails")},
}
VARIANTS = ("fp32-threshold", "int8-qdq", "fp16", "int8-qoperator")
#: Head rewrites TensorRT can take (the graph itself has the fp32 head; the int8 head is CPU-only: exempt).
TENSORRT_HEADS = ("head-fp16", "int8-qdq+head-fp16")


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("held")
    write_images(folder, 8, seed=5, sizes=[(80, 96), (70, 70)])
    return folder


def _variant(source: Path, variant: str, held_out: Path) -> Path:
    out = source.with_name(f"{source.stem}-{variant}.onnx")
    if not out.exists():
        extra = {"target_fpr": 0.2} if variant == "fp32-threshold" else {}
        calibrate(source, out, variant=variant, data=held_out, calibration_images=4, progress=False, **extra)
    return out


def _findings(path: Path) -> dict[str, set[tuple[str, str]]]:
    report = check_file(path)
    return {t.target.name: {(f.rule, f.effect) for f in t.findings} for t in report.targets}


@pytest.mark.parametrize("variant", [None, *VARIANTS[:-1]])
def test_default_graph_findings_are_exactly_the_antialias_ones(
    small_onnx: Path, held_out: Path, variant: str | None
) -> None:
    path = small_onnx if variant is None else _variant(small_onnx, variant, held_out)
    findings = _findings(path)
    for name, expected in DEFAULT_GRAPH_FINDINGS.items():
        assert findings[name] == expected, (variant, name)
    # FP16 on the 1.16 CPU EP: a documented note (float32 Relu there, float16 Max on >= 1.17)
    fp16_note = {("float16-relu-cpu", NOTE)} if variant == "fp16" else set()
    assert findings["onnxruntime-1.16"] == fp16_note, variant
    for name in ("onnxruntime-1.17", "onnxruntime-1.18"):
        assert findings[name] == set(), (variant, name)


@pytest.fixture(scope="module")
def patchcore_trt_onnx(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PatchCore model (random-init r18, 25 % coreset) exported for TensorRT."""
    from padim_edge.export.pipeline import run_export

    out = tmp_path_factory.mktemp("patchcore_trt") / "patchcore-trt.onnx"
    run = run_export(
        train_dir, out, method="patchcore", coreset=0.25, batch_size=6, device="cpu", parity_images=0,
        progress=False, target="tensorrt", input_size=TRT_SIZE, **SMALL,
    )  # fmt: skip
    return run.export.files[0]


@pytest.fixture(scope="module")
def orthogonal_trt_onnx(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PaDiM model with the semi-orthogonal projection (1x1 convolutions) exported for TensorRT."""
    from padim_edge.export.pipeline import run_export

    out = tmp_path_factory.mktemp("orthogonal_trt") / "orthogonal-trt.onnx"
    run = run_export(
        train_dir, out, reduction="orthogonal", batch_size=6, device="cpu", parity_images=0, progress=False,
        target="tensorrt", input_size=TRT_SIZE, **SMALL,
    )  # fmt: skip
    return run.export.files[0]


@pytest.mark.parametrize("variant", [None, *VARIANTS[:-1], *TENSORRT_HEADS, "patchcore", "orthogonal"])
def test_tensorrt_graph_has_no_findings(
    small_trt_onnx: Path, held_out: Path, variant: str | None, request: pytest.FixtureRequest
) -> None:
    if variant in ("patchcore", "orthogonal"):
        path = request.getfixturevalue(f"{variant}_trt_onnx")
    else:
        path = small_trt_onnx if variant is None else _variant(small_trt_onnx, variant, held_out)
    report = check_file(path)
    assert report.ok
    assert {t.target.name: t.findings for t in report.targets if t.findings} == {}, variant


@pytest.mark.parametrize("variant", ["head-int8", "int8-qoperator+head-int8"])
def test_int8_head_is_exempt_and_says_so(small_trt_onnx: Path, held_out: Path, variant: str) -> None:
    """The compact int8 head (QuantizeLinear + MatMulInteger) is for the CPU EP, like QOperator."""
    report = check_file(_variant(small_trt_onnx, variant, held_out))
    for target in report.targets:
        if target.target.tensorrt:
            assert target.status == "exempt" and "The int8 head is for the CPU EP" in (target.exempt or "")
            assert "--head-precision fp16 or fp32" in (target.exempt or "")
            assert {"integer-ops", "uint8-intermediate"} <= {f.rule for f in target.findings}
            assert target.blocking == []
            assert ("QOperator" in target.exempt) == ("qoperator" in variant)
        else:
            assert [f for f in target.findings if f.effect in BLOCKING] == []
    assert report.ok
    assert "The int8 head is for the CPU EP" in "\n".join(format_report(report))


def test_qoperator_is_exempt_and_says_so(small_onnx: Path, held_out: Path) -> None:
    report = check_file(_variant(small_onnx, "int8-qoperator", held_out))
    for target in report.targets:
        if target.target.tensorrt:
            assert target.status == "exempt" and "CPU-only" in (target.exempt or "")
            rules = {f.rule for f in target.findings}  # still listed, for the record
            assert {"integer-ops", "non-default-domain", "uint8-intermediate"} <= rules
            assert target.blocking == []
        else:
            assert [f for f in target.findings if f.effect in BLOCKING] == []
    assert report.ok
