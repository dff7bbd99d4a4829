"""``padim-bench``: end-to-end latency, throughput, load time and memory of a model through the runtime."""

from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

import click

from padim_edge import atomic
from padim_edge.bench.config import DEFAULT_BATCH_SIZES, BenchConfig
from padim_edge.bench.timing import TimingPolicy
from padim_edge.cli_options import (
    backbone_option,
    command_settings,
    coreset_option,
    crop_option,
    device_list_option,
    dims_option,
    head_precision_option,
    method_option,
    output_option,
    quiet_option,
    resize_option,
)
from padim_edge.devices import CONCRETE_DEVICES
from padim_edge.extras import MissingExtraError, require
from padim_edge.geometry import parse_size


def parse_int_list(text: str, *, name: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (positive integers, duplicates dropped, order kept).

    Raises:
        click.BadParameter: Not a comma-separated list of positive integers.
    """
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = int(part)
        except ValueError:
            raise click.BadParameter(f"{name}: {part!r} is not an integer") from None
        if value < 1:
            raise click.BadParameter(f"{name}: {value} must be >= 1")
        if value not in values:
            values.append(value)
    if not values:
        raise click.BadParameter(f"{name}: empty list")
    return values


def parse_threads(text: str) -> list[str]:
    """``"1,all"`` -> ``["1", "all"]``.

    Raises:
        click.BadParameter: An item that is neither ``all`` nor a positive integer.
    """
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    for item in items:
        if item != "all" and not (item.isdigit() and int(item) >= 1):
            raise click.BadParameter(f"--threads: {item!r} is neither 'all' nor a positive integer")
    if not items:
        raise click.BadParameter("--threads: empty list")
    return list(dict.fromkeys(items))


def parse_devices(text: str | None) -> list[str] | None:
    """``"cpu,cuda"`` -> ``["cpu", "cuda"]``; ``None`` (default) -> every available device.

    Raises:
        click.BadParameter: An unknown device name.
    """
    if text is None:
        return None
    items = [d.strip().lower() for d in text.split(",") if d.strip()]
    unknown = [d for d in items if d not in CONCRETE_DEVICES]
    if unknown or not items:
        raise click.BadParameter(
            f"--device: unknown {unknown or text!r}; choose from {', '.join(CONCRETE_DEVICES)}"
        )
    return list(dict.fromkeys(items))


def default_output(now: _dt.datetime | None = None, *, parent: Path | None = None) -> Path:
    """A fresh ``bench-YYYYmmdd-HHMMSS`` folder path under ``parent`` (default: the current directory).

    A second run within the same second gets ``-2``, ``-3``, ... appended, so nothing is overwritten.
    """
    parent = Path.cwd() if parent is None else parent
    stem = f"bench-{(now or _dt.datetime.now()):%Y%m%d-%H%M%S}"
    path = parent / stem
    suffix = 2
    while path.exists():
        path = parent / f"{stem}-{suffix}"
        suffix += 1
    return path


def _given(name: str) -> bool:
    """Whether option ``name`` was set on the command line (not its default)."""
    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def parse_frame(text: str) -> tuple[int, int]:
    """``"224"`` -> (224, 224); ``"480x640"`` -> (480, 640) as (H, W).

    Raises:
        click.BadParameter: Not ``N`` or ``HxW`` with positive integers.
    """
    try:
        return parse_size(text)
    except ValueError as exc:
        raise click.BadParameter(f"--frame-size: {exc}") from None


@click.command(context_settings=command_settings(110))
@backbone_option(
    "Build this backbone (random-init weights, head fitted on synthetic frames) and benchmark it. "
    "Repeat for several: --backbone r18 --backbone wr50. Default: r18, unless --model is given.",
    multiple=True,
)
@click.option(
    "--model",
    "models",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="Benchmark an existing padim-edge .onnx (e.g. an INT8 / FP16 variant from padim-calibrate) "
    "instead of building one; its rows are labelled from its metadata ('R18-Rd100 int8'). Repeatable. "
    "Backbone-alone and eager comparators are rebuilt from the metadata (random weights, identity "
    "Sigma^-1 for eager).",
)
@click.option(
    "--files",
    "files_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Measure what padim-predict delivers on the images of DIR with the one --model: decoding alone, "
    "the graph alone, and the command sequential and pipelined, with and without overlays, with decode, "
    "graph and write time separated (batch 8, or the one --batch-sizes value).",
)
@click.option(
    "--batch-sizes",
    default=",".join(map(str, DEFAULT_BATCH_SIZES)),
    show_default=True,
    help="Batch sweep, comma-separated. Each configuration runs them ascending; a batch size that fails "
    "(out of memory) stops that configuration's sweep with a note.",
)
@click.option(
    "--threads",
    default="1,all",
    show_default=True,
    help="CPU thread counts, comma-separated: integers or 'all' (every usable logical CPU). Sets "
    "onnxruntime's intra-op threads (inter-op 1) and torch.set_num_threads alike. GPU devices ignore it.",
)
@device_list_option()
@click.option(
    "--min-seconds",
    type=click.FloatRange(min=0.0),
    default=3.0,
    show_default=True,
    help="Time each batch size for at least this long...",
)
@click.option(
    "--min-reps",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="...and for at least this many calls, whichever comes later.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0.0),
    default=30.0,
    show_default=True,
    help="Cap per batch size: stop after this long even below --min-reps (never below 5 calls). At least "
    "--min-seconds (the default cap is raised to it).",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Untimed warm-up calls per batch size.",
)
@click.option(
    "--frame-size",
    default="224",
    show_default=True,
    help="Input frames: N (NxN) or HxW, uint8 RGB. The graph resizes, so e.g. 480x640 camera frames work.",
)
@output_option(
    "Folder for <name>.json (every row, machine, settings), <name>.md (tables) and <name>.png (plot). "
    "Default: a new folder ./bench-YYYYmmdd-HHMMSS/ in the current directory.",
    file_okay=False,
)
@click.option("--name", default="bench", show_default=True, help="File stem of the outputs.")
@head_precision_option(
    "Head precisions of the built models (repeatable; default fp32): PaDiM's Sigma^-1, PatchCore's "
    "memory bank. Others than fp32 are rewritten from the float32 export, torch-free, and labelled e.g. "
    "'R18-Rd100 int8-head'. --model files are labelled from their metadata either way.",
    multiple=True,
)
@click.option("--no-eager", is_flag=True, help="Skip the PyTorch eager rows.")
@click.option("--no-backbone", is_flag=True, help="Skip the truncated-backbone-alone rows.")
@method_option("Method of the built models (--backbone).")
@coreset_option(
    "PatchCore: coreset fraction of built models (default 0.1). Their bank holds about "
    "coreset x --fit-frames x patches vectors (784 patches per frame at crop 224), and the per-image cost "
    "grows with it: fit on as many frames as a real training set has (e.g. --fit-frames 240).",
)
@dims_option(
    "Embedding dims of built models (default: PaDiM 100 for r18/mnv2, 550 for wr50; PatchCore 256 for "
    "r18, 1024 for wr50, 192 for mnv2).",
)
@resize_option("Resize edge of built models.")
@crop_option("Crop edge of built models.")
@click.option(
    "--fit-frames",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Synthetic frames the built models are fitted on.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the built models here and reuse them on later runs with the same configuration "
    "(default: a temporary folder, deleted at the end). WR50-Rd550 takes minutes and ~6.5 GB to build.",
)
@click.option(
    "--in-process",
    is_flag=True,
    help="Measure in this process instead of one fresh subprocess per configuration (faster; peak RSS "
    "is then the whole process's, marked so).",
)
@click.option(
    "--wait-idle",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="Before each configuration wait up to this many seconds for other processes to leave the CPU "
    "(shared machines). Every row records the background CPU share measured while it ran either way.",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Measure a configuration again (up to this many times) when other processes used more than 10% of "
    "the CPU while it was timed; the least contended attempt is kept.",
)
@quiet_option("No progress on stderr.")
def main(
    backbones: tuple[str, ...],
    models: tuple[Path, ...],
    files_dir: Path | None,
    batch_sizes: str,
    threads: str,
    device: str | None,
    min_seconds: float,
    min_reps: int,
    max_seconds: float,
    warmup: int,
    frame_size: str,
    output: Path | None,
    name: str,
    head_precisions: tuple[str, ...],
    no_eager: bool,
    no_backbone: bool,
    method: str,
    coreset: float | None,
    dims: int | None,
    resize: int,
    crop: int,
    fit_frames: int,
    workdir: Path | None,
    in_process: bool,
    wait_idle: float,
    retries: int,
    quiet: bool,
) -> None:
    """Benchmark PaDiM (or PatchCore) end to end through the runtime, like the PaDiM paper's Table VII.

    For each model, device and thread count it times, over a batch sweep: the fused ONNX graph through
    padim_edge.runtime (the product), the truncated backbone alone exported the same way (so
    fused / backbone is the head's overhead), and the PyTorch eager module (so eager / fused is the
    speed-up). Rows: p50/p90/p99 latency per batch and per image, images/s, size on disk, load time,
    peak RSS. Writes JSON, markdown and a PNG plot to --output (default: a new ./bench-<time>/ folder).

    \b
    Quick run:   padim-bench --batch-sizes 1,8 --min-reps 20 --min-seconds 1
    Table VII:   python benchmarks/table7.py
    A variant:   padim-bench --model model_int8.onnx --threads all
    PatchCore:   padim-bench --method patchcore --coreset 0.01 --fit-frames 240 --batch-sizes 1,8
    """
    if max_seconds < min_seconds and _given("max_seconds"):
        raise click.BadParameter(
            f"{max_seconds:g} is below --min-seconds {min_seconds:g}; the cap must be at least that",
            param_hint="--max-seconds",
        )
    try:
        policy = TimingPolicy(
            warmup=warmup,
            min_reps=min_reps,
            min_seconds=min_seconds,
            max_seconds=max(max_seconds, min_seconds),
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if coreset is not None and method != "patchcore":
        raise click.UsageError("--coreset applies to --method patchcore only")
    config = BenchConfig(
        backbones=list(backbones) if backbones or models else ["r18"],
        models=list(models),
        batch_sizes=parse_int_list(batch_sizes, name="--batch-sizes"),
        threads=parse_threads(threads),
        devices=parse_devices(device),
        policy=policy,
        frame=parse_frame(frame_size),
        method=method,
        coreset=coreset,
        dims=dims,
        resize=resize,
        crop=crop,
        fit_frames=fit_frames,
        head_precisions=list(head_precisions) or ["fp32"],
        eager=not no_eager,
        backbone=not no_backbone,
        isolate=not in_process,
        workdir=workdir,
        wait_idle=wait_idle,
        retries=retries,
        progress=not quiet,
    )
    if files_dir is not None:  # padim-predict on real files: padim_edge.bench.files
        from padim_edge.bench.files import run_command

        batch = 8 if batch_sizes == ",".join(map(str, DEFAULT_BATCH_SIZES)) else config.batch_sizes[0]
        run_command(models, files_dir, batch_size=batch, threads=config.threads[-1], devices=config.devices,
                    output=output, name=name, quiet=quiet)  # fmt: skip
        return
    builds = bool(config.backbones) or config.eager or config.backbone
    try:  # building or eager rows need torch; reading a --model's metadata needs onnx
        require("padim-bench", "runtime", "bench", "export" if builds else "check")
        if set(config.head_precisions) - {"fp32"}:
            require("padim-bench --head-precision", "calibrate")
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from None
    from padim_edge.bench import report, runner

    folder = output or default_output()
    created = not folder.exists()
    try:  # before the run, not after minutes of timing
        atomic.check_output_folder(folder, what="--output")
    except atomic.OutputError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        result = runner.run_benchmark(config)
    except ValueError as exc:
        if created and not any(folder.iterdir()):
            folder.rmdir()
        raise click.ClickException(str(exc)) from None
    with atomic.write_errors(folder, error=click.ClickException):
        paths = report.write_all(result, folder, stem=name)
    for line in report.summary_lines(result):
        click.echo(line, err=True)
    click.echo(f"{len(result.rows)} rows in {result.seconds:.0f} s", err=True)
    for path in paths.values():
        click.echo(str(path))
    if result.failures:
        click.echo(
            f"Error: {len(result.failures)} configuration(s) failed (see above and {paths['md']})", err=True
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
