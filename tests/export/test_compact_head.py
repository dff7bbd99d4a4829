"""The int8 / float16 heads against an independent float64 computation, with their stated error bounds.

Bounds (from :mod:`padim_edge.export.padim.compact_head`), per patch, with ``x`` the centred embedding,
``W`` the packed panel, ``c`` the per-column steps (``max_r |W_rc| / 127``) and ``step = max |x| / 63``:

* int8:  ``|err| <= sum_c |x_c| (step/2 sum_r |W_rc| + c_c/2 sum_r |x_r| + c_c step/4 rows)``
* fp16:  ``|err| <= (3 + rows) u sum_c |x_c| sum_r |x_r W_rc|`` with ``u = 2^-11`` (float16
  accumulation over ``rows`` terms, the worst case of any EP)

plus float32 rounding of the surrounding arithmetic. Typical relative errors of the squared distance
on PaDiM-like Gaussians (asserted with margin): int8 median < 1e-2, 99th percentile < 4e-2; fp16
median < 3e-4, maximum < 2e-3.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from padim_edge.export.padim import compact_head, head_io
from padim_edge.export.padim.graph_head import (
    DISTANCE,
    PANEL_ALIGN,
    align_bounds,
    block_bounds,
    head_nodes,
    iter_packed_blocks,
    mahalanobis_nodes,
    packed_blocks,
    repack_panels,
    unpack_panels,
)
from padim_edge.gaussian import EPSILON

U16 = 2.0**-11
#: Reduce ops whose ``axes`` moved from an attribute to an input at opset 18 (ReduceSum did so at 13).
REDUCE_AXES_CHANGED = {"ReduceMax", "ReduceMin", "ReduceMean", "ReduceProd", "ReduceL1", "ReduceL2"}


def padim_like(seed: int, *, dims: int = 24, grid: int = 6, images: int = 4):
    """Gaussians fitted like PaDiM's (numpy.cov + 0.01 I, float64 inverse) and test embeddings."""
    rng = np.random.default_rng(seed)
    patches = grid * grid
    spread = rng.uniform(0.2, 3.0, size=(1, dims, patches))
    train = rng.normal(size=(3 * dims, dims, patches)) * spread + rng.normal(size=(1, dims, patches))
    mean = train.mean(axis=0).T
    inverse = np.stack(
        [np.linalg.inv(np.cov(train[:, :, p], rowvar=False) + EPSILON * np.eye(dims)) for p in range(patches)]
    )
    scale = rng.choice([1.0, 1.0, 4.0], size=(images, 1, patches))  # some anomalous patches
    test = mean.T[None] + rng.normal(size=(images, dims, patches)) * spread * scale
    inverse = (inverse + inverse.transpose(0, 2, 1)) / 2  # exactly symmetric, as packed storage assumes
    return mean.astype(np.float32), inverse, test.reshape(images, dims, grid, grid).astype(np.float32)


def run_head(mean, inverse, embedding, *, precision, blocks, opset=18, activation="row"):
    grid = embedding.shape[-1]
    nodes, inits, distance = head_nodes(
        "embedding",
        mean,
        iter_packed_blocks(inverse, blocks),
        grid=grid,
        precision=precision,
        activation=activation,
    )
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", mean.shape[1], grid, grid])],
        [helper.make_tensor_value_info(distance, TensorProto.FLOAT, ["N", grid, grid])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"embedding": embedding})
    return model, out.astype(np.float64).reshape(len(embedding), -1) ** 2


def centred(mean, embedding):
    """float64 ``[N, P, d]`` of the float32 embedding minus the float32 mean (what the graph centres)."""
    n, d = embedding.shape[:2]
    return embedding.reshape(n, d, -1).transpose(0, 2, 1).astype(np.float64) - mean.astype(np.float64)


