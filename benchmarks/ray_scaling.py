"""Ray suite (docs/ray.md has the method and the results): ``scaling``, PaDiM R18-Rd100 (random-init)
fit and scoring on a local Ray instance with 1 and 2 workers / actors (1 thread each), interleaved, beside
the local fit and runtime. Writes ``ray_scaling.{json,md}``.
"""

from __future__ import annotations

import itertools
import statistics
from pathlib import Path
from typing import Any

import click
import harness as h

from padim_edge.bench.system import usable_cpus
from padim_edge.images import iter_batches, list_images
from padim_edge.runtime import PadimModel

main = h.group("Ray benchmarks (see the module docstring).")


def linked(folder: Path, files: list[Path]) -> Path:
    """A folder of links to exactly ``files`` (a scoring command's input)."""
    folder.mkdir(parents=True, exist_ok=True)
    for file in files:
        (folder / file.name).symlink_to(file.resolve())
    return folder


def interleaved(counts: tuple[int, ...], repeats: int, run: Any, images: int) -> dict[str, Any]:
    """``run(count)`` for every count, ``repeats`` times interleaved: seconds (median, min-max), images/s."""
    seconds: dict[int, list[float]] = {n: [] for n in counts}
    for r in range(repeats):
        for n in counts:
            seconds[n].append(h.clock(lambda n=n: run(n)))
            h.log(f"repeat {r + 1}, {n}: {seconds[n][-1]:.1f} s")
    return {
        str(n): {"seconds": {"median": statistics.median(s), "min": min(s), "max": max(s), "runs": s},
                 "images_per_s": images / statistics.median(s)}
        for n, s in seconds.items()
    }  # fmt: skip


def bench_fit(model: Any, paths: list[Path], *, repeats: int, batch_size: int, info: Any) -> tuple[Any, dict]:
    """Fit timings; returns (the last merged partial, the numbers)."""
    import ray
    import torch

    from padim_edge.distributed.fit import _merge, fit_statistics
    from padim_edge.export.fit import accumulate

    def fit(workers: int, files: list[Path] = paths) -> Any:
        out = fit_statistics(model, files, workers=workers, threads=1, batch_size=batch_size, device="cpu",
                             info=info, progress=False)  # fmt: skip
        last[:] = [out[0]]

    last: list[Any] = []
    h.log("fit: warm-up (worker processes import torch)")
    fit(2, paths[: 2 * batch_size])
    workers = interleaved((1, 2), repeats, fit, len(paths))
    partial = last[0]
    left, right = ray.put(partial), ray.put(partial)
    merge_s = h.clock(lambda: ray.get(_merge.remote(left, right)))
    threads, batches = torch.get_num_threads(), ([im for _, im in b] for b in iter_batches(paths, batch_size))
    torch.set_num_threads(1)
    local_s = h.clock(lambda: accumulate(model, batches, device="cpu"))
    torch.set_num_threads(threads)
    return partial, {
        "images": len(paths), "batch_size": batch_size, "workers": workers,
        "local_1_thread": {"seconds": local_s, "images_per_s": len(paths) / local_s},
        "partial_mb": (partial.scatter.nbytes + partial.mean.nbytes) / 1e6, "one_merge_s": merge_s,
    }  # fmt: skip


def bench_score(
    model_path: Path, folder: Path, count: int, *, repeats: int, batch_size: int, info: Any, tmp: Path
):
    """Scoring timings (fresh output folder each run, so nothing is skipped)."""
    from padim_edge.distributed.scoring import score

    runs, options = itertools.count(), {"threads": 1, "device": "cpu", "info": info, "progress": False}
    options.update(batch_size=batch_size, shard_size=4 * batch_size)

    def run(actors: int) -> None:
        done = score(model_path, [folder], tmp / f"score-{next(runs)}", actors=actors, **options)
        assert done.scored == count and not done.torch_in_workers, done

    h.log("score: warm-up (Ray Data, actor processes)")
    run(2)
    actors = interleaved((1, 2), repeats, run, count)
    model = PadimModel(model_path, device="cpu", threads=1)
    batches = (b for b in iter_batches(list_images(folder), batch_size))  # decoded while timed, as Ray does
    local_s = h.clock(lambda: [model.predict([im for _, im in b], batch_size=batch_size) for b in batches])
    return {"images": count, "batch_size": batch_size, "shard_size": 4 * batch_size, "actors": actors,
            "local_1_thread": {"seconds": local_s, "images_per_s": count / local_s}}  # fmt: skip


