"""``padim-predict --video``: its options, and the command that opens the model and the source, runs,
and reports in one line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from padim_edge.runtime.video.errors import VideoError
from padim_edge.runtime.video.opencv import load_cv2
from padim_edge.runtime.video.run import run_video
from padim_edge.runtime.video.sources import DEFAULT_TIMEOUT_S


def video_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--video`` and its options to ``padim-predict`` (decorate its ``main`` under ``@click.command``).

    The options are handled here: with ``--video`` the command scores the source and returns, without
    it ``main`` runs as before and never sees them.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = {name: kwargs.pop(name) for name in _OPTION_NAMES}
        context = click.get_current_context()
        if options["video"] is None:
            for name in _given(context, _OPTION_NAMES[1:]):
                raise click.UsageError(f"{_hint(context, name)} needs --video SOURCE")
            return command(*args, **kwargs)
        for name in _given(context, [name for name in kwargs if name not in _USED]):
            raise click.UsageError(
                f"{_hint(context, name)} does not apply to --video, which scores one source (no image PATH, "
                "--files-from, overlay or --ray options)"
            )
        return _video_command(options, kwargs)

    for option in reversed(_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


_OPTIONS = [
    click.option(
        "--video",
        metavar="SOURCE",
        help="Score a video instead of images: a file, a camera index (0), an RTSP/HTTP URL or a GStreamer "
        "pipeline ('... ! appsink'; needs an OpenCV built with GStreamer, e.g. JetPack's). One JSON line "
        "per frame (frame, time, score, label, or error) on stdout, or in --output/frames.jsonl with "
        "summary.json. A live source drops (and counts) frames when scoring falls behind. Needs "
        "padim-edge[video].",
    ),
    click.option(
        "--every",
        type=click.IntRange(min=1),
        default=1,
        show_default=True,
        metavar="K",
        help="--video: score every K-th frame.",
    ),
    click.option(
        "--video-out",
        type=click.Path(path_type=Path, dir_okay=False),
        metavar="FILE",
        help="--video: write an annotated video (overlay, score, colour bar): .avi (MJPG) or .mp4 (mp4v).",
    ),
    click.option(
        "--buffer",
        "buffer_frames",
        type=click.IntRange(min=1),
        metavar="N",
        help="--video: frames held between decoding and scoring (default: --batch-size for a live source, "
        "which drops the oldest beyond N; 2 x --batch-size for a file).",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(min=0.1),
        default=DEFAULT_TIMEOUT_S,
        show_default=True,
        metavar="S",
        help="--video: seconds a URL may take to answer, and to deliver each frame.",
    ),
]
_OPTION_NAMES = ("video", "every", "video_out", "buffer_frames", "timeout")
#: padim-predict's own parameters that --video uses; any other given with it is refused.
_USED = {
    "model_path", "output", "device", "batch_size", "threads", "trt_cache", "trt_profile",
    "trt_workspace_mib", "quiet",
}  # fmt: skip


def _given(context: click.Context, names: Any) -> list[str]:
    """The parameters among ``names`` given on the command line (or by environment), not defaulted."""
    explicit = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)
    return [name for name in names if context.get_parameter_source(name) in explicit]


def _hint(context: click.Context, name: str) -> str:
    """How the user wrote a parameter: ``--every``, ``PATH...``."""
    param = next(p for p in context.command.params if p.name == name)
    return max(param.opts, key=len) if isinstance(param, click.Option) else param.human_readable_name


def _video_command(options: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """``padim-predict MODEL --video SOURCE``: open the model and the source, run, report in one line."""
    from padim_edge import atomic
    from padim_edge.extras import MissingExtraError
    from padim_edge.runtime.cli import open_model

    if kwargs.get("model_path") is None:
        raise click.MissingParameter(
            ctx=click.get_current_context(), param_type="argument", param_hint="'MODEL'"
        )
    output: Path | None = kwargs.get("output")
    try:
        if output is not None:
            atomic.check_output_folder(output, what="--output")
        if options["video_out"] is not None:
            atomic.check_output_file(options["video_out"], what="--video-out")
        load_cv2()
    except (atomic.OutputError, MissingExtraError) as exc:
        raise click.ClickException(str(exc)) from exc
    model = open_model(
        kwargs["model_path"],
        kwargs.get("device", "auto"),
        kwargs.get("threads"),
        trt_cache=kwargs.get("trt_cache"),
        trt_profile=kwargs.get("trt_profile"),
        trt_workspace_mib=kwargs.get("trt_workspace_mib"),
    )
    click.echo(
        f"model {kwargs['model_path']} ({model.info.description}) on {', '.join(model.providers)}", err=True
    )
    try:
        with atomic.write_errors(output, error=click.ClickException):
            run = run_video(
                model,
                options["video"],
                output,
                options["every"],
                batch_size=kwargs.get("batch_size", 8),
                video_out=options["video_out"],
                buffer_frames=options["buffer_frames"],
                timeout=options["timeout"],
                err=None if kwargs.get("quiet") else sys.stderr,
            )
    except VideoError as exc:
        raise click.ClickException(str(exc)) from exc
    if kwargs.get("quiet"):
        click.echo(run.line(), err=True)
    for note in run.notes:
        click.echo(f"warning: {note}", err=True)
    if output is not None:
        click.echo(f"wrote frames.jsonl and summary.json to {output}", err=True)
    if run.interrupted:
        click.echo(f"interrupted after {run.frames} frames; their results are kept", err=True)
        raise click.exceptions.Exit(130)
    if run.error is not None:
        raise click.ClickException(run.error)
    if run.failed:
        raise click.ClickException(
            f"{run.failed} of {run.frames} frames failed (their 'error' lines say why)"
        )
