"""``padim-predict``: score images with an exported model (numpy + onnxruntime + Pillow; no torch)."""

from __future__ import annotations

from pathlib import Path

import click
from tqdm import tqdm

from padim_edge import atomic
from padim_edge.cli_options import (
    batch_size_option,
    command_settings,
    device_option,
    model_argument,
    output_option,
    quiet_option,
    ray_option,
    threads_option,
)
from padim_edge.extras import MissingExtraError, require
from padim_edge.images import ImageError, expand_paths, is_image, read_file_list
from padim_edge.naming import image_keys
from padim_edge.runtime.outputs import (
    OVERLAY_MODES,
    OVERLAY_SUFFIX,  # noqa: F401 - the overlay naming rule, re-exported
    RESULT_FILES,
    OverlayWriter,
    overlay_names,
    write_results,
)
from padim_edge.runtime.pipeline import FilePipeline, ScoringError
from padim_edge.runtime.video import video_options


def open_model(
    path: Path,
    device: str,
    threads: int | None,
    *,
    trt_cache: Path | None = None,
    trt_profile: str | None = None,
    trt_workspace_mib: int | None = None,
    spin: bool = True,
):
    """Open the model (imported here: ``--help`` needs no onnxruntime), or fail in one line."""
    try:
        require("padim-predict", "runtime")
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from exc
    from padim_edge.runtime.model import ModelLoadError, PadimModel
    from padim_edge.runtime.providers import ProviderError
    from padim_edge.runtime.tensorrt import DEFAULT_WORKSPACE_BYTES

    workspace = DEFAULT_WORKSPACE_BYTES if trt_workspace_mib is None else trt_workspace_mib << 20
    try:
        return PadimModel(
            path,
            device=device,
            threads=threads,
            trt_cache_dir=trt_cache,
            trt_profile=trt_profile,
            trt_workspace=workspace,
            spin=spin,
        )
    except (ModelLoadError, ProviderError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command(
    context_settings=command_settings(100),
    epilog="\b\nOutputs with --output:\n"
    "  scores.json   {key: score}, keys = image paths relative to the inputs' common folder\n"
    "  labels.json   {key: true|false} (is_anomalous), only for a model calibrated with a threshold\n"
    "  failed.json   {key: reason} for images that could not be read or scored (exit code 1)\n"
    "  overlays.json {key: overlay file name} of the overlays written\n"
    "  <name>_overlay.png  the heat map on the model's view of the image, score and colour bar; <name>\n"
    "                is the key without its extension, '/' replaced by '__' (flat in --output):\n"
    "                scratch/003.png -> scratch__003_overlay.png; names that would clash (x.png, x.jpg)\n"
    "                or be too long for the file system get -<hash> (see overlays.json)\n"
    "\b\nOverlay colours use one fixed scale per model: dark blue = the median training pixel, dark red =\n"
    "1.5 x the threshold (calibrated models) or, roughly, 2 x the 99th-percentile training score.\n"
    "\b\nFiles are decoded, scored and written in a pipeline (decode threads, the graph, an overlay\n"
    "writer), in input order; Ctrl-C stops it and writes the JSON files of the images done so far.",
)
@model_argument("model_path", required=False)
@click.argument("paths", metavar="PATH...", nargs=-1, type=click.Path(path_type=Path))
@output_option(
    "Folder for scores.json (key -> score), labels.json, failed.json and one overlay PNG per image."
)
@device_option()
@batch_size_option(8, "Images per run.")
@threads_option("CPU intra-op threads (default: onnxruntime's, all cores).")
@click.option(
    "--trt-cache",
    type=click.Path(path_type=Path, file_okay=False),
    help="TensorRT EP: folder of the engine and timing caches (default ~/.cache/padim-edge/tensorrt). "
    "The first run builds the engine (minutes on a Jetson); later runs load it.",
)
@click.option(
    "--trt-profile",
    metavar="MIN:OPT:MAX",
    help="TensorRT EP: shapes of the input as NxHxW each, e.g. 1x480x640:1x480x640:8x480x640. Default: "
    "the model's fixed frame size with 1-8 frames (--target tensorrt models), else "
    "1x64x64:1x480x640:8x1080x1920.",
)
@click.option(
    "--trt-workspace",
    "trt_workspace_mib",
    type=click.IntRange(min=1),
    metavar="MIB",
    help="TensorRT EP: workspace limit in MiB (default 1024, sized for a Jetson's shared memory).",
)
@click.option(
    "--files-from",
    "files_from",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    metavar="LIST",
    help="Also score the paths listed in LIST (a text file, '-' for stdin): one image file or folder per "
    "line; blank lines and lines starting with # are ignored; relative paths are relative to LIST's "
    "folder. With or without --ray.",
)
@click.option(
    "--overlays",
    "overlays_mode",
    type=click.Choice(OVERLAY_MODES),
    default="all",
    show_default=True,
    help="With --output: an overlay PNG for every image, only for those labelled anomalous (a model "
    "calibrated with a threshold), or none.",
)
@click.option(
    "--decode-threads",
    type=click.IntRange(min=0),
    help="Threads decoding the next images while the graph runs (default 2, or 1 on a 1-CPU box); 0 "
    "decodes in the scoring thread between batches.",
)
@quiet_option("No progress bar.")
@ray_option(
    "Score on Ray with a pool of torch-free actors; --output gets Parquet shards (re-runs skip the shards "
    "already written), scores.json, failed.json and summary.json, no overlays; --threads is per actor "
    "(default 1)."
)
@click.option(
    "--ray-actors", type=click.IntRange(min=1), help="Scoring actors (default: CPUs / threads, or GPUs)."
)
@click.option(
    "--shard-size",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Images per --ray output shard.",
)
@click.option("--maps", is_flag=True, help="With --ray: store every anomaly map (float16) in the shards.")
@video_options
def main(
    model_path: Path | None,
    paths: tuple[Path, ...],
    output: Path | None,
    device: str,
    batch_size: int,
    threads: int | None,
    trt_cache: Path | None,
    trt_profile: str | None,
    trt_workspace_mib: int | None,
    files_from: Path | None,
    overlays_mode: str,
    decode_threads: int | None,
    quiet: bool,
    ray_address: str | None,
    ray_actors: int | None,
    shard_size: int,
    maps: bool,
) -> None:
    """Score images with a padim-edge MODEL.

    PATH is image files or folders (searched recursively), given here or listed in a --files-from
    file. Prints one row per image with its score (and its label when the model carries a threshold
    from `padim-calibrate`), keyed by its path relative to the common folder of all inputs. An image
    that cannot be read is reported and skipped; the others are still scored and written, and the
    exit code is 1. An image of another size than a fixed-size model's (--target tensorrt) is
    reported the same way.
    """
    listed: tuple[Path, ...] = ()
    if files_from is not None:
        try:
            listed = tuple(read_file_list(files_from))
        except ImageError as exc:
            raise click.ClickException(str(exc)) from exc
    if ray_address is not None:  # `--ray MODEL PATH...`: click gave MODEL to --ray (no Ray import yet)
        from padim_edge.distributed import commands

        ray_address, model_path, paths = commands.split_model_argument(ray_address, model_path, paths)
    if model_path is None:  # optional for click only: `--ray MODEL --files-from LIST` gives MODEL to --ray
        raise click.MissingParameter(
            ctx=click.get_current_context(), param_type="argument", param_hint="'MODEL'"
        )
    paths = (*paths, *listed)
    if ray_address is not None and paths:  # one call into padim_edge.distributed (imports Ray only now)
        from padim_edge.distributed.commands import ray_predict

        ray_predict(
            ray_address,
            model_path,
            paths,
            output=output,
            device=device,
            batch_size=batch_size,
            threads=threads,
            actors=ray_actors,
            shard_size=shard_size,
            maps=maps,
            quiet=quiet,
        )
        return
    if not paths:
        raise click.MissingParameter(
            ctx=click.get_current_context(), param_type="argument", param_hint="'PATH...'"
        )
    if output is not None:
        try:
            atomic.check_output_folder(output, what="--output")
        except atomic.OutputError as exc:
            raise click.ClickException(str(exc)) from exc
    _check_argument_order(model_path, paths)
    model = open_model(
        model_path,
        device,
        threads,
        trt_cache=trt_cache,
        trt_profile=trt_profile,
        trt_workspace_mib=trt_workspace_mib,
        spin=decode_threads == 0,  # decoding threads share the CPU: onnxruntime's idle threads sleep
    )
    try:
        files = [file for _, file in expand_paths(paths)]
    except ImageError as exc:
        raise click.ClickException(str(exc)) from exc
    if output is not None:
        files = _skip_own_outputs(output, paths, files)
    info = model.info
    click.echo(f"model {model_path} ({info.description}) on {', '.join(model.providers)}", err=True)
    if info.random_init:
        click.echo(
            "note: this model's backbone has random-init weights; scores are for demos and timing.", err=True
        )
    _echo_fidelity(info)
    keys = image_keys(files)
    labelled = info.threshold is not None
    writer = None
    if output is not None and overlays_mode != "none":
        try:
            writer = OverlayWriter(output, info, overlay_names(keys), mode=overlays_mode)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--overlays") from exc
    rows: list[tuple[str, float, bool | None]] = []
    failed: dict[str, str] = {}
    stopped: BaseException | None = None  # Ctrl-C or a failed write: what was scored is still written
    pipeline = FilePipeline(model, batch_size=batch_size, decode_workers=decode_threads, overlays=writer)
    with tqdm(total=len(files), desc="predict", unit="img", disable=quiet) as bar:
        try:
            with pipeline:
                for result in pipeline.run(files, keys):
                    if result.ok:
                        rows.append((result.key, result.score, result.is_anomalous))
                    else:
                        failed[result.key] = result.error
                    bar.update(1)
        except (KeyboardInterrupt, OSError, ScoringError) as exc:
            stopped = exc
    _print_table(rows, labelled=labelled)
    if output is not None:
        with atomic.write_errors(output, error=click.ClickException):
            count = writer.finish() if writer is not None and not isinstance(stopped, OSError) else 0
            if writer is not None and writer.note:
                click.echo(f"note: {writer.note}", err=True)
            names = writer.written_in_order(k for k, _, _ in rows) if writer is not None else None
            written = write_results(output, rows, failed, labelled=labelled, overlays=names)
            for stale in set(RESULT_FILES) - set(written):  # an earlier run's, in the same folder
                (output / stale).unlink(missing_ok=True)
        click.echo(f"wrote {', '.join(written)} and {count} overlays to {output}", err=True)
    if isinstance(stopped, KeyboardInterrupt):
        kept = f"; the results so far are in {output}" if output is not None else ""
        click.echo(f"interrupted: {len(rows) + len(failed)} of {len(files)} images done{kept}", err=True)
        raise click.exceptions.Exit(130)
    if isinstance(stopped, OSError):  # an overlay (the results are written): name it
        raise click.ClickException(str(atomic.write_failure(stopped.filename or output, stopped)))
    if isinstance(stopped, ScoringError):
        raise click.ClickException(f"{stopped} (the {len(rows)} images scored before it are written)")
    if failed:
        for key, reason in failed.items():
            click.echo(f"error: {key}: {reason}", err=True)
        sized = any("was built for" in reason for reason in failed.values())
        what = "could not be read or scored" if sized else "could not be read"
        raise click.ClickException(f"{len(failed)} of {len(files)} images {what} (listed above)")


def _check_argument_order(model_path: Path, paths: tuple[Path, ...]) -> None:
    """``padim-predict IMAGE MODEL``: say that MODEL comes first, before anything is opened."""
    if not (model_path.is_dir() or is_image(model_path)):
        return
    what = "a folder" if model_path.is_dir() else "an image"
    models = [p for p in paths if p.suffix.lower() == ".onnx"]
    hint = (
        f"; did you mean: padim-predict {models[0]} {model_path}" + (" ..." if len(paths) > 1 else "")
        if models
        else ""
    )
    raise click.UsageError(f"MODEL comes first: {model_path} is {what}, not a model{hint}")


def _skip_own_outputs(output: Path, paths: tuple[Path, ...], files: list[Path]) -> list[Path]:
    """Leave out what is in --output when it lies inside an input folder (an earlier run's overlays).

    Raises:
        click.UsageError: --output is an input folder itself.
    """
    target = output.resolve()
    folders = [p.resolve() for p in paths if p.is_dir()]
    if target in folders:
        raise click.UsageError(
            f"--output {output} is an input folder: its overlays would be scored as images on the next "
            f"run; give another folder (e.g. {output.name or 'out'}-scores)"
        )
    if not any(folder in target.parents for folder in folders):
        return files
    named = {p.resolve() for p in paths if p.is_file()}
    kept = [f for f in files if f.resolve() in named or target not in f.resolve().parents]
    if len(kept) < len(files):
        click.echo(f"note: skipped {len(files) - len(kept)} files inside --output {output}", err=True)
    if not kept:
        raise click.ClickException(f"no images left to score: every one found is inside --output {output}")
    return kept


def _echo_fidelity(info) -> None:
    """One line on stderr: the fidelity report padim-calibrate stored in a variant, or its absence."""
    from padim_edge.metadata import fidelity_summary

    record = info.fidelity
    if record is not None:
        prefix = "warning: " if record.get("low") else "fidelity: "
        click.echo(prefix + fidelity_summary(record), err=True)
    elif info.precision != "fp32" or info.head_precision != "fp32":
        click.echo(
            f"note: this {info.precision} backbone / {info.head_precision} head model carries no fidelity "
            "report (how closely it follows the float32 model); make it with padim-calibrate --validate DIR "
            "to get one",
            err=True,
        )


def _print_table(rows: list[tuple[str, float, bool | None]], *, labelled: bool) -> None:
    if not rows:
        return
    width = max(len(name) for name, _, _ in rows)
    click.echo(f"{'image':<{width}}  {'score':>10}" + ("  label" if labelled else ""))
    for name, score, flag in rows:
        label = ("  ANOMALOUS" if flag else "  ok") if labelled else ""
        click.echo(f"{name:<{width}}  {score:>10.4f}{label}")
