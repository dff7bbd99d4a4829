"""What a method's PyTorch module gives the exporter: the contract PaDiM and its siblings implement.

Every method shares the graph's frame: uint8 frames -> :class:`~padim_edge.export.preprocessing.Preprocess`
-> truncated backbone -> the method's reducer (traced, so the deployed graph and the fit share one
definition) -> the method's head (built directly in ONNX from numpy constants) -> the shared anomaly
map (:mod:`padim_edge.export.graph_map`). A method lives in its own sub-package
(:mod:`padim_edge.export.padim`, ...) and exposes an ``nn.Module`` with the members of
:class:`AnomalyMethod`; the exporter, the fit pipeline and the benchmarks use nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from onnx import NodeProto, TensorProto
from torch import nn

from padim_edge.export.anomaly_map import AnomalyMapGenerator
from padim_edge.export.preprocessing import Preprocess


@dataclass
class HeadGraph:
    """A method head's ONNX nodes.

    Attributes:
        nodes: The head's nodes (names prefixed ``padim_head/``).
        initializers: Its constants.
        distance: Name of the ``[N, grid, grid]`` float32 patch-distance tensor the anomaly map is made of.
        score: Name of a ``[N]`` image-score tensor the head computes itself, or ``None`` for the default,
            the anomaly map's maximum.
        metadata: Metadata keys the head sets about itself (e.g. ``head_precision``).
    """

    nodes: list[NodeProto]
    initializers: list[TensorProto]
    distance: str
    score: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class AnomalyMethod(Protocol):
    """The members a method's module has (see :class:`padim_edge.export.padim.model.PadimModule`).

    Attributes:
        method: The method's name, recorded in the model's metadata (``padim``).
        config: Its configuration (``spec``, ``dims``, ``resize``, ``crop``, ``seed``, ``sigma``).
        grid: Patch grid edge.
        preprocess: The one preprocessing definition.
        features: The truncated backbone.
        reducer: Tapped maps -> embedding ``[N, dims, grid, grid]`` (traced into the graph).
        anomaly_map: The reference upsample + blur (its operator goes into the graph).
    """

    method: str
    config: Any
    grid: int
    preprocess: Preprocess
    features: nn.Module
    reducer: nn.Module
    anomaly_map: AnomalyMapGenerator

    @property
    def fitted(self) -> bool:
        """Whether the head's constants exist."""
        ...

    def head_graph(self, embedding: str, **options: Any) -> HeadGraph:
        """The head's nodes reading the embedding tensor ``embedding`` (``options``: method-specific)."""
        ...

    def metadata(self) -> dict[str, object]:
        """Method-specific metadata keys (see :data:`padim_edge.metadata.KEYS`)."""
        ...


class FrameEmbedding:
    """uint8 frames -> embedding, for a method module with ``preprocess``, ``features`` and ``reducer``.

    The one path every method's fit takes from camera frames to its embedding, so the fit and the
    traced graph go through the same modules.
    """

    preprocess: Preprocess
    features: nn.Module
    reducer: nn.Module

    def frames_to_tensor(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """Preprocess frames of any sizes into one normalised ``[N, 3, crop, crop]`` batch."""
        device = self.preprocess.scale.device
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return self.preprocess(torch.from_numpy(images).to(device))
        return torch.cat(
            [self.preprocess(torch.from_numpy(np.asarray(im))[None].to(device)) for im in images]
        )

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised frames ``[N, 3, crop, crop]`` -> embedding ``[N, dims, grid, grid]``."""
        return self.reducer(self.features(frames))

    def embed(self, images: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
        """uint8 frames -> embedding ``[N, dims, grid, grid]``."""
        return self.embed_frames(self.frames_to_tensor(images))
