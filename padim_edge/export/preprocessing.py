"""The one preprocessing definition, shared by the fit and the exported graph.

uint8 frames ``[N, H, W, 3]`` of any size -> float32 -> bilinear (antialiased) resize to
``resize x resize`` -> center crop ``crop x crop`` -> ImageNet normalisation -> float32
``[N, 3, crop, crop]``. The fit calls this module; the exporter traces this same module into the graph.
The crop geometry itself is :class:`padim_edge.geometry.Geometry`, shared with the torch-free side.

The normalisation's scale and shift are full-size ``[1, 3, crop, crop]`` constants, not ``[1, 3, 1, 1]``:
onnxruntime rewrites an INT8 backbone to NHWC and moves the layout Transpose above the normalisation,
where a per-channel broadcast becomes a broadcast over an innermost axis of 3, which its CPU EP runs
element by element (0.45 ms of a 4.5 ms R18 INT8 model, 2 threads). Without a broadcast the two ops
are plain vectorised passes, in either layout; the float32 graph is unaffected.

The uint8 frames are cast to float32 before anything else touches them: TensorRT takes uint8 only
as a network input feeding a cast to float (``padim-check``'s ``uint8-intermediate`` rule).

For one fixed frame size the resize + crop is a linear map per axis, so it is two constant matrices
(:func:`resize_crop_matrices`, taken from :meth:`Preprocess.resize_crop` itself) applied as MatMuls
(:class:`MatrixPreprocess`): the TensorRT target's graph, which has no antialiased Resize op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from padim_edge.geometry import Geometry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Basis images pushed through the resize at once while deriving the matrices (bounds the memory).
_BASIS_CHUNK = 64


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
        # (x / 255 - mean) / std == x * scale + shift, with full-size [1, 3, crop, crop] constants: see
        # the module docstring (1.2 MB at 224, no broadcast for onnxruntime's NHWC rewrite to slow down)
        full = (1, 3, crop, crop)
        self.register_buffer("scale", (1.0 / (255.0 * std)).expand(full).contiguous(), persistent=False)
        self.register_buffer("shift", (-mean / std).expand(full).contiguous(), persistent=False)

    def resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        """Antialiased bilinear resize to ``resize x resize``, then the center crop (any float dtype)."""
        x = F.interpolate(
            x, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=True
        )
        top = self.geometry.offset
        return x[:, :, top : top + self.crop, top : top + self.crop]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet normalisation of ``[N, 3, crop, crop]`` values in 0..255."""
        return x * self.scale + self.shift

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``uint8 [N, H, W, 3]`` to normalised ``float32 [N, 3, crop, crop]``."""
        x = images.to(torch.float32).permute(0, 3, 1, 2)  # the cast first (TensorRT: no uint8 ops)
        return self.normalize(self.resize_crop(x))


def _axis_operator(preprocess: Preprocess, length: int, *, rows: bool) -> torch.Tensor:
    """``[crop, length]``: the resize + crop along one axis (rows: the height), in float64.

    Basis image ``i`` is one at position ``i`` of this axis and a single pixel along the other, which
    the resize stretches to a constant (resampling preserves constants), so the output's first column
    (or row) is column ``i`` of this axis's operator. :func:`resize_crop_matrices` checks the result on
    a full-size frame.
    """
    columns = []
    for lo in range(0, length, _BASIS_CHUNK):
        hi = min(lo + _BASIS_CHUNK, length)
        basis = torch.zeros(hi - lo, 1, length, 1, dtype=torch.float64)
        basis[torch.arange(hi - lo), 0, torch.arange(lo, hi), 0] = 1.0
        if not rows:
            basis = basis.transpose(2, 3)
        with torch.no_grad():
            out = preprocess.resize_crop(basis)[:, 0]
        columns.append(out[:, :, 0] if rows else out[:, 0, :])
    return torch.cat(columns).T.contiguous()


def resize_crop_matrices(
    preprocess: Preprocess, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 matrices ``R [crop, H]`` and ``C [crop, W]`` with ``resize_crop(X) == R @ X @ C.T``.

    Derived from ``preprocess.resize_crop`` itself (basis images in float64), so the fit's
    preprocessing and the fixed-size graph cannot drift apart; checked on a random frame.

    Raises:
        ValueError: A frame edge below 1.
        AssertionError: The resize is not separable as assumed (the check frame differs).
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    rows = _axis_operator(preprocess, height, rows=True)
    cols = _axis_operator(preprocess, width, rows=False)
    check = torch.rand(1, 1, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = preprocess.resize_crop(check)[0, 0]
    if not torch.allclose(rows @ check[0, 0] @ cols.T, reference, rtol=0, atol=1e-9):
        raise AssertionError("resize + crop is not the separable linear map the matrices assume")
    return rows, cols


class MatrixPreprocess(nn.Module):
    """:class:`Preprocess` for frames of one fixed size: resize + crop as two MatMuls, no Resize op.

    Args:
        preprocess: The model's own preprocessing (its resize, crop and normalisation).
        height: Frame height the graph is built for.
        width: Frame width the graph is built for.
    """

    def __init__(self, preprocess: Preprocess, *, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width
        self.inner = preprocess
        rows, cols = resize_crop_matrices(preprocess, height, width)
        self.register_buffer("rows", rows.to(torch.float32), persistent=False)
        self.register_buffer("cols_t", cols.T.contiguous().to(torch.float32), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``uint8 [N, height, width, 3]`` to normalised ``float32 [N, 3, crop, crop]``."""
        x = images.to(torch.float32).permute(0, 3, 1, 2)
        x = torch.matmul(torch.matmul(self.rows, x), self.cols_t)
        return self.inner.normalize(x)
