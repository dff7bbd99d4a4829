"""``padim-predict``: score images with an exported model (numpy + onnxruntime + Pillow; no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from padim_edge.images import ImageError, expand_paths, iter_batches
from padim_edge.runtime.model import InputError, ModelLoadError, PadimModel
from padim_edge.runtime.providers import DEVICE_NAMES, ProviderError
from padim_edge.runtime.tensorrt import DEFAULT_WORKSPACE_BYTES


def open_model(
    path: Path,
    device: str,
    threads: int | None,
    *,
    trt_cache: Path | None = None,
    trt_profile: str | None = None,
    trt_workspace_mib: int | None = None,
) -> PadimModel:
    """Open the model or turn the runtime's errors into a CLI error."""
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


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("model_path", metavar="MODEL", type=click.Path(path_type=Path))
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    help="Folder for scores.json (name -> score) and one heat-map overlay PNG per image.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICE_NAMES),
    default="auto",
    show_default=True,
    help="Execution provider: auto tries TensorRT, CUDA, then CPU (whichever this onnxruntime has).",
)
@click.option("--batch-size", type=int, default=8, show_default=True, help="Images per session run.")
@click.option("--threads", type=int, help="CPU intra-op threads (default: onnxruntime's choice, all cores).")
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def main(
    model_path: Path,
    paths: tuple[Path, ...],
    output: Path | None,
    device: str,
    batch_size: int,
    threads: int | None,
    trt_cache: Path | None,
    trt_profile: str | None,
    trt_workspace_mib: int | None,
    quiet: bool,
) -> None:
    """Score images with a padim-edge MODEL.

    PATH is image files or folders (searched recursively). Prints one row per image with its score
    (and its label when the model carries a threshold from `padim-calibrate`). With --output, writes
    scores.json and, per image, an overlay of the anomaly map on the model's view of the image (resized
    and center-cropped as the graph sees it). Overlays share one colour scale across the run: from the
    lowest map value to the highest score, or to 1.5x the threshold when the model has one.
    """
    if batch_size < 1:
        raise click.BadParameter("must be >= 1", param_hint="--batch-size")
    model = open_model(
        model_path,
        device,
        threads,
        trt_cache=trt_cache,
        trt_profile=trt_profile,
        trt_workspace_mib=trt_workspace_mib,
    )
    try:
        inputs = expand_paths(paths)
    except ImageError as exc:
        raise click.ClickException(str(exc)) from exc
    info = model.info
    click.echo(
        f"model {model_path} ({info.backbone}, dims {info.dims}, crop {info.crop}, {info.precision}) "
        f"on {', '.join(model.providers)}",
        err=True,
    )
    if info.random_init:
        click.echo(
            "note: this model's backbone has random-init weights; scores are for demos and timing.", err=True
        )
    names = {file: name for name, file in inputs}
    rows: list[tuple[str, float, bool | None]] = []
    overlays: list[tuple[str, np.ndarray, np.ndarray]] = []
    with tqdm(total=len(inputs), desc="predict", unit="img", disable=quiet) as bar:
        try:
            for batch in iter_batches([file for _, file in inputs], batch_size):
                predictions = model.predict([image for _, image in batch], batch_size=batch_size)
                for (file, image), pred in zip(batch, predictions):  # one each (3.8: no strict=)
                    rows.append((names[file], pred.score, pred.is_anomalous))
                    if output is not None:
                        overlays.append((names[file], image, pred.anomaly_map.astype(np.float16)))
                bar.update(len(batch))
        except (ImageError, InputError) as exc:
            raise click.ClickException(str(exc)) from exc
    width = max(len(name) for name, _, _ in rows)
    labelled = info.threshold is not None
    click.echo(f"{'image':<{width}}  {'score':>10}" + ("  label" if labelled else ""))
    for name, score, flag in rows:
        label = ("  ANOMALOUS" if flag else "  ok") if labelled else ""
        click.echo(f"{name:<{width}}  {score:>10.4f}{label}")
    if output is not None:
        _write_outputs(output, rows, overlays, info.resize, info.crop, info.threshold)
        click.echo(f"wrote {output / 'scores.json'} and {len(overlays)} overlays in {output}", err=True)


def _write_outputs(
    output: Path,
    rows: list[tuple[str, float, bool | None]],
    overlays: list[tuple[str, np.ndarray, np.ndarray]],
    resize: int,
    crop: int,
    threshold: float | None,
) -> None:
    from padim_edge.geometry import Geometry
    from padim_edge.visualize import heatmap_overlay, save_png

    output.mkdir(parents=True, exist_ok=True)
    scores = {name: round(score, 6) for name, score, _ in rows}
    (output / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    if threshold is not None:
        labels = {name: bool(flag) for name, _, flag in rows}
        (output / "labels.json").write_text(json.dumps(labels, indent=2) + "\n")
    vmin = float(min(m.min() for _, _, m in overlays))
    vmax = 1.5 * threshold if threshold is not None else max(score for _, score, _ in rows)
    for name, image, amap in overlays:
        target = output / (Path(name).with_suffix("").as_posix().replace("/", "__") + "_overlay.png")
        save_png(
            heatmap_overlay(
                Geometry(resize, crop).image_view(image), amap.astype(np.float32), vmin=vmin, vmax=vmax
            ),
            target,
        )