def render_scaling(result: dict[str, Any]) -> str:
    """The scaling report."""
    fit, sc, load = result["fit"], result["score"], (result["load_before"][0], result["load_after"][0])
    lines = [
        *h.header(result, "Ray scaling: distributed fit and batch scoring on one machine"),
        f"Medians of {result['repeats']} interleaved runs with their min-max; local Ray instance with "
        f"{result['ray_cpus']} CPUs; PaDiM {result['model']} at 224 (random-init backbone); 1 torch / "
        f"onnxruntime thread per worker or actor; images: {result['data']['source']} "
        f"({result['data']['description']}).",
        "",
    ]
    if min(load) > result["ray_cpus"]:
        lines += ["**Oversubscribed:** the load average exceeded Ray's CPUs, so the 1-vs-2 ratios measure "
                  "the other jobs as much as Ray (docs/ray.md).", ""]  # fmt: skip
    for part, key, name in ((fit, "workers", "Ray workers"), (sc, "actors", "actors")):
        rows = [[n, f"{r['images_per_s']:.2f}", f"{r['seconds']['median']:.1f}",
                 "{min:.1f}-{max:.1f}".format(**r["seconds"])] for n, r in part[key].items()]  # fmt: skip
        local = part["local_1_thread"]
        rows.append(
            ["local, no Ray (1 thread)", f"{local['images_per_s']:.2f}", f"{local['seconds']:.1f}", ""]
        )
        title = f"Fit ({fit['images']} images, batch {fit['batch_size']})"
        if part is sc:
            title = f"Scoring ({sc['images']} images, batch {sc['batch_size']}, shards of {sc['shard_size']})"
        speed = part[key]["2"]["images_per_s"] / part[key]["1"]["images_per_s"]
        lines += [f"## {title}", "", *h.table([name, "img/s", "seconds (median)", "min-max s"], rows), "",
                  f"2 {key} vs 1: x{speed:.2f}.", ""]  # fmt: skip
    lines.append(
        f"One merge of two partials ({fit['partial_mb']:.0f} MB each, same node): "
        f"{fit['one_merge_s']:.2f} s. Scoring includes the actors' start and model load."
    )
    return "\n".join(lines) + "\n"


@main.command("scaling")
@click.option("--fit-images", type=int, default=48, show_default=True, help="Images fitted per run.")
@click.option("--score-images", type=int, default=96, show_default=True, help="Images scored per run.")
@click.option("--repeats", type=int, default=2, show_default=True, help="Interleaved runs per setting.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Images per forward pass / run.")
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Images (default: see above).")
@h.measurement("ray_scaling", render_scaling)
def scaling(work, fit_images, score_images, repeats, batch_size, data) -> dict[str, Any]:
    """Fit and scoring throughput on a local Ray instance with 1 and 2 workers / actors."""
    import ray

    from padim_edge.bench.artifacts import paper_name
    from padim_edge.distributed.cluster import connect
    from padim_edge.export.fit import install
    from padim_edge.export.pipeline import build_module, export

    cpus, count = usable_cpus(), max(fit_images, score_images)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR")  # fmt: skip
    info, data = connect("local"), data or (h.TILES / "train" / "good" if h.TILES.is_dir() else None)
    if data is not None and len(list_images(data)) >= count:
        source = {"source": str(data), "description": "real images (magnetic tiles: grayscale, sizes vary)"}
        files = list_images(data)[:count]
    else:
        source = {"source": "synthetic", "description": "random smooth 256x256 RGB PNGs"}
        files = list_images(h.synthetic_images(work / "synthetic", count))
    paths = sorted(linked(work / "images", files).iterdir())
    model, weights = build_module("r18", random_init=True)
    timing = {"repeats": repeats, "batch_size": batch_size, "info": info}
    partial, fit = bench_fit(model, paths[:fit_images], **timing)
    h.log("exporting the model for the scoring runs")
    install(model, partial)
    export(model, work / "r18.onnx", weights=weights, train_images=partial.count)
    folder = linked(work / "score-images", paths[:score_images])
    sc = bench_score(work / "r18.onnx", folder, score_images, tmp=work, **timing)
    ray.shutdown()
    return {"model": paper_name("r18", 100), "ray_cpus": cpus, "ray": ray.__version__, "repeats": repeats,
            "data": source, "fit": fit, "score": sc}  # fmt: skip


if __name__ == "__main__":
    main()