def int8_parts(x, inverse, blocks):
    """What the int8 head quantises: the residual ``x - U U^T x`` and the off-diagonal remainder panels."""
    panels = packed_blocks(inverse, blocks)
    basis, weight = compact_head.low_rank_split(panels)  # the head's own choice of directions
    u = basis.astype(np.float64)
    residual = x - np.einsum("npk,pdk->npd", np.einsum("npd,pdk->npk", x, u), u)
    remainder = compact_head.residual_panels(panels, basis, weight)
    for panel in remainder:
        index = np.arange(panel.shape[-1])
        panel[:, index, index] = 0.0  # the diagonal is applied in float32
    return residual, remainder


def int8_bound(x, inverse, blocks):
    """The int8 bound on the residual and the off-diagonal remainder, with the test's own float64 steps."""
    x, panels = int8_parts(x, inverse, blocks)
    d = x.shape[-1]
    bounds = block_bounds(d, blocks)
    step = np.abs(x).max(axis=-1) / 63  # [N, P]
    total = np.zeros(x.shape[:2])
    for panel, lo, hi in zip(panels, bounds[:-1], bounds[1:], strict=True):
        w = panel.astype(np.float64)  # [P, rows, cols]
        c = np.abs(w).max(axis=1) / 127  # [P, cols]
        rows = d - lo
        sum_w = np.abs(w).sum(axis=1)  # [P, cols]
        sum_x = np.abs(x[..., lo:]).sum(axis=-1)  # [N, P]
        per_col = (
            step[..., None] / 2 * sum_w[None]
            + c[None] / 2 * sum_x[..., None]
            + c[None] * step[..., None] / 4 * rows
        )
        total += (np.abs(x[..., lo:hi]) * per_col).sum(axis=-1)
    return total


def magnitude(x, inverse, blocks):
    """``sum_c |x_c| sum_r |x_r W_rc|`` over the packed panels (the scale float rounding errors live on)."""
    d = x.shape[-1]
    bounds = block_bounds(d, blocks)
    total = np.zeros(x.shape[:2])
    for panel, lo, hi in zip(packed_blocks(inverse, blocks), bounds[:-1], bounds[1:], strict=True):
        inner = np.einsum("npr,prc->npc", np.abs(x[..., lo:]), np.abs(panel.astype(np.float64)))
        total += (np.abs(x[..., lo:hi]) * inner).sum(axis=-1)
    return total


def exact(x, inverse):
    return np.einsum("npd,pde,npe->np", x, inverse, x)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("blocks", [1, 3])
def test_int8_head_within_its_bound(blocks: int, opset: int) -> None:
    mean, inverse, embedding = padim_like(blocks)
    model, got = run_head(mean, inverse, embedding, precision="int8", blocks=blocks, opset=opset)
    x = centred(mean, embedding)
    ref = exact(x, inverse)
    err = np.abs(got - ref)
    bound = int8_bound(x, inverse, blocks) + 1e-5 * magnitude(x, inverse, blocks)
    assert np.all(err <= bound), f"worst error / bound {np.max(err / bound):.3f}"
    relative = err / ref
    assert np.median(relative) < 1e-2 and np.percentile(relative, 99) < 4e-2, (
        np.median(relative),
        np.percentile(relative, 99),
    )
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulInteger" in ops and not ops & REDUCE_AXES_CHANGED
    float_matmul = [n for n in model.graph.node if n.op_type == "MatMul"]  # the float32 low-rank part only
    assert [n.name for n in float_matmul] == ["padim_head/project", "padim_head/back"]
    types = {t.name: t.data_type for t in model.graph.initializer}
    panels = [name for name in types if name.startswith("padim_head/inv_covariance_")]
    assert len(panels) == blocks and all(types[p] == TensorProto.INT8 for p in panels)


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("blocks", [1, 3])
def test_fp16_head_within_its_bound(blocks: int, opset: int) -> None:
    mean, inverse, embedding = padim_like(10 + blocks)
    model, got = run_head(mean, inverse, embedding, precision="fp16", blocks=blocks, opset=opset)
    x = centred(mean, embedding)
    ref = exact(x, inverse)
    err = np.abs(got - ref)
    rows = x.shape[-1]
    bound = ((3 + rows) * U16 + 1e-5) * magnitude(x, inverse, blocks)
    assert np.all(err <= bound), f"worst error / bound {np.max(err / bound):.3f}"
    relative = err / ref
    assert np.median(relative) < 3e-4 and relative.max() < 2e-3, (np.median(relative), relative.max())
    ops = {n.op_type for n in model.graph.node}
    assert not ops & REDUCE_AXES_CHANGED and "MatMulInteger" not in ops
    matmul_inputs = {i for n in model.graph.node if n.op_type == "MatMul" for i in n.input}
    types = {t.name: t.data_type for t in model.graph.initializer}
    assert {types[i] for i in matmul_inputs if i in types} == {TensorProto.FLOAT16}


