"""padim-predict on real files: the pipelined command against the sequential one it replaced.

80 900x900 PNGs from the magnetic tile (synthetic without ../shared), R18-Rd100 (random-init); rounds
interleave full invocations of the previous command (``runtime/cli.py`` at ``--previous``) and the current
one, with and without overlays; then ``padim-bench --files``' stages. Usage: ``python
benchmarks/predict_files.py [--rounds 5] [--workdir DIR]``.
"""

from __future__ import annotations

import importlib.util
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import click
import harness as h
import numpy as np
from click.testing import CliRunner
from PIL import Image

from padim_edge.bench.files import FilesBench, render_markdown, run_files_bench
from padim_edge.bench.system import BackgroundLoad, wait_for_idle
from padim_edge.runtime.cli import main as predict_main

SIZE, SET_IMAGES, FIT_IMAGES = 900, 80, 24
#: name: (command, overlays written)
VARIANTS = {
    "previous": ("previous", False), "pipelined": ("pipelined", False),
    "previous + overlays": ("previous", True), "pipelined + overlays": ("pipelined", True),
}  # fmt: skip


def make_images(folder: Path, count: int, *, skip: int) -> str:
    """``count`` 900x900 RGB PNGs in ``folder`` (kept between runs); returns where they came from."""
    folder.mkdir(parents=True, exist_ok=True)
    good = h.TILES / "train" / "good"
    sources = sorted(good.glob("*.jpg"))[skip : skip + count]
    if len(sources) == count:
        for source in sources:
            if not (folder / f"{source.stem}.png").is_file():
                picture = Image.open(source).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
                picture.save(folder / f"{source.stem}.png")
        return f"magnetic tile train/good ({good}), upscaled bilinear to {SIZE}x{SIZE} RGB PNG"
    rng = np.random.default_rng(skip)
    for i in range(count):
        if not (folder / f"synthetic_{i:03d}.png").is_file():
            Image.fromarray(h.textured_frame(rng, SIZE, SIZE)).save(folder / f"synthetic_{i:03d}.png")
    return f"synthetic textured frames (no {good}), {SIZE}x{SIZE} RGB PNG"


def previous_cli(revision: str, workdir: Path) -> Any:
    """``padim_edge/runtime/cli.py`` at ``revision``, imported as a module (its ``main`` is the command)."""
    git = ["git", "-C", str(h.ROOT), "show", f"{revision}:padim_edge/runtime/cli.py"]
    path = workdir / "previous_predict_cli.py"
    path.write_text(subprocess.run(git, capture_output=True, text=True, check=True).stdout)
    spec = importlib.util.spec_from_file_location("previous_predict_cli", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(r: dict[str, Any]) -> str:
    """The report: rates per variant, ratios, the stage breakdown."""
    med, rates = r["median_img_s"], r["rates_img_s"]
    rows = [[name, f"{med[name]:.1f}", ", ".join(f"{v:.1f}" for v in runs)] for name, runs in rates.items()]
    background = ", ".join("?" if v is None else f"{v:.0%}" for v in r["background_cpu_per_round"])
    return "\n".join([
        *h.header(r, "padim-predict on real files: pipelined vs the previous sequential command"),
        f"{SET_IMAGES} PNGs of {SIZE}x{SIZE} ({r['set']['source']}); {r['model']}; batch {r['batch_size']}, "
        f"onnxruntime threads: all cores; {len(rates['previous'])} interleaved rounds, each variant a full "
        f"padim-predict invocation (model load included); previous = padim_edge/runtime/cli.py at "
        f"{r['previous']}. Other processes' CPU share per round: {background}.",
        "",
        *h.table(["variant", "images/s (median)", "rounds"], rows),
        "",
        f"- pipelined / previous: **{r['speedup_pipelined_vs_previous']:.2f}x** (goal >= 1.25x)",
        f"- pipelined with overlays / without: **{r['overlays_vs_none_pipelined']:.2f}x** (goal >= 0.85x)",
        f"- previous with overlays / without: {med['previous + overlays'] / med['previous']:.2f}x",
        f"- scores.json identical in every round (previous and pipelined): {r['scores_identical']}",
        "",
        "## padim-bench --files breakdown (one round)",
        "",
        *render_markdown(FilesBench(**r["stages"])).splitlines()[2:],
    ]) + "\n"  # fmt: skip


@click.command(context_settings=h.CONTEXT)
@click.option("--rounds", type=int, default=5, show_default=True, help="Interleaved rounds.")
@click.option("--previous", default="229bbb9", show_default=True, help="Git revision of the old command.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--wait-idle", type=float, default=60.0, show_default=True, help="Wait for a quiet CPU, s.")
@h.measurement("predict_files", render)
def main(work: Path, rounds: int, previous: str, batch_size: int, wait_idle: float) -> dict[str, Any]:
    """The previous and the pipelined padim-predict on real files (see the module docstring)."""
    images, runner, tmp = work / "set900", CliRunner(), work / "out"
    source = make_images(images, SET_IMAGES, skip=0)
    make_images(work / "train", FIT_IMAGES, skip=SET_IMAGES)
    model = h.r18_model(work / "train", work / "r18-rd100.onnx")
    commands = {"previous": previous_cli(previous, work).main, "pipelined": predict_main}
    base = [str(model), str(images), "-q", "--batch-size", str(batch_size)]
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    loads, identical = [], True
    for round_ in range(rounds):
        wait_for_idle(timeout=wait_idle, log=h.log)
        load = BackgroundLoad()
        for name, (which, overlays) in VARIANTS.items():
            args = [*base, "-o", str(tmp / f"{round_}-{which}")] if overlays else base
            started = time.perf_counter()
            done = runner.invoke(commands[which], args)
            seconds = time.perf_counter() - started
            if done.exit_code != 0:
                raise click.ClickException(f"{name}: exit {done.exit_code}: {done.output[-2000:]}")
            rates[name].append(SET_IMAGES / seconds)
        loads.append(load.fraction())
        identical &= len({(tmp / f"{round_}-{w}" / "scores.json").read_text() for w in commands}) == 1
        h.log(f"round {round_ + 1}/{rounds}: " + ", ".join(f"{n} {v[-1]:.1f}" for n, v in rates.items()))
    shutil.rmtree(tmp)
    median = {name: round(statistics.median(values), 2) for name, values in rates.items()}
    return {
        "set": {"images": SET_IMAGES, "size": f"{SIZE}x{SIZE}", "source": source},
        "model": "R18-Rd100 fp32 (random-init backbone), resize 256, crop 224",
        "batch_size": batch_size, "threads": "onnxruntime default (all cores)", "previous": previous,
        "rates_img_s": {name: [round(v, 2) for v in values] for name, values in rates.items()},
        "speedup_pipelined_vs_previous": round(median["pipelined"] / median["previous"], 3),
        "overlays_vs_none_pipelined": round(median["pipelined + overlays"] / median["pipelined"], 3),
        "median_img_s": median, "scores_identical": identical, "background_cpu_per_round": loads,
        "stages": run_files_bench(model, images, batch_size=batch_size, rounds=1, log=h.log).to_dict(),
    }  # fmt: skip


if __name__ == "__main__":
    main()
