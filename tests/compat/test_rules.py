"""Each padim-check rule on small hand-built graphs: a clean graph passes, the faulty form is caught."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from padim_edge.compat.check import check_file, check_proto
from padim_edge.compat.cli import main
from padim_edge.compat.rules import FAILS, NOTE, NUMBERS, RULES
from padim_edge.compat.targets import TARGETS, target
from padim_edge.compat.view import build_view

F, U8, I8, I32 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32


def model(nodes, inputs, outputs, inits=(), *, opset: int = 17, ir: int = 8) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), initializer=list(inits))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = ir
    return proto


def vi(name: str, elem: int, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def hits(rule: str, proto: onnx.ModelProto, on: str = "tensorrt-8.5") -> list[str]:
    return RULES[rule].check(build_view(proto), TARGETS[on])


def uint8_graph(cast_first: bool) -> onnx.ModelProto:
    x = vi("images", U8, [1, 4, 4, 3])
    if cast_first:
        nodes = [
            helper.make_node("Cast", ["images"], ["f"], to=F),
            helper.make_node("Transpose", ["f"], ["y"], perm=[0, 3, 1, 2]),
        ]
    else:
        nodes = [
            helper.make_node("Transpose", ["images"], ["t"], perm=[0, 3, 1, 2]),
            helper.make_node("Cast", ["t"], ["y"], to=F),
        ]
    return model(nodes, [x], [vi("y", F, [1, 3, 4, 4])])


def test_uint8_intermediate() -> None:
    assert hits("uint8-intermediate", uint8_graph(cast_first=True)) == []
    found = hits("uint8-intermediate", uint8_graph(cast_first=False))
    assert any("makes the uint8 tensor 't'" in h for h in found)  # found by shape inference
    assert any("reads the uint8 input 'images'" in h for h in found)
    to_int = model(
        [helper.make_node("Cast", ["images"], ["y"], to=I32)], [vi("images", U8, [2])], [vi("y", I32, [2])]
    )
    assert hits("uint8-intermediate", to_int) == [
        "(unnamed) (Cast) reads the uint8 input 'images' (only a Cast to float may)"
    ]


def shape_graph(**attributes) -> onnx.ModelProto:
    node = helper.make_node("Shape", ["x"], ["s"], name="shape", **attributes)
    return model([node], [vi("x", F, [2, 3, 4, 5])], [vi("s", TensorProto.INT64, None)])


def test_shape_start_end() -> None:
    assert hits("shape-start-end", shape_graph()) == []
    assert hits("shape-start-end", shape_graph(start=0, end=2)) == ["shape (Shape) start=0 end=2"]
    assert hits("shape-start-end", shape_graph(start=1)) == ["shape (Shape) start=1 end=None"]


def resize_graph(*, opset: int = 18, **attributes) -> onnx.ModelProto:
    sizes = const("sizes", np.array([1, 3, 8, 8], np.int64)[: 4 if "axes" not in attributes else 2])
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode="linear", **attributes)
    return model([node], [vi("x", F, [1, 3, 4, 4])], [vi("y", F, None)], [sizes], opset=opset)


def test_resize_rules() -> None:
    plain = resize_graph(opset=17)
    for rule in ("resize-antialias", "resize-axes", "resize-aspect-policy"):
        assert hits(rule, plain) == [], rule
    assert hits("resize-antialias", resize_graph(antialias=0)) == []
    assert hits("resize-antialias", resize_graph(antialias=1)) == ["(unnamed) (Resize) antialias=1"]
    assert hits("resize-axes", resize_graph(axes=[2, 3])) == ["(unnamed) (Resize) axes=[2, 3] (input rank 4)"]
    full = resize_graph(keep_aspect_ratio_policy="stretch")
    full.graph.node[0].attribute.append(helper.make_attribute("axes", [0, 1, 2, 3]))
    assert hits("resize-axes", full) == [] and hits("resize-aspect-policy", full) == []
    assert hits("resize-aspect-policy", resize_graph(keep_aspect_ratio_policy="not_larger")) == [
        "(unnamed) (Resize) keep_aspect_ratio_policy=not_larger"
    ]


def reduce_graph(op: str, *, axes_as_input: bool, computed_axes: bool = False) -> onnx.ModelProto:
    x = vi("x", F, [2, 3, 4])
    if not axes_as_input:
        node = helper.make_node(op, ["x"], ["y"], axes=[1, 2], keepdims=0)
        return model([node], [x], [vi("y", F, [2])], opset=17)
    inits = [] if computed_axes else [const("axes", np.array([1, 2], np.int64))]
    nodes = [helper.make_node(op, ["x", "axes"], ["y"], keepdims=0)]
    if computed_axes:
        nodes.insert(0, helper.make_node("Shape", ["x"], ["axes"], start=1))
    return model(nodes, [x], [vi("y", F, None)], inits, opset=18)


def test_reduce_rules() -> None:
    assert hits("reduce-axes-input", reduce_graph("ReduceMax", axes_as_input=False)) == []
    assert hits("reduce-axes-input", reduce_graph("ReduceSum", axes_as_input=True)) == []  # 8.x forwards it
    assert hits("reduce-axes-input", reduce_graph("ReduceMax", axes_as_input=True)) == [
        "(unnamed) (ReduceMax) takes its axes as input 'axes'"
    ]
    assert hits("reducesum-axes-constant", reduce_graph("ReduceSum", axes_as_input=True)) == []
    computed = reduce_graph("ReduceSum", axes_as_input=True, computed_axes=True)
    assert hits("reducesum-axes-constant", computed) == [
        "(unnamed) (ReduceSum) axes 'axes' is not a constant"
    ]


def qdq_graph(*, data_type: int = I8, zero_point: object = 0, bias_int32: bool = False) -> onnx.ModelProto:
    inits = [const("scale", np.float32(0.1))]
    inputs = ["q", "scale"]
    if zero_point is not None:
        inits.append(const("zp", np.array(zero_point, dtype=np.uint8 if data_type == U8 else np.int8)))
        inputs.append("zp")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", *inputs[1:]], ["q"]),
        helper.make_node("DequantizeLinear", inputs, ["y"]),
    ]
    outputs = [vi("y", F, [4])]
    if bias_int32:
        inits += [const("bias", np.array([1, 2, 3, 4], np.int32)), const("bscale", np.float32(0.01))]
        nodes.append(helper.make_node("DequantizeLinear", ["bias", "bscale"], ["b"]))
        outputs.append(vi("b", F, [4]))
    return model(nodes, [vi("x", F, [4])], outputs, inits, opset=17)


def test_qdq_rules() -> None:
    clean = qdq_graph()
    assert hits("dequantize-input-type", clean) == [] and hits("qdq-zero-point", clean) == []
    assert hits("dequantize-input-type", qdq_graph(bias_int32=True)) == [
        "(unnamed) (DequantizeLinear) dequantizes INT32 'bias'"
    ]
    assert hits("dequantize-input-type", qdq_graph(data_type=U8, zero_point=128)) == [
        "(unnamed) (DequantizeLinear) dequantizes UINT8 'q'"
    ]
    assert any("not 0" in h for h in hits("qdq-zero-point", qdq_graph(zero_point=3)))
    assert any("uint8" in h for h in hits("qdq-zero-point", qdq_graph(data_type=U8, zero_point=128)))
    assert any("no zero-point input" in h for h in hits("qdq-zero-point", qdq_graph(zero_point=None)))


def test_opset_and_ir_rules() -> None:
    relu = [helper.make_node("Relu", ["x"], ["y"])]
    io = ([vi("x", F, [2])], [vi("y", F, [2])])
    assert hits("opset-range", model(relu, *io, opset=17), "tensorrt-8.6") == []
    assert hits("opset-range", model(relu, *io, opset=18), "tensorrt-8.6") == [
        "opset 18; tensorrt-8.6 documents 7-17"
    ]
    assert hits("opset-range", model(relu, *io, opset=20), "onnxruntime-1.16") == [
        "opset 20; onnxruntime-1.16 documents 1-19"
    ]
    assert hits("opset-range", model(relu, *io, opset=8), "tensorrt-10") != []
    assert hits("ir-version", model(relu, *io, ir=9), "onnxruntime-1.17") == []
    assert hits("ir-version", model(relu, *io, ir=10), "onnxruntime-1.17") == [
        "IR version 10; onnxruntime-1.17 loads IR <= 9"
    ]
    assert hits("ir-version", model(relu, *io, ir=10), "onnxruntime-1.18") == []


def test_domain_integer_ops_and_size_rules(monkeypatch) -> None:
    io = ([vi("x", F, [2])], [vi("y", F, [2])])
    relu = model([helper.make_node("Relu", ["x"], ["y"])], *io)
    for rule in ("non-default-domain", "integer-ops", "large-initializers"):
        assert hits(rule, relu) == [], rule
    contrib = model([helper.make_node("QLinearAdd", ["x"], ["y"], domain="com.microsoft", name="qa")], *io)
    assert hits("non-default-domain", contrib) == ["qa (QLinearAdd) in domain com.microsoft"]
    conv = model([helper.make_node("QLinearConv", ["x"], ["y"], name="qc")], *io)
    assert hits("integer-ops", conv) == ["qc (QLinearConv)"]
    from padim_edge.compat import view

    monkeypatch.setattr(view, "initializer_bytes", lambda proto: 3 * 2**30)
    assert hits("large-initializers", relu) == ["3.00 GiB of initializers"]


def test_float16_relu_rule() -> None:
    h16 = TensorProto.FLOAT16
    io16 = ([vi("x", h16, [2])], [vi("y", h16, [2])])
    relu = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    assert hits("float16-relu-cpu", model(relu, *io16, opset=18), "onnxruntime-1.16") == [
        "r (Relu) on float16 at opset 18"
    ]
    assert hits("float16-relu-cpu", model(relu, *io16, opset=17), "onnxruntime-1.16") == []
    io32 = ([vi("x", F, [2])], [vi("y", F, [2])])
    assert hits("float16-relu-cpu", model(relu, *io32, opset=18), "onnxruntime-1.16") == []
    assert RULES["float16-relu-cpu"].effects == {"onnxruntime-1.16": NOTE}


def test_rule_table_says_where_each_rule_applies() -> None:
    for rule in RULES.values():
        assert rule.effects and set(rule.effects) <= set(TARGETS), rule.name
        assert set(rule.effects.values()) <= {FAILS, NUMBERS, NOTE}, rule.name
        assert rule.source and rule.summary, rule.name
    assert RULES["resize-antialias"].effects == {
        "tensorrt-8.5": NUMBERS,
        "tensorrt-8.6": NUMBERS,
        "tensorrt-10": FAILS,
    }
    assert target("tensorrt", "10.3").name == "tensorrt-10"
    with pytest.raises(ValueError, match=r"unknown onnxruntime version '1\.12'"):
        target("onnxruntime", "1.12")


def test_report_status_and_cli(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    onnx.save(resize_graph(antialias=1), str(bad))
    good = tmp_path / "good.onnx"
    onnx.save(resize_graph(opset=17), str(good))
    report = check_file(bad)
    status = {t.target.name: t.status for t in report.targets}
    assert status["tensorrt-8.5"] == "changes numbers" and status["tensorrt-10"] == "fails"
    assert status["onnxruntime-1.16"] == "ok" and not report.ok
    assert check_proto(resize_graph(opset=17)).ok
    runner = CliRunner()
    result = runner.invoke(main, [str(bad), "--tensorrt", "10"])
    assert result.exit_code == 1 and "tensorrt-10       FAILS" in result.output
    assert "Antialiasing is not supported" in result.output  # the source is shown
    result = runner.invoke(main, [str(bad), "--onnxruntime", "1.16", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [t["target"] for t in data["targets"]] == ["onnxruntime-1.16"] and data["ok"]
    assert runner.invoke(main, [str(good)]).exit_code == 0
    result = runner.invoke(main, [str(good), "--tensorrt", "7.1"])
    assert result.exit_code == 2 and "unknown tensorrt version" in result.output
    result = runner.invoke(main, [str(tmp_path / "missing.onnx")])
    assert result.exit_code == 1 and "model file not found" in result.output