def test_fp16_head_cannot_overflow() -> None:
    """Embeddings far outside float16's range give finite, correct distances (per-row scaling)."""
    mean, inverse, embedding = padim_like(3)
    huge = (embedding - mean.T.reshape(1, *embedding.shape[1:])) * 3e4 + mean.T.reshape(
        1, *embedding.shape[1:]
    )
    _, got = run_head(mean, inverse, huge.astype(np.float32), precision="fp16", blocks=3)
    ref = exact(centred(mean, huge.astype(np.float32)), inverse)
    assert np.all(np.isfinite(got))
    assert np.max(np.abs(got - ref) / ref) < 2e-3


def test_zero_rows_give_zero_distance() -> None:
    """An embedding equal to the mean (all-zero rows) scores 0, not NaN (the row step has a floor)."""
    mean, inverse, embedding = padim_like(4)
    at_mean = np.broadcast_to(mean.T.reshape(1, *embedding.shape[1:]), embedding.shape).copy()
    for precision in ("int8", "fp16"):
        _, got = run_head(mean, inverse, at_mean, precision=precision, blocks=3)
        assert np.all(got == 0), precision


def test_tensor_mode_runs_and_is_less_accurate() -> None:
    """DynamicQuantizeLinear (per tensor, 7-bit weights): kept for the benchmark; coarser than per row."""
    mean, inverse, embedding = padim_like(5)
    x = centred(mean, embedding)
    ref = exact(x, inverse)
    _, row = run_head(mean, inverse, embedding, precision="int8", blocks=3)
    model, tensor = run_head(mean, inverse, embedding, precision="int8", blocks=3, activation="tensor")
    assert "DynamicQuantizeLinear" in {n.op_type for n in model.graph.node}
    assert np.median(np.abs(tensor - ref) / ref) > np.median(np.abs(row - ref) / ref)
    assert np.median(np.abs(tensor - ref) / ref) < 3e-2


def test_int8_operand_ranges_are_exact_in_this_cpu_kernel() -> None:
    """MatMulInteger at the head's extreme operands (uint8 127 with zero point 64, int8 +-127) is exact.

    With 8-bit activations (uint8 up to 255) onnxruntime's AVX2 kernel saturates its int16 pair sums
    on CPUs without VNNI; the head's 7-bit activations keep ``127 * 127 * 2`` under 32767.
    """
    assert (compact_head.ACTIVATION_LEVELS + compact_head.ACTIVATION_ZERO_POINT) * 127 * 2 <= 32767
    rng = np.random.default_rng(0)
    a = rng.choice([1, 127], size=(5, 2, 64)).astype(np.uint8)
    w = rng.choice([-127, 127, 126], size=(5, 64, 16)).astype(np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w", "zp"], ["y"])],
        "mmi",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, None)],
        [helper.make_tensor_value_info("y", TensorProto.INT32, None)],
        [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(np.array(64, np.uint8), "zp")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"a": a})
    np.testing.assert_array_equal(y, np.einsum("pnk,pkm->pnm", a.astype(np.int64) - 64, w.astype(np.int64)))


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_quantized_panel_round_trip(precision: str) -> None:
    _, inverse, _ = padim_like(6)
    panel = packed_blocks(inverse, 3)[1]
    stored, scales = compact_head.quantize_panel(panel, precision)
    assert stored.dtype == (np.int8 if precision == "int8" else np.float16)
    back = compact_head.dequantize_panel(stored, scales)
    if precision == "int8":
        assert np.abs(stored).max() == 127
        assert np.all(np.abs(back - panel) <= scales / 2 * (1 + 1e-6))
    else:
        assert np.abs(stored.astype(np.float32)).max() <= 1.0
        np.testing.assert_allclose(back, panel, rtol=U16, atol=float(np.abs(panel).max()) * 2**-24)


