"""Random index-select vs a semi-orthogonal projection (issue 9's optional part): accuracy and cost.

Kim et al. 2021 ("Semi-orthogonal embedding for efficient unsupervised anomaly segmentation") replace
PaDiM's random channel subset by ``W^T x`` with a fixed random ``W`` ``[C, d]``, ``W^T W = I``. Before
it becomes a ``--reduction`` option, this measures whether it pays, through the exported graph and the
runtime, as every accuracy figure here:

* ``accuracy``: MobileNetV2 with its real ImageNet weights (the only real weights on these machines),
  fitted on ``train/good`` of one of the INT8 benchmark's sets (``--set``: the magnetic tile by default,
  or the generated dark texture / woven-fabric demo set, :mod:`int8_sets`) at several ``dims``, each
  reduction; image / pixel AUROC and PRO on every test image.
* ``latency``: R18 (random-init: latency does not depend on the weights) at ``dims`` 100, both
  reductions, batch 1, CPU EP, interleaved rounds; plus the projection's multiply-adds per image for
  R18-Rd100 and WR50-Rd550.

The projection is applied per tapped map before the nearest upsampling (a 1x1 convolution commutes with
it), so each map is projected on its own grid: fewer multiply-adds than projecting the concatenated
embedding. It is ``padim-export --reduction orthogonal``
(:class:`~padim_edge.export.padim.reduction.OrthogonalReducer`), added after this comparison.

Run: ``python benchmarks/reduction.py [--workdir DIR]`` -> ``results/reduction.{json,md}``;
``--set dark_texture --skip-latency`` -> ``results/reduction_dark_texture.{json,md}``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from padim_edge.bench.report import machine_line
from padim_edge.bench.system import machine_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compact_head_parts as parts
from int8_sets import SETS, prepare_set
from int8_sets import WEIGHTS as MNV2_WEIGHTS

HERE = Path(__file__).resolve().parent

REDUCTIONS = ("select", "orthogonal")
#: Result sections; one run may measure some and keep the others from the results file.
SECTIONS = ("accuracy", "latency", "stage")


def log(message: str) -> None:
    print(message, flush=True)


def build(backbone: str, dims: int, reduction: str, **options: Any):
    from padim_edge.export.pipeline import build_module

    return build_module(backbone, dims=dims, reduction=reduction, **options)


def projection_macs(channels: tuple[int, ...], dims: int, grid: int) -> int:
    """Multiply-adds per image of the per-map projection (map ``i`` on a grid of ``grid / 2**i``)."""
    return sum(count * dims * (grid >> i) ** 2 for i, count in enumerate(channels))


def accuracy_section(
    workdir: Path, data: Path, weights: Path, dims_list: list[int], seeds: list[int], *, description: str
) -> dict[str, Any]:
    from padim_edge.export.fit import fit
    from padim_edge.export.pipeline import export
    from padim_edge.images import list_images

    paths = list_images(data / "train" / "good")
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for dims in dims_list:
        for seed in seeds:
            for reduction in REDUCTIONS:
                path = workdir / f"mnv2-d{dims}-{reduction}-s{seed}.onnx"
                if not path.is_file():
                    log(f"mnv2 dims {dims}, {reduction}, seed {seed}: fitting on {len(paths)} images")
                    model, ident = build("mnv2", dims, reduction, weights_file=weights, seed=seed)
                    report = fit(model, paths, device="cpu", progress=False)
                    export(model, path, weights=ident, train_images=report.images)
                overall = parts.evaluate(path, data)["overall"]
                rows.append({"dims": dims, "reduction": reduction, "seed": seed, **overall})
                log(f"  dims {dims} {reduction} seed {seed}: image {overall['image_auroc']:.4f}, pixel "
                    f"{overall['pixel_auroc']:.4f}, PRO {overall['pro']:.4f}")  # fmt: skip
    return {
        "data": str(data), "description": description, "weights": weights.name, "train_images": len(paths),
        "rows": rows,
    }  # fmt: skip


METRICS = ("image_auroc", "pixel_auroc", "pro")


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (dims, reduction): mean and [min-max] over seeds of each metric, and orthogonal - select."""
    out = []
    for dims in sorted({r["dims"] for r in rows}, reverse=True):
        means = {}
        for reduction in REDUCTIONS:
            chosen = [r for r in rows if r["dims"] == dims and r["reduction"] == reduction]
            values = {m: [r[m] for r in chosen] for m in METRICS}
            means[reduction] = {m: float(np.mean(v)) for m, v in values.items()}
            out.append({"dims": dims, "reduction": reduction, "seeds": len(chosen), "values": values})
        out.append(
            {"dims": dims, "reduction": "orthogonal - select", "delta": {
                m: means["orthogonal"][m] - means["select"][m] for m in METRICS
            }}
        )  # fmt: skip
    return out


