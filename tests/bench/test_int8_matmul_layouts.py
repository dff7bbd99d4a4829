"""benchmarks/int8_matmul_layouts.py: every layout it times computes the products it claims."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from tests.bench.conftest import benchmark_script


@pytest.fixture(scope="module")
def layouts():
    with benchmark_script("int8_matmul_layouts") as module:
        yield module


def test_layouts_compute_the_blocked_products(layouts, monkeypatch) -> None:
    monkeypatch.setattr(layouts, "PATCHES", 8)
    dims, bounds = 10, [0, 4, 10]
    cases = layouts.layouts(dims, bounds, np.random.default_rng(0))
    assert set(cases) >= {
        "act x W, triangle (the graph's)",
        "W x act, full",
        "act x W, 8 patches per GEMM (full)",
    }
    triangle_bytes = 8 * sum((dims - lo) * (hi - lo) for lo, hi in pairwise(bounds))
    for label, (model, feed, size) in cases.items():
        got = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
        weights = {t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(model).graph.initializer}
        if label.startswith("one read"):
            assert size == triangle_bytes and got == feed["w"].max()
            continue
        if "per GEMM" in label:
            want = np.matmul(feed["a"].astype(np.int64) - 64, weights["q"].astype(np.int64))
        elif label.startswith("act x W"):
            cuts = bounds if "triangle" in label else [0, dims]
            a = feed["a"].astype(np.int64) - 64
            want = np.concatenate(
                [
                    a[:, :, lo:] @ weights[f"q{i}"].astype(np.int64)
                    for i, (lo, _) in enumerate(pairwise(cuts))
                ],
                2,
            )
        else:
            cuts = bounds if "triangle" in label else [0, dims]
            b = feed["b"].astype(np.int64)
            want = np.concatenate(
                [
                    (weights[f"q{i}"].astype(np.int64) - 128) @ b[:, lo:]
                    for i, (lo, _) in enumerate(pairwise(cuts))
                ],
                1,
            )
        np.testing.assert_array_equal(got, want, err_msg=label)
        if "triangle" in label:
            assert size == triangle_bytes
