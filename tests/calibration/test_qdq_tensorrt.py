"""INT8 QDQ on real weights is what TensorRT takes: no int32 DequantizeLinear, int8 zero points all 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from padim_edge.calibration import int8
from padim_edge.calibration.pipeline import calibrate
from padim_edge.compat.rules import RULES
from padim_edge.compat.targets import TARGETS
from padim_edge.compat.view import build_view


def _dq_input_types(proto: onnx.ModelProto) -> set[int]:
    inits = {t.name: t.data_type for t in proto.graph.initializer}
    produced = {o: n for n in proto.graph.node for o in n.output}
    types = set()
    for node in proto.graph.node:
        if node.op_type == "DequantizeLinear":
            source = node.input[0]
            if source in inits:
                types.add(inits[source])
            else:  # an activation: the QuantizeLinear's zero point sets its type
                zp = produced[source].input[2]
                types.add(inits[zp])
    return types


def _zero_points(proto: onnx.ModelProto) -> list[np.ndarray]:
    inits = {t.name: t for t in proto.graph.initializer}
    return [
        numpy_helper.to_array(inits[n.input[2]])
        for n in proto.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear")
    ]


def test_qdq_with_real_weights_has_no_int32_dequantize(mnv2_real: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "qdq.onnx"
    data = mnv2_real.parent / "train"
    calibrate(mnv2_real, out, variant="int8-qdq", data=data, calibration_images=8, progress=False)
    proto = onnx.load(str(out))
    biased = [n for n in proto.graph.node if n.op_type == "Conv" and len(n.input) == 3]
    assert len(biased) > 20  # MobileNetV2's folded BatchNorms: real non-zero biases, kept float32
    assert _dq_input_types(proto) == {TensorProto.INT8}
    zero_points = _zero_points(proto)
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    view = build_view(proto)
    for rule in ("dequantize-input-type", "qdq-zero-point"):
        assert RULES[rule].check(view, TARGETS["tensorrt-8.5"]) == [], rule

    # the same quantisation with onnxruntime's default QuantizeBias=True: the rule catches it
    options = int8.quantize_options
    monkeypatch.setattr(
        int8,
        "quantize_options",
        lambda fmt, *, frames: {
            **options(fmt, frames=frames),
            "extra_options": {**options(fmt, frames=frames)["extra_options"], "QuantizeBias": True},
        },
    )
    default = tmp_path / "qdq-default.onnx"
    calibrate(mnv2_real, default, variant="int8-qdq", data=data, calibration_images=8, progress=False)
    hits = RULES["dequantize-input-type"].check(build_view(onnx.load(str(default))), TARGETS["tensorrt-10"])
    # every quantised conv's bias (the INT8 rows quantise every conv: float_convs=0)
    assert len(hits) >= len(biased) and all("INT32" in h for h in hits)
