"""Parity: the exported graph, run by the torch-free runtime, against the PyTorch module it came from.

:func:`padim_edge.export.pipeline.export` runs :func:`check_parity` on the staged file before it
replaces anything at the output path, and raises :class:`ParityError` (keeping the old model) when the
graph does not reproduce the module within the head precision's tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from padim_edge.export.method import AnomalyMethod

__all__ = [
    "PARITY_ATOL",
    "PARITY_RTOL",
    "PARITY_RTOL_BY_PRECISION",
    "Parity",
    "ParityError",
    "check_parity",
]

#: Parity tolerance: ``max |ONNX - PyTorch| <= RTOL * max score + ATOL``. The absolute floor keeps
#: degenerate fits (identical training images, scores near 0, Sigma^-1 near 100 I) from failing on
#: float32 noise, which Sigma^-1 amplifies up to 10x in distance units.
PARITY_RTOL = 1e-4
PARITY_ATOL = 1e-3
#: The relative part of the tolerance for each head precision: the float32 head must reproduce the
#: PyTorch module; the compact heads carry their stated error (see
#: :mod:`padim_edge.export.padim.compact_head`) into the maps and scores. Measured worst cases, relative
#: to the largest score: fp16 about 1e-4, int8 about 4e-3 (small random-init models and MobileNetV2 on
#: magnetic tile, ``tests/export/test_compact_head.py``); the tolerances leave room above them.
PARITY_RTOL_BY_PRECISION = {"fp32": PARITY_RTOL, "fp16": 2e-3, "int8": 3e-2}


@dataclass(frozen=True)
class Parity:
    """ONNX Runtime vs PyTorch on a few training images.

    Attributes:
        images: Images compared.
        max_abs_score: Largest absolute score difference.
        max_abs_map: Largest absolute anomaly-map difference.
        max_score: Largest PyTorch score (the scale the differences are relative to).
        rtol: The relative part of the tolerance (it depends on the head's precision).
    """

    images: int
    max_abs_score: float
    max_abs_map: float
    max_score: float
    rtol: float = PARITY_RTOL
    atol: float = PARITY_ATOL

    @property
    def max_abs(self) -> float:
        """Worst absolute difference, scores or maps."""
        return max(self.max_abs_score, self.max_abs_map)

    @property
    def tolerance(self) -> float:
        """The largest difference accepted: ``rtol * max score + atol``."""
        return self.rtol * abs(self.max_score) + self.atol

    @property
    def relative(self) -> float:
        """Worst difference relative to the largest score."""
        return self.max_abs / max(abs(self.max_score), 1e-12)

    @property
    def ok(self) -> bool:
        """Whether the graph reproduces the PyTorch module within :attr:`tolerance`."""
        return self.max_abs <= self.tolerance


class ParityError(RuntimeError):
    """The exported graph does not reproduce the PyTorch module; nothing was written."""

    def __init__(self, parity: Parity) -> None:
        super().__init__(
            f"the exported graph does not reproduce the PyTorch model: max difference {parity.max_abs:.3g} "
            f"> tolerance {parity.tolerance:.3g} (max score {parity.max_score:.4g}); nothing was written"
        )
        self.parity = parity


def check_parity(
    model: AnomalyMethod,
    onnx_path: Path,
    images: list[np.ndarray],
    *,
    head_precision: str = "fp32",
    atol: float = PARITY_ATOL,
) -> Parity:
    """Score ``images`` with the PyTorch module and with the exported file through the runtime.

    The tolerance is the head precision's (:data:`PARITY_RTOL_BY_PRECISION`).
    """
    from padim_edge.runtime import PadimModel

    runtime = PadimModel(onnx_path, device="cpu")
    torch_maps, torch_scores = model.score_frames(images)
    predictions = runtime.predict(images)
    onnx_scores = np.array([p.score for p in predictions])
    onnx_maps = np.stack([p.anomaly_map for p in predictions])
    return Parity(
        images=len(images),
        max_abs_score=float(np.abs(onnx_scores - torch_scores).max()),
        max_abs_map=float(np.abs(onnx_maps - torch_maps).max()),
        max_score=float(torch_scores.max()),
        rtol=PARITY_RTOL_BY_PRECISION[head_precision],
        atol=atol,
    )
