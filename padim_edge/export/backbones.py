"""The backbone table: one row per supported CNN, the single source of truth for taps and weights.

Each row says which torchvision builder makes the network, which three stages PaDiM taps, how many
channels they give, the default number of random channels kept, and which ImageNet weights to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from padim_edge.onnx_files import sha256


@dataclass(frozen=True)
class BackboneSpec:
    """One supported backbone.

    Attributes:
        name: Short CLI name (``r18``).
        builder: torchvision model builder name (``resnet18``).
        taps: Three module paths whose outputs form the embedding, shallowest first.
        channels: Channels of each tap.
        default_dims: Channels kept by the random reduction unless ``--dims`` says otherwise.
        weights: torchvision ``WeightsEnum`` member for ImageNet weights (``ResNet18_Weights.IMAGENET1K_V1``).
        paper_name: How the PaDiM paper names the configuration, for reports.
    """

    name: str
    builder: str
    taps: tuple[str, str, str]
    channels: tuple[int, int, int]
    default_dims: int
    weights: str
    paper_name: str

    @property
    def total_channels(self) -> int:
        """Channels of the full (unreduced) embedding."""
        return sum(self.channels)


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "r18",
            "resnet18",
            ("layer1", "layer2", "layer3"),
            (64, 128, 256),
            100,
            "ResNet18_Weights.IMAGENET1K_V1",
            "R18-Rd100",
        ),
        BackboneSpec(
            "wr50",
            "wide_resnet50_2",
            ("layer1", "layer2", "layer3"),
            (256, 512, 1024),
            550,
            "Wide_ResNet50_2_Weights.IMAGENET1K_V1",
            "WR50-Rd550",
        ),
        BackboneSpec(
            "mnv2",
            "mobilenet_v2",
            ("features.3", "features.6", "features.13"),
            (24, 32, 96),
            100,
            "MobileNet_V2_Weights.IMAGENET1K_V1",
            "MNV2-Rd100",
        ),
    )
}


class WeightsError(RuntimeError):
    """Backbone weights could not be loaded."""


def get_spec(name: str) -> BackboneSpec:
    """Look up a backbone by its short name.

    Raises:
        ValueError: Unknown name; the message lists the known ones.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


def imagenet_cache_file(spec: BackboneSpec) -> Path:
    """Where torchvision looks for (and downloads) the ImageNet weights of ``spec``."""
    weights = torchvision.models.get_weight(spec.weights)
    filename = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def build_backbone(
    spec: BackboneSpec, *, weights_file: str | Path | None = None, random_init: bool = False
) -> tuple[nn.Module, str]:
    """Build the full torchvision network with the requested weights.

    Args:
        spec: Which backbone.
        weights_file: A ``state_dict`` file (loaded with ``torch.load(weights_only=True)``).
        random_init: Keep torchvision's random initialisation (smoke tests and latency work only).

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
