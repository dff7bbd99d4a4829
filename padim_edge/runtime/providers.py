"""Execution providers: resolving a device name against this onnxruntime build, and provider options.

The device table itself is :data:`padim_edge.devices.DEVICES` (pure data, so ``--help`` needs no
onnxruntime); every session the toolkit opens resolves its device here.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import onnxruntime as ort

from padim_edge.devices import (  # noqa: F401  (re-exported: the runtime's view of the table)
    BF16_CPU_FLAGS,
    CONCRETE_DEVICES,
    CPU,
    CUDA,
    DEVICE_HELP,
    DEVICE_NAMES,
    DEVICES,
    OPENVINO,
    OPENVINO_CPU,
    ORT_DEVICES,
    TENSORRT,
    Device,
)


class ProviderError(RuntimeError):
    """The requested device is not available in this onnxruntime build or machine."""


def available() -> list[str]:
    """Providers this onnxruntime build offers."""
    return list(ort.get_available_providers())


def openvino_installed() -> bool:
    """Whether the ``openvino`` package can be imported (without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def cpu_has_bf16() -> bool:
    """Whether this CPU lists a bf16 flag in ``/proc/cpuinfo`` (``False`` where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as stream:
            flags = set(stream.read().split())
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def available_devices() -> list[str]:
    """Concrete devices this install can run: onnxruntime's providers, CPU first, then OpenVINO's
    (``openvino-bf16`` only on a CPU with bf16)."""
    have = set(available())
    if openvino_installed():
        have.add(OPENVINO_CPU)
    return [
        name
        for name in CONCRETE_DEVICES
        if DEVICES[name].providers[0] in have and (DEVICES[name].precision != "bf16" or cpu_has_bf16())
    ]


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
    if DEVICES[device].backend == OPENVINO:
        raise ValueError(
            f"device {device!r} is not an onnxruntime provider: open the model with "
            f"PadimModel(path, device={device!r}) (choose from {', '.join(ORT_DEVICES)} for a session)"
        )
    have = set(available())
    wanted = DEVICES[device].providers
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


def provider_options(providers: list[str], *, tensorrt: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per-provider options, in the order of ``providers``.

    Args:
        providers: Providers from :func:`resolve`.
        tensorrt: TensorRT EP options (precision flags, caches, profiles); default: float32, no caches.
    """
    options: dict[str, dict[str, Any]] = {
        TENSORRT: dict(tensorrt)
        if tensorrt is not None
        else {"trt_fp16_enable": False, "trt_int8_enable": False},
        CUDA: {"cudnn_conv_algo_search": "HEURISTIC"},
        CPU: {},
    }
    return [options[p] for p in providers]
