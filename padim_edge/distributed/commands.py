"""What ``padim-export --ray`` / ``--categories`` and ``padim-predict --ray`` do: the CLIs make one call here.

Ray is imported only when these run; errors become one-line ``click`` errors.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from padim_edge.distributed.cluster import LOCAL, ClusterError, is_address, parse_address
from padim_edge.extras import MissingExtraError


def _address(value: str) -> str:
    try:
        return parse_address(value) or LOCAL
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ray") from exc


def _connect(address: str):
    from padim_edge.distributed.cluster import connect

    try:
        info = connect(_address(address))
    except (MissingExtraError, ClusterError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"ray           {info.describe()}", err=True)
    return info


def ray_export(
    *,
    ray: str | None,
    workers: int | None,
    threads: int,
    categories: Path | None,
    output: Path,
    output_given: bool,
    build: dict[str, Any],
    options: dict[str, Any],
    quiet: bool,
) -> Callable[..., Any] | None:
    """``padim-export --ray``: the distributed fit to pass to ``run_export``, or run ``--categories`` whole.

    Returns:
        The fitter (one model), or ``None`` when ``--categories`` ran (it exits non-zero on a failure).
    """
    if categories is not None and not output_given:
        raise click.UsageError(
            "--categories writes one model per category: give the folder with --output DIR"
        )
    info = _connect(ray or LOCAL)
    if categories is None:
        from padim_edge.distributed.fit import fitter

        return fitter(info, workers=workers, threads=threads)
    _run_categories(categories, output, info=info, threads=threads, build=build, options=options, quiet=quiet)
    return None


def _run_categories(
    root: Path,
    output: Path,
    *,
    info: Any,
    threads: int,
    build: dict[str, Any],
    options: dict[str, Any],
    quiet: bool,
) -> None:
    from padim_edge.atomic import OutputError
    from padim_edge.datasets import DatasetError
    from padim_edge.distributed.categories import SUMMARY_JSON, SUMMARY_MD, fit_categories
    from padim_edge.export.backbones import WeightsError
    from padim_edge.export.pipeline import build_module

    try:
        module = build_module(**build)
    except (WeightsError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc

    def report(row: Any) -> None:
        if row.ok:
            click.echo(f"ok      {row.category}: {row.images} images, {row.seconds:.1f} s -> {row.model}")
        else:
            click.echo(f"FAILED  {row.category}: {row.error}", err=True)

    try:
        rows = fit_categories(
            root, output, module=module, threads=threads, info=info, on_result=report, **options
        )
    except (DatasetError, OutputError) as exc:
        raise click.ClickException(str(exc)) from exc
    failed = [r.category for r in rows if not r.ok]
    click.echo(f"wrote         {output / SUMMARY_JSON}, {output / SUMMARY_MD}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(rows)} categories failed: {', '.join(failed)}")
    if not quiet:
        click.echo(f"all {len(rows)} categories fitted")


def split_model_argument(
    ray: str | None, model_path: Path | None, paths: tuple[Path, ...]
) -> tuple[str | None, Path | None, tuple[Path, ...]]:
    """``padim-predict --ray MODEL PATH...``: click gave MODEL to ``--ray``; give it back.

    A ``--ray`` value that is not a cluster address (``local``, ``auto``, ``[ray://]host:port``) was the
    model: ``--ray`` alone was meant.
    """
    if ray is None or is_address(ray):
        return ray, model_path, paths
    return LOCAL, Path(ray), tuple(p for p in (model_path, *paths) if p is not None)


def ray_predict(
    ray: str,
    model: Path,
    paths: tuple[Path, ...],
    *,
    output: Path | None,
    device: str,
    batch_size: int,
    threads: int | None,
    actors: int | None,
    shard_size: int,
    maps: bool,
    quiet: bool,
) -> None:
    """``padim-predict --ray``: score on an actor pool, write Parquet shards and the local JSON files."""
    from padim_edge.images import ImageError
    from padim_edge.runtime.model import ModelLoadError
    from padim_edge.runtime.providers import ProviderError

    if output is None:
        raise click.UsageError("--ray writes its results to files: give the folder with --output DIR")
    info = _connect(ray)
    from padim_edge.distributed.scoring import SHARDS, score

    try:
        run = score(
            model,
            list(paths),
            output,
            actors=actors,
            threads=threads if threads is not None else 1,
            batch_size=batch_size,
            shard_size=shard_size,
            device=device,
            maps=maps,
            info=info,
            progress=not quiet,
        )
    except (ImageError, ModelLoadError, ProviderError, ClusterError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    rate = run.images / run.seconds if run.seconds else 0.0
    click.echo(
        f"scored {run.scored} of {run.images} images in {run.seconds:.1f} s ({rate:.1f} img/s); shards: "
        f"{run.written} written, {run.skipped} already there, {len(run.shard_errors)} failed "
        f"({output / SHARDS})",
        err=True,
    )
    click.echo(f"wrote {', '.join(p.name for p in run.files)} to {output}", err=True)
    if run.torch_in_workers:
        click.echo("warning: a scoring worker had torch imported (it should stay torch-free)", err=True)
    for key, reason in run.failed_images.items():
        click.echo(f"error: {key}: {reason}", err=True)
    for name, reason in run.shard_errors.items():
        click.echo(f"error: shard {name}: {reason} (re-run to retry it)", err=True)
    if not run.ok:
        problems = (
            [f"{len(run.failed_images)} of {run.images} images could not be read"]
            if run.failed_images
            else []
        )
        problems += [f"{len(run.shard_errors)} shards failed"] if run.shard_errors else []
        raise click.ClickException(f"{' and '.join(problems)} (listed above); every other result is written")
