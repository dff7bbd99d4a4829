"""``padim-predict``: score images with an exported model (numpy + onnxruntime + Pillow; no torch)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from padim_edge import atomic
from padim_edge.devices import DEVICE_HELP, DEVICE_NAMES
from padim_edge.extras import MissingExtraError, require
from padim_edge.images import ImageError, expand_paths, iter_batches, read_file_list
from padim_edge.naming import image_keys, key_to_filename

#: Overlay file-name suffix: ``scratch/003.png`` -> ``scratch__003_overlay.png``.
OVERLAY_SUFFIX = "_overlay.png"


def open_model(
    path: Path,
    device: str,
    threads: int | None,
    *,
    trt_cache: Path | None = None,
    trt_profile: str | None = None,
    trt_workspace_mib: int | None = None,
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
        )
    except (ModelLoadError, ProviderError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="\b\nOutputs with --output:\n"
    "  scores.json   {key: score}, keys = image paths relative to the inputs' common folder\n"
    "  labels.json   {key: true|false} (is_anomalous), only for a model calibrated with a threshold\n"
    "  failed.json   {key: reason} for images that could not be read (exit code 1)\n"
    "  <name>_overlay.png  the heat map on the model's view of the image, score and colour bar; <name>\n"
    "                is the key without its extension, '/' replaced by '__' (flat in --output):\n"
    "                scratch/003.png -> scratch__003_overlay.png\n"
    "\b\nOverlay colours use one fixed scale per model: dark blue = the median training pixel, dark red =\n"
    "1.5 x the threshold (calibrated models) or, roughly, 2 x the 99th-percentile training score.",
)
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path), required=False)
@click.argument("paths", metavar="PATH...", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Folder for scores.json (key -> score), labels.json, failed.json and one overlay PNG per image.",
)
@click.option(
    "--device", type=click.Choice(DEVICE_NAMES), default="auto", show_default=True, help=DEVICE_HELP
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Images per run."
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="CPU intra-op threads (default: onnxruntime's, all cores)."
)
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    metavar="[ADDRESS]",
    help="Score on Ray with a pool of torch-free actors; --output gets Parquet shards (re-runs skip the "
    "shards already written), scores.json, failed.json and summary.json, no overlays. '--ray' alone: a "
    "local instance; 'auto': the cluster running here; 'ray://HOST:10001' or 'HOST:6379': a remote one. "
    "--threads is per actor (default 1). Needs padim-edge[ray].",
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
    exit code is 1.
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
    model = open_model(
        model_path,
        device,
        threads,
        trt_cache=trt_cache,
        trt_profile=trt_profile,
        trt_workspace_mib=trt_workspace_mib,
    )
    try:
        files = [file for _, file in expand_paths(paths)]
    except ImageError as exc:
        raise click.ClickException(str(exc)) from exc
    info = model.info
    click.echo(f"model {model_path} ({info.description}) on {', '.join(model.providers)}", err=True)
    if info.random_init:
        click.echo(
            "note: this model's backbone has random-init weights; scores are for demos and timing.", err=True
        )
    _echo_fidelity(info)
    keys = dict(zip(files, image_keys(files)))
    rows: list[tuple[str, float, bool | None]] = []
    failed: dict[str, str] = {}
    overlays = _Overlays(output, info) if output is not None else None

    def skip(path: Path, exc: ImageError) -> None:
        failed[keys[path]] = str(exc)

    # overlays are written as images come, the JSON files at the end: a full disk is one line
    with atomic.write_errors(output, error=click.ClickException), tqdm(
        total=len(files), desc="predict", unit="img", disable=quiet
    ) as bar:
        for batch in iter_batches(files, batch_size, on_error=skip):
            try:
                predictions = model.predict([image for _, image in batch], batch_size=batch_size)
            except ValueError as exc:  # InputError: e.g. frames of another size than a fixed-size model's
                raise click.ClickException(str(exc)) from exc
            for (file, image), pred in zip(batch, predictions):
                rows.append((keys[file], pred.score, pred.is_anomalous))
                if overlays is not None:
                    overlays.add(keys[file], image, pred.anomaly_map, pred.score, pred.is_anomalous)
            bar.update(len(batch))
        bar.update(len(failed))
    _print_table(rows, labelled=info.threshold is not None)
    if output is not None and overlays is not None:
        with atomic.write_errors(output, error=click.ClickException):
            written = _write_json(output, rows, failed, labelled=info.threshold is not None)
            count = overlays.finish()
        click.echo(f"wrote {', '.join(written)} and {count} overlays to {output}", err=True)
    if failed:
        for key, reason in failed.items():
            click.echo(f"error: {key}: {reason}", err=True)
        raise click.ClickException(f"{len(failed)} of {len(files)} images could not be read (listed above)")


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


def _write_json(
    output: Path, rows: list[tuple[str, float, bool | None]], failed: dict[str, str], *, labelled: bool
) -> list[str]:
    written = ["scores.json"]
    atomic.write_json(output / "scores.json", {name: round(score, 6) for name, score, _ in rows})
    if labelled:
        atomic.write_json(output / "labels.json", {name: bool(flag) for name, _, flag in rows})
        written.append("labels.json")
    if failed:
        atomic.write_json(output / "failed.json", failed)
        written.append("failed.json")
    return written


class _Overlays:
    """Writes one annotated overlay per image on the model's fixed colour scale, as images come.

    A model without training scores in its metadata (exported before they were recorded) has no fixed
    scale: its overlays are kept until the end and drawn on the run's own range, with a note.
    """

    def __init__(self, output: Path, info) -> None:
        from padim_edge.geometry import Geometry
        from padim_edge.visualize import colour_scale

        self.output = output
        self.geometry = Geometry(info.resize, info.crop)
        self.labelled = info.threshold is not None
        self.scale = colour_scale(info)
        self.pending: list[tuple[str, np.ndarray, np.ndarray, float, bool | None]] = []
        self.count = 0

    def add(
        self, key: str, image: np.ndarray, anomaly_map: np.ndarray, score: float, flag: bool | None
    ) -> None:
        view = self.geometry.image_view(image)
        if self.scale is None:
            self.pending.append((key, view, anomaly_map.astype(np.float16), score, flag))
        else:
            self._write(key, view, anomaly_map, score, flag)

    def finish(self) -> int:
        if self.pending:
            from padim_edge.visualize import ColourScale

            low = float(min(m.min() for _, _, m, _, _ in self.pending))
            high = max(s for _, _, _, s, _ in self.pending)
            self.scale = ColourScale(low, high, "this run's range (the model has no training scores)")
            click.echo(
                f"note: overlay colours use {self.scale.source}; re-export it for a fixed scale", err=True
            )
            for item in self.pending:
                self._write(*item)
        return self.count

    def _write(
        self, key: str, view: np.ndarray, anomaly_map: np.ndarray, score: float, flag: bool | None
    ) -> None:
        from padim_edge.visualize import annotated_overlay, save_png

        label = ("ANOMALOUS" if flag else "ok") if self.labelled else None
        picture = annotated_overlay(
            view, np.asarray(anomaly_map, np.float32), self.scale, score=score, label=label
        )
        save_png(picture, self.output / key_to_filename(key, OVERLAY_SUFFIX))
        self.count += 1
