"""The truncated backbone: normalised frames in, the tapped feature maps out (shared by every method)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from padim_edge.spec import BackboneSpec


class FeatureExtractor(nn.Module):
    """The backbone cut after its third tapped stage; returns the three tapped maps.

    Args:
        backbone: The full torchvision network (its later stages are dropped).
        spec: Which modules to tap.
    """

    def __init__(self, backbone: nn.Module, spec: BackboneSpec) -> None:
        super().__init__()
        self.taps = spec.taps
        self.body = create_feature_extractor(backbone, return_nodes={t: t for t in spec.taps})
        self.body.eval()
        for parameter in self.body.parameters():
            parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised ``[N, 3, crop, crop]`` -> the three tapped maps, shallowest first."""
        out = self.body(x)
        return [out[t] for t in self.taps]
