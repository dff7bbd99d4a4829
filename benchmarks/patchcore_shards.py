"""PatchCore on Ray: what per-shard coresets + the driver's final greedy pass cost in accuracy.

The distributed fit (``padim-export --method patchcore --ray``) cuts the training list into shards of
whole batches (:func:`padim_edge.distributed.fit.split`); each worker streams its shard into its own
coreset bank and hands on only its chunk coresets (``bank.partial(reduce=True)``); the driver
concatenates them (:class:`CoresetPartial`) and runs the final greedy pass
(:meth:`PatchCorePlan.install`). This script runs exactly those steps for 2 and 4 shards, without a
cluster (the feature pass is done once, here: a shard's patch vectors are the rows of its images, in the
same batches of 16 as on a worker), beside the local single-pass fit (one streaming bank over every
image, :func:`padim_edge.export.patchcore.fit.install`). Each bank is exported and scored through the
runtime with padim-eval's metrics on the magnetic-tile test split, MobileNetV2 ImageNet weights.

Not timing sensitive (the selection times are reported for orientation only).

    python benchmarks/patchcore_shards.py            # writes results/patchcore_shards.{json,md}
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: The project's ``../shared`` folder (``PADIM_EDGE_SHARED`` overrides it, as in the tests).
SHARED = Path(os.environ.get("PADIM_EDGE_SHARED") or ROOT.parent / "shared")
TILES = SHARED / "data" / "magnetic_tile"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
#: Images per forward pass, the distributed fit's default (``--batch-size``).
BATCH = 16


def _fit_bank(module: Any, vectors: Any, paths: list[Path], shards: int) -> dict[str, Any]:
    """Install into ``module`` the bank a fit with ``shards`` Ray workers (1: the local fit) selects."""
    from padim_edge.distributed.fit import split, tree_reduce
    from padim_edge.distributed.methods import CoresetPartial, plan_for
    from padim_edge.export.patchcore import fit as patchcore_fit

    per_batch = BATCH * module.patches
    start = time.perf_counter()
    if shards == 1:
        bank = patchcore_fit.make_bank(module)
        for lo in range(0, len(vectors), per_batch):
            bank.add(vectors[lo : lo + per_batch])
        patchcore_fit.install(module, bank)
        held = len(bank.partial().vectors)
    else:
        partials, row = [], 0
        for shard in split(paths, shards, batch_size=BATCH):
            rows = vectors[row : row + len(shard) * module.patches]
            row += len(rows)
            bank = patchcore_fit.make_bank(module)  # what PatchCorePlan.partial_fit does on a worker
            for lo in range(0, len(rows), per_batch):
                bank.add(rows[lo : lo + per_batch])
            part = bank.partial(reduce=True)
            partials.append(
                CoresetPartial(vectors=[part.vectors], seen=part.seen, chunks=part.chunks, count=len(shard))
            )
        merged = tree_reduce(partials, lambda a, b: a.merge(b))
        held = sum(len(v) for v in merged.vectors)
        plan_for(module).install(module, merged)
    return {"selection_s": time.perf_counter() - start, "vectors_held_for_final_pass": held}


def run(data: Path, weights: Path, workdir: Path, *, shard_counts: tuple[int, ...], coreset: float,
        out: Path, progress: bool) -> dict[str, Any]:  # fmt: skip
    """Every row of the comparison; the JSON is rewritten after each row."""
    sys.path.insert(0, str(Path(__file__).parent))
    from patchcore_accuracy import embed_all, metrics

    from padim_edge.bench.system import machine_info
    from padim_edge.datasets import load_category
    from padim_edge.export.pipeline import build_module, export
    from padim_edge.images import list_images, load_image
    from padim_edge.runtime import PadimModel

    started = time.perf_counter()
    paths = list_images(data / "train" / "good")
    module, weight_id = build_module("mnv2", method="patchcore", weights_file=weights, coreset=coreset)
    vectors = embed_all(module, paths, progress=progress)
    sample = [load_image(p) for p in paths[:2]]
    result: dict[str, Any] = {
        "command": "python benchmarks/patchcore_shards.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "data": str(data),
        "weights": weight_id,
        "train_images": len(paths),
        "test_images": len(load_category(data).samples),
        "patches_per_image": module.patches,
        "dims": module.config.dims,
        "coreset": coreset,
        "batch_size": BATCH,
        "rows": [],
    }
    for shards in shard_counts:
        model, _ = build_module("mnv2", method="patchcore", weights_file=weights, coreset=coreset)
        row: dict[str, Any] = {"shards": shards, **_fit_bank(model, vectors, paths, shards)}
        path = workdir / f"shards{shards}.onnx"
        export(model, path, weights=weight_id, train_images=len(paths), parity_images=sample)
        row["bank_size"] = int(model.scorer.bank.shape[0])
        label = "local single pass" if shards == 1 else f"{shards} shards"
        graph, _ = metrics(PadimModel(path, device="cpu"), data, desc=label, progress=progress)
        row["overall"] = graph["overall"]
        result["rows"].append(row)
        result["seconds"] = time.perf_counter() - started
        result["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        path.unlink()
    return result


def render(result: dict[str, Any]) -> str:
    """The Markdown table: each shard count's metrics and its difference from the single pass."""
    from padim_edge.bench.markdown import machine_line

    keys = ("image_auroc", "pixel_auroc", "pro")
    base = next((r["overall"] for r in result["rows"] if r["shards"] == 1), None)
    lines = [
        "# PatchCore on Ray: per-shard coresets vs one pass (magnetic tile, MobileNetV2)",
        "",
        f"**Machine:** {machine_line(result['machine'])}",
        f"**Command:** `{result['command']}` (finished {result['finished']}, {result['seconds']:.0f} s).",
        "",
        f"Fit on {result['train_images']} training images ({result['patches_per_image']} patch vectors each, "
        f"dims {result['dims']}), coreset {result['coreset']:g}, batches of {result['batch_size']}. "
        "Shards: the distributed fit's own split, per-shard banks and final greedy pass "
        "(`padim_edge.distributed`), run in one process. Metrics: padim-eval on the exported graph "
        f"(CPU EP), test split of {result['test_images']} images.",
        "",
        "| Fit | Bank | Vectors into the final pass | Image AUROC | Pixel AUROC | PRO@0.3 "
        "| d image | d pixel | d PRO |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        o = r["overall"]
        diff = [f"{o[k] - base[k]:+.4f}" if base and r["shards"] != 1 else "" for k in keys]
        name = "local single pass (streaming bank)" if r["shards"] == 1 else f"Ray fit, {r['shards']} shards"
        lines.append(
            f"| {name} | {r['bank_size']} | {r['vectors_held_for_final_pass']} | "
            + " | ".join(f"{o[k]:.4f}" for k in keys)
            + " | "
            + " | ".join(diff)
            + " |"
        )
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--data", type=click.Path(path_type=Path), default=TILES, show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), default=WEIGHTS, show_default=True)
@click.option("--shards", "shard_counts", default="1,2,4", show_default=True, help="1 = the local fit.")
@click.option("--coreset", type=float, default=0.1, show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), default=RESULTS / "patchcore_shards.md")
@click.option("--render-only", is_flag=True, help="Rewrite the Markdown from the JSON.")
@click.option("--quiet", "-q", is_flag=True)
def main(
    data: Path, weights: Path, shard_counts: str, coreset: float, output: Path, render_only: bool, quiet: bool
) -> None:
    """Accuracy of PatchCore's distributed fit against the local one (see the module docstring)."""
    if not render_only:
        if not data.is_dir() or not weights.is_file():
            raise click.ClickException(f"needs {data} and {weights} (../shared; set PADIM_EDGE_SHARED)")
        counts = tuple(int(s) for s in shard_counts.split(","))
        with tempfile.TemporaryDirectory() as workdir:
            run(
                data,
                weights,
                Path(workdir),
                shard_counts=counts,
                coreset=coreset,
                out=output,
                progress=not quiet,
            )
    output.write_text(render(json.loads(output.with_suffix(".json").read_text())))
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