def _head_model(mean, inverse, *, precision, blocks=3):
    """A head + downstream consumer graph, as the exporter lays it out."""
    grid = int(np.sqrt(mean.shape[0]))
    nodes, inits, distance = mahalanobis_nodes(
        "embedding", mean, inverse, grid=grid, blocks=blocks, precision=precision
    )
    nodes.append(helper.make_node("Identity", [distance], ["out"], name="padim_head/after"))
    graph = helper.make_graph(
        nodes,
        "head",
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", mean.shape[1], grid, grid])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", grid, grid])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize(("start", "target"), [("fp32", "int8"), ("fp32", "fp16"), ("int8", "fp16")])
def test_rewrite_matches_a_direct_build(start: str, target: str) -> None:
    mean, inverse, embedding = padim_like(7)
    proto = _head_model(mean, inverse, precision=start)
    before = head_io.head_layout(proto)
    assert before.precision == start and before.grid == 6 and before.dims == 24
    assert len(before.panels) == len(block_bounds(24, 3, align=PANEL_ALIGN[start])) - 1
    head_io.rewrite_head_precision(proto, target)
    onnx.checker.check_model(proto, full_check=True)
    after = head_io.head_layout(proto)
    assert after.precision == target and after.embedding == "embedding"
    assert len(after.panels) == len(block_bounds(24, 3, align=PANEL_ALIGN[target])) - 1  # re-blocked
    names = [t.name for t in proto.graph.initializer]
    assert len(names) == len(set(names))
    if start == "fp32":  # from float32 panels the rewrite is bit for bit a direct build
        direct = _head_model(mean, inverse, precision=target)
        got = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
        for tensor in direct.graph.initializer:
            np.testing.assert_array_equal(got[tensor.name], onnx.numpy_helper.to_array(tensor))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"embedding": embedding})
    ref = exact(centred(mean, embedding), inverse)
    rel = np.abs(out.astype(np.float64).reshape(len(embedding), -1) ** 2 - ref) / ref
    assert np.median(rel) < 1e-2


def test_rewrite_errors() -> None:
    mean, inverse, _ = padim_like(8)
    proto = _head_model(mean, inverse, precision="int8")
    with pytest.raises(ValueError, match="already int8"):
        head_io.rewrite_head_precision(proto, "int8")
    with pytest.raises(ValueError, match="head precision must be one of"):
        head_io.rewrite_head_precision(proto, "bf16")
    other = helper.make_model(
        helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        )
    )
    with pytest.raises(head_io.HeadError, match="no PaDiM Mahalanobis head"):
        head_io.head_layout(other)


