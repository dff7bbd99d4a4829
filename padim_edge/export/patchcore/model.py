"""The PatchCore model in PyTorch: preprocessing, mid-level taps, aggregation, memory bank, anomaly map."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from padim_edge.export.anomaly_map import SIGMA, AnomalyMapGenerator
from padim_edge.export.features import FeatureExtractor
from padim_edge.export.method import FrameEmbedding, HeadGraph
from padim_edge.export.padim.settings import DEFAULT_PRECISION
from padim_edge.export.patchcore import settings
from padim_edge.export.patchcore.aggregation import PatchAggregator
from padim_edge.export.patchcore.graph_head import nearest_neighbour_nodes
from padim_edge.export.patchcore.nearest import NearestNeighbourScorer
from padim_edge.export.preprocessing import Preprocess
from padim_edge.spec import BackboneSpec


@dataclass(frozen=True)
class PatchCoreConfig:
    """Everything that shapes a PatchCore model besides the backbone weights and the bank.

    Attributes:
        spec: Backbone row from :data:`padim_edge.spec.BACKBONES` (PatchCore taps its last two stages).
        dims: Embedding channels after the channel pooling.
        resize: Square resize edge.
        crop: Center-crop edge.
        seed: Seed of the coreset projection and first pick (and of a random-init backbone).
        sigma: Anomaly-map blur sigma.
        coreset: Fraction of the training patch features kept in the bank.
        neighbours: ``b``, the bank neighbours of ``m*`` in the re-weighted score.
        projection_dims: Johnson-Lindenstrauss dimension of the coreset selection.
    """

    spec: BackboneSpec
    dims: int
    resize: int = 256
    crop: int = 224
    seed: int = 0
    sigma: float = SIGMA
    coreset: float = settings.DEFAULT_CORESET
    neighbours: int = settings.NEIGHBOURS
    projection_dims: int = settings.PROJECTION_DIMS

    @property
    def taps(self) -> tuple[str, ...]:
        """The mid-level taps: the last two of the backbone row."""
        return self.spec.taps[1:]

    @property
    def tap_channels(self) -> tuple[int, ...]:
        """Channels of :attr:`taps`."""
        return self.spec.channels[1:]


@dataclass
class BankInfo:
    """How the installed bank was made (recorded in the metadata).

    Attributes:
        train_vectors: Patch feature vectors of the training images.
        selection: How the coreset was selected (``mode`` ``exact`` or ``streaming``, chunk, oversample).
    """

    train_vectors: int = 0
    selection: dict[str, object] = field(default_factory=dict)


class PatchCoreModule(FrameEmbedding, nn.Module):
    """PatchCore end to end, uint8 frames in, anomaly maps and scores out.

    Before :meth:`set_bank` the model can embed (that is what the fit does) but not score.

    Args:
        backbone: Full torchvision network with its weights.
        config: Model configuration.
    """

    method = "patchcore"

    def __init__(self, backbone: nn.Module, config: PatchCoreConfig) -> None:
        super().__init__()
        if config.dims < 1:
            raise ValueError(f"dims must be >= 1, got {config.dims}")
        self.config = config
        self.preprocess = Preprocess(resize=config.resize, crop=config.crop)
        self.features = FeatureExtractor(backbone, config.spec, taps=config.taps)
        self.reducer = PatchAggregator(config.tap_channels, config.dims)
        self.anomaly_map = AnomalyMapGenerator(crop=config.crop, sigma=config.sigma)
        self.scorer: NearestNeighbourScorer | None = None
        self.bank_info = BankInfo()
        self.grid = self._grid_size()
        self.eval()

    def _grid_size(self) -> int:
        with torch.no_grad():
            probe = torch.zeros(1, 3, self.config.crop, self.config.crop)
            return int(self.features(probe)[0].shape[-1])

    @property
    def patches(self) -> int:
        """Patch positions per image."""
        return self.grid * self.grid

    @property
    def fitted(self) -> bool:
        """Whether :meth:`set_bank` installed a memory bank."""
        return self.scorer is not None

    def head_graph(self, embedding: str, *, precision: str = DEFAULT_PRECISION) -> HeadGraph:
        """The nearest-neighbour head in ONNX against the bank (see :mod:`.graph_head`).

        ``precision``: the bank's storage and ranking MatMul, ``fp32``, ``fp16`` or ``int8`` (recorded as
        the model's ``head_precision``; see :mod:`.compact_bank`).
        """
        if self.scorer is None:
            raise RuntimeError("fit the model before exporting it")
        nodes, inits, distance, score = nearest_neighbour_nodes(
            embedding,
            self.scorer.bank.cpu().numpy(),
            self.scorer.table.cpu().numpy(),
            grid=self.grid,
            precision=precision,
        )
        return HeadGraph(nodes, inits, distance, score=score, metadata={"head_precision": precision})

    def metadata(self) -> dict[str, object]:
        """PatchCore's metadata keys: taps, channels, coreset fraction, bank size, neighbours, selection."""
        config = self.config
        values: dict[str, object] = {
            "taps": list(config.taps),
            "channels": sum(config.tap_channels),
            "coreset": config.coreset,
            "neighbours": config.neighbours,
            "projection_dims": config.projection_dims,
        }
        if self.scorer is not None:
            values["bank_size"] = int(self.scorer.bank.shape[0])
            values["coreset_selection"] = {
                "train_vectors": self.bank_info.train_vectors,
                **self.bank_info.selection,
            }
        return values

    def set_bank(
        self,
        bank: torch.Tensor | np.ndarray,
        table: torch.Tensor | np.ndarray,
        *,
        info: BankInfo | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        """Install the memory bank ``[M, dims]`` and its neighbour table ``[M, b]``.

        ``dtype``: the scorer's arithmetic, float64 (the reference the graph is checked against) or
        float32 (an eager twin for latency comparisons).

        Raises:
            ValueError: The bank does not have ``dims`` columns, or the table does not fit it.
        """
        bank = torch.as_tensor(bank, dtype=torch.float32)
        table = torch.as_tensor(table, dtype=torch.int64)
        if bank.ndim != 2 or bank.shape[1] != self.config.dims or bank.shape[0] < 1:
            raise ValueError(
                f"bank of shape {tuple(bank.shape)} does not fit the model's {self.config.dims} dims"
            )
        expected_b = min(self.config.neighbours, bank.shape[0])
        if tuple(table.shape) != (bank.shape[0], expected_b):
            raise ValueError(
                f"neighbour table {tuple(table.shape)} does not fit {(bank.shape[0], expected_b)}"
            )
        device = self.preprocess.scale.device
        self.scorer = NearestNeighbourScorer(bank.to(device), table.to(device), dtype=dtype)
        self.bank_info = info or BankInfo()

    def _score(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.scorer is None:
            raise RuntimeError("the model is not fitted yet")
        distances, scores = self.scorer(embedding)
        maps, _ = self.anomaly_map(distances)
        return maps.to(torch.float32), scores.to(torch.float32)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 ``[N, H, W, 3]`` -> (anomaly map ``[N, crop, crop]``, re-weighted score ``[N]``)."""
        return self._score(self.embed_frames(self.preprocess(images)))

    def score_frames(self, images: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score uint8 frames of any sizes; returns numpy (maps, scores)."""
        with torch.inference_mode():
            maps, scores = self._score(self.embed(images))
        return maps.cpu().numpy(), scores.cpu().numpy()
