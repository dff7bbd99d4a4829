"""``padim-export``'s inputs, checked before anything is built: flag combinations and the demo set."""

from __future__ import annotations

from pathlib import Path

import click

from padim_edge.geometry import parse_size


def check_flags(
    *,
    weights_file: Path | None,
    random_init: bool,
    data: Path | None,
    demo: bool,
    batch_size: int,
    target: str,
    input_size: str | None,
    categories: Path | None,
) -> tuple[int, int] | None:
    """Refuse flags that exclude each other, and bad values, before anything is built.

    Returns:
        ``--input-size`` as ``(H, W)``, or ``None``.
    """
    from padim_edge.export.pipeline import check_target

    if weights_file is not None and random_init:
        raise click.UsageError("--weights and --random-init exclude each other")
    if data is not None and demo:
        raise click.UsageError("--data and --demo exclude each other")
    if batch_size < 1:
        raise click.BadParameter("must be >= 1", param_hint="--batch-size")
    size = None
    if input_size is not None:
        try:
            size = parse_size(input_size)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--input-size") from exc
    try:
        check_target(target, size)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if categories is not None and (data is not None or demo):
        raise click.UsageError("--categories and --data / --demo exclude each other")
    return size


def demo_data(output: Path) -> Path:
    """Write (or reuse) the demo set in ``demo_data/`` beside ``output``; returns its training folder."""
    from padim_edge.demo import demo_summary, make_demo_dataset

    try:
        dataset = make_demo_dataset(output.parent / "demo_data")
    except (FileExistsError, OSError) as exc:
        raise click.ClickException(
            f"{exc}. --demo writes its images to demo_data/ beside --output: delete that folder or "
            "choose another --output folder"
        ) from exc
    click.echo(demo_summary(dataset))
    return dataset.train_dir
