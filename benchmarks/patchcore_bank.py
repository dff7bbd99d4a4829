"""PatchCore's bank precision (``--head-precision fp32|fp16|int8``): accuracy on the magnetic tile.

MobileNetV2 ImageNet weights, the default streaming coreset bank at each fraction (one feature pass,
one bank per fraction, the same bank exported in each precision). Per precision: image AUROC, pixel
AUROC and PRO of the exported graph through the runtime (padim-eval's code), the Spearman rank
correlation of its image scores with the fp32 graph's, and the file size. Per compact precision, on
the patches of a few test images: the error of the nearest-neighbour distance against the exact float64
nearest distance to the float32 bank, the stated bound of
:mod:`padim_edge.export.patchcore.compact_bank` (the largest error / bound ratio must stay below 1)
and how often the nearest index is the exact one. Accuracy only: no timings (those are
``benchmarks/patchcore_latency.py --bank-precisions``).

Writes ``benchmarks/results/patchcore_bank.{json,md}``::

    python benchmarks/patchcore_bank.py                       # coreset 0.1 and 0.01
    python benchmarks/patchcore_bank.py --coresets 0.01 --train-limit 60 -o /tmp/pcb   # smoke run
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import onnx
import onnxruntime as ort
import torch

from padim_edge import atomic
from padim_edge.export.padim.settings import HEAD_PRECISIONS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: The project's ``../shared`` folder (``PADIM_EDGE_SHARED`` overrides it, as in the tests).
SHARED = Path(os.environ.get("PADIM_EDGE_SHARED") or ROOT.parent / "shared")
TILES = SHARED / "data" / "magnetic_tile"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
PRECISIONS = HEAD_PRECISIONS
#: The PaDiM compact head's goals (issue 9), applied to the bank precision.
GOALS = {"auroc": 0.005, "pro": 0.01, "spearman": 0.999}


def head_distances(model: Any, embedding: np.ndarray, precision: str) -> tuple[np.ndarray, np.ndarray]:
    """The graph head's nearest distances ``[K]`` and indices ``[K]`` for an embedding ``[N, D, g, g]``."""
    from padim_edge.export.patchcore.graph_head import _name, nearest_neighbour_nodes

    _, dims, grid, _ = embedding.shape
    nodes, inits, distance, _ = nearest_neighbour_nodes(
        "embedding",
        model.scorer.bank.cpu().numpy(),
        model.scorer.table.cpu().numpy(),
        grid=grid,
        precision=precision,
    )
    nodes.append(onnx.helper.make_node("Reshape", [_name("nearest"), _name("flat")], ["nearest"]))
    tensor = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph(
        nodes,
        "bank_head",
        [tensor("embedding", onnx.TensorProto.FLOAT, ["N", dims, grid, grid])],
        [
            tensor(distance, onnx.TensorProto.FLOAT, ["N", grid, grid]),
            tensor("nearest", onnx.TensorProto.INT64, ["K"]),
        ],
        inits,
    )
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    dist, index = session.run(None, {"embedding": embedding.astype(np.float32)})
    return dist.reshape(-1), index


def distance_errors(model: Any, images: list[np.ndarray], precisions: tuple[str, ...]) -> dict[str, Any]:
    """Nearest-distance error of each compact precision against the float64 exact nearest distance."""
    from padim_edge.export.patchcore import compact_bank

    with torch.inference_mode():
        embedding = model.embed(images).cpu().numpy()
    rows = (
        embedding.reshape(len(images), embedding.shape[1], -1)
        .transpose(0, 2, 1)
        .reshape(-1, embedding.shape[1])
    )
    exact, exact_index = model.scorer.nearest(torch.from_numpy(rows))
    exact, exact_index = exact.numpy(), exact_index.numpy()
    bank = model.scorer.bank.cpu().numpy()
    out: dict[str, Any] = {
        "images": len(images),
        "patches": len(rows),
        "max_exact_distance": float(exact.max()),
    }
    for precision in precisions:
        dist, index = head_distances(model, embedding, precision)
        diff = dist.astype(np.float64) - exact
        below, above = compact_bank.distance_bounds(rows, bank, precision, exact)
        ratio = np.where(diff < 0, -diff / np.maximum(below, 1e-12), diff / np.maximum(above, 1e-12))
        out[precision] = {
            "max_abs": float(np.abs(diff).max()),
            "median_abs": float(np.median(np.abs(diff))),
            "p99_abs": float(np.percentile(np.abs(diff), 99)),
            "max_relative_to_max_distance": float(np.abs(diff).max() / exact.max()),
            "storage_error_e": float(below[0]),
            "median_bound": float(np.median(np.maximum(below, above))),
            "max_error_over_bound": float(ratio.max()) if precision != "fp32" else None,
            "index_agreement": float((index == exact_index).mean()),
        }
    return out


