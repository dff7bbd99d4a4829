"""PatchCore's fp16 / int8 banks against the float64 reference: each precision's stated bound, asserted.

Bounds (:mod:`padim_edge.export.patchcore.compact_bank`), per patch, with ``d*`` the exact nearest
distance to the float32 bank, ``e`` the bank's largest storage error and ``E`` the ranking error::

    d* - e <= d_hat <= sqrt((d* + e)^2 + 2E)
    score (same worst patch and m*):  |score_hat - score| <= |s*_hat - s*| + s* e / 2
    map:  |map_hat - map| <= L^2 max |d_hat - d*|      (L: the largest row sum of |K|, K D K^T the map)

Measured here (random Gaussian banks with an offset, half the patches near-duplicates of bank vectors),
relative to the largest nearest distance: fp16 about 1e-4, int8 about 3e-3; the nearest index agrees
for every patch (fp16) and for about 97 % (int8; the others are near ties).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from padim_edge.export.anomaly_map import AnomalyMapGenerator, separable_operator
from padim_edge.export.graph_map import anomaly_map_nodes
from padim_edge.export.patchcore import compact_bank, graph_head
from tests.export.patchcore.test_graph_head import brute_table, reference

#: Largest nearest-distance error relative to the largest nearest distance (measured ~1.2e-4 / 2.6e-3).
DISTANCE_RTOL = {"fp32": 1e-6, "fp16": 5e-4, "int8": 1e-2}
#: Fraction of patches whose nearest bank vector must be the exact one (measured 1.0 / 0.97).
INDEX_AGREEMENT = {"fp32": 1.0, "fp16": 0.99, "int8": 0.9}
#: float32 rounding beside the stated bounds.
SLACK = 1e-4


def session(bank: np.ndarray, table: np.ndarray, *, dims: int, grid: int, crop: int, precision: str):
    h = graph_head._name
    nodes, inits, distance, score = graph_head.nearest_neighbour_nodes(
        "embedding", bank, table, grid=grid, precision=precision
    )
    operator = separable_operator(AnomalyMapGenerator(crop=crop), grid).numpy()
    map_nodes, map_inits = anomaly_map_nodes(distance, operator, map_output="anomaly_map", score_output=None)
    extra = [
        onnx.helper.make_node("Identity", [score], ["score"]),
        onnx.helper.make_node("Reshape", [h("nearest"), h("flat")], ["nearest"]),
    ]
    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        nodes + map_nodes + extra,
        "patchcore_head",
        [tensor("embedding", onnx.TensorProto.FLOAT, ["N", dims, grid, grid])],
        [
            tensor("anomaly_map", onnx.TensorProto.FLOAT, ["N", crop, crop]),
            tensor("score", onnx.TensorProto.FLOAT, ["N"]),
            tensor(distance, onnx.TensorProto.FLOAT, ["N", grid, grid]),
            tensor("nearest", onnx.TensorProto.INT64, ["K"]),
        ],
        inits + map_inits,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    return model, ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def near_duplicates(seed: int, *, rows: int, dims: int, grid: int, batch: int = 4):
    """A bank with a ReLU-like offset; half the test patches are bank vectors plus small noise."""
    rng = np.random.default_rng(seed)
    bank = rng.normal(size=(rows, dims)) + 3.0
    test = rng.normal(size=(batch, dims, grid, grid)) * 1.3 + 3.0
    for k in range(batch):
        for p in range(0, grid * grid, 2):
            test[k, :, p // grid, p % grid] = bank[rng.integers(rows)] + rng.normal(size=dims) * 0.05 * (
                k + 1
            )
    test[0, :, 0, 0] = bank[0]  # exactly a bank vector
    return bank.astype(np.float32).astype(np.float64), test.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize(("rows", "dims"), [(400, 64), (60, 16)])
def test_compact_bank_within_its_bound(precision: str, rows: int, dims: int) -> None:
    grid, crop, batch = 8, 32, 4
    bank, test = near_duplicates(rows + dims, rows=rows, dims=dims, grid=grid, batch=batch)
    table = brute_table(bank, 9)
    _, run = session(bank.astype(np.float32), table, dims=dims, grid=grid, crop=crop, precision=precision)
    maps, scores, distances, nearest = run.run(None, {"embedding": test.astype(np.float32)})
    ref_dist, ref_scores, ref_maps = reference(test, bank, table, crop)

    patches = test.reshape(batch, dims, -1).transpose(0, 2, 1).reshape(-1, dims)
    exact = np.sqrt(((patches[:, None] - bank[None]) ** 2).sum(-1))
    d_star = exact.min(axis=1)
    below, above = compact_bank.distance_bounds(patches, bank.astype(np.float32), precision, d_star)
    diff = distances.reshape(-1).astype(np.float64) - d_star
    assert np.all(diff >= -below - SLACK) and np.all(diff <= above + SLACK), (diff.min(), diff.max())
    assert np.abs(diff).max() <= DISTANCE_RTOL[precision] * d_star.max()
    assert (nearest == exact.argmin(axis=1)).mean() >= INDEX_AGREEMENT[precision]

    # score: where the worst patch and m* are the reference's, |d score| <= |d s*| + s* e / 2
    e = float(compact_bank.storage_error(bank.astype(np.float32), precision).max())
    per_image = distances.reshape(batch, -1)
    worst = per_image.argmax(axis=1)
    ref_worst = ref_dist.reshape(batch, -1).argmax(axis=1)
    same = (worst == ref_worst) & (
        nearest.reshape(batch, -1)[np.arange(batch), worst]
        == exact.argmin(1).reshape(batch, -1)[np.arange(batch), ref_worst]
    )
    assert same.mean() >= 0.75
    s_star = ref_dist.reshape(batch, -1).max(axis=1)
    d_s = np.abs(per_image.max(axis=1) - s_star)
    assert np.all(np.abs(scores - ref_scores)[same] <= (d_s + s_star * e / 2 + SLACK)[same])

    # map: a linear operator of the distances
    operator = separable_operator(AnomalyMapGenerator(crop=crop), grid).numpy()
    lipschitz = np.abs(operator).sum(axis=1).max() ** 2
    assert np.abs(maps - ref_maps).max() <= lipschitz * (np.maximum(below, above).max() + SLACK)
    assert distances[0, 0, 0] <= above[0] + SLACK  # a bank vector itself: e at most, no sqrt(cancellation)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_compact_bank_storage_and_ops(precision: str) -> None:
    bank, _ = near_duplicates(1, rows=50, dims=8, grid=4)
    stored, scale = compact_bank.quantize_bank(bank.astype(np.float32), precision)
    assert stored.shape == (8, 50) and scale.shape == (50,)
    assert stored.dtype == (np.int8 if precision == "int8" else np.float16)
    assert np.abs(stored.astype(np.float32)).max() <= (127 if precision == "int8" else 1.0)
    back = compact_bank.dequantize_bank(stored, scale)
    assert np.abs(back - bank).max() <= scale.max() * (0.5 if precision == "int8" else 2**-11) + 1e-6

    model, _ = session(
        bank.astype(np.float32), brute_table(bank, 9), dims=8, grid=4, crop=20, precision=precision
    )
    ops = {n.op_type for n in model.graph.node}
    assert ("MatMulInteger" in ops) == (precision == "int8")
    assert not ops & {"ReduceMin", "ReduceMax", "ArgMin", "Einsum", "NonZero", "Gemm"}, ops
    names = {t.name for t in model.graph.initializer}
    assert compact_bank.BANK[precision] in names and graph_head._name("bank") not in names  # no float32 copy
    bank_bytes = {t.name: len(t.raw_data) for t in model.graph.initializer}[compact_bank.BANK[precision]]
    assert bank_bytes == 50 * 8 * (1 if precision == "int8" else 2)


def test_fp16_bank_cannot_overflow() -> None:
    """Query patches far beyond float16's range still give finite distances (both operands scaled)."""
    bank, test = near_duplicates(2, rows=30, dims=16, grid=4, batch=2)
    test *= 1e4  # |x.m| ~ 5e5 > 65504
    table = brute_table(bank, 9)
    _, run = session(bank.astype(np.float32), table, dims=16, grid=4, crop=20, precision="fp16")
    maps, scores, distances, _ = run.run(None, {"embedding": test.astype(np.float32)})
    with np.errstate(all="ignore"):  # the reference's own softmax overflows at these distances
        ref_dist, _, _ = reference(test, bank, table, 20)
    assert np.isfinite(maps).all() and np.isfinite(scores).all()
    np.testing.assert_allclose(distances, ref_dist, rtol=1e-3)


def test_expansion_form_would_lose_the_near_neighbours() -> None:
    """Why the distance is recomputed from differences: sqrt(||x||^2 + r) carries sqrt(E), not e."""
    bank, test = near_duplicates(3, rows=200, dims=64, grid=8)
    patches = test.reshape(4, 64, -1).transpose(0, 2, 1).reshape(-1, 64)
    stored, scale = compact_bank.quantize_bank(bank.astype(np.float32), "int8")
    q = compact_bank.dequantize_bank(stored, scale).astype(np.float64)
    step = np.abs(patches).max(axis=1, keepdims=True) / 63
    a = np.rint(patches / step) * step  # the int8 activations, dequantised
    expansion = (patches**2).sum(1)[:, None] - 2 * a @ q.T + (q**2).sum(1)[None]
    d_expansion = np.sqrt(np.maximum(expansion.min(axis=1), 0))
    d_star = np.sqrt(((patches[:, None] - bank[None]) ** 2).sum(-1)).min(axis=1)
    near = d_star < 0.5
    e = compact_bank.storage_error(bank.astype(np.float32), "int8").max()
    assert np.abs(d_expansion - d_star)[near].max() > 2 * e  # the bound the graph keeps would not hold
