"""Devices and execution providers: the one table of device names, and the options each provider gets.

Every command's ``--device`` choice and every session the toolkit opens come from :data:`DEVICES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import onnxruntime as ort

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class Device:
    """A device name users pass, and the onnxruntime providers it asks for, best first.

    Attributes:
        name: ``auto``, ``cpu``, ``cuda`` or ``tensorrt``.
        providers: Providers to open a session with; the first is the one the name promises, the
            others take the nodes it cannot (the CPU EP behind the GPU ones).
        help: One line for ``--help``.
    """

    name: str
    providers: tuple[str, ...]
    help: str

    @property
    def concrete(self) -> bool:
        """Whether the name means one provider (``auto`` does not)."""
        return self.name != "auto"


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device(
            "auto", (TENSORRT, CUDA, CPU), "the best this onnxruntime build has: TensorRT, CUDA, then CPU"
        ),
        Device("cpu", (CPU,), "onnxruntime's CPU execution provider"),
        Device("cuda", (CUDA, CPU), "the CUDA execution provider (onnxruntime-gpu)"),
        Device(
            "tensorrt", (TENSORRT, CUDA, CPU), "the TensorRT execution provider (onnxruntime-gpu + TensorRT)"
        ),
    )
}
#: ``click.Choice`` values of every ``--device`` option that runs a model.
DEVICE_NAMES = tuple(DEVICES)
#: Devices a benchmark can measure one by one.
CONCRETE_DEVICES = tuple(name for name, device in DEVICES.items() if device.concrete)
#: ``--device`` help text shared by the commands.
DEVICE_HELP = "Execution provider. " + "; ".join(f"{d.name}: {d.help}" for d in DEVICES.values()) + "."


class ProviderError(RuntimeError):
    """The requested device is not available in this onnxruntime build or machine."""


def available() -> list[str]:
    """Providers this onnxruntime build offers."""
    return list(ort.get_available_providers())


def available_devices() -> list[str]:
    """Concrete devices whose provider this onnxruntime build has, CPU first."""
    have = set(available())
    return [name for name in CONCRETE_DEVICES if DEVICES[name].providers[0] in have]


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
