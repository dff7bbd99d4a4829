"""Build the models a benchmark compares: fused graph, backbone-alone graph, eager module state.

The backbone has random weights and the head (PaDiM's Gaussians, PatchCore's memory bank) is fitted on
synthetic frames: latency does not depend on their values (PatchCore's does depend on the bank's *size*,
set by the number of frames and the coreset fraction), and nothing has to be downloaded. The three
artifacts come from the same module, so "fused vs backbone alone vs eager" compares one model three ways.
Exported files are kept in a folder keyed by the configuration and reused when a later run asks for
the same one (WR50-Rd550 takes minutes to fit and export).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from padim_edge import atomic
from padim_edge.spec import paper_name

__all__ = ["Artifacts", "model_label", "paper_name", "prepare"]

FUSED_NAME = "padim.onnx"
BACKBONE_NAME = "backbone.onnx"
STATE_NAME = "eager_state.pt"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class Artifacts:
    """Files prepared for one model configuration.

    Attributes:
        backbone: Backbone short name.
        dims: Embedding dims.
        resize: Square resize edge.
        crop: Center-crop edge.
        seed: Channel-subset seed.
        label: Row label (``R18-Rd100``).
        fused: The fused ONNX model (``None`` when benchmarking a given file instead).
        backbone_graph: Preprocessing + truncated backbone alone, as ONNX (``None`` if not asked).
        state: ``state_dict`` of the fitted module for the eager rows (``None`` if not asked).
        fit_frames: Synthetic frames the head was fitted on.
        seconds: Wall time spent preparing (0 when reused).
        reused: Whether the files came from an earlier run.
        method: ``padim`` or ``patchcore``.
        coreset: PatchCore's coreset fraction (``None`` for PaDiM).
        bank_size: PatchCore's memory-bank vectors (``None`` for PaDiM or when not fitted).
    """

    backbone: str
    dims: int
    resize: int
    crop: int
    seed: int
    label: str
    fused: str | None
    backbone_graph: str | None
    state: str | None
    fit_frames: int
    seconds: float
    reused: bool
    method: str = "padim"
    coreset: float | None = None
    bank_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Artifacts:
        """Inverse of :meth:`to_dict`."""
        return cls(**values)


def config_key(
    backbone: str,
    dims: int,
    resize: int,
    crop: int,
    seed: int,
    method: str = "padim",
    coreset: float | None = None,
) -> str:
    """Folder name of a configuration's artifacts."""
    key = f"{backbone}-d{dims}-r{resize}-c{crop}-s{seed}"
    return key if method == "padim" else f"{method}-{key}-k{coreset:g}"


def model_label(
    method: str,
    backbone: str,
    dims: int,
    *,
    coreset: float | None = None,
    bank_size: int | None = None,
    precision: str | None = None,
    head_precision: str = "fp32",
    reduction: str | None = None,
) -> str:
    """Row label: PaDiM's paper name (``R18-Rd100``; ``R18-Rd100 orthogonal`` with that reduction) or
    ``PatchCore-R18-d256-c0.01-m1882`` (``m``: bank), then the backbone precision of a given model file
    and a compact head (``R18-Rd100 int8 int8-head``)."""
    if method == "padim":
        label = paper_name(backbone, dims) + (" orthogonal" if reduction == "orthogonal" else "")
    else:
        label = f"PatchCore-{backbone.upper()}-d{dims}-c{coreset:g}" + (f"-m{bank_size}" if bank_size else "")
    if precision is not None:
        label += f" {precision}"
    return label + ("" if head_precision == "fp32" else f" {head_precision}-head")


