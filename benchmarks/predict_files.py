"""padim-predict on real files: the pipelined command against the sequential one it replaced.

The set: 80 PNGs of 900x900 (the size of MVTec AD bottle), made from the magnetic tile's train/good
images in ../shared (grayscale JPEGs of about 500x300, upscaled bilinear and stored as RGB PNGs);
without ../shared, 80 synthetic textured frames. The model: R18-Rd100 (random-init backbone: the time
does not depend on the weights), crop 224, fitted on 24 other images of the same kind.

In one process, rounds interleaved, every variant a full ``padim-predict`` invocation (model load
included, as a user runs it):

* ``previous``: the command as it was before the pipeline (``padim_edge/runtime/cli.py`` of
  ``--previous``, read from git and imported as a module): decode a batch, score it, write its
  overlays, next;
* ``pipelined``: the command now (decode threads and an overlay writer overlap the graph);

each without ``--output`` (score table only) and with ``--output`` (overlays, PNG level 1 now, Pillow's
default 6 before), and both without ``--output`` once more with onnxruntime's idle threads sleeping
instead of spinning (the pipelined command already sets this while its decoding threads run: its two
rows measure the same). scores.json of both must be identical.
Then the PNG compression level against file size and time on real overlays, and
``padim-bench --files``' stage breakdown.

Run: ``python benchmarks/predict_files.py [--rounds 5] [--workdir DIR]`` ->
``results/predict_files.{json,md}``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import numpy as np
from click.testing import CliRunner
from PIL import Image

from padim_edge import atomic
from padim_edge.bench.system import BackgroundLoad, machine_info, wait_for_idle

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED_GOOD = ROOT.parent / "shared" / "data" / "magnetic_tile" / "train" / "good"
SIZE = 900
SET_IMAGES = 80
FIT_IMAGES = 24


def log(message: str) -> None:
    print(message, flush=True)


def make_images(folder: Path, count: int, *, skip: int) -> str:
    """``count`` 900x900 RGB PNGs in ``folder`` (kept between runs); returns where they came from."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(SHARED_GOOD.glob("*.jpg"))[skip : skip + count] if SHARED_GOOD.is_dir() else []
    if len(sources) == count:
        what = f"magnetic tile train/good ({SHARED_GOOD}), upscaled bilinear to {SIZE}x{SIZE} RGB PNG"
        for source in sources:
            target = folder / f"{source.stem}.png"
            if not target.is_file():
                Image.open(source).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR).save(target)
        return what
    rng = np.random.default_rng(skip)
    for i in range(count):
        target = folder / f"synthetic_{i:03d}.png"
        if not target.is_file():
            xx = np.mgrid[0:SIZE, 0:SIZE][1]
            base = 128 + 40 * np.sin(xx / 9.0 + rng.uniform(0, 6)) + rng.normal(0, 12, (SIZE, SIZE))
            rgb = np.stack([base, base * 0.9 + 10, base * 0.8 + 20], -1).clip(0, 255).astype(np.uint8)
            Image.fromarray(rgb).save(target)
    return f"synthetic textured frames (no {SHARED_GOOD}), {SIZE}x{SIZE} RGB PNG"


def make_model(workdir: Path, train: Path) -> Path:
    path = workdir / "r18-rd100.onnx"
    if not path.is_file():
        from padim_edge.export.pipeline import run_export

        log("fitting R18-Rd100 (random-init) ...")
        run_export(
            train,
            path,
            backbone="r18",
            dims=100,
            random_init=True,
            device="cpu",
            parity_images=0,
            progress=False,
        )
    return path


