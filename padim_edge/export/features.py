"""The truncated backbone: normalised frames in, the tapped feature maps out (shared by every method)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from padim_edge.spec import BackboneSpec


class FeatureExtractor(nn.Module):
    """The backbone cut after its deepest tapped stage; returns the tapped maps, shallowest first.

    Args:
        backbone: The full torchvision network (its later stages are dropped).
        spec: The backbone row; its three ``taps`` unless ``taps`` says otherwise.
        taps: A subset of ``spec.taps`` (e.g. PatchCore's mid-level ``spec.taps[1:]``), shallowest first.

    Raises:
        ValueError: ``taps`` is empty or names a module that is not one of ``spec.taps``.
    """

    def __init__(
        self, backbone: nn.Module, spec: BackboneSpec, *, taps: tuple[str, ...] | None = None
    ) -> None:
        super().__init__()
        taps = spec.taps if taps is None else tuple(taps)
        if not taps or any(t not in spec.taps for t in taps):
            raise ValueError(f"taps must be a non-empty subset of {spec.taps} for {spec.name}, got {taps}")
        self.taps = tuple(sorted(taps, key=spec.taps.index))
        self.body = create_feature_extractor(backbone, return_nodes={t: t for t in spec.taps})
        self.body.eval()
        for parameter in self.body.parameters():
            parameter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Normalised ``[N, 3, crop, crop]`` -> the tapped maps, shallowest first."""
        out = self.body(x)
        return [out[t] for t in self.taps]
