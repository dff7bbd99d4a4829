"""The device names every command accepts, and the onnxruntime providers each asks for (pure data).

:mod:`padim_edge.runtime.providers` resolves them against the installed onnxruntime; command-line
options take their choices and help text from here, so ``--help`` works without onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass

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