def previous_cli(revision: str, workdir: Path):
    """``padim_edge/runtime/cli.py`` at ``revision``, imported as a module (its ``main`` is the command)."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:padim_edge/runtime/cli.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = workdir / "previous_predict_cli.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("previous_predict_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def no_spinning():
    """Sessions opened in the block get ``session.intra_op.allow_spinning = 0`` (idle threads sleep)."""
    from padim_edge.runtime import session

    real = session.session_options

    def options(threads=None, *, spin=True):
        return real(threads, spin=False)

    session.session_options = options
    try:
        yield
    finally:
        session.session_options = real


def png_levels(model_path: Path, files: list[Path], levels=(0, 1, 3, 6, 9)) -> list[dict[str, float]]:
    """Overlay PNG size and encode time per zlib level, on the overlays of ``files``."""
    from padim_edge.geometry import Geometry
    from padim_edge.images import load_image
    from padim_edge.runtime import PadimModel
    from padim_edge.visualize import annotated_overlay, colour_scale

    model = PadimModel(model_path, device="cpu")
    geometry, scale = Geometry(model.info.resize, model.info.crop), colour_scale(model.info)
    pictures = []
    for file in files:
        image = load_image(file)
        pred = model.predict(image)[0]
        pictures.append(
            annotated_overlay(geometry.image_view(image), pred.anomaly_map, scale, score=pred.score)
        )
    rows = []
    for level in levels:
        sizes, seconds = [], []
        for picture in pictures:
            start = time.perf_counter()
            buffer = io.BytesIO()
            Image.fromarray(picture).save(buffer, format="PNG", compress_level=level)
            seconds.append(time.perf_counter() - start)
            sizes.append(len(buffer.getvalue()))
        rows.append(
            {
                "level": level,
                "kb_per_overlay": round(float(np.mean(sizes)) / 1e3, 1),
                "ms_per_overlay": round(1e3 * statistics.median(seconds), 2),
            }
        )
    return rows


@click.command()
@click.option("--rounds", type=int, default=5, show_default=True, help="Interleaved rounds.")
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("/tmp/padim-predict-files")
)
@click.option(
    "--previous", default="229bbb9", show_default=True, help="Git revision of the sequential command."
)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option(
    "--wait-idle",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for a quiet CPU per round.",
)
@click.option("--out", type=click.Path(path_type=Path), default=HERE / "results" / "predict_files")
def main(rounds: int, workdir: Path, previous: str, batch_size: int, wait_idle: float, out: Path) -> None:
    from padim_edge.bench.files import run_files_bench
    from padim_edge.runtime.cli import main as predict_main

    workdir.mkdir(parents=True, exist_ok=True)
    images = workdir / "set900"
    source = make_images(images, SET_IMAGES, skip=0)
    make_images(workdir / "train", FIT_IMAGES, skip=SET_IMAGES)
    model = make_model(workdir, workdir / "train")
    old = previous_cli(previous, workdir)
    runner = CliRunner()
    base = [str(model), str(images), "-q", "--batch-size", str(batch_size)]
    variants = {
        "previous": (old.main, []),
        "pipelined": (predict_main, []),
        "previous + overlays": (old.main, ["-o"]),
        "pipelined + overlays": (predict_main, ["-o"]),
    }
    spinning_off = {"previous, no spinning": old.main, "pipelined, no spinning": predict_main}
    rates: dict[str, list[float]] = {name: [] for name in [*variants, *spinning_off]}
    loads: list[float | None] = []
    identical = True
    with tempfile.TemporaryDirectory(prefix="predict-files-") as tmp:
        for round_ in range(rounds):
            share = wait_for_idle(timeout=wait_idle, log=log)
            load = BackgroundLoad()
            outputs = {}
            for name, (command, extra) in variants.items():
                args = list(base)
                if extra:
                    outputs[name] = Path(tmp) / f"{round_}-{name.split()[0]}"
                    args += ["-o", str(outputs[name])]
                start = time.perf_counter()
                result = runner.invoke(command, args)
                seconds = time.perf_counter() - start
                if result.exit_code != 0:
                    raise click.ClickException(f"{name}: exit {result.exit_code}: {result.output[-2000:]}")
                rates[name].append(SET_IMAGES / seconds)
            for name, command in spinning_off.items():  # informational: onnxruntime threads that sleep
                with no_spinning():
                    start = time.perf_counter()
                    result = runner.invoke(command, base)
                    seconds = time.perf_counter() - start
                if result.exit_code != 0:
                    raise click.ClickException(f"{name}: exit {result.exit_code}: {result.output[-2000:]}")
                rates[name].append(SET_IMAGES / seconds)
            loads.append(load.fraction())
            scores = {name: (path / "scores.json").read_text() for name, path in outputs.items()}
            identical &= len(set(scores.values())) == 1
            overlays = {name: len(list(path.glob("*_overlay.png"))) for name, path in outputs.items()}
            log(
                f"round {round_ + 1}/{rounds} (background before "
                f"{share if share is None else f'{share:.0%}'}, during {loads[-1]:.0%}): "
                + ", ".join(f"{name} {values[-1]:.1f}" for name, values in rates.items())
                + f" img/s; overlays {overlays}; scores identical: {identical}"
            )
    levels = png_levels(model, sorted(images.glob("*.png"))[:24])
    log(f"PNG levels: {levels}")
    stages = run_files_bench(model, images, batch_size=batch_size, rounds=1, log=log)
    median = {name: round(statistics.median(values), 2) for name, values in rates.items()}
    speedup = median["pipelined"] / median["previous"]
    overlay_ratio = median["pipelined + overlays"] / median["pipelined"]
    machine = machine_info()
    record: dict[str, Any] = {
        "set": {"images": SET_IMAGES, "size": f"{SIZE}x{SIZE}", "source": source},
        "model": "R18-Rd100 fp32 (random-init backbone), resize 256, crop 224",
        "batch_size": batch_size,
        "threads": "onnxruntime default (all cores)",
        "previous": previous,
        "rates_img_s": {name: [round(v, 2) for v in values] for name, values in rates.items()},
        "median_img_s": median,
        "speedup_pipelined_vs_previous": round(speedup, 3),
        "overlays_vs_none_pipelined": round(overlay_ratio, 3),
        "scores_identical": identical,
        "background_cpu_per_round": loads,
        "png_levels": levels,
        "stages": stages.to_dict(),
        "machine": machine,
    }
    atomic.write_json(out.with_suffix(".json"), record)
    lines = [
        "# padim-predict on real files: pipelined vs the previous sequential command",
        "",
        f"{SET_IMAGES} PNGs of {SIZE}x{SIZE} ({source}); {record['model']}; batch {batch_size}, onnxruntime "
        f"threads: all cores; {rounds} interleaved rounds, each variant a full padim-predict invocation "
        f"(model load included); previous = padim_edge/runtime/cli.py at {previous}.",
        "",
        "| variant | images/s (median) | rounds |",
        "|---|---:|---|",
    ]
    for name, values in rates.items():
        lines.append(f"| {name} | {median[name]:.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    lines += [
        "",
        f"- pipelined / previous: **{speedup:.2f}x** (goal >= 1.25x)",
        f"- pipelined with overlays / without: **{overlay_ratio:.2f}x** (goal >= 0.85x)",
        f"- previous with overlays / without: {median['previous + overlays'] / median['previous']:.2f}x",
        f"- scores.json identical in every round (previous and pipelined): {identical}",
        f"- with onnxruntime's idle threads sleeping instead of spinning "
        f"(`session.intra_op.allow_spinning = 0`, padim-predict's setting while it decodes): "
        f"pipelined / previous "
        f"{median['pipelined, no spinning'] / median['previous, no spinning']:.2f}x, pipelined vs the "
        f"default previous {median['pipelined, no spinning'] / median['previous']:.2f}x",
        "",
        "## Overlay PNG compression level (24 overlays of 292x224)",
        "",
        "| zlib level | KB per overlay | ms per overlay |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {r['level']} | {r['kb_per_overlay']} | {r['ms_per_overlay']} |" for r in levels]
    lines += ["", "## padim-bench --files breakdown (one round)", ""]
    from padim_edge.bench.files import render_markdown

    lines += render_markdown(stages).splitlines()[2:]
    background = ", ".join("?" if v is None else f"{v:.0%}" for v in loads)
    lines += [
        "",
        f"Machine: {machine['cpu']}, {machine['usable_cpus']} usable CPUs, {machine['memory_gb']} GB, "
        f"onnxruntime {machine['onnxruntime']}, Python {machine['python']}. CPU share used by other "
        f"processes during each round: {background}.",
    ]
    atomic.write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