def run_bank(
    data: Path,
    weights: Path,
    workdir: Path,
    *,
    coresets: tuple[float, ...] = (0.1, 0.01),
    precisions: tuple[str, ...] = PRECISIONS,
    train_limit: int | None = None,
    distance_images: int = 12,
    progress: bool = True,
) -> dict[str, Any]:
    """The bank-precision section (see the module docstring)."""
    from patchcore_accuracy import embed_all, metrics

    from padim_edge.calibration.fidelity import spearman
    from padim_edge.datasets import load_category
    from padim_edge.export.patchcore.bank import CoresetBank, default_chunk_vectors
    from padim_edge.export.patchcore.model import BankInfo
    from padim_edge.export.patchcore.nearest import neighbour_table
    from padim_edge.export.pipeline import build_module, export
    from padim_edge.images import list_images, load_image
    from padim_edge.runtime import PadimModel

    paths = list_images(data / "train" / "good")[:train_limit]
    module, weight_id = build_module("mnv2", method="patchcore", weights_file=weights)
    dims = module.config.dims
    vectors = embed_all(module, paths, progress=progress)
    samples = load_category(data).samples
    picked = samples[:: max(1, len(samples) // distance_images)][:distance_images]
    test_images = [load_image(s.path) for s in picked]
    parity_frames = [load_image(p) for p in paths[:2]]
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for fraction in coresets:
        bank = CoresetBank(
            dims, fraction=fraction, seed=0, chunk_vectors=default_chunk_vectors(dims), progress=progress
        )
        for lo in range(0, len(vectors), 16 * module.patches):
            bank.add(vectors[lo : lo + 16 * module.patches])
        selected = bank.select()
        model, _ = build_module("mnv2", method="patchcore", weights_file=weights, coreset=fraction)
        model.set_bank(
            selected,
            neighbour_table(selected, model.config.neighbours),
            info=BankInfo(train_vectors=bank.seen, selection=bank.settings),
        )
        errors.append(
            {
                "coreset": fraction,
                "bank_size": len(selected),
                **distance_errors(model, test_images, precisions),
            }
        )
        fp32_scores = None
        for precision in precisions:
            path = workdir / f"patchcore_c{fraction:g}_{precision}.onnx"
            _, parity = export(
                model, path, weights=weight_id, train_images=len(paths), parity_images=parity_frames,
                head_precision=precision,
            )  # fmt: skip
            label = f"PatchCore mnv2 d{dims} coreset {fraction:g}, {precision} bank"
            graph, scores = metrics(PadimModel(path, device="cpu"), data, desc=label, progress=progress)
            fp32_scores = scores if precision == "fp32" else fp32_scores
            rows.append(
                {
                    "model": label,
                    "coreset": fraction,
                    "precision": precision,
                    "bank_size": len(selected),
                    "file_bytes": path.stat().st_size,
                    "parity_relative": parity.relative if parity else None,
                    "graph": graph,
                    "spearman_vs_fp32": spearman(scores, fp32_scores) if fp32_scores is not None else None,
                }
            )
            path.unlink()
    return {
        "data": str(data),
        "weights": weight_id,
        "train_images": len(paths),
        "dims": dims,
        "rows": rows,
        "distance_errors": errors,
    }


def render(result: dict[str, Any]) -> str:
    """The markdown report."""
    from padim_edge.bench.report import machine_line

    lines = [
        f"# PatchCore bank precision: accuracy on {result.get('data', 'magnetic_tile')} "
        "(MobileNetV2 ImageNet weights)",
        "",
        f"**Command:** `{result['command']}` (finished {result['finished']}, {result['seconds']:.0f} s).",
        f"**Machine:** {machine_line(result['machine'])}.",
        "",
        f"Fit on {result['train_images']} training images, dims {result['dims']}, default streaming "
        "coreset bank; the same bank exported in each precision; metrics by padim-eval's code through the "
        "runtime (CPU EP). "
        f"Goals (the PaDiM compact head's): AUROC within {GOALS['auroc']}, PRO within {GOALS['pro']}, "
        f"Spearman >= {GOALS['spearman']} against the fp32 bank.",
        "",
        "| Coreset | Bank | Precision | Image AUROC | Pixel AUROC | PRO@0.3 "
        "| d image / pixel / PRO vs fp32 | Spearman vs fp32 | MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base: dict[float, dict[str, float]] = {}
    for row in result["rows"]:
        o = row["graph"]["overall"]
        if row["precision"] == "fp32":
            base[row["coreset"]] = o
        b = base.get(row["coreset"], o)
        delta = " / ".join(f"{o[k] - b[k]:+.4f}" for k in ("image_auroc", "pixel_auroc", "pro"))
        lines.append(
            f"| {row['coreset']:g} | {row['bank_size']} | {row['precision']} | {o['image_auroc']:.4f} | "
            f"{o['pixel_auroc']:.4f} | {o['pro']:.4f} | {delta} | {row['spearman_vs_fp32']:.5f} | "
            f"{row['file_bytes'] / 1e6:.1f} |"
        )
    lines += [
        "",
        "## Nearest-neighbour distance error (per patch, against the float64 exact nearest distance)",
        "",
        "Bound (docs/patchcore.md): `d* - e <= d <= sqrt((d* + e)^2 + 2E)`; "
        "error / bound <= 1 means it held.",
        "",
        "| Coreset | Precision | Patches | max abs | median abs | p99 abs | max / max d* | e "
        "| median bound | max error / bound | index agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in result["distance_errors"]:
        for precision in PRECISIONS:
            if precision not in entry:
                continue
            e = entry[precision]
            over = "" if e["max_error_over_bound"] is None else f"{e['max_error_over_bound']:.3f}"
            lines.append(
                f"| {entry['coreset']:g} | {precision} | {entry['patches']} | {e['max_abs']:.2e} | "
                f"{e['median_abs']:.2e} | {e['p99_abs']:.2e} | {e['max_relative_to_max_distance']:.2e} | "
                f"{e['storage_error_e']:.3g} | {e['median_bound']:.3g} | {over} "
                f"| {e['index_agreement']:.4f} |"
            )
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS)
@click.option("--coresets", default="0.1,0.01", show_default=True, help="Comma-separated coreset fractions.")
@click.option("--train-limit", type=int, help="Use only the first N training images (smoke runs).")
@click.option(
    "--distance-images", type=int, default=12, show_default=True, help="Test images for the distance errors."
)
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=TILES,
    show_default=True,
    help="MVTec-layout set (a second set, e.g. python -m padim_edge.demo.dark_texture DIR).",
)
@click.option("--name", default="patchcore_bank", show_default=True, help="File stem of the outputs.")
def main(
    output: Path, coresets: str, train_limit: int | None, distance_images: int, data: Path, name: str
) -> None:
    """Measure each bank precision's accuracy and write <name>.{json,md}."""
    from padim_edge.bench.system import machine_info

    if not (data.is_dir() and WEIGHTS.is_file()):
        raise click.ClickException(f"needs {data} and {WEIGHTS}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="patchcore-bank-") as workdir:
        result = run_bank(
            data,
            WEIGHTS,
            Path(workdir),
            coresets=tuple(float(c) for c in coresets.split(",")),
            train_limit=train_limit,
            distance_images=distance_images,
        )
    result.update(
        command=" ".join(["python", "benchmarks/patchcore_bank.py", *sys.argv[1:]]),
        seconds=time.perf_counter() - start,
        finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        machine=machine_info(),
        goals=GOALS,
        data=data.name,
    )
    output.mkdir(parents=True, exist_ok=True)
    print(atomic.write_json(output / f"{name}.json", result, indent=1))
    print(atomic.write_text(output / f"{name}.md", render(result)))


if __name__ == "__main__":
    main()
