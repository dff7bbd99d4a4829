"""``padim-check --openvino``: what OpenVINO computes differently from onnxruntime, and what it cannot read.

Static, from the graph and its metadata (onnx only; OpenVINO need not be installed). Each finding says
what plain OpenVINO (``Core().read_model`` + ``compile_model(..., "CPU")`` with its defaults) does, and
the effect is what padim-edge's own backend (``--device openvino``) leaves of it:

* ``resize-antialias``: OpenVINO computes ``Resize(antialias=1)`` without the filter, silently (3-5 %
  of the max score). ``--device openvino`` rewrites it per frame size as the resize + crop MatMuls:
  a note.
* ``bf16-default``: on a CPU with AVX512-BF16 / AMX, OpenVINO's CPU plugin runs in bf16 unless told
  otherwise (1 % score error on PaDiM, 79 % on PatchCore). ``--device openvino`` pins f32: a note.
* ``qoperator``: QLinearConv / ``com.microsoft`` QLinear* nodes: OpenVINO's reader fails. Fails.
* ``fp16-arithmetic``: an fp16 graph runs in float32 arithmetic on its fp16 weights (CPUs without f16
  arithmetic), a few 1e-4 of the max score from onnxruntime, closer to the fp32 model: a note.
* ``patchcore-int8-qdq``: a PatchCore INT8 QDQ graph compiles but scores about 10x off onnxruntime;
  ``--device openvino`` refuses it. Fails.
* ``int8-qdq``: OpenVINO's INT8 kernels and onnxruntime's do not give the same numbers (2.4 % of the
  max score apart on a MobileNetV2 PaDiM, AMD EPYC Zen 3): a note.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import onnx

from padim_edge.compat.check import Finding, Report, TargetReport
from padim_edge.compat.rules import FAILS, NOTE
from padim_edge.compat.targets import Target
from padim_edge.compat.view import GraphView, build_view

#: The pseudo-target the findings are reported under (OpenVINO reads opsets 7-20 of ai.onnx).
OPENVINO = Target("openvino", "cpu", 7, 20, None, "OpenVINO's CPU plugin (padim-predict --device openvino)")
QLINEAR_OPS = frozenset(
    {"QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool"}
)
SOURCE = "measured with openvino 2026.4.1 against onnxruntime 1.32's CPU EP (Xeon with AMX; AMD EPYC Zen 3)"


def _antialias(view: GraphView) -> list[str]:
    return [
        f"{n.name or n.output[0]} antialias=1"
        for n in view.nodes
        if n.op_type == "Resize" and any(a.name == "antialias" and a.i for a in n.attribute)
    ]


def _qoperator(view: GraphView) -> list[str]:
    return [f"{n.name or n.output[0]} ({n.op_type})" for n in view.nodes if n.op_type in QLINEAR_OPS]


def _float16(view: GraphView) -> list[str]:
    half = 10  # onnx.TensorProto.FLOAT16
    return [
        f"{n.name or n.output[0]} ({n.op_type})" for n in view.nodes if view.types.get(n.output[0]) == half
    ][:1]


def _qdq(view: GraphView) -> list[str]:
    return [f"{n.name or n.output[0]}" for n in view.nodes if n.op_type == "QuantizeLinear"][:1]


def _patchcore_qdq(view: GraphView) -> list[str]:
    return _qdq(view) if _method(view) == "patchcore" else []


def _method(view: GraphView) -> str:
    return next((p.value for p in view.proto.metadata_props if p.key == "padim_edge.method"), "padim")


def _bf16(view: GraphView) -> list[str]:
    method = _method(view)
    error = "79 % score error measured on PatchCore" if method == "patchcore" else "1 % score error on PaDiM"
    return [f"{method}: {error}"]


#: (rule, effect, what plain OpenVINO does and what --device openvino does about it, finder)
RULES: list[tuple[str, str, str, Callable[[GraphView], list[str]]]] = [
    (
        "qoperator",
        FAILS,
        "QOperator INT8 nodes: OpenVINO's reader fails (QLinearConv scale count, com.microsoft QLinearAdd "
        "types); --device openvino refuses it: make the INT8 model with padim-calibrate --int8 --format qdq",
        _qoperator,
    ),
    (
        "resize-antialias",
        NOTE,
        "plain OpenVINO computes the antialiased Resize WITHOUT antialias, silently (scores off by 3-5 % of "
        "the max); --device openvino rewrites it for each frame size as the resize + crop MatMuls "
        "(exact), as padim-export --target tensorrt does",
        _antialias,
    ),
    (
        "bf16-default",
        NOTE,
        "on CPUs with AVX512-BF16 / AMX OpenVINO's CPU plugin runs in bf16 unless told otherwise; "
        "--device openvino pins INFERENCE_PRECISION_HINT to f32 (bf16 only with --device openvino-bf16); "
        "ov.save_model also compresses weights to fp16 by default (8e-4 score change): pass "
        "compress_to_fp16=False",
        _bf16,
    ),
    (
        "fp16-arithmetic",
        NOTE,
        "fp16 graph: OpenVINO's CPU plugin (f32 pinned) computes it in float32 on its fp16 weights, "
        "onnxruntime rounds where its CPU kernels are fp16: scores 2e-6 of the max apart on a MobileNetV2 "
        "PaDiM, 1.4e-4 on a random-init ResNet-18 (both 3e-4 from the fp32 model there)",
        _float16,
    ),
    (
        "patchcore-int8-qdq",
        FAILS,
        "PatchCore INT8 QDQ: OpenVINO's CPU plugin compiles it but scores about 10x off onnxruntime (36.4 "
        "against 3.5 on one model, with or without the resize rewrite; measured on an AMD EPYC Zen 3); "
        "--device openvino refuses it: run it with --device cpu, or run the fp32 model on OpenVINO",
        _patchcore_qdq,
    ),
    (
        "int8-qdq",
        NOTE,
        "INT8 QDQ: OpenVINO's INT8 kernels and onnxruntime's do not give the same numbers: 2.4 % of the max "
        "score apart on a MobileNetV2 PaDiM (magnetic tile, AMD EPYC Zen 3, AVX2; cause not established), "
        "each variant's fidelity report holds for onnxruntime only",
        _qdq,
    ),
]


def openvino_report(view: GraphView, *, examples: int = 3) -> TargetReport:
    """The OpenVINO findings of one model's graph."""
    findings = []
    for rule, effect, summary, find in RULES:
        hits = find(view)
        if hits:
            findings.append(Finding(rule, effect, len(hits), hits[:examples], summary, SOURCE))
    return TargetReport(OPENVINO, findings)


def add_openvino(report: Report, path: str | Path, *, only: bool) -> Report:
    """``report`` (of ``path``, from :func:`padim_edge.compat.check.check_file`) with the OpenVINO target
    appended; ``only``: instead of the TensorRT / onnxruntime ones."""
    proto = onnx.load(str(path), load_external_data=False)
    if only:
        report.targets.clear()
    report.targets.append(openvino_report(build_view(proto)))
    return report
