"""The deployment targets ``padim-check`` knows: TensorRT 8.5 / 8.6 / 10 and onnxruntime 1.16 / 1.17 / 1.18.

Limits come from the parsers' and runtimes' own documents (sources in docs/edge-targets.md):

* TensorRT 8.5: "supports operators up to Opset 17" (onnx-tensorrt docs/operators.md, 8.5); JetPack 5.1.
* TensorRT 8.6: opset 17 per NVIDIA's DLA operator document (the parser repository's 8.6 table was not
  read: unverified); JetPack 6.0 (unverified pairing).
* TensorRT 10: "opset 9 to opset 20" (operators.md, 10.0; later 10.x minors accept more); JetPack 6.1 /
  6.2 ship 10.3, whose own table was not read (unverified).
* onnxruntime 1.16 / 1.17 / 1.18: max ai.onnx opset 19 / 20 / 21 and max IR version 9 / 9 / 10
  (onnxruntime's compatibility table). 1.16 is JetPack 5's last Jetson wheel.
"""

from __future__ import annotations

from dataclasses import dataclass

TENSORRT = "tensorrt"
ONNXRUNTIME = "onnxruntime"


@dataclass(frozen=True)
class Target:
    """One runtime a model may be deployed on.

    Attributes:
        engine: ``tensorrt`` or ``onnxruntime``.
        version: ``8.5``, ``1.16``...
        min_opset: Lowest documented ai.onnx opset.
        max_opset: Highest documented ai.onnx opset.
        max_ir: Highest IR version it loads (``None``: not a limit of this engine).
        where: Where users meet it (JetPack release, onnxruntime-gpu build).
    """

    engine: str
    version: str
    min_opset: int
    max_opset: int
    max_ir: int | None
    where: str

    @property
    def name(self) -> str:
        """``tensorrt-8.5``, ``onnxruntime-1.16``."""
        return f"{self.engine}-{self.version}"

    @property
    def tensorrt(self) -> bool:
        """Whether this is a TensorRT target."""
        return self.engine == TENSORRT


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(TENSORRT, "8.5", 7, 17, None, "JetPack 5.1 (TensorRT 8.5.2)"),
        Target(TENSORRT, "8.6", 7, 17, None, "JetPack 6.0; onnxruntime-gpu 1.16 / 1.17 builds"),
        Target(TENSORRT, "10", 9, 20, None, "JetPack 6.1 / 6.2 (TensorRT 10.3); onnxruntime-gpu >= 1.18"),
        Target(ONNXRUNTIME, "1.16", 1, 19, 9, "JetPack 5's last Jetson wheel (Python 3.8)"),
        Target(ONNXRUNTIME, "1.17", 1, 20, 9, "onnxruntime 1.17.x"),
        Target(ONNXRUNTIME, "1.18", 1, 21, 10, "onnxruntime 1.18.x"),
    )
}
TENSORRT_VERSIONS = tuple(t.version for t in TARGETS.values() if t.tensorrt)
ONNXRUNTIME_VERSIONS = tuple(t.version for t in TARGETS.values() if not t.tensorrt)
TENSORRT_TARGETS = tuple(name for name, t in TARGETS.items() if t.tensorrt)


def target(engine: str, version: str) -> Target:
    """The target ``engine-version`` (``10.3`` and ``10`` both mean TensorRT 10).

    Raises:
        ValueError: Not a known target.
    """
    if engine == TENSORRT and version.startswith("10"):
        version = "10"
    name = f"{engine}-{version}"
    if name not in TARGETS:
        known = TENSORRT_VERSIONS if engine == TENSORRT else ONNXRUNTIME_VERSIONS
        raise ValueError(f"unknown {engine} version {version!r}; known: {', '.join(known)}")
    return TARGETS[name]
