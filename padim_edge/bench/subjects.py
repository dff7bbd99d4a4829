"""What a benchmark measures: one :class:`Subject` per model, with the comparators built for it.

Built models (``--backbone``) are prepared by a worker (:mod:`padim_edge.bench.artifacts`); given files
(``--model``) are labelled from their metadata, and their backbone-alone graph is rebuilt from it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from padim_edge.bench.artifacts import Artifacts, model_label
from padim_edge.bench.config import BenchConfig
from padim_edge.bench.worker import run_job


@dataclass(frozen=True)
class Subject:
    """One model to benchmark, with the comparators built for it."""

    label: str
    fused: str | None
    backbone_graph: str | None
    state: str | None
    module: dict[str, Any]
    precision: str
    head_precision: str = "fp32"


def progress(config: BenchConfig, message: str) -> None:
    """A progress line on stderr, unless ``config.progress`` is off."""
    if config.progress:
        print(message, file=sys.stderr, flush=True)


def read_model_metadata(path: Path) -> dict[str, Any]:
    """Method, backbone, dims, resize, crop, seed, precision (and PatchCore's coreset and bank size) of a
    padim-edge model file, without its weights."""
    import onnx

    from padim_edge import metadata

    proto = onnx.load(str(path), load_external_data=False)
    info = metadata.parse({p.key: p.value for p in proto.metadata_props}, source=str(path))
    return {
        "method": info.method,
        "backbone": info.backbone,
        "dims": info.dims,
        "resize": info.resize,
        "crop": info.crop,
        "seed": info.get("seed", 0),
        "coreset": info.get("coreset"),
        "bank_size": info.get("bank_size"),
        "reduction": info.get("reduction"),
        "precision": info.precision,
        "head_precision": info.head_precision,
    }


def _head_variant(config: BenchConfig, fused: str, precision: str) -> str:
    """The built float32 model with its head rewritten to ``precision`` (made once, beside it)."""
    target = Path(fused).with_name(f"{Path(fused).stem}-head-{precision}.onnx")
    if not target.is_file():
        progress(config, f"{target.name}: rewriting the head to {precision}")
        run_job({"job": "head", "source": fused, "output": str(target), "precision": precision}, isolate=True)
    return str(target)


def _prepare(config: BenchConfig, workdir: Path, backbone: str, **kwargs: Any) -> Artifacts:
    spec = {
        "job": "prepare",
        "args": {
            "backbone": backbone,
            "folder": str(workdir),
            "resize": kwargs.pop("resize", config.resize),
            "crop": kwargs.pop("crop", config.crop),
            "seed": kwargs.pop("seed", config.seed),
            "fit_frames": config.fit_frames,
            "progress": config.progress,
            **kwargs,
        },
    }
    return Artifacts.from_dict(run_job(spec, isolate=config.isolate))


#: What a worker needs to rebuild a model's eager twin.
_MODULE_KEYS = ("method", "backbone", "dims", "resize", "crop", "seed", "coreset", "bank_size", "reduction")


def plan_subjects(config: BenchConfig, workdir: Path) -> list[Subject]:
    """Every model of ``config`` (built ones first, then given files), preparing files into ``workdir``."""
    subjects = []
    for backbone in config.backbones:
        art = _prepare(
            config,
            workdir,
            backbone,
            method=config.method,
            coreset=config.coreset,
            dims=config.dims,
            backbone_alone=config.backbone,
            eager=config.eager,
        )
        module = {
            "method": art.method,
            "backbone": art.backbone,
            "dims": art.dims,
            "resize": art.resize,
            "crop": art.crop,
            "seed": art.seed,
            "coreset": art.coreset,
            "bank_size": art.bank_size,
        }
        for head in config.head_precisions:
            if head == "fp32":
                subjects.append(Subject(art.label, art.fused, art.backbone_graph, art.state, module, "fp32"))
            elif art.fused is not None:
                label = model_label(
                    art.method,
                    art.backbone,
                    art.dims,
                    coreset=art.coreset,
                    bank_size=art.bank_size,
                    head_precision=head,
                )
                fused = _head_variant(config, art.fused, head)
                subjects.append(Subject(label, fused, art.backbone_graph, art.state, module, "fp32", head))
    for path in config.models:
        meta = read_model_metadata(path)
        module = {k: meta[k] for k in _MODULE_KEYS}
        label = model_label(
            meta["method"],
            meta["backbone"],
            meta["dims"],
            coreset=meta["coreset"],
            bank_size=meta["bank_size"],
            precision=meta["precision"],
            head_precision=meta["head_precision"],
            reduction=meta["reduction"],
        )
        graph = None
        if config.backbone:  # the backbone alone does not depend on the reduction
            build = {k: module[k] for k in _MODULE_KEYS if k not in ("bank_size", "reduction")}
            art = _prepare(config, workdir, fused=False, backbone_alone=True, eager=False, **build)
            graph = art.backbone_graph
        subjects.append(
            Subject(label, str(path), graph, None, module, meta["precision"], meta["head_precision"])
        )
    return subjects
