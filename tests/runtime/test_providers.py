"""The one device table and the session factory every command and benchmark opens models with."""

from __future__ import annotations

import click
import pytest

from padim_edge.runtime import ProviderError
from padim_edge.runtime import providers as providers_mod
from padim_edge.runtime.session import session_options


def test_providers_resolution(monkeypatch) -> None:
    assert providers_mod.resolve("cpu") == ["CPUExecutionProvider"]
    assert providers_mod.resolve("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="device must be one of"):
        providers_mod.resolve("tpu")
    monkeypatch.setattr(providers_mod, "available", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ProviderError, match=r"needs CUDAExecutionProvider.*padim-edge\[gpu\]"):
        providers_mod.resolve("cuda")
    monkeypatch.setattr(
        providers_mod,
        "available",
        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert providers_mod.resolve("auto") == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]


def test_every_command_offers_the_same_devices() -> None:
    from padim_edge.calibration.cli import main as calibrate_main
    from padim_edge.evaluation.cli import main as eval_main
    from padim_edge.runtime.cli import main as predict_main

    for command in (predict_main, eval_main, calibrate_main):
        (option,) = [p for p in command.params if p.name == "device"]
        assert isinstance(option.type, click.Choice)
        assert tuple(option.type.choices) == providers_mod.DEVICE_NAMES, command.name
    assert providers_mod.CONCRETE_DEVICES == ("cpu", "cuda", "tensorrt", "openvino", "openvino-bf16")
    assert providers_mod.available_devices()[0] == "cpu"


def test_session_options() -> None:
    options = session_options(3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert session_options(None).intra_op_num_threads == 0  # onnxruntime's default: all cores
    with pytest.raises(ValueError, match="threads must be >= 1"):
        session_options(0)


def test_default_provider_options_are_fp32() -> None:
    opts = providers_mod.provider_options(
        ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    assert opts[0] == {"trt_fp16_enable": False, "trt_int8_enable": False}
    assert opts[2] == {}
