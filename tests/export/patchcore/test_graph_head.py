"""PatchCore's ONNX head and its PyTorch reference against an independent float64 numpy brute force."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from scipy import ndimage

from padim_edge.export.anomaly_map import AnomalyMapGenerator, separable_operator
from padim_edge.export.graph_map import anomaly_map_nodes
from padim_edge.export.patchcore.graph_head import nearest_neighbour_nodes
from padim_edge.export.patchcore.nearest import NearestNeighbourScorer, neighbour_table


def brute_table(bank: np.ndarray, b: int) -> np.ndarray:
    """Each row: itself, then the b - 1 nearest others (float64, full distance matrix)."""
    d = np.sqrt(((bank[:, None, :] - bank[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, -1.0)  # itself first
    return np.argsort(d, axis=1, kind="stable")[:, :b]


def reference(embedding: np.ndarray, bank: np.ndarray, table: np.ndarray, crop: int):
    """float64: exact nearest neighbour per patch, the paper's re-weighted score, upsample + blur map."""
    n, d, h, w = embedding.shape
    patches = embedding.reshape(n, d, h * w).transpose(0, 2, 1)
    dist = np.sqrt(((patches[:, :, None, :] - bank[None, None]) ** 2).sum(-1))  # [N, P, M]
    nearest, patch_dist = dist.argmin(-1), dist.min(-1)
    maps, scores = [], []
    for k in range(n):
        worst = int(np.argmax(patch_dist[k]))
        s_star, m_star = patch_dist[k, worst], nearest[k, worst]
        support = dist[k, worst, table[m_star]]  # distances of m_test* to N_b(m*), m* first
        weight = 1.0 - np.exp(support[0]) / np.exp(support).sum()
        scores.append(weight * s_star)
        grid = patch_dist[k].reshape(h, w)
        up = ndimage.zoom(grid, crop / h, order=1, mode="nearest", grid_mode=True)
        maps.append(ndimage.gaussian_filter(up, sigma=4, mode="mirror", truncate=4.0))
    return patch_dist.reshape(n, h, w), np.array(scores), np.stack(maps)


def head_session(bank: np.ndarray, table: np.ndarray, *, dims: int, grid: int, crop: int, opset: int):
    nodes, inits, distance, score = nearest_neighbour_nodes("embedding", bank, table, grid=grid)
    operator = separable_operator(AnomalyMapGenerator(crop=crop), grid).numpy()
    map_nodes, map_inits = anomaly_map_nodes(distance, operator, map_output="anomaly_map", score_output=None)
    graph = onnx.helper.make_graph(
        nodes + map_nodes + [onnx.helper.make_node("Identity", [score], ["score"])],
        "patchcore_head",
        [onnx.helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["N", dims, grid, grid])],
        [
            onnx.helper.make_tensor_value_info("anomaly_map", onnx.TensorProto.FLOAT, ["N", crop, crop]),
            onnx.helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, ["N"]),
            onnx.helper.make_tensor_value_info(distance, onnx.TensorProto.FLOAT, ["N", grid, grid]),
        ],
        inits + map_inits,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    onnx.checker.check_model(model, full_check=True)
    return model, ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def data(seed: int, *, rows: int, dims: int, grid: int, batch: int = 3):
    rng = np.random.default_rng(seed)
    bank = rng.normal(size=(rows, dims)) + 3.0  # an offset, as ReLU features have: exercises cancellation
    test = rng.normal(size=(batch, dims, grid, grid)) * 1.3 + 3.0
    test[0, :, 1, 2] = bank[rows // 2]  # a patch that is exactly a bank vector: distance 0
    return bank.astype(np.float32).astype(np.float64), test.astype(np.float32).astype(np.float64)


@pytest.mark.parametrize(("opset", "rows", "neighbours"), [(17, 40, 9), (18, 40, 9), (18, 5, 9), (18, 1, 9)])
def test_onnx_head_matches_float64_reference(opset: int, rows: int, neighbours: int) -> None:
    dims, grid, crop = 6, 7, 28
    bank, test = data(opset + rows, rows=rows, dims=dims, grid=grid)
    table = brute_table(bank, min(neighbours, rows))
    _, session = head_session(bank.astype(np.float32), table, dims=dims, grid=grid, crop=crop, opset=opset)
    maps, scores, distances = session.run(None, {"embedding": test.astype(np.float32)})
    ref_dist, ref_scores, ref_maps = reference(test, bank, table, crop)
    np.testing.assert_allclose(distances, ref_dist, rtol=1e-5, atol=1e-5)
    assert distances[0, 1, 2] == pytest.approx(0.0, abs=1e-6)  # no sqrt-of-cancellation noise
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps, ref_maps, rtol=0, atol=1e-5 * ref_maps.max())
    if rows > 1:
        assert np.all(scores < ref_dist.reshape(3, -1).max(axis=1))  # the weight is below one
    else:  # b = 1: softmax of one value is 1, the score is 0 (anomalib's edge case too)
        np.testing.assert_array_equal(scores, 0.0)


def test_onnx_head_ops_are_tensorrt_friendly() -> None:
    bank, _ = data(0, rows=20, dims=4, grid=4)
    model, _ = head_session(bank.astype(np.float32), brute_table(bank, 9), dims=4, grid=4, crop=20, opset=17)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"ReduceMin", "ReduceMax", "ArgMin", "Einsum", "NonZero"}, ops
    topk = next(n for n in model.graph.node if n.op_type == "TopK")
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert constants[topk.input[1]].tolist() == [1]  # k is a constant initializer
    assert {a.name: a.i for a in topk.attribute}["largest"] == 0
    reduce_sums = [n for n in model.graph.node if n.op_type == "ReduceSum"]
    assert all(len(n.input) == 2 and n.input[1] in constants for n in reduce_sums)  # the one exempt form
    assert all(n.name.startswith("padim_head/") for n in model.graph.node if n.op_type != "Identity")


def test_torch_reference_matches_float64_brute_force() -> None:
    dims, grid, crop = 5, 6, 24
    bank, test = data(3, rows=30, dims=dims, grid=grid)
    table = brute_table(bank, 9)
    scorer = NearestNeighbourScorer(torch.from_numpy(bank).float(), torch.from_numpy(table), block_patches=7)
    distances, scores = scorer(torch.from_numpy(test))
    ref_dist, ref_scores, _ = reference(test, bank, table, crop)
    np.testing.assert_allclose(distances.numpy(), ref_dist, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-12)


def test_neighbour_table_matches_brute_force() -> None:
    rng = np.random.default_rng(4)
    bank = rng.normal(size=(300, 8)).astype(np.float32)
    table = neighbour_table(bank, 9)
    np.testing.assert_array_equal(table, brute_table(bank.astype(np.float64), 9))
    assert neighbour_table(bank[:4], 9).shape == (4, 4)
    np.testing.assert_array_equal(neighbour_table(bank[:1], 9), [[0]])
    with pytest.raises(ValueError, match="neighbours >= 1"):
        neighbour_table(bank, 0)


def test_head_rejects_a_table_that_does_not_fit() -> None:
    bank = np.zeros((10, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="does not fit a bank of 10 rows"):
        nearest_neighbour_nodes("e", bank, np.zeros((9, 3), dtype=np.int64), grid=2)


def test_head_builder_and_settings_import_without_torch() -> None:
    code = (
        "import sys, padim_edge.export.patchcore.graph_head, padim_edge.export.patchcore.settings; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; "
        "sys.exit(1 if bad else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
