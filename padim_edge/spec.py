"""The backbone table: one row per supported CNN, the single source of truth (no torch, no onnx).

Each row says which torchvision builder makes the network, which three stages PaDiM taps, how many
channels they give, the default number of random channels kept, and which ImageNet weights to use.
The torch side (:mod:`padim_edge.export.backbones`) builds networks from these rows; the runtime,
calibration and benchmarks read them to name and describe models without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneSpec:
    """One supported backbone.

    Attributes:
        name: Short CLI name (``r18``).
        builder: torchvision model builder name (``resnet18``).
        taps: Three module paths whose outputs form PaDiM's embedding, shallowest first. PatchCore
            uses the last two (the mid-level stages).
        channels: Channels of each tap.
        default_dims: Channels kept by PaDiM's random reduction unless ``--dims`` says otherwise.
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
        """Channels of the full (unreduced) PaDiM embedding."""
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


def get_spec(name: str) -> BackboneSpec:
    """Look up a backbone by its short name.

    Raises:
        ValueError: Unknown name; the message lists the known ones.
    """
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


def paper_name(backbone: str, dims: int) -> str:
    """The PaDiM paper's name of a configuration: ``r18`` + 100 -> ``R18-Rd100``."""
    return f"{backbone.upper()}-Rd{dims}"
