"""``padim-export``: fit PaDiM (or PatchCore) on normal images and write one fused ONNX graph."""

from __future__ import annotations

from pathlib import Path

import click

from padim_edge.atomic import OutputError, check_output_file, write_failure
from padim_edge.cli_options import (
    backbone_option,
    batch_size_option,
    command_settings,
    coreset_option,
    crop_option,
    dims_option,
    fit_device_option,
    head_precision_option,
    method_option,
    output_option,
    quiet_option,
    ray_option,
    resize_option,
)
from padim_edge.export.cli_inputs import check_flags, demo_data
from padim_edge.export.padim.settings import (
    DEFAULT_BLOCKS,
    PRECISION_HELP,
    REDUCTION_HELP,
    REDUCTIONS,
)
from padim_edge.export.patchcore import settings as patchcore
from padim_edge.export.summary import summary_lines
from padim_edge.extras import MissingExtraError, require
from padim_edge.images import ImageError


@click.command(context_settings=command_settings(100))
@method_option(
    "padim: per-patch Gaussians + Mahalanobis distance (aligned images). patchcore: coreset memory bank "
    "of patch features + nearest-neighbour distance (any alignment; slower per image, see --coreset).",
)
@backbone_option(
    "r18: ResNet-18 layer1-3 (448 ch); wr50: Wide-ResNet-50-2 layer1-3 (1792 ch); "
    "mnv2: MobileNetV2 features.3/6/13 (152 ch).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Folder of defect-free training images (png, jpg, bmp, tif). Omit it (or pass --demo) for the demo.",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Generate the built-in synthetic demo set beside --output (demo_data/, MVTec layout) and fit on "
    "its train/good. Uses random-init weights unless --weights is given, so nothing is downloaded.",
)
@output_option(
    "The .onnx file to write (plus <name>.onnx.data when the constants need external data).",
    default=Path("model.onnx"),
)
@dims_option(
    "Embedding dims of the method. PaDiM: random channels kept; default 100 (r18, mnv2), 550 (wr50), up "
    "to all (448, 1792, 152). PatchCore: channel-pooled patch features; default "
    + ", ".join(f"{v} ({k})" for k, v in patchcore.DEFAULT_DIMS.items())
    + ". Fewer dims = faster nearest-neighbour search.",
)
@click.option(
    "--reduction",
    type=click.Choice(REDUCTIONS),
    help="PaDiM: how the tapped channels become the --dims embedding (default select). "
    + "; ".join(f"{k}: {v}" for k, v in REDUCTION_HELP.items())
    + ". benchmarks/results/reduction*.md: orthogonal gained 0.02 image AUROC on one set and none on "
    "the magnetic tile; try both on your own parts.",
)
@coreset_option(
    f"PatchCore: fraction of the training patch features kept in the memory bank (default "
    f"{patchcore.DEFAULT_CORESET}; 0.01 is the paper's fast setting). Per-image cost grows with the bank.",
)
@click.option(
    "--coreset-chunk",
    type=click.IntRange(min=0),
    help="PatchCore: patch vectors per streaming chunk (default: 256 MiB of vectors). Each full chunk is "
    "reduced to its own coreset, then one greedy pass over their union selects the bank, so fit memory does "
    "not grow with the images. 0: exact greedy over every vector (memory grows with the images).",
)
@click.option(
    "--coreset-oversample",
    type=click.FloatRange(min=1.0),
    help="PatchCore: per-chunk coresets keep this many times --coreset (default 2).",
)
@resize_option("Square resize edge, in the graph.")
@crop_option("Center-crop edge; anomaly maps have it.")
@click.option(
    "--weights",
    "weights_file",
    type=click.Path(path_type=Path),
    help="Backbone state_dict file (torch.load weights_only) instead of torchvision's ImageNet weights.",
)
@click.option(
    "--random-init",
    is_flag=True,
    help="Random backbone weights: for smoke tests and latency work only (recorded in the metadata).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of PaDiM's random channel subset / PatchCore's coreset projection and first pick.",
)
@batch_size_option(16, "Images per forward pass in the fit.")
@fit_device_option(
    "Where the fit runs (auto: CUDA if torch sees a GPU). The export itself is device-independent."
)
@click.option(
    "--external-data",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Write constants to <name>.onnx.data: auto does so past 512 MiB of constants (WR50-Rd550 in any "
    "head precision), which onnxruntime then memory-maps: opening the model costs about its size in RSS.",
)
@click.option(
    "--blocks",
    type=click.IntRange(min=1),
    help=f"PaDiM: column blocks of the packed symmetric Sigma^-1 (default {DEFAULT_BLOCKS}; 1 = full matrix; "
    "more = fewer bytes read).",
)
@head_precision_option(
    "PaDiM: Sigma^-1 and the head's MatMul (default fp32). "
    + "; ".join(f"{k}: {v}" for k, v in PRECISION_HELP.items())
    + ". PatchCore: the memory bank and its nearest-neighbour MatMul, in the same precisions for the same "
    "EPs (fp16 / int8: scaled per bank vector; see docs/patchcore.md for the error bound). fp16 / int8 "
    "also store a fidelity report against the fp32 head of the same fit, scored on the training images "
    "(it exports that fp32 model to a temporary folder first: its size must fit there too).",
)
@click.option(
    "--parity-images",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Training images for the check (0: no check).",
)
@click.option(
    "--target",
    type=click.Choice(["default", "tensorrt"]),
    default="default",
    show_default=True,
    help="default: any frame size, antialiased Resize (exact on the CPU and CUDA EPs; TensorRT has no "
    "antialiased resize). tensorrt: frames of --input-size only, resize + crop as two constant MatMuls, "
    "opset 17: builds on TensorRT 8.5-10.x with the default graph's numbers.",
)
@click.option(
    "--input-size",
    metavar="HxW",
    help="Camera frame size for --target tensorrt, e.g. 480x640 (height x width). The model then refuses "
    "other sizes.",
)
@click.option(
    "--skip-unreadable",
    is_flag=True,
    help="Fit without the training images that cannot be decoded, list them, and record them in the "
    "model's metadata (skipped_images). Default: the fit fails naming all of them.",
)
@quiet_option()
@ray_option(
    "Fit on Ray: the images are sharded over workers whose partial statistics are merged (same model as "
    "a local fit)."
)
@click.option(
    "--ray-workers", type=click.IntRange(min=1), help="Ray workers (default: CPUs / --ray-threads, or GPUs)."
)
@click.option(
    "--ray-threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Torch threads per Ray worker.",
)
@click.option(
    "--categories",
    type=click.Path(path_type=Path, file_okay=False),
    help="Fit one model per category of an MVTec-style ROOT (ROOT/<cat>/train/good) in parallel on Ray "
    "(implies --ray): writes --output DIR/<cat>.onnx, summary.json and summary.md.",
)
def main(
    method: str,
    backbone: str,
    data: Path | None,
    demo: bool,
    output: Path,
    dims: int | None,
    reduction: str | None,
    coreset: float | None,
    coreset_chunk: int | None,
    coreset_oversample: float | None,
    resize: int,
    crop: int,
    weights_file: Path | None,
    random_init: bool,
    seed: int,
    batch_size: int,
    device: str,
    external_data: str,
    blocks: int | None,
    head_precision: str | None,
    parity_images: int,
    target: str,
    input_size: str | None,
    skip_unreadable: bool,
    quiet: bool,
    ray_address: str | None,
    ray_workers: int | None,
    ray_threads: int,
    categories: Path | None,
) -> None:
    """Fit PaDiM (or PatchCore) on defect-free images and export ONE ONNX graph.

    The graph takes uint8 frames [N, H, W, 3] of any size and does everything else: resize, center
    crop, ImageNet normalisation, the truncated backbone, the method's reduction and head (PaDiM: random
    channel subset, per-patch Mahalanobis distance; PatchCore: 3x3-aggregated mid-level features,
    nearest memory-bank vector, re-weighted image score), upsampling, the sigma-4 blur and the image
    score. Outputs: anomaly_map [N, crop, crop] and score [N]. Run it with `padim-predict`.

    \b
    Examples:
      padim-export --demo --output demo/model.onnx
      padim-export --backbone r18 --data bottle/train/good --output bottle.onnx
      padim-export --backbone mnv2 --weights mobilenet_v2-b0353104.pth --data DIR -o m.onnx
      padim-export --data DIR -o m-trt.onnx --target tensorrt --input-size 480x640
      padim-export --method patchcore --coreset 0.01 --backbone r18 --data DIR -o pc.onnx
      padim-export --ray auto --data bottle/train/good --output bottle.onnx
      padim-export --ray auto --categories mvtec_ad --output models/
    """
    try:  # fitting needs torch, the parity check onnxruntime
        require("padim-export", "export", "runtime")
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from None
    from padim_edge.export.backbones import WeightsError
    from padim_edge.export.pipeline import ParityError, run_export

    size = check_flags(
        weights_file=weights_file,
        random_init=random_init,
        data=data,
        demo=demo,
        batch_size=batch_size,
        target=target,
        input_size=input_size,
        categories=categories,
    )
    fitter = None
    if ray_address is not None or categories is not None:
        from padim_edge.distributed.commands import ray_export

        fitter = ray_export(
            ray=ray_address,
            workers=ray_workers,
            threads=ray_threads,
            categories=categories,
            output=output,
            output_given=click.get_current_context().get_parameter_source("output").name != "DEFAULT",
            build={
                "backbone": backbone,
                "dims": dims,
                "reduction": reduction,
                "resize": resize,
                "crop": crop,
                "seed": seed,
                "weights_file": weights_file,
                "random_init": random_init,
            },
            options={
                "batch_size": batch_size,
                "device": device,
                "external_data": external_data,
                "blocks": blocks,
                "head_precision": head_precision,
                "parity_images": parity_images,
                "skip_unreadable": skip_unreadable,
            },
            quiet=quiet,
        )
        if fitter is None:  # --categories ran whole
            return
    try:
        check_output_file(output, what="--output")
    except OutputError as exc:
        raise click.ClickException(str(exc)) from exc
    if data is None:
        data = demo_data(output)
        if weights_file is None:
            random_init = True
            click.echo(
                "demo: backbone weights are random-init (nothing to download). The demo's defects are strong "
                "local texture changes that random features localise; for real parts use ImageNet weights "
                "(the default with --data) or --weights FILE."
            )
    try:
        run = run_export(
            data,
            output,
            method=method,
            backbone=backbone,
            dims=dims,
            resize=resize,
            crop=crop,
            seed=seed,
            weights_file=weights_file,
            random_init=random_init,
            batch_size=batch_size,
            device=device,
            external_data=external_data,  # type: ignore[arg-type]
            blocks=blocks,
            head_precision=head_precision,
            coreset=coreset,
            coreset_chunk=coreset_chunk,
            coreset_oversample=coreset_oversample,
            reduction=reduction,
            parity_images=parity_images,
            progress=not quiet,
            target=target,
            input_size=size,
            fitter=fitter,
            skip_unreadable=skip_unreadable,
        )
    except (ImageError, WeightsError, OutputError, ParityError, ValueError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # disk full or a permission lost during the write: one line, no traceback
        raise click.ClickException(str(write_failure(output, exc))) from exc
    for line in summary_lines(run, data, size, blocks=blocks, head_precision=head_precision):
        click.echo(line)
    from padim_edge.export.head_fidelity import echo_report

    echo_report(
        run, output, data, head_precision=head_precision, blocks=blocks, input_size=size, progress=not quiet
    )
