"""Ray suite: the distributed fit and batch scoring on one machine, and PatchCore fitted in shards.

* ``scaling``: a local Ray instance (``num_cpus`` = usable CPUs), PaDiM R18-Rd100 at 224 (random-init
  backbone: throughput does not depend on the weights), 1 torch / onnxruntime thread per worker or
  actor. Fit: :func:`padim_edge.distributed.fit.fit_statistics` with 1 and 2 workers, interleaved, after
  a warm-up that starts the workers (module rebuilt on each worker, decoding, backbone, float64
  accumulation, tree merge and the root fetched all timed), one merge of two partials alone, and the
  local fit (no Ray, 1 thread). Scoring: :func:`padim_edge.distributed.scoring.score` into a fresh
  folder with 1 and 2 actors (start-up and model load included), and the local runtime for reference.
  Images: the magnetic tile's ``train/good`` when present, else synthetic. Writes ``ray_scaling.*``.
* ``shards``: the distributed PatchCore fit's own steps without a cluster: the training list cut into
  2 and 4 shards of whole batches (:func:`padim_edge.distributed.fit.split`), one coreset bank per shard
  (``bank.partial(reduce=True)``), the driver's final greedy pass (:class:`CoresetPartial`), beside the
  local single pass; each bank exported and scored with padim-eval's metrics on the magnetic tile test
  split, MobileNetV2 ImageNet weights, coreset 0.1. Writes ``patchcore_shards.*``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    TILES,
    WEIGHTS,
    Run,
    header,
    log,
    output_options,
    require_shared,
    synthetic_images,
    workspace,
    write_results,
)

#: Images per forward pass in the shards comparison, the distributed fit's default (``--batch-size``).
BATCH = 16


def _images(folder: Path, count: int, tmp: Path, data: Path | None) -> tuple[list[Path], dict[str, str]]:
    from padim_edge.images import list_images

    data = data or (TILES / "train" / "good" if TILES.is_dir() else None)
    if data is not None and len(list_images(data)) >= count:
        source = {"source": str(data), "description": "real images (magnetic tiles: grayscale, sizes vary)"}
        files = list_images(data)[:count]
    else:
        source = {"source": "synthetic", "description": "random smooth 256x256 RGB PNGs"}
        files = list_images(synthetic_images(tmp / "synthetic", count))
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:  # a folder of exactly these images (links), for the scoring command's input
        (folder / file.name).symlink_to(file.resolve())
    return sorted(folder.iterdir()), source


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def bench_fit(model: Any, paths: list[Path], *, repeats: int, batch_size: int, info: Any) -> tuple[Any, dict]:
    """Fit timings; returns (the last merged partial, the numbers)."""
    import ray
    import torch

    from padim_edge.distributed.fit import _merge, fit_statistics
    from padim_edge.export.fit import accumulate
    from padim_edge.images import iter_batches

    click.echo("fit: warm-up (worker processes import torch)", err=True)
    fit_statistics(
        model, paths[: 2 * batch_size], workers=2, batch_size=batch_size, info=info, progress=False
    )
    seconds: dict[int, list[float]] = {1: [], 2: []}
    partial = None
    for r in range(repeats):
        for workers in (1, 2):
            start = time.perf_counter()
            partial, _, _ = fit_statistics(
                model,
                paths,
                workers=workers,
                threads=1,
                batch_size=batch_size,
                device="cpu",
                info=info,
                progress=False,
            )
            seconds[workers].append(time.perf_counter() - start)
            click.echo(f"fit: repeat {r + 1}, {workers} worker(s): {seconds[workers][-1]:.1f} s", err=True)
    left, right = ray.put(partial), ray.put(partial)
    start = time.perf_counter()
    ray.get(_merge.remote(left, right))
    merge_s = time.perf_counter() - start
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    start = time.perf_counter()
    accumulate(model, ([im for _, im in b] for b in iter_batches(paths, batch_size)), device="cpu")
    local_s = time.perf_counter() - start
    torch.set_num_threads(threads)
    partial_mb = (partial.scatter.nbytes + partial.mean.nbytes) / 1e6
    return partial, {
        "images": len(paths),
        "batch_size": batch_size,
        "workers": {
            str(w): {"seconds": _spread(s), "images_per_s": len(paths) / statistics.median(s)}
            for w, s in seconds.items()
        },
        "local_1_thread": {"seconds": local_s, "images_per_s": len(paths) / local_s},
        "partial_mb": partial_mb,
        "one_merge_s": merge_s,
    }


def bench_score(
    model_path: Path, folder: Path, count: int, *, repeats: int, batch_size: int, info: Any, tmp: Path
) -> dict[str, Any]:
    """Scoring timings (fresh output folder each run, so nothing is skipped)."""
    from padim_edge.distributed.scoring import score
    from padim_edge.images import iter_batches, list_images
    from padim_edge.runtime import PadimModel

    click.echo("score: warm-up (Ray Data, actor processes)", err=True)
    score(
        model_path,
        [folder],
        tmp / "score-warm-up",
        actors=2,
        threads=1,
        batch_size=batch_size,
        info=info,
        progress=False,
    )
    seconds: dict[int, list[float]] = {1: [], 2: []}
    for r in range(repeats):
        for actors in (1, 2):
            out = tmp / f"score-{r}-{actors}"
            start = time.perf_counter()
            run = score(
                model_path,
                [folder],
                out,
                actors=actors,
                threads=1,
                batch_size=batch_size,
                shard_size=4 * batch_size,
                device="cpu",
                info=info,
                progress=False,
            )
            seconds[actors].append(time.perf_counter() - start)
            assert run.scored == count and not run.torch_in_workers, run
            click.echo(f"score: repeat {r + 1}, {actors} actor(s): {seconds[actors][-1]:.1f} s", err=True)
    model = PadimModel(model_path, device="cpu", threads=1)
    start = time.perf_counter()
    for batch in iter_batches(list_images(folder), batch_size):
        model.predict([im for _, im in batch], batch_size=batch_size)
    local_s = time.perf_counter() - start
    return {
        "images": count,
        "batch_size": batch_size,
        "shard_size": 4 * batch_size,
        "actors": {
            str(a): {"seconds": _spread(s), "images_per_s": count / statistics.median(s)}
            for a, s in seconds.items()
        },
        "local_1_thread": {"seconds": local_s, "images_per_s": count / local_s},
    }


def render_scaling(result: dict[str, Any]) -> str:
    """The scaling report."""
    fit, sc = result["fit"], result["score"]
    lines = [
        *header(result, "Ray scaling: distributed fit and batch scoring on one machine"),
        f"**Load:** load average {result['load_before'][0]:.1f} before, {result['load_after'][0]:.1f} "
        f"after, on {result['machine']['usable_cpus']} CPUs; numbers are medians of {result['repeats']} "
        "interleaved runs with their min-max"
        + (
            ". The machine was busy with other jobs: read the shape of the scaling, not absolute speed, "
            "and re-run on a quiet machine for final figures."
            if max(result["load_before"][0], result["load_after"][0]) > 1.0
            else " (a quiet machine)."
        ),
        "",
        *(
            [
                "**Oversubscribed:** the load average exceeded the CPUs Ray was given, so a second worker or "
                "actor found no idle core and the 1-vs-2 ratios below measure the other jobs as much as Ray. "
                "Fixed costs per worker (rebuilding the module from its state_dict, allocating and sending "
                "its partial, one merge) and per actor (starting, loading the model) are real; the ratios "
                "neither show nor refute the scaling on idle cores.",
                "",
            ]
            if min(result["load_before"][0], result["load_after"][0]) > result["ray_cpus"]
            else []
        ),
        f"**Setup:** local Ray instance with {result['ray_cpus']} CPUs; PaDiM {result['model']} at 224 "
        "(random-init backbone); 1 torch / onnxruntime thread per worker or actor; images: "
        f"{result['data']['source']} "
        f"({result['data']['description']}).",
        "",
        f"## Fit ({fit['images']} images, batch {fit['batch_size']})",
        "",
        "| Ray workers | img/s | seconds (median) | min-max s |",
        "|---|---|---|---|",
    ]
    for workers, row in fit["workers"].items():
        s = row["seconds"]
        lines.append(
            f"| {workers} | {row['images_per_s']:.2f} | {s['median']:.1f} | {s['min']:.1f}-{s['max']:.1f} |"
        )
    speed = fit["workers"]["2"]["images_per_s"] / fit["workers"]["1"]["images_per_s"]
    lines += [
        f"| local, no Ray (1 thread) | {fit['local_1_thread']['images_per_s']:.2f} | "
        f"{fit['local_1_thread']['seconds']:.1f} | |",
        "",
        f"2 workers vs 1: x{speed:.2f}. One merge of two partials ({fit['partial_mb']:.0f} MB each, "
        f"same node): {fit['one_merge_s']:.2f} s.",
        "",
        f"## Scoring ({sc['images']} images, batch {sc['batch_size']}, shards of {sc['shard_size']})",
        "",
        "| actors | img/s | seconds (median) | min-max s |",
        "|---|---|---|---|",
    ]
    for actors, row in sc["actors"].items():
        s = row["seconds"]
        lines.append(
            f"| {actors} | {row['images_per_s']:.2f} | {s['median']:.1f} | {s['min']:.1f}-{s['max']:.1f} |"
        )
    speed = sc["actors"]["2"]["images_per_s"] / sc["actors"]["1"]["images_per_s"]
    lines += [
        f"| local runtime, no Ray (1 thread) | {sc['local_1_thread']['images_per_s']:.2f} | "
        f"{sc['local_1_thread']['seconds']:.1f} | |",
        "",
        f"2 actors vs 1: x{speed:.2f}. Ray's times include starting the actors and loading the model in "
        "each, and the driver writing the shards and the JSON files.",
        "",
        "How the reduce tree, network traffic and memory per node scale on a real cluster: docs/ray.md "
        f"(this run: a {fit['partial_mb']:.0f} MB partial, one merge {fit['one_merge_s']:.2f} s).",
    ]
    return "\n".join(lines)


def embed_all(module: Any, paths: list[Path]) -> np.ndarray:
    """Every training patch vector ``[images * patches, dims]`` (float32), in image order."""
    import torch

    from padim_edge.export.patchcore.fit import patch_vectors
    from padim_edge.images import iter_batches

    out = np.empty((len(paths) * module.patches, module.config.dims), dtype=np.float32)
    row = 0
    with torch.inference_mode():
        for batch in iter_batches(paths, BATCH):
            vectors = patch_vectors(module.embed([image for _, image in batch]))
            out[row : row + len(vectors)] = vectors
            row += len(vectors)
    return out


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


def run_shards(workdir: Path, *, shard_counts: tuple[int, ...], coreset: float) -> dict[str, Any]:
    """Every row of the comparison (magnetic tile, MobileNetV2)."""
    from padim_edge.datasets import load_category
    from padim_edge.evaluation.metrics import evaluate_category
    from padim_edge.evaluation.predictions import predict_category
    from padim_edge.export.pipeline import build_module, export
    from padim_edge.images import list_images, load_image
    from padim_edge.runtime import PadimModel

    paths = list_images(TILES / "train" / "good")
    module, weight_id = build_module("mnv2", method="patchcore", weights_file=WEIGHTS, coreset=coreset)
    vectors = embed_all(module, paths)
    sample = [load_image(p) for p in paths[:2]]
    result: dict[str, Any] = {
        "data": str(TILES),
        "weights": weight_id,
        "train_images": len(paths),
        "test_images": len(load_category(TILES).samples),
        "patches_per_image": module.patches,
        "dims": module.config.dims,
        "coreset": coreset,
        "batch_size": BATCH,
        "rows": [],
    }
    for shards in shard_counts:
        model, _ = build_module("mnv2", method="patchcore", weights_file=WEIGHTS, coreset=coreset)
        row: dict[str, Any] = {"shards": shards, **_fit_bank(model, vectors, paths, shards)}
        path = workdir / f"shards{shards}.onnx"
        export(model, path, weights=weight_id, train_images=len(paths), parity_images=sample)
        row["bank_size"] = int(model.scorer.bank.shape[0])
        log(f"{shards} shard(s): scoring the test split")
        predictions = predict_category(PadimModel(path, device="cpu"), load_category(TILES), batch_size=8)
        row["overall"] = evaluate_category(predictions).overall.to_dict()
        result["rows"].append(row)
        path.unlink()
    return result


def render_shards(result: dict[str, Any]) -> str:
    """The Markdown table: each shard count's metrics and its difference from the single pass."""
    keys = ("image_auroc", "pixel_auroc", "pro")
    base = next((r["overall"] for r in result["rows"] if r["shards"] == 1), None)
    lines = [
        *header(result, "PatchCore on Ray: per-shard coresets vs one pass (magnetic tile, MobileNetV2)"),
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Ray benchmarks (see the module docstring)."""


@main.command("scaling")
@output_options
@click.option("--fit-images", type=int, default=48, show_default=True, help="Images fitted per run.")
@click.option("--score-images", type=int, default=96, show_default=True, help="Images scored per run.")
@click.option("--repeats", type=int, default=2, show_default=True, help="Interleaved runs per setting.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Images per forward pass / run.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Images (default: see above).")
def scaling(output, workdir, fit_images, score_images, repeats, batch_size, data) -> None:
    """Fit and scoring throughput on a local Ray instance with 1 and 2 workers / actors."""
    import ray

    from padim_edge.bench.artifacts import paper_name
    from padim_edge.bench.system import usable_cpus
    from padim_edge.distributed.cluster import connect
    from padim_edge.export.fit import install
    from padim_edge.export.pipeline import build_module, export

    stamp = Run()
    cpus = usable_cpus()
    ray.init(
        address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR"
    )
    info = connect("local")
    with workspace(workdir, "padim-ray-scaling-") as tmp:
        paths, source = _images(tmp / "images", max(fit_images, score_images), tmp, data)
        model, weights = build_module("r18", random_init=True)
        partial, fit = bench_fit(model, paths[:fit_images], repeats=repeats, batch_size=batch_size, info=info)
        click.echo("exporting the model for the scoring runs", err=True)
        install(model, partial)
        model_path = tmp / "r18.onnx"
        export(model, model_path, weights=weights, train_images=partial.count)
        score_folder = tmp / "score-images"
        score_folder.mkdir()
        for file in paths[:score_images]:
            (score_folder / file.name).symlink_to(file.resolve())
        sc = bench_score(
            model_path, score_folder, score_images, repeats=repeats, batch_size=batch_size, info=info, tmp=tmp
        )
    ray.shutdown()
    result = stamp.stamp(
        {
            "model": paper_name("r18", 100), "ray_cpus": cpus, "ray": ray.__version__, "repeats": repeats,
            "data": source, "fit": fit, "score": sc,
        }
    )  # fmt: skip
    write_results(output, "ray_scaling", result, render_scaling(result))


@main.command("shards")
@output_options
@click.option("--shards", "shard_counts", default="1,2,4", show_default=True, help="1 = the local fit.")
@click.option("--coreset", type=float, default=0.1, show_default=True)
def shards(output, workdir, shard_counts, coreset) -> None:
    """Accuracy of PatchCore's distributed fit against the local one."""
    require_shared(TILES, WEIGHTS)
    stamp = Run()
    counts = tuple(int(s) for s in shard_counts.split(","))
    with workspace(workdir, "padim-patchcore-shards-") as work:
        result = stamp.stamp(run_shards(work, shard_counts=counts, coreset=coreset))
    write_results(output, "patchcore_shards", result, render_shards(result))


if __name__ == "__main__":
    main()
