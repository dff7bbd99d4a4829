"""The Mahalanobis head (ONNX) and the PyTorch reference against independent float64 numpy / scipy."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from scipy import ndimage

from padim_edge.export.anomaly_map import AnomalyMapGenerator, separable_operator
from padim_edge.export.graph_map import anomaly_map_nodes
from padim_edge.export.padim.graph_head import block_bounds, mahalanobis_nodes
from padim_edge.export.padim.mahalanobis import MahalanobisDistance
from padim_edge.gaussian import EPSILON


def reference_gaussians(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """samples [n, d, P] -> mean [P, d], inverse [P, d, d] via numpy.cov and an explicit inverse."""
    _, d, patches = samples.shape
    mean = samples.mean(axis=0).T
    inverse = np.stack(
        [np.linalg.inv(np.cov(samples[:, :, p], rowvar=False) + EPSILON * np.eye(d)) for p in range(patches)]
    )
    return mean, inverse


def reference_map(embedding: np.ndarray, mean: np.ndarray, inverse: np.ndarray, crop: int) -> np.ndarray:
    """float64: Mahalanobis per patch, bilinear upsample (half-pixel), Gaussian blur sigma 4 (mirror)."""
    d, h, w = embedding.shape
    delta = embedding.reshape(d, -1).T - mean
    dist = np.sqrt(np.maximum(np.einsum("pd,pde,pe->p", delta, inverse, delta), 0)).reshape(h, w)
    up = ndimage.zoom(dist, crop / h, order=1, mode="nearest", grid_mode=True)
    return ndimage.gaussian_filter(up, sigma=4, mode="mirror", truncate=4.0)


def _fitted(rng: np.random.Generator, d: int, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    train = rng.normal(size=(30, d, grid * grid)) + rng.normal(size=(1, d, grid * grid))
    mean, inverse = reference_gaussians(train)
    test = rng.normal(size=(3, d, grid, grid)) * 1.5
    return mean, inverse, test


def _head_session(
    mean: np.ndarray, inverse: np.ndarray, grid: int, crop: int, blocks: int
) -> ort.InferenceSession:
    d = mean.shape[1]
    nodes, inits, distance = mahalanobis_nodes("embedding", mean, inverse, grid=grid, blocks=blocks)
    operator = separable_operator(AnomalyMapGenerator(crop=crop), grid).numpy()
    more_nodes, more_inits = anomaly_map_nodes(
        distance, operator, map_output="anomaly_map", score_output="score"
    )
    graph = onnx.helper.make_graph(
        nodes + more_nodes,
        "head",
        [onnx.helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["N", d, grid, grid])],
        [
            onnx.helper.make_tensor_value_info("anomaly_map", onnx.TensorProto.FLOAT, ["N", crop, crop]),
            onnx.helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, ["N"]),
        ],
        inits + more_inits,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("blocks", [1, 2, 3, 5])
def test_onnx_head_matches_float64_reference(blocks: int) -> None:
    rng = np.random.default_rng(blocks)
    d, grid, crop = 10, 8, 40
    mean, inverse, test = _fitted(rng, d, grid)
    session = _head_session(mean.astype(np.float32), inverse.astype(np.float32), grid, crop, blocks)
    maps, scores = session.run(None, {"embedding": test.astype(np.float32)})
    for k in range(len(test)):
        ref = reference_map(test[k], mean, inverse, crop)
        np.testing.assert_allclose(maps[k], ref, rtol=0, atol=1e-4 * ref.max())
        assert scores[k] == pytest.approx(ref.max(), rel=1e-5)


def test_torch_reference_head_matches_float64() -> None:
    rng = np.random.default_rng(7)
    d, grid, crop = 6, 8, 32
    mean, inverse, test = _fitted(rng, d, grid)
    distances = MahalanobisDistance(torch.from_numpy(mean), torch.from_numpy(inverse))(torch.from_numpy(test))
    maps, _ = AnomalyMapGenerator(crop=crop)(distances)
    for k in range(len(test)):
        ref = reference_map(test[k], mean, inverse, crop)
        np.testing.assert_allclose(maps[k].numpy(), ref, rtol=1e-10, atol=1e-10)


def test_block_bounds_cover_all_columns() -> None:
    assert block_bounds(100, 3) == [0, 33, 67, 100]
    assert block_bounds(4, 10) == [0, 1, 2, 3, 4]
    assert block_bounds(7, 1) == [0, 7]


@pytest.mark.parametrize(("precision", "slices"), [("fp32", 4), ("int8", 2), ("fp16", 2)])
def test_head_slices_only_what_it_must(precision: str, slices: int) -> None:
    """3 panels: rows of panels 1 and 2 (panel 0 multiplies all of them); fp32 also the columns of panels
    0 and 1 (panel 2's columns are its rows). Every Slice copies a [P, N, d] tensor."""
    rng = np.random.default_rng(3)
    mean, inverse, _ = _fitted(rng, 40, 4)
    nodes, _, _ = mahalanobis_nodes(
        "embedding",
        mean.astype(np.float32),
        inverse.astype(np.float32),
        grid=4,
        blocks=3,
        precision=precision,
    )
    sliced = [(node.input[1], node.input[2]) for node in nodes if node.op_type == "Slice"]
    assert len(sliced) == slices
    assert len(set(sliced)) == slices
