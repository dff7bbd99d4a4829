"""The methods table: one row per anomaly-detection method the exporter builds, fits and exports.

Each row says how to make a method's module from a torchvision network, its default and allowed
embedding dims, how to fit it (from image files or frames in memory), how big its export will be, and
which run options belong to its head or its fit. :mod:`padim_edge.export.pipeline`, ``padim-export``
and the benchmarks go through this table; no other module branches on the method's name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from padim_edge.export.fit import FitReport
from padim_edge.export.method import AnomalyMethod
from padim_edge.export.patchcore import settings as patchcore_settings
from padim_edge.spec import BackboneSpec


@dataclass(frozen=True)
class MethodOptions:
    """Method-specific run options (``None``: the method's default; an option another method takes
    must stay ``None``).

    Attributes:
        blocks: PaDiM: column blocks of the packed Sigma^-1 (a head option).
        head_precision: ``fp32``, ``fp16`` or ``int8`` (a head option): PaDiM's Sigma^-1 and head MatMul,
            PatchCore's memory bank and its nearest-neighbour MatMul.
        coreset: PatchCore: fraction of the training patch features kept in the bank.
        coreset_chunk: PatchCore: vectors per streaming chunk; 0 = exact greedy over all vectors.
        coreset_oversample: PatchCore: per-chunk coresets keep this many times the final fraction.
        reduction: PaDiM: ``select`` or ``orthogonal`` (a build option).
    """

    blocks: int | None = None
    head_precision: str | None = None
    coreset: float | None = None
    coreset_chunk: int | None = None
    coreset_oversample: float | None = None
    reduction: str | None = None

    def given(self) -> dict[str, Any]:
        """The options that are set."""
        return {k: v for k, v in vars(self).items() if v is not None}


@dataclass(frozen=True)
class SplitOptions:
    """Run options sorted by where they go: building the module, fitting it, building its head."""

    build: dict[str, Any]
    fit: dict[str, Any]
    head: dict[str, Any]


@dataclass(frozen=True)
class Method:
    """One row of the methods table.

    Attributes:
        name: ``padim`` or ``patchcore`` (the ``method`` metadata key).
        summary: One line for the CLI help.
        default_dims: Default embedding dims of a backbone.
        max_dims: Largest embedding dims of a backbone.
        make: ``(network, spec, dims=, resize=, crop=, seed=, **split.build) -> module``.
        split: Checks :class:`MethodOptions` and sorts them (an option of another method: ValueError).
        fit: ``(module, paths, *, batch_size, device, progress, skip_unreadable, **split.fit) -> FitReport``
            (``skip_unreadable``: leave out and list files that cannot be decoded).
        fit_frames: ``(module, frames, *, batch_size, device, progress, **split.fit) -> FitReport``.
        estimated_bytes: ``(module, *, images, **split.head) -> int``: about the exported size.
        placeholder: Installs value-free head constants of the right shapes from a model's metadata
            (benchmarks time a file's eager twin with it): ``(module, metadata) -> None``.
        load_state: Installs a saved ``state_dict`` (a fitted module's) into a fresh module.
            Both make eager twins for latency comparisons: PatchCore's then scores in float32, as the
            graph does, not in its float64 reference arithmetic.
        defaults: The build options the module gets when none are given (PatchCore: its coreset).
        parity_allowance: ``(module, **split.head) -> float``: an absolute error the head's constants
            carry by construction, added to the export's parity tolerance (PatchCore's compact banks).
    """

    name: str
    summary: str
    default_dims: Callable[[BackboneSpec], int]
    max_dims: Callable[[BackboneSpec], int]
    make: Callable[..., AnomalyMethod]
    split: Callable[[MethodOptions], SplitOptions]
    fit: Callable[..., FitReport]
    fit_frames: Callable[..., FitReport]
    estimated_bytes: Callable[..., int]
    placeholder: Callable[[Any, dict[str, Any]], None]
    load_state: Callable[[Any, dict[str, torch.Tensor]], None]
    defaults: MethodOptions = MethodOptions()
    parity_allowance: Callable[..., float] = lambda model, **head: 0.0


def _backbone_bytes(model: nn.Module) -> int:
    return sum(p.numel() for p in model.features.parameters()) * 4


def _refuse(method: str, options: MethodOptions, allowed: tuple[str, ...]) -> dict[str, Any]:
    given = options.given()
    wrong = [k for k in given if k not in allowed]
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise ValueError(f"{flags} do(es) not apply to --method {method}")
    return given


# --------------------------------------------------------------------------- PaDiM


def _padim_make(network: nn.Module, spec: BackboneSpec, **config: Any) -> AnomalyMethod:
    from padim_edge.export.padim.model import PadimConfig, PadimModule

    return PadimModule(network, PadimConfig(spec=spec, **config))


def _padim_split(options: MethodOptions) -> SplitOptions:
    from padim_edge.export.padim.graph_head import check_precision
    from padim_edge.export.padim.settings import check_reduction

    given = _refuse("padim", options, ("blocks", "head_precision", "reduction"))
    head = {"blocks": given["blocks"]} if "blocks" in given else {}
    if "head_precision" in given:
        head["precision"] = check_precision(given["head_precision"])
    build = {"reduction": check_reduction(given["reduction"])} if "reduction" in given else {}
    return SplitOptions(build=build, fit={}, head=head)


def _padim_fit(model: Any, paths: list[Path], **kwargs: Any) -> FitReport:
    from padim_edge.export.fit import fit

    return fit(model, paths, **kwargs)


def _padim_fit_frames(model: Any, frames: np.ndarray | Sequence[np.ndarray], **kwargs: Any) -> FitReport:
    from padim_edge.export.fit import fit_frames

    kwargs.pop("progress", None)
    return fit_frames(model, frames, **kwargs)


def _padim_bytes(model: Any, *, images: int, blocks: int | None = None, precision: str = "fp32") -> int:
    from padim_edge.export.padim.settings import BYTES_PER_ENTRY, DEFAULT_BLOCKS

    dims = model.config.dims
    blocks = max(1, min(blocks or DEFAULT_BLOCKS, dims))
    head = model.patches * dims * dims * BYTES_PER_ENTRY[precision] * (blocks + 1) / (2 * blocks)
    return int(_backbone_bytes(model) + head)


def _padim_placeholder(model: Any, info: dict[str, Any]) -> None:
    patches, dims = model.patches, model.config.dims
    model.set_gaussians(torch.zeros(patches, dims), torch.eye(dims).expand(patches, dims, dims).contiguous())


def _padim_load_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    state = dict(state)
    model.set_gaussians(state.pop("mahalanobis.mean"), state.pop("mahalanobis.inv_covariance"))
    _load_rest(model, state, "mahalanobis.")


# --------------------------------------------------------------------------- PatchCore


def _patchcore_make(network: nn.Module, spec: BackboneSpec, **config: Any) -> AnomalyMethod:
    from padim_edge.export.patchcore.model import PatchCoreConfig, PatchCoreModule

    return PatchCoreModule(network, PatchCoreConfig(spec=spec, **config))


def _patchcore_split(options: MethodOptions) -> SplitOptions:
    from padim_edge.export.padim.graph_head import check_precision

    given = _refuse(
        "patchcore", options, ("coreset", "coreset_chunk", "coreset_oversample", "head_precision")
    )
    fit: dict[str, Any] = {}
    if "coreset_chunk" in given:
        fit["chunk_vectors"] = given["coreset_chunk"] or None  # 0: exact greedy over every vector
    if "coreset_oversample" in given:
        fit["oversample"] = given["coreset_oversample"]
    build = {"coreset": given["coreset"]} if "coreset" in given else {}
    head = {"precision": check_precision(given["head_precision"])} if "head_precision" in given else {}
    return SplitOptions(build=build, fit=fit, head=head)


def _patchcore_fit(model: Any, paths: list[Path], **kwargs: Any) -> FitReport:
    from padim_edge.export.patchcore.fit import fit

    return fit(model, paths, **kwargs)


def _patchcore_fit_frames(model: Any, frames: np.ndarray | Sequence[np.ndarray], **kwargs: Any) -> FitReport:
    from padim_edge.export.patchcore.fit import fit_frames

    return fit_frames(model, frames, **kwargs)


def _patchcore_bytes(model: Any, *, images: int, precision: str = "fp32") -> int:
    from padim_edge.export.padim.settings import BYTES_PER_ENTRY
    from padim_edge.export.patchcore.coreset import coreset_size

    config = model.config
    rows = coreset_size(max(1, images * model.patches), config.coreset)
    per_row = config.dims * BYTES_PER_ENTRY[precision] + 4 + config.neighbours * 8 + (precision != "fp32") * 8
    return int(_backbone_bytes(model) + rows * per_row)


def _patchcore_parity_allowance(model: Any, *, precision: str = "fp32") -> float:
    """Twice the compact bank's largest storage error ``e`` (distances move by up to ``e``, the
    re-weighted score by up to ``e + s* e / 2``; see :mod:`padim_edge.export.patchcore.compact_bank`)."""
    from padim_edge.export.patchcore.compact_bank import storage_error

    return 2.0 * float(storage_error(model.scorer.bank.cpu().numpy(), precision).max())


def _patchcore_placeholder(model: Any, info: dict[str, Any]) -> None:
    rows = int(info.get("bank_size") or 1)
    bank = np.random.default_rng(0).standard_normal((rows, model.config.dims)).astype(np.float32)
    b = min(model.config.neighbours, rows)
    table = (np.arange(rows)[:, None] + np.arange(b)[None, :]) % rows  # itself first
    model.set_bank(bank, table, dtype=torch.float32)


def _patchcore_load_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    state = dict(state)
    model.set_bank(state.pop("scorer.bank"), state.pop("scorer.table"), dtype=torch.float32)
    _load_rest(model, state, "scorer.")


def _load_rest(model: nn.Module, state: dict[str, torch.Tensor], head: str) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith(head) for key in missing):
        raise RuntimeError(f"state does not match the module: missing {missing}, unexpected {unexpected}")


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            name="padim",
            summary="PaDiM: per-patch Gaussians, Mahalanobis distance (needs roughly aligned images)",
            default_dims=lambda spec: spec.default_dims,
            max_dims=lambda spec: spec.total_channels,
            make=_padim_make,
            split=_padim_split,
            fit=_padim_fit,
            fit_frames=_padim_fit_frames,
            estimated_bytes=_padim_bytes,
            placeholder=_padim_placeholder,
            load_state=_padim_load_state,
        ),
        Method(
            name="patchcore",
            summary="PatchCore: coreset memory bank, nearest-neighbour distance (position-free)",
            default_dims=lambda spec: patchcore_settings.default_dims(spec.name),
            max_dims=lambda spec: 2 * max(spec.channels[1:]),
            make=_patchcore_make,
            split=_patchcore_split,
            fit=_patchcore_fit,
            fit_frames=_patchcore_fit_frames,
            estimated_bytes=_patchcore_bytes,
            placeholder=_patchcore_placeholder,
            load_state=_patchcore_load_state,
            defaults=MethodOptions(coreset=patchcore_settings.DEFAULT_CORESET),
            parity_allowance=_patchcore_parity_allowance,
        ),
    )
}


def get_method(name: str) -> Method:
    """Look up a method by name.

    Raises:
        ValueError: Unknown name; the message lists the known ones.
    """
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def method_of(model: Any) -> Method:
    """The table row of a built module (its ``method`` attribute)."""
    return get_method(model.method)
