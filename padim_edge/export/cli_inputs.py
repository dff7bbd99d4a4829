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
    if data is not None:
        check_data(data)
    if random_init and (data is not None or categories is not None):
        click.echo(f"warning: {RANDOM_INIT_WARNING}", err=True)
    return size


#: Printed when ``--random-init`` is used on the user's own images (the demo says its own line).
RANDOM_INIT_WARNING = (
    "--random-init on your own images: the backbone's features are random, so the model finds little "
    "beyond strong texture changes. It is for smoke tests and latency work; for real parts use the "
    "ImageNet weights (omit --random-init) or --weights FILE"
)


def check_data(data: Path) -> None:
    """Refuse a ``--data`` folder that holds no images but a dataset's ``train/good/`` (or ``good/``).

    Raises:
        click.BadParameter: ``data`` is a dataset root or its ``train/`` folder; the message names the
            folder of training images to pass instead.
    """
    from padim_edge.images import is_image

    if not data.is_dir() or any(p.is_file() and is_image(p) for p in data.iterdir()):
        return
    for inner in (data / "train" / "good", data / "good"):
        if inner.is_dir():
            raise click.BadParameter(
                f"{data} holds no images but {inner.relative_to(data).as_posix()}/: it looks like a "
                f"dataset folder; pass its defect-free training images, --data {inner}",
                param_hint="--data",
            )


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