def _reusable(folder: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return None
    try:
        old = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    keys = ("backbone", "dims", "resize", "crop", "seed", "fit_frames", "method", "coreset")
    if any(old.get(k, _OLD_DEFAULTS.get(k)) != wanted[k] for k in keys):
        return None
    for key in ("fused", "backbone_graph", "state"):
        if wanted[key] and not (old.get(key) and Path(old[key]).is_file()):
            return None
    return old


#: Manifest values of runs from before a key existed.
_OLD_DEFAULTS: dict[str, Any] = {"method": "padim", "coreset": None}


def prepare(
    backbone: str,
    folder: str,
    *,
    method: str = "padim",
    coreset: float | None = None,
    dims: int | None = None,
    resize: int = 256,
    crop: int = 224,
    seed: int = 0,
    fit_frames: int = 8,
    fused: bool = True,
    backbone_alone: bool = True,
    eager: bool = True,
    progress: bool = True,
) -> Artifacts:
    """Build, fit on synthetic frames, and export what a benchmark of ``backbone`` needs.

    Args:
        backbone: ``r18``, ``wr50`` or ``mnv2``.
        folder: Parent folder; files go to ``folder/<config key>/``.
        method: ``padim`` or ``patchcore``.
        coreset: PatchCore's coreset fraction (default 0.1).
        dims: Embedding dims (default: the method's setting for the backbone).
        resize: Square resize edge.
        crop: Center-crop edge.
        seed: Channel-subset seed.
        fit_frames: Synthetic uint8 frames the head is fitted on (at least 2; PatchCore's bank holds
            ``coreset x frames x patches`` vectors).
        fused: Export the fused graph (off when a given model file is benchmarked).
        backbone_alone: Export the backbone-alone graph (:func:`padim_edge.export.pipeline.export_backbone`).
        eager: Save the fitted module's ``state_dict`` for the eager rows (only with ``fused``: without
            a fit, the eager worker installs identity Gaussians of the same shapes itself).
        progress: Progress lines on stderr.
    """
    import torch

    from padim_edge.export.pipeline import build_module, default_settings, export, export_backbone
    from padim_edge.export.pipeline import fit_frames as fit_frames_fn

    defaults = default_settings(method, backbone)
    dims = dims or defaults["dims"]
    if coreset is None:
        coreset = defaults.get("coreset")
    eager = eager and fused
    target = Path(folder) / config_key(backbone, dims, resize, crop, seed, method, coreset)
    wanted: dict[str, Any] = {
        "method": method,
        "coreset": coreset,
        "backbone": backbone,
        "dims": dims,
        "resize": resize,
        "crop": crop,
        "seed": seed,
        "fit_frames": fit_frames,
        "fused": fused,
        "backbone_graph": backbone_alone,
        "state": eager,
    }
    base = {
        k: wanted[k]
        for k in ("backbone", "dims", "resize", "crop", "seed", "fit_frames", "method", "coreset")
    }
    label = model_label(method, backbone, dims, coreset=coreset)

    def say(message: str) -> None:
        if progress:
            print(message, file=sys.stderr, flush=True)

    old = _reusable(target, wanted)
    if old is not None:
        say(f"{label}: reusing the models in {target}")
        return Artifacts(
            **base,
            label=model_label(method, backbone, dims, coreset=coreset, bank_size=old.get("bank_size")),
            fused=old["fused"] if fused else None,
            backbone_graph=old["backbone_graph"] if backbone_alone else None,
            state=old["state"] if eager else None,
            seconds=0.0,
            reused=True,
            bank_size=old.get("bank_size"),
        )
    start = time.perf_counter()
    target.mkdir(parents=True, exist_ok=True)
    (target / MANIFEST_NAME).unlink(missing_ok=True)
    model, weights = build_module(
        backbone,
        method=method,
        dims=dims,
        resize=resize,
        crop=crop,
        seed=seed,
        random_init=True,
        coreset=coreset,
    )
    paths: dict[str, str | None] = {"fused": None, "backbone_graph": None, "state": None}
    bank_size = None
    if fused:
        say(f"{label}: fitting on {fit_frames} synthetic frames (random-init backbone)")
        fit_frames_fn(
            model, synthetic_frames(fit_frames, crop), batch_size=4, device="cpu", progress=progress
        )
        bank_size = model.metadata().get("bank_size")
        label = model_label(method, backbone, dims, coreset=coreset, bank_size=bank_size)
        say(f"{label}: exporting the fused graph")
        export(model, target / FUSED_NAME, weights=weights, train_images=fit_frames)
        paths["fused"] = str(target / FUSED_NAME)
    if backbone_alone:
        say(f"{label}: exporting the backbone-alone graph")
        export_backbone(model, target / BACKBONE_NAME)
        paths["backbone_graph"] = str(target / BACKBONE_NAME)
    if eager:
        say(f"{label}: saving the module state for the eager rows")
        torch.save(model.state_dict(), target / STATE_NAME)
        paths["state"] = str(target / STATE_NAME)
    seconds = time.perf_counter() - start
    manifest = {**base, **paths, "seconds": seconds, "bank_size": bank_size}
    atomic.write_json(target / MANIFEST_NAME, manifest)
    say(f"{label}: models ready in {seconds:.0f} s")
    return Artifacts(**base, label=label, **paths, seconds=seconds, reused=False, bank_size=bank_size)


def synthetic_frames(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``count`` random uint8 ``[size, size, 3]`` frames (latency does not depend on their values)."""
    if count < 2:
        raise ValueError(f"fit_frames must be >= 2, got {count}")
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