def latency_section(workdir: Path, *, dims: int, rounds: int, reps: int) -> dict[str, Any]:
    from padim_edge.export.fit import fit_frames
    from padim_edge.export.pipeline import export

    frames = np.random.default_rng(0).integers(0, 256, (8, 256, 256, 3), dtype=np.uint8)
    models = {}
    for reduction in REDUCTIONS:
        path = workdir / f"r18-d{dims}-{reduction}.onnx"
        if not path.is_file():
            model, ident = build("r18", dims, reduction, random_init=True)
            fit_frames(model, frames, device="cpu")
            export(model, path, weights=ident, train_images=len(frames))
        models[reduction] = path
    batch = parts.make_batch(1)
    openers = {name: (lambda p=path: parts.open_fused(p, batch)) for name, path in models.items()}
    log(f"R18 dims {dims}: {rounds} rounds x {reps} calls, batch 1")
    timing = parts.interleaved(openers, rounds=rounds, reps=reps, log=log)
    return {"dims": dims, "ms": {name: parts.spread(v) for name, v in timing["ms"].items()}, "timing": timing}


#: (name, channels of the tapped maps, their grids, dims) of the reduce stage timed alone.
STAGE_SIZES = (
    ("R18-Rd100", (64, 128, 256), (56, 28, 14), 100),
    ("WR50-Rd550", (256, 512, 1024), (56, 28, 14), 550),
)


def stage_section(workdir: Path, *, rounds: int, reps: int) -> dict[str, Any]:
    """The reduce stage alone (tapped maps in, embedding out), each reduction, at R18 and WR50 size.

    The library's reducer modules exported with the dynamo exporter, as the fused graph traces them;
    batch 1, CPU EP, interleaved rounds.
    """
    import onnxruntime as ort

    from padim_edge.export.padim.reduction import make_reducer
    from padim_edge.runtime.session import session_options

    out: dict[str, Any] = {}
    for name, channels, grids, dims in STAGE_SIZES:
        maps = [torch.randn(1, c, g, g) for c, g in zip(channels, grids, strict=True)]
        openers = {}
        for reduction in REDUCTIONS:
            path = workdir / f"stage-{name}-{reduction}.onnx"
            if not path.is_file():
                reducer, _ = make_reducer(reduction, channels, dims, 0)
                stage = _Stage(reducer).eval()
                torch.onnx.export(stage, tuple(maps), str(path), dynamo=True, external_data=False)
            feed = {f"map{i}": m.numpy() for i, m in enumerate(maps)}

            def opener(path: Path = path, feed: dict = feed) -> parts.Runner:
                session = ort.InferenceSession(
                    str(path), session_options(parts.THREADS), providers=["CPUExecutionProvider"]
                )
                names = [i.name for i in session.get_inputs()]
                inputs = dict(zip(names, feed.values(), strict=True))
                return (lambda: session.run(None, inputs)), (lambda: None)

            openers[reduction] = opener
        log(f"reduce stage alone, {name}: {rounds} rounds x {reps} calls")
        timing = parts.interleaved(openers, rounds=rounds, reps=reps, log=log)
        out[name] = {r: parts.spread(timing["ms"][r]) for r in REDUCTIONS}
    return out


class _Stage(torch.nn.Module):
    """A reducer with the three maps as separate inputs (what the exporter traces)."""

    def __init__(self, reducer: torch.nn.Module) -> None:
        super().__init__()
        self.reducer = reducer

    def forward(self, map0: torch.Tensor, map1: torch.Tensor, map2: torch.Tensor) -> torch.Tensor:
        return self.reducer([map0, map1, map2])


def _provenance(result: dict[str, Any], section: str) -> list[str]:
    """A line naming the earlier run a kept section comes from (nothing for this run's sections)."""
    run = result[section].get("run") or {}
    if not run or run.get("when") == result["when"]:
        return []
    return [
        f"*From an earlier run:* `{run['command']}`, {run['when']}, on {machine_line(run['machine'])}.",
        "",
    ]


