"""Per-patch Gaussian statistics, accumulated in a stream with bounded memory.

Memory is set by the model (``patches x dims x dims`` float64), never by the number of images: each
batch is folded into a running mean and scatter matrix with the pairwise update of Chan, Golub and
LeVeque (1979), which stays accurate where the naive ``E[xx^T] - mu mu^T`` loses digits.
"""

from __future__ import annotations

import torch

#: PaDiM's covariance regulariser: Sigma = sample covariance + EPSILON * I.
EPSILON = 0.01


class GaussianAccumulator:
    """Running per-patch mean and scatter matrix in float64.

    Args:
        patches: Patch positions (h * w).
        dims: Embedding channels.
        device: Where the accumulators live (the fit device).
        chunk: Patches updated at a time, which bounds the temporary memory of one update.
    """

    def __init__(
        self, patches: int, dims: int, *, device: torch.device | str = "cpu", chunk: int = 512
    ) -> None:
        self.count = 0
        self.chunk = chunk
        self.mean = torch.zeros(patches, dims, dtype=torch.float64, device=device)
        self.scatter = torch.zeros(patches, dims, dims, dtype=torch.float64, device=device)

    def update(self, embedding: torch.Tensor) -> None:
        """Fold a batch in.

        Args:
            embedding: ``[B, dims, h, w]`` (any float dtype; promoted to float64).
        """
        batch = embedding.shape[0]
        x = embedding.flatten(2).permute(2, 0, 1).to(self.mean.device, torch.float64)  # [P, B, d]
        total = self.count + batch
        for lo in range(0, x.shape[0], self.chunk):
            xs = x[lo : lo + self.chunk]
            batch_mean = xs.mean(dim=1)
            centred = xs - batch_mean[:, None, :]
            scatter = self.scatter[lo : lo + self.chunk]
            scatter.baddbmm_(centred.transpose(1, 2), centred)
            if self.count:
                delta = batch_mean - self.mean[lo : lo + self.chunk]
                weight = self.count * batch / total
                scatter.baddbmm_(delta[:, :, None], delta[:, None, :], alpha=weight)
                self.mean[lo : lo + self.chunk] += delta * (batch / total)
            else:
                self.mean[lo : lo + self.chunk] = batch_mean
        self.count = total

    def finalize(self, *, epsilon: float = EPSILON) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and inverse covariance, both float32 on the CPU.

        Sigma = scatter / (n - 1) + epsilon * I (the unbiased sample covariance, as ``numpy.cov``),
        inverted through its Cholesky factor in float64.

        Raises:
            ValueError: Fewer than two samples were seen.
        """
        if self.count < 2:
            raise ValueError(f"need at least 2 images to estimate a covariance, got {self.count}")
        patches, dims = self.mean.shape
        eye = torch.eye(dims, dtype=torch.float64, device=self.mean.device)
        inverse = torch.empty(patches, dims, dims, dtype=torch.float32)
        for lo in range(0, patches, self.chunk):
            cov = self.scatter[lo : lo + self.chunk] / (self.count - 1) + epsilon * eye
            factor = torch.linalg.cholesky(cov)
            inverse[lo : lo + self.chunk] = torch.cholesky_inverse(factor).to("cpu", torch.float32)
        return self.mean.to("cpu", torch.float32), inverse
