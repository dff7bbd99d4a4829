"""The one preprocessing definition, shared by the fit and the exported graph.

uint8 frames ``[N, H, W, 3]`` of any size -> bilinear (antialiased) resize to ``resize x resize`` ->
center crop ``crop x crop`` -> ImageNet normalisation -> float32 ``[N, 3, crop, crop]``.
The fit calls this module; the exporter traces this same module into the graph. The crop geometry
itself is :class:`padim_edge.geometry.Geometry`, shared with the torch-free side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from padim_edge.geometry import Geometry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(nn.Module):
    """Resize, center-crop and normalise uint8 NHWC frames.

    Args:
        resize: Square edge every frame is resized to.
        crop: Edge of the center crop; the anomaly map has this size.
    """

    def __init__(self, *, resize: int = 256, crop: int = 224) -> None:
        super().__init__()
        self.geometry = Geometry(resize, crop)  # validates the pair
        self.resize = resize
        self.crop = crop
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        # (x / 255 - mean) / std == x * scale + shift
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``uint8 [N, H, W, 3]`` to normalised ``float32 [N, 3, crop, crop]``."""
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        x = F.interpolate(
            x, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=True
        )
        top = self.geometry.offset
        x = x[:, :, top : top + self.crop, top : top + self.crop]
        return x * self.scale + self.shift
