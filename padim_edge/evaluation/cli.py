"""``padim-eval``: image AUROC, pixel AUROC and PRO of a padim-edge model on an MVTec AD test set."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click
from tqdm import tqdm

from padim_edge import atomic
from padim_edge.cli_options import (
    batch_size_option,
    command_settings,
    device_option,
    json_option,
    model_argument,
    output_option,
)
from padim_edge.datasets import Category, DatasetError, find_categories
from padim_edge.evaluation.predictions import AnomalyModel, PredictionError, predict_category
from padim_edge.extras import MissingExtraError, require
from padim_edge.images import ImageError, fingerprint


def open_model(path: Path, device: str) -> AnomalyModel:
    """Load the model with the torch-free runtime (the one place the CLI touches it; tests replace it).

    Returns:
        A :class:`padim_edge.runtime.PadimModel`.
    """
    require("padim-eval", "runtime")
    from padim_edge.runtime import PadimModel

    return PadimModel(str(path), device=device)


def threshold_images_seen(info, category: Category) -> str | None:
    """A warning when the model's threshold was chosen on images of this test set, else ``None``.

    padim-calibrate stores content fingerprints of the images it chose the threshold on
    (``threshold_data``); the same file under any name or folder is recognised.
    """
    stored = info.get("threshold_data")
    if not stored:
        return None
    chosen = set(stored)
    seen = []
    for sample in category.samples:
        try:
            if fingerprint(sample.path) in chosen:
                seen.append(sample.path)
        except OSError:
            continue
    if not seen:
        return None
    return (
        f"{len(seen)} of the {len(category.samples)} images evaluated (e.g. {seen[0]}) are images the "
        "model's threshold was chosen on (padim-calibrate --data / --labeled): the confusion matrix at "
        "the threshold is optimistic; choose the threshold on held-out normal images (e.g. val/good) "
        "instead"
    )


@click.command(
    context_settings=command_settings(100),
    epilog=(
        "ROOT is one MVTec AD category (ROOT/test/good/, ROOT/test/<defect>/, "
        "ROOT/ground_truth/<defect>/<stem>_mask.png) or a folder of categories (ROOT/bottle/, "
        "ROOT/cable/, ...), which is evaluated per category with a mean row. Image AUROC: image scores, "
        "good vs defect images. Pixel AUROC: every test pixel (good images' pixels are normal). PRO: "
        "per-region overlap (8-connected ground-truth regions) integrated over pixel FPR 0..0.3 and "
        "divided by 0.3. Per-defect rows use that defect's images plus every good image."
    ),
)
@model_argument(must_exist=True)
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_option(
    "Also write metrics.json, metrics.md, roc.png (image- and pixel-level ROC curves) and grid.png "
    "(highest- and lowest-scoring images with heat maps and mask outlines) into this folder; with "
    "several categories, roc.png and grid.png go into one sub-folder per category.",
    file_okay=False,
)
@device_option("Where to run the model.")
@batch_size_option(8, "Images decoded and run per inference batch.")
@json_option(
    "Print one JSON object (image_auroc, pixel_auroc, pro, per_defect, categories, model, images, "
    "providers, ...) instead of the tables; the progress bar stays on stderr.",
)
def main(model: Path, root: Path, output: Path | None, device: str, batch_size: int, as_json: bool) -> None:
    """Evaluate MODEL (a padim-edge .onnx file) on the MVTec AD test set in ROOT.

    Without ground_truth/ masks (folders of good and defective images only) it reports image AUROC,
    the confusion matrix at a baked threshold and the image-level plots, and says pixel metrics need
    masks.
    """
    try:
        require("padim-eval", "eval")
        if output is not None:
            atomic.check_output_folder(output, what="--output")
    except (MissingExtraError, atomic.OutputError) as exc:
        raise click.ClickException(str(exc)) from exc
    from padim_edge.evaluation.metrics import evaluate_category
    from padim_edge.evaluation.report import (
        EvaluationSummary,
        format_text,
        write_grid_png,
        write_json,
        write_markdown,
        write_roc_png,
    )

    try:
        categories = find_categories(root)
    except (DatasetError, ImageError) as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        loaded = open_model(model, device)
    except Exception as exc:
        raise click.ClickException(f"cannot load model {model}: {exc}") from exc

    multi = len(categories) > 1
    results = []
    for category in categories:
        with tqdm(
            total=len(category.samples), desc=category.name, unit="img", file=sys.stderr, leave=False
        ) as bar:
            try:
                predictions = predict_category(loaded, category, batch_size=batch_size, progress=bar.update)
            except (DatasetError, ImageError, PredictionError) as exc:
                raise click.ClickException(str(exc)) from exc
        result = evaluate_category(predictions)
        reused = threshold_images_seen(loaded.info, category)
        if reused:
            result = dataclasses.replace(result, warnings=(*result.warnings, reused))
        results.append(result)
        for line in result.warnings:
            click.echo(f"warning: {category.name}: {line}", err=True)
        if output is not None:
            folder = output / category.name if multi else output
            with atomic.write_errors(folder, error=click.ClickException):
                write_roc_png(result, folder / "roc.png")
                write_grid_png(predictions, folder / "grid.png")
        del predictions

    summary = EvaluationSummary(
        model_path=model,
        info=loaded.info,
        providers=list(loaded.providers),
        device=device,
        root=root,
        categories=results,
        multi=multi,
    )
    if output is not None:
        with atomic.write_errors(output, error=click.ClickException):
            write_json(summary, output / "metrics.json")
            write_markdown(summary, output / "metrics.md")
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(format_text(summary), nl=False)
        if output is not None:
            plots = "<category>/roc.png, <category>/grid.png" if multi else "roc.png, grid.png"
            click.echo(f"wrote metrics.json, metrics.md, {plots} to {output}")


if __name__ == "__main__":  # pragma: no cover
    main()
