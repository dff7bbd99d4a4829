"""PatchCore accuracy on the magnetic-tile set (MobileNetV2 ImageNet weights): part of patchcore.py.

One feature pass over the training images, then, for each coreset fraction and bank selection
(exact greedy over every patch vector, or the streaming bank with its chunks), a bank, an exported graph
and padim-eval's metrics through the runtime. For the default selection the module's float64 reference
is evaluated too (graph vs reference), and PaDiM is exported and evaluated on the same split in the same
run, so the rows sit side by side.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from padim_edge.datasets import load_category
from padim_edge.evaluation.metrics import evaluate_category
from padim_edge.evaluation.predictions import predict_category
from padim_edge.export.patchcore.bank import CoresetBank, default_chunk_vectors
from padim_edge.export.patchcore.fit import patch_vectors
from padim_edge.export.patchcore.model import BankInfo
from padim_edge.export.patchcore.nearest import neighbour_table
from padim_edge.export.pipeline import build_module, export
from padim_edge.export.pipeline import fit as fit_model
from padim_edge.images import iter_batches, list_images, load_image
from padim_edge.metadata import ModelInfo
from padim_edge.runtime import PadimModel


@dataclass(frozen=True)
class Selection:
    """How a bank is selected: ``chunk`` None = exact greedy over every vector."""

    name: str
    chunk: int | None
    oversample: float = 2.0


@dataclass(frozen=True)
class _Prediction:
    score: float
    anomaly_map: np.ndarray
    is_anomalous: None = None
    normalized_score: None = None


class ReferenceModel:
    """The PyTorch module (float64 nearest neighbour) with the runtime's ``predict`` interface."""

    def __init__(self, module: Any, info: ModelInfo) -> None:
        self.module, self.info, self.providers = module, info, ["torch-cpu float64 reference"]

    def predict(self, images: list[np.ndarray], batch_size: int = 8) -> list[_Prediction]:
        maps, scores = self.module.score_frames(images)
        return [_Prediction(float(s), m) for s, m in zip(scores, maps, strict=True)]


def metrics(model: Any, root: Path, *, desc: str, progress: bool) -> tuple[dict[str, Any], np.ndarray]:
    """padim-eval's overall and per-defect rows for ``model`` on ``root``, plus the image scores."""
    category = load_category(root)
    with tqdm(total=len(category.samples), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        predictions = predict_category(model, category, batch_size=8, progress=bar.update)
    result = evaluate_category(predictions)
    rows = {"overall": result.overall.to_dict(), "per_defect": [r.to_dict() for r in result.per_defect]}
    return rows, predictions.scores


def embed_all(module: Any, paths: list[Path], *, progress: bool) -> np.ndarray:
    """Every training patch vector ``[images * patches, dims]`` (float32), in image order."""
    out = np.empty((len(paths) * module.patches, module.config.dims), dtype=np.float32)
    row = 0
    with torch.inference_mode(), tqdm(total=len(paths), desc="features", disable=not progress) as bar:
        for batch in iter_batches(paths, 16):
            vectors = patch_vectors(module.embed([image for _, image in batch]))
            out[row : row + len(vectors)] = vectors
            row += len(vectors)
            bar.update(len(batch))
    return out


def run_accuracy(
    data: Path,
    weights: Path,
    workdir: Path,
    *,
    coresets: tuple[float, ...] = (0.1, 0.01),
    selections: tuple[Selection, ...] | None = None,
    train_limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the accuracy part (see the module docstring); returns its JSON section."""
    paths = list_images(data / "train" / "good")[:train_limit]
    module, weight_id = build_module("mnv2", method="patchcore", weights_file=weights)
    dims = module.config.dims
    default = Selection("streaming (default chunk)", default_chunk_vectors(dims))
    selections = selections or (
        default,
        Selection("exact greedy", None),
        Selection("streaming, 64-image chunks", 64 * module.patches),
    )
    start = time.perf_counter()
    vectors = embed_all(module, paths, progress=progress)
    feature_s = time.perf_counter() - start
    sample = [load_image(p) for p in paths[:2]]
    rows: list[dict[str, Any]] = []
    for fraction in coresets:
        for selection in selections:
            label = f"PatchCore mnv2 d{dims} coreset {fraction:g}, {selection.name}"
            bank = CoresetBank(
                dims,
                fraction=fraction,
                seed=0,
                chunk_vectors=selection.chunk,
                oversample=selection.oversample,
                progress=progress,
            )
            tick = time.perf_counter()
            for lo in range(0, len(vectors), 16 * module.patches):  # as the fit adds them: batches of 16
                bank.add(vectors[lo : lo + 16 * module.patches])
            selected = bank.select()
            select_s = time.perf_counter() - tick
            model, _ = build_module("mnv2", method="patchcore", weights_file=weights, coreset=fraction)
            model.set_bank(
                selected,
                neighbour_table(selected, model.config.neighbours),
                info=BankInfo(train_vectors=bank.seen, selection=bank.settings),
            )
            path = workdir / f"patchcore_c{fraction:g}_{len(rows)}.onnx"
            _, parity = export(model, path, weights=weight_id, train_images=len(paths), parity_images=sample)
            runtime = PadimModel(path, device="cpu")
            graph, graph_scores = metrics(runtime, data, desc=label, progress=progress)
            row: dict[str, Any] = {
                "model": label,
                "method": "patchcore",
                "coreset": fraction,
                "selection": {"name": selection.name, **bank.settings},
                "bank_size": len(selected),
                "train_vectors": bank.seen,
                "selection_s": select_s,
                "parity_max_abs": parity.max_abs if parity else None,
                "graph": graph,
            }
            if selection == default:
                reference, ref_scores = metrics(
                    ReferenceModel(model, runtime.info), data, desc="reference", progress=progress
                )
                row["reference"] = reference
                row["graph_vs_reference"] = {
                    k: graph["overall"][k] - reference["overall"][k]
                    for k in ("image_auroc", "pixel_auroc", "pro")
                }
                row["max_abs_score_difference"] = float(np.abs(graph_scores - ref_scores).max())
            rows.append(row)
            path.unlink()
    padim_path = workdir / "padim_mnv2.onnx"
    padim, _ = build_module("mnv2", weights_file=weights)
    fit_model(padim, paths, progress=progress)
    export(padim, padim_path, weights=weight_id, train_images=len(paths))
    padim_rows, _ = metrics(PadimModel(padim_path, device="cpu"), data, desc="PaDiM", progress=progress)
    rows.append({"model": "PaDiM mnv2 Rd100 (same run)", "method": "padim", "graph": padim_rows})
    padim_path.unlink()
    return {
        "data": str(data),
        "weights": weight_id,
        "train_images": len(paths),
        "patches_per_image": module.patches,
        "dims": dims,
        "resize": module.config.resize,
        "crop": module.config.crop,
        "feature_pass_s": feature_s,
        "rows": rows,
    }
