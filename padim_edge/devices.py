"""The device names every command accepts, and the runtime (providers) each asks for (pure data).

:mod:`padim_edge.runtime.providers` resolves them against the installed onnxruntime (and openvino);
command-line options take their choices and help text from here, so ``--help`` works without either.
``openvino`` is not an onnxruntime provider: it runs the graph on OpenVINO's own CPU plugin
(:mod:`padim_edge.runtime.openvino`). ``auto`` stays onnxruntime's best provider: it never picks
OpenVINO, whose INT8 / bf16 gains need a CPU this table cannot see (VNNI, AMX), and whose fp32 is not
faster than onnxruntime's CPU EP on AVX2 machines.
"""

from __future__ import annotations

from dataclasses import dataclass

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
#: What ``PadimModel.providers`` lists for the OpenVINO backend (not an onnxruntime provider).
OPENVINO_CPU = "OpenVINO-CPU"
#: :attr:`Device.backend` values.
ONNXRUNTIME, OPENVINO = "onnxruntime", "openvino"


@dataclass(frozen=True)
class Device:
    """A device name users pass, and the onnxruntime providers it asks for, best first.

    Attributes:
        name: ``auto``, ``cpu``, ``cuda``, ``tensorrt`` or ``openvino``.
        providers: Providers to open a session with; the first is the one the name promises, the
            others take the nodes it cannot (the CPU EP behind the GPU ones).
        help: One line for ``--help``.
        backend: ``onnxruntime`` or ``openvino`` (the runtime that runs the graph).
        precision: OpenVINO's inference precision (``fp32``, or ``bf16`` for ``openvino-bf16``).
    """

    name: str
    providers: tuple[str, ...]
    help: str
    backend: str = ONNXRUNTIME
    precision: str = "fp32"

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
        Device(
            "openvino",
            (OPENVINO_CPU,),
            "OpenVINO's CPU plugin, float32 (pip install 'padim-edge[openvino]')",
            backend=OPENVINO,
        ),
        Device(
            "openvino-bf16",
            (OPENVINO_CPU,),
            "OpenVINO in bf16, opt-in: CPUs with AVX512-BF16 / AMX, PaDiM scores move by about 1 %, "
            "refused for PatchCore",
            backend=OPENVINO,
            precision="bf16",
        ),
    )
}
#: ``click.Choice`` values of every ``--device`` option that runs a model.
DEVICE_NAMES = tuple(DEVICES)
#: Devices a benchmark can measure one by one.
CONCRETE_DEVICES = tuple(name for name, device in DEVICES.items() if device.concrete)
#: Devices that open an onnxruntime session (:func:`padim_edge.runtime.session.open_session`).
ORT_DEVICES = tuple(name for name, device in DEVICES.items() if device.backend == ONNXRUNTIME)
#: Devices OpenVINO runs (not onnxruntime): only whole padim-edge models, through ``PadimModel``.
OPENVINO_DEVICES = tuple(name for name, device in DEVICES.items() if device.backend == OPENVINO)
#: Devices that run on the CPU and take ``--threads``.
CPU_DEVICES = ("cpu", *OPENVINO_DEVICES)
#: ``--device`` help text shared by the commands.
DEVICE_HELP = "Execution provider. " + "; ".join(f"{d.name}: {d.help}" for d in DEVICES.values()) + "."
#: OpenVINO inference precisions (``INFERENCE_PRECISION_HINT``): fp32 unless bf16 is asked for.
OPENVINO_PRECISIONS = ("fp32", "bf16")
#: ``/proc/cpuinfo`` flags of x86 CPUs with bf16 arithmetic (OpenVINO's CPU plugin runs bf16 on them).
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
