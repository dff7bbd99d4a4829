"""Patch distances -> anomaly map and image score (PyTorch reference).

Bilinear upsampling to the crop, then a Gaussian blur (sigma 4, radius 4 sigma, reflect padding),
then the image score is the map's maximum. The exported graph folds the upsampling and the blur,
both separable linear maps, into one matrix ``K`` computed from this very module
(:func:`separable_operator`), so the two cannot drift apart.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SIGMA = 4.0


def gaussian_kernel1d(sigma: float, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Normalised 1-D Gaussian with radius ``int(4 sigma + 0.5)`` (as ``scipy.ndimage``)."""
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype)


class AnomalyMapGenerator(nn.Module):
    """Upsample patch distances to the crop, blur, and take the maximum.

    Args:
        crop: Output edge (the preprocessing crop).
        sigma: Gaussian blur sigma in output pixels.
    """

    def __init__(self, *, crop: int, sigma: float = SIGMA) -> None:
        super().__init__()
        self.crop = crop
        self.sigma = sigma
        kernel = gaussian_kernel1d(sigma)
        self.radius = (kernel.numel() - 1) // 2
        if self.radius >= crop:
            raise ValueError(f"blur radius {self.radius} must be smaller than the crop {crop}")
        self.register_buffer("kernel", kernel, persistent=False)

    def blur(self, maps: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian blur of ``[N, H, W]`` with reflect padding."""
        x = maps[:, None]
        k = self.kernel.to(x.dtype)
        x = F.conv2d(F.pad(x, (self.radius, self.radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
        x = F.conv2d(F.pad(x, (0, 0, self.radius, self.radius), mode="reflect"), k.view(1, 1, -1, 1))
        return x[:, 0]

    def forward(self, distances: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Distances ``[N, h, w]`` -> (anomaly map ``[N, crop, crop]``, score ``[N]``)."""
        up = F.interpolate(
            distances[:, None], size=(self.crop, self.crop), mode="bilinear", align_corners=False
        )
        anomaly_map = self.blur(up[:, 0])
        return anomaly_map, anomaly_map.amax(dim=(1, 2))


def separable_operator(generator: AnomalyMapGenerator, grid: int) -> torch.Tensor:
    """The ``[crop, grid]`` matrix ``K`` with ``blur(upsample(D)) == K @ D @ K.T`` for ``D [grid, grid]``.

    Both steps are separable and linear, so their composition is one matrix per axis. Feeding
    ``D = e_i 1^T`` gives ``K[:, i] (K 1)^T``; every row of ``K`` sums to one (upsampling and a
    normalised reflect-padded blur both preserve constants), so column 0 of the output is ``K[:, i]``.
    Computed in float64 from the reference module itself.
    """
    basis = torch.zeros(grid, grid, grid, dtype=torch.float64)
    basis[torch.arange(grid), torch.arange(grid), :] = 1.0
    with torch.no_grad():
        up = F.interpolate(
            basis[:, None], size=(generator.crop, generator.crop), mode="bilinear", align_corners=False
        )
        out = generator.blur(up[:, 0])
    operator = out[:, :, 0].T.contiguous()
    if not math.isclose(float(operator.sum(dim=1).mean()), 1.0, rel_tol=1e-9):
        raise AssertionError("upsample+blur operator does not preserve constants")
    return operator
