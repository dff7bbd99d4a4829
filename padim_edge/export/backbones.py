"""Building the torchvision network of a backbone row, with its weights.

The rows themselves (taps, channels, default dims, weights enum) are the torch-free table in
:mod:`padim_edge.spec`; this module turns one into an ``nn.Module``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from padim_edge.integrity import sha256
from padim_edge.spec import BACKBONES, BackboneSpec, get_spec

__all__ = ["BACKBONES", "BackboneSpec", "WeightsError", "build_backbone", "get_spec", "imagenet_cache_file"]


class WeightsError(RuntimeError):
    """Backbone weights could not be loaded."""


def imagenet_cache_file(spec: BackboneSpec) -> Path:
    """Where torchvision looks for (and downloads) the ImageNet weights of ``spec``."""
    weights = torchvision.models.get_weight(spec.weights)
    filename = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def build_backbone(
    spec: BackboneSpec, *, weights_file: str | Path | None = None, random_init: bool = False, seed: int = 0
) -> tuple[nn.Module, str]:
    """Build the full torchvision network with the requested weights.

    Args:
        spec: Which backbone.
        weights_file: A ``state_dict`` file (loaded with ``torch.load(weights_only=True)``).
        random_init: Keep torchvision's random initialisation (smoke tests and latency work only).
        seed: Seed of that random initialisation, so two random-init exports with one seed are identical
            (the global torch RNG is left as it was).

    Returns:
        The network in eval mode and the weights identity recorded in the model's metadata:
        ``imagenet:<enum>``, ``sha256:<hex>`` or ``random-init``.

    Raises:
        WeightsError: The file is missing or does not fit the network, or the ImageNet download failed;
            the message names the cache file torchvision looks for and both alternatives.
    """
    if weights_file is not None and random_init:
        raise ValueError("pass either a weights file or random_init, not both")
    builder = getattr(torchvision.models, spec.builder)
    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return builder(weights=None).eval(), "random-init"
    if weights_file is not None:
        path = Path(weights_file)
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsError(f"cannot read {path} as a PyTorch state_dict: {exc}") from exc
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise WeightsError(f"{path} does not hold a state_dict (found {type(state).__name__})")
        model = builder(weights=None)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0:3]
            raise WeightsError(
                f"{path} does not fit backbone {spec.name} ({spec.builder}): {' '.join(first)}"
            ) from exc
        return model.eval(), f"sha256:{sha256([path])}"
    try:
        weights = torchvision.models.get_weight(spec.weights)
        return builder(weights=weights).eval(), f"imagenet:{spec.weights}"
    except Exception as exc:
        cache = imagenet_cache_file(spec)
        raise WeightsError(
            f"could not load torchvision's ImageNet weights for {spec.name} "
            f"({exc.__class__.__name__}: {exc}). "
            f"torchvision looks for them at {cache} and downloads them there when it can. "
            f"Alternatives: put the file at that path, pass --weights FILE (a state_dict for "
            f"{spec.builder}), or pass --random-init (latency work only: scores are not meaningful)."
        ) from exc
