"""Mahalanobis distance per patch: the PyTorch reference of the graph's head.

The exported graph computes the same quantity with a faster op layout (see
:mod:`padim_edge.export.graph_head`); this module is what the fit path scores with and what parity
tests compare the graph against.
"""

from __future__ import annotations

import torch
from torch import nn


class MahalanobisDistance(nn.Module):
    """``sqrt((x - mu)^T Sigma^-1 (x - mu))`` at every patch position.

    Args:
        mean: ``[P, d]`` per-patch means.
        inv_covariance: ``[P, d, d]`` per-patch inverse covariances.
    """

    def __init__(self, mean: torch.Tensor, inv_covariance: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("inv_covariance", inv_covariance)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """Embedding ``[N, d, h, w]`` -> distances ``[N, h, w]``."""
        n, _, h, w = embedding.shape
        delta = embedding.flatten(2).permute(2, 0, 1) - self.mean[:, None, :]  # [P, N, d]
        squared = torch.einsum("pnd,pde,pne->pn", delta, self.inv_covariance, delta)
        return squared.clamp_min(0).sqrt().T.reshape(n, h, w)
