"""PatchCore's defaults, torch-free (the CLI's help and the metadata read them without importing torch).

Embedding dims: the paper reduces each tapped layer to ``dims`` channels by adaptive average pooling,
then the stacked ``2 * dims`` vector to ``dims`` (WR50: 1024 and 1024). With ``dims = 2 x`` the
shallower tap's channels, the shallower tap passes unchanged and the deeper one is averaged in
groups: exactly what the paper's 1024 does for WR50 (layer2 512 + layer3 1024 channels). The same
rule gives R18 256 (layer2 128 + layer3 256). MobileNetV2's taps (32 + 96 channels) are small, so its
default keeps both unchanged: 192 = 2 x 96 (features.6 passes with every channel repeated three times,
features.13 unchanged). Every default gives each tap half of the embedding's weight, as the paper does.
"""

from __future__ import annotations

#: Embedding dims per backbone (``--dims`` overrides).
DEFAULT_DIMS: dict[str, int] = {"r18": 256, "wr50": 1024, "mnv2": 192}
#: Fraction of the training patch features kept in the memory bank (the paper's default; 0.01 is fast).
DEFAULT_CORESET = 0.1
#: ``b``: bank neighbours of the nearest bank vector used by the re-weighted image score.
NEIGHBOURS = 9
#: Dimensions of the Johnson-Lindenstrauss projection the greedy coreset selection measures distances in.
PROJECTION_DIMS = 128


def default_dims(backbone: str) -> int:
    """PatchCore's embedding dims for a backbone (see the module docstring).

    Raises:
        ValueError: Unknown backbone.
    """
    try:
        return DEFAULT_DIMS[backbone]
    except KeyError:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(DEFAULT_DIMS)}") from None