def test_replace_head_installs_new_gaussians() -> None:
    mean, inverse, embedding = padim_like(9)
    new_mean, new_inverse, _ = padim_like(19)
    proto = _head_model(mean, inverse, precision="int8")
    head_io.replace_head(proto, mean=new_mean, inv_covariance=new_inverse)
    assert head_io.head_layout(proto).precision == "int8"
    np.testing.assert_array_equal(head_io.read_mean(proto), new_mean)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"embedding": embedding})
    ref = exact(centred(new_mean, embedding), new_inverse)
    rel = np.abs(out.astype(np.float64).reshape(len(embedding), -1) ** 2 - ref) / ref
    assert np.median(rel) < 1e-2
    with pytest.raises(ValueError, match="do not fit the head"):
        head_io.replace_head(proto, mean=new_mean[:, :5], inv_covariance=new_inverse)
    assert DISTANCE in {o for n in proto.graph.node for o in n.output}


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_export_with_a_compact_head(small_export, tmp_path, frames, precision: str) -> None:
    """Exported in that precision: metadata, panel types, parity within the precision's tolerance."""
    from padim_edge.export import exporter
    from padim_edge.export.parity import PARITY_RTOL_BY_PRECISION, check_parity
    from padim_edge.runtime import PadimModel

    path = tmp_path / f"{precision}.onnx"
    exporter.export_model(
        small_export.model,
        path,
        weights="random-init",
        train_images=12,
        head_options={"precision": precision},
    )
    model = PadimModel(path, device="cpu")
    assert model.info.head_precision == precision
    assert f"/ {precision} head" in model.info.description
    layout = head_io.head_layout(onnx.load(str(path)))
    assert layout.precision == precision and len(layout.panels) == 2  # dims 24: blocks at [0, 16, 24]
    parity = check_parity(small_export.model, path, frames, head_precision=precision)
    assert parity.rtol == PARITY_RTOL_BY_PRECISION[precision] and parity.ok
    assert parity.relative < {"int8": 2e-2, "fp16": 1e-3}[precision]
    fp32 = check_parity(small_export.model, path, frames)  # the float32 tolerance is too tight for it
    assert fp32.max_abs == parity.max_abs and fp32.rtol < parity.rtol


def test_export_cli_head_precision(train_dir, tmp_path) -> None:
    from click.testing import CliRunner

    from padim_edge.export.cli import main

    out = tmp_path / "cli-int8.onnx"
    args = ["--data", str(train_dir), "-o", str(out), "--dims", "16", "--resize", "72", "--crop", "64"]
    result = CliRunner().invoke(main, [*args, "--random-init", "--head-precision", "int8", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "head          int8 Sigma^-1, 1 column block(s)" in result.output  # dims 16: one 16-wide block
    parity = [line for line in result.output.splitlines() if line.startswith("parity")]
    assert len(parity) == 1 and parity[0].endswith("ok")  # parity within the int8 tolerance
    # the head's report against the fp32 head (a verdict warning may follow it on 12 frames)
    assert any(line.startswith("fidelity") for line in result.output.splitlines())
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert props["padim_edge.head_precision"] == "int8"
    bad = CliRunner().invoke(main, [*args, "--random-init", "--head-precision", "int4"])
    assert bad.exit_code == 2 and "'int4' is not one of" in bad.output


def test_aligned_bounds_and_repacking() -> None:
    """Block boundaries on multiples of 16 for the compact heads; repacking keeps the matrices."""
    assert block_bounds(100, 3, align=16) == [0, 32, 64, 100]
    assert block_bounds(550, 3, align=16) == [0, 176, 368, 550]
    assert block_bounds(24, 3, align=16) == [0, 16, 24]
    assert block_bounds(10, 3, align=16) == [0, 10]
    assert align_bounds([0, 33, 67, 100], 1) == [0, 33, 67, 100]
    _, inverse, _ = padim_like(12, dims=40)
    old = packed_blocks(inverse, 3)  # [0, 13, 27, 40]
    np.testing.assert_array_equal(unpack_panels(old, slice(2, 5)), inverse[2:5].astype(np.float32))
    new = list(repack_panels(old, [0, 16, 32, 40], chunk=7))
    direct = list(iter_packed_blocks(inverse, 3, align=16))
    assert [p.shape for p in new] == [p.shape for p in direct] == [(36, 40, 16), (36, 24, 16), (36, 8, 8)]
    for a, b in zip(new, direct, strict=True):
        np.testing.assert_array_equal(a, b)
