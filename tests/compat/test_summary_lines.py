"""The TensorRT lines of the padim-export / padim-calibrate summaries: one hint, or the full check."""

from __future__ import annotations

from pathlib import Path

from padim_edge.compat.check import TENSORRT_HINT, tensorrt_lines
from tests.conftest import TRT_SIZE


def test_a_default_model_gets_one_line_on_how_to_get_a_tensorrt_form(small_onnx: Path) -> None:
    assert tensorrt_lines(small_onnx, None) == [f"tensorrt      {TENSORRT_HINT}"]
    assert TENSORRT_HINT == (
        "not a TensorRT form (any frame size, antialiased resize); for TensorRT export with --target "
        "tensorrt --input-size HxW (the camera's frame size), then run padim-check on that model"
    )


def test_a_tensorrt_target_model_keeps_the_full_lines(small_trt_onnx: Path) -> None:
    assert tensorrt_lines(small_trt_onnx, TRT_SIZE) == [
        "tensorrt      TensorRT 8.5  ok",
        "tensorrt      TensorRT 8.6  ok",
        "tensorrt      TensorRT 10   ok",
        f"              built for input {TRT_SIZE[0]}x{TRT_SIZE[1]} frames only (the runtime refuses others)",
    ]