def report(result: dict[str, Any]) -> str:
    lines = ["# Reduction: random index-select vs semi-orthogonal projection (issue 9, optional)", ""]
    lines += [
        f"**Machine:** {machine_line(result['machine'])}",
        "",
        f"**Run:** `{result['command']}`, {result['when']}.",
        "",
    ]
    acc = result.get("accuracy", {})
    if "rows" in acc:
        lines += [
            f"## Accuracy: MobileNetV2 (ImageNet weights), {acc.get('description', 'magnetic tile')} "
            f"({acc['train_images']} train images), 256 -> 224, exported graph through the runtime",
            "",
            *_provenance(result, "accuracy"),
            "Mean over seeds [min-max] (a seed picks both the channel subset and the projection).",
            "",
            "| dims | reduction | seeds | image AUROC | pixel AUROC | PRO@0.3 |",
            "|---:|---|---:|---:|---:|---:|",
        ]
        for row in summary_rows(acc["rows"]):
            if "delta" in row:
                cells = [f"**{row['delta'][m]:+.4f}**" for m in METRICS]
                lines.append(f"| {row['dims']} | {row['reduction']} | | {' | '.join(cells)} |")
                continue
            cells = [f"{np.mean(v):.4f} [{min(v):.4f}-{max(v):.4f}]" for v in row["values"].values()]
            lines.append(f"| {row['dims']} | {row['reduction']} | {row['seeds']} | {' | '.join(cells)} |")
        lines.append("")
    else:
        lines += [f"Accuracy: {acc.get('skipped', 'not run')}", ""]
    lat = result.get("latency")
    if lat:
        lines += [
            f"## Latency: R18, dims {lat['dims']}, batch 1, CPU EP, {result['threads']} threads "
            "(ms per call)",
            "",
            *_provenance(result, "latency"),
            "| reduction | median [min-max over rounds] |",
            "|---|---:|",
        ]
        for name, s in lat["ms"].items():
            lines.append(f"| {name} | {s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}] |")
        lines.append("")
    stage = {k: v for k, v in (result.get("stage") or {}).items() if k != "run"}
    if stage:
        lines += [
            "## The reduce stage alone (tapped maps in, embedding out), batch 1, CPU EP, "
            f"{result['threads']} threads (ms per call)",
            "",
            *_provenance(result, "stage"),
            "| size | select | orthogonal |",
            "|---|---:|---:|",
        ]
        for name, row in stage.items():
            cells = [f"{row[r]['median']:.3f} [{row[r]['min']:.3f}-{row[r]['max']:.3f}]" for r in REDUCTIONS]
            lines.append(f"| {name} | {' | '.join(cells)} |")
        lines.append("")
    lines += ["## Projection cost per image (multiply-adds, maps projected on their own grids)", ""]
    lines += ["| model | select | orthogonal |", "|---|---:|---:|"]
    for name, macs in result["macs"].items():
        lines.append(f"| {name} | 0 (a gather) | {macs / 1e6:.0f} M |")
    lines.append("")
    return "\n".join(lines)


@click.command()
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("/tmp/reduction"))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=HERE / "results")
@click.option("--dims", "dims_list", default="100,50,25", show_default=True, help="mnv2 dims to compare.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds of the subset / projection.")
@click.option("--rounds", default=7, show_default=True)
@click.option("--reps", default=30, show_default=True)
@click.option("--skip-accuracy", is_flag=True)
@click.option("--skip-latency", is_flag=True)
@click.option(
    "--set", "set_name", type=click.Choice(SETS), default="magnetic_tile", show_default=True,
    help="Accuracy data set; other than the magnetic tile, results go to reduction_<set>.{json,md}.",
)  # fmt: skip
def main(
    workdir: Path,
    output: Path,
    dims_list: str,
    seeds: str,
    rounds: int,
    reps: int,
    skip_accuracy: bool,
    skip_latency: bool,
    set_name: str,
) -> None:
    """Compare the two reductions; write reduction.{json,md} (sections not run are kept from the file)."""
    workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(parts.THREADS)
    stem = "reduction" if set_name == "magnetic_tile" else f"reduction_{set_name}"
    previous = (
        json.loads((output / f"{stem}.json").read_text()) if (output / f"{stem}.json").is_file() else {}
    )
    result: dict[str, Any] = {
        "machine": machine_info(),
        "command": "benchmarks/reduction.py " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "threads": parts.THREADS,
        "macs": {
            "R18-Rd100 (224)": projection_macs((64, 128, 256), 100, 56),
            "WR50-Rd550 (224)": projection_macs((256, 512, 1024), 550, 56),
            "MNV2-Rd100 (224)": projection_macs((24, 32, 96), 100, 56),
        },
    }
    if not skip_accuracy:
        root, description = prepare_set(set_name, workdir)
        if root is not None and MNV2_WEIGHTS.is_file():
            dims = [int(d) for d in dims_list.split(",")]
            seed_list = [int(x) for x in seeds.split(",")]
            result["accuracy"] = accuracy_section(
                workdir / set_name, root, MNV2_WEIGHTS, dims, seed_list, description=description
            )
        else:
            result["accuracy"] = {"skipped": description if root is None else f"needs {MNV2_WEIGHTS}"}
    if not skip_latency:
        result["latency"] = latency_section(workdir, dims=100, rounds=rounds, reps=reps)
        result["stage"] = stage_section(workdir, rounds=rounds, reps=reps)
    run = {k: result[k] for k in ("machine", "command", "when")}
    for section in SECTIONS:
        if section in result:
            result[section]["run"] = run
        elif section in previous:  # measured by an earlier run: kept, with that run's provenance
            result[section] = previous[section]
            result[section].setdefault("run", {k: previous[k] for k in ("machine", "command", "when")})
    output.mkdir(parents=True, exist_ok=True)
    (output / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (output / f"{stem}.md").write_text(report(result))
    log(report(result))


if __name__ == "__main__":
    main()
