"""The PaDiM model in PyTorch: preprocessing, truncated backbone, reduction, Gaussians, anomaly map."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from padim_edge.export.anomaly_map import SIGMA, AnomalyMapGenerator
from padim_edge.export.features import FeatureExtractor
from padim_edge.export.method import FrameEmbedding, HeadGraph
from padim_edge.export.padim.graph_head import (
    DEFAULT_BLOCKS,
    DEFAULT_PRECISION,
    check_precision,
    mahalanobis_nodes,
)
from padim_edge.export.padim.mahalanobis import MahalanobisDistance
from padim_edge.export.padim.reduction import make_reducer
from padim_edge.export.padim.settings import DEFAULT_REDUCTION
from padim_edge.export.preprocessing import Preprocess
from padim_edge.spec import BackboneSpec


@dataclass(frozen=True)
class PadimConfig:
    """Everything that shapes a PaDiM model besides the backbone weights.

    Attributes:
        spec: Backbone row from :data:`padim_edge.spec.BACKBONES`.
        dims: Embedding channels after the reduction.
        resize: Square resize edge.
        crop: Center-crop edge.
        seed: Seed of the channel subset (or projection).
        sigma: Anomaly-map blur sigma.
        reduction: ``select`` (random channel subset) or ``orthogonal`` (semi-orthogonal projection).
    """

    spec: BackboneSpec
    dims: int
    resize: int = 256
    crop: int = 224
    seed: int = 0
    sigma: float = SIGMA
    reduction: str = DEFAULT_REDUCTION


class PadimModule(FrameEmbedding, nn.Module):
    """PaDiM end to end, uint8 frames in, anomaly maps and scores out.

    Before :meth:`set_gaussians` the model can embed (that is what the fit does) but not score.

    Args:
        backbone: Full torchvision network with its weights.
        config: Model configuration.
    """

    method = "padim"

    def __init__(self, backbone: nn.Module, config: PadimConfig) -> None:
        super().__init__()
        self.config = config
        self.preprocess = Preprocess(resize=config.resize, crop=config.crop)
        self.features = FeatureExtractor(backbone, config.spec)
        self.reducer, self.indices = make_reducer(
            config.reduction, config.spec.channels, config.dims, config.seed
        )
        self.anomaly_map = AnomalyMapGenerator(crop=config.crop, sigma=config.sigma)
        self.mahalanobis: MahalanobisDistance | None = None
        self.grid = self._grid_size()
        self.eval()

    def _grid_size(self) -> int:
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.config.crop, self.config.crop)
            return int(self.features(probe)[0].shape[-1])

    @property
    def fitted(self) -> bool:
        """Whether :meth:`set_gaussians` installed the Gaussians."""
        return self.mahalanobis is not None

    def head_graph(
        self, embedding: str, *, blocks: int = DEFAULT_BLOCKS, precision: str = DEFAULT_PRECISION
    ) -> HeadGraph:
        """The Mahalanobis head in ONNX against the fitted constants (see :mod:`.graph_head`).

        Args:
            embedding: Name of the embedding tensor the head reads.
            blocks: Column blocks of the packed symmetric Sigma^-1.
            precision: ``fp32``, ``fp16`` or ``int8`` (recorded as the model's ``head_precision``).
        """
        if self.mahalanobis is None:
            raise RuntimeError("fit the model before exporting it")
        nodes, inits, distance = mahalanobis_nodes(
            embedding,
            self.mahalanobis.mean.cpu().numpy(),
            self.mahalanobis.inv_covariance.cpu().numpy(),
            grid=self.grid,
            blocks=blocks,
            precision=check_precision(precision),
        )
        return HeadGraph(nodes, inits, distance, metadata={"head_precision": precision})

    def metadata(self) -> dict[str, object]:
        """PaDiM's own metadata keys: channels before the reduction, the reduction, the kept indices."""
        values: dict[str, object] = {
            "channels": self.config.spec.total_channels,
            "reduction": self.config.reduction,
        }
        if self.indices is not None:
            values["channel_indices"] = [int(i) for i in self.indices]
        return values

    @property
    def patches(self) -> int:
        """Patch positions per image."""
        return self.grid * self.grid

    def set_gaussians(
        self, mean: torch.Tensor | np.ndarray, inv_covariance: torch.Tensor | np.ndarray
    ) -> None:
        """Install the fitted per-patch means ``[P, d]`` and inverse covariances ``[P, d, d]`` (float32)."""
        mean = torch.as_tensor(mean, dtype=torch.float32)
        inv_covariance = torch.as_tensor(inv_covariance, dtype=torch.float32)
        expected = (self.patches, self.config.dims)
        if tuple(mean.shape) != expected or tuple(inv_covariance.shape) != (*expected, self.config.dims):
            raise ValueError(f"Gaussians of shape {tuple(mean.shape)} do not fit the model {expected}")
        device = self.preprocess.scale.device
        self.mahalanobis = MahalanobisDistance(mean.to(device), inv_covariance.to(device))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``[N, H, W, 3]`` -> (anomaly map ``[N, crop, crop]``, score ``[N]``)."""
        if self.mahalanobis is None:
            raise RuntimeError("the model is not fitted yet")
        distances = self.mahalanobis(self.embed_frames(self.preprocess(images)))
        return self.anomaly_map(distances)

    def score_frames(self, images: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score uint8 frames of any sizes; returns numpy (maps, scores)."""
        if self.mahalanobis is None:
            raise RuntimeError("the model is not fitted yet")
        with torch.inference_mode():
            maps, scores = self.anomaly_map(self.mahalanobis(self.embed(images)))
        return maps.cpu().numpy(), scores.cpu().numpy()
