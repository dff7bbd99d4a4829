"""Execution providers: which onnxruntime backends a device name means, with fallbacks."""

from __future__ import annotations

from typing import Any

import onnxruntime as ort

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

#: device name -> providers to ask for, best first. ``auto`` takes those this build has.
DEVICES: dict[str, tuple[str, ...]] = {
    "auto": (TENSORRT, CUDA, CPU),
    "tensorrt": (TENSORRT, CUDA, CPU),
    "cuda": (CUDA, CPU),
    "cpu": (CPU,),
}


class ProviderError(RuntimeError):
    """The requested device is not available in this onnxruntime build or machine."""


def available() -> list[str]:
    """Providers this onnxruntime build offers."""
    return list(ort.get_available_providers())


def resolve(device: str) -> list[str]:
    """Providers to open a session with for ``device``.

    ``auto`` keeps the available ones of TensorRT, CUDA, CPU in that order. An explicit ``cuda`` or
    ``tensorrt`` must be available (no silent fall back to the CPU); the CPU EP is kept behind it for
    the few nodes a GPU provider may not take.

    Raises:
        ValueError: Unknown device name.
        ProviderError: The explicit device's provider is missing from this build.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    have = set(available())
    wanted = DEVICES[device]
    if device != "auto" and wanted[0] not in have:
        hint = (
            "install the GPU build (pip install 'padim-edge[gpu]', which brings onnxruntime-gpu "
            "instead of onnxruntime)"
            if device in ("cuda", "tensorrt")
            else ""
        )
        raise ProviderError(
            f"device {device!r} needs {wanted[0]}, which this onnxruntime {ort.__version__} build lacks "
            f"(it has {', '.join(sorted(have))}); {hint}".rstrip("; ")
        )
    return [p for p in wanted if p in have]


def provider_options(providers: list[str]) -> list[dict[str, Any]]:
    """Per-provider options: fp32 everywhere (the graph decides its own precision)."""
    options: dict[str, dict[str, Any]] = {
        TENSORRT: {"trt_fp16_enable": False, "trt_int8_enable": False},
        CUDA: {"cudnn_conv_algo_search": "HEURISTIC"},
        CPU: {},
    }
    return [options[p] for p in providers]
