"""The click options and arguments several commands share, each defined once.

Every ``padim-*`` command builds its shared options here, so an option keeps one name, type and
default everywhere, and help text that lists choices derives it from the table that defines them
(:mod:`padim_edge.devices` for devices, :mod:`padim_edge.spec` for backbones). A command passes only
what is its own: the sentence saying what the option does for it.

Imported by the torch-free runtime commands (``padim-predict``, ``padim-serve``): this module imports
click and Python-3.8, torch-free modules only; the training side's constants (head precisions) are
imported inside the functions that only the training commands call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

import click

from padim_edge.devices import CONCRETE_DEVICES, DEVICE_HELP, DEVICE_NAMES, OPENVINO_DEVICES
from padim_edge.spec import BACKBONES

#: A click command's function; every function below returns a decorator that adds one parameter to it.
F = TypeVar("F", bound=Callable[..., Any])

#: Where ``padim-export`` fits (torch's devices, not the runtime's: the export itself is device-free).
FIT_DEVICES = ("auto", "cpu", "cuda")
#: The methods ``padim-export`` builds and ``padim-bench`` builds to measure.
METHOD_NAMES = ("padim", "patchcore")
#: Devices ``padim-bench`` measures when ``--device`` is not given (OpenVINO only when asked for).
BENCH_DEFAULT_DEVICES = tuple(name for name in CONCRETE_DEVICES if name not in OPENVINO_DEVICES)
#: How every ``--ray`` option names the cluster (after what the command does on it).
RAY_ADDRESS_HELP = (
    "'--ray' alone: a local instance; 'auto': the cluster running here ('ray start --head'); "
    "'ray://HOST:10001' or 'HOST:6379': a remote one. Needs padim-edge[ray]."
)


def command_settings(width: int | None = 100) -> dict[str, Any]:
    """``context_settings`` of every command: ``-h`` as well as ``--help``; help lines up to ``width``
    characters (``None``: click's default of 80)."""
    settings: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
    if width is not None:
        settings["max_content_width"] = width
    return settings


def _sentence(purpose: str | None, text: str) -> str:
    return f"{purpose} {text}" if purpose else text


# ---------------------------------------------------------------------------------------------- models


def model_argument(
    name: str = "model", *, must_exist: bool = False, required: bool = True
) -> Callable[[F], F]:
    """The ``MODEL`` argument: a padim-edge ``.onnx`` file.

    Args:
        name: The ``main`` parameter it fills.
        must_exist: Let click refuse a missing path or a folder (exit code 2), instead of the command
            saying why in its own words.
        required: ``False`` where the command checks for it itself (``padim-predict --ray``).
    """
    kind = (
        click.Path(path_type=Path, exists=True, dir_okay=False) if must_exist else click.Path(path_type=Path)
    )
    return click.argument(name, metavar="MODEL", type=kind, required=required)


def output_option(help: str, *, file_okay: bool = True, default: Path | None = None) -> Callable[[F], F]:
    """``--output`` / ``-o``: where a command writes (``file_okay=False``: a folder only)."""
    return click.option(
        "--output",
        "-o",
        type=click.Path(path_type=Path, file_okay=file_okay),
        default=default,
        show_default=default is not None,
        help=help,
    )


# -------------------------------------------------------------------------------------- running models


def device_option(purpose: str | None = None) -> Callable[[F], F]:
    """``--device``: one of :data:`padim_edge.devices.DEVICE_NAMES` (default ``auto``), every one
    explained from the device table, after the command's ``purpose`` sentence."""
    return click.option(
        "--device",
        type=click.Choice(DEVICE_NAMES),
        default="auto",
        show_default=True,
        help=_sentence(purpose, DEVICE_HELP),
    )


def device_list_option() -> Callable[[F], F]:
    """``padim-bench --device``: comma-separated concrete devices (parsed by the command)."""
    return click.option(
        "--device",
        "device",
        default=None,
        help=f"Devices, comma-separated, from {', '.join(CONCRETE_DEVICES)}. Default: each of "
        f"{', '.join(BENCH_DEFAULT_DEVICES)} that this install has and that can start ("
        f"{', '.join(OPENVINO_DEVICES)}: only when named). Requested devices whose provider is missing "
        "are skipped with a note.",
    )


def fit_device_option(purpose: str) -> Callable[[F], F]:
    """``padim-export --device``: where torch fits, one of :data:`FIT_DEVICES`."""
    return click.option(
        "--device", type=click.Choice(FIT_DEVICES), default="auto", show_default=True, help=purpose
    )


def threads_option(help: str) -> Callable[[F], F]:
    """``--threads N``: onnxruntime's intra-op threads (default: its own, all cores)."""
    return click.option("--threads", type=click.IntRange(min=1), help=help)


def batch_size_option(default: int, help: str) -> Callable[[F], F]:
    """``--batch-size N``: images per run (at least 1)."""
    return click.option(
        "--batch-size", type=click.IntRange(min=1), default=default, show_default=True, help=help
    )


def quiet_option(help: str = "No progress bars.") -> Callable[[F], F]:
    """``--quiet`` / ``-q``: no progress output."""
    return click.option("--quiet", "-q", is_flag=True, help=help)


def json_option(help: str) -> Callable[[F], F]:
    """``--json``: print the report as JSON (``main`` gets it as ``as_json``)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def ray_option(purpose: str) -> Callable[[F], F]:
    """``--ray [ADDRESS]``: run on Ray (``main`` gets the address as ``ray_address``, ``local`` for the
    bare flag)."""
    return click.option(
        "--ray",
        "ray_address",
        is_flag=False,
        flag_value="local",
        metavar="[ADDRESS]",
        help=_sentence(purpose, RAY_ADDRESS_HELP),
    )


# ------------------------------------------------------------------------------------ building models


def method_option(help: str) -> Callable[[F], F]:
    """``--method``: one of :data:`METHOD_NAMES` (default ``padim``)."""
    return click.option(
        "--method", type=click.Choice(METHOD_NAMES), default="padim", show_default=True, help=help
    )


def backbone_option(help: str, *, multiple: bool = False) -> Callable[[F], F]:
    """``--backbone``: one of :data:`padim_edge.spec.BACKBONES`; default ``r18``, or (``multiple``:
    repeatable, ``main`` gets ``backbones``) none, the command choosing."""
    if multiple:
        return click.option(
            "--backbone", "backbones", type=click.Choice(list(BACKBONES)), multiple=True, help=help
        )
    return click.option(
        "--backbone", type=click.Choice(list(BACKBONES)), default="r18", show_default=True, help=help
    )


def dims_option(help: str) -> Callable[[F], F]:
    """``--dims N``: embedding dims (default: the method's, per backbone)."""
    return click.option("--dims", type=click.IntRange(min=1), help=help)


def resize_option(help: str) -> Callable[[F], F]:
    """``--resize N``: the square resize edge of a built model (default 256)."""
    return click.option("--resize", type=click.IntRange(min=1), default=256, show_default=True, help=help)


def crop_option(help: str) -> Callable[[F], F]:
    """``--crop N``: the center-crop edge of a built model (default 224)."""
    return click.option("--crop", type=click.IntRange(min=1), default=224, show_default=True, help=help)


def coreset_option(help: str) -> Callable[[F], F]:
    """``--coreset F``: PatchCore's coreset fraction, in (0, 1]."""
    return click.option("--coreset", type=click.FloatRange(min=0.0, min_open=True, max=1.0), help=help)


def head_precision_option(help: str, *, multiple: bool = False) -> Callable[[F], F]:
    """``--head-precision``: ``fp32``, ``fp16`` or ``int8`` (``multiple``: repeatable, ``main`` gets
    ``head_precisions``). Only the training commands call this (their settings module is imported here)."""
    from padim_edge.export.padim.settings import HEAD_PRECISIONS

    if multiple:
        return click.option(
            "--head-precision",
            "head_precisions",
            type=click.Choice(HEAD_PRECISIONS),
            multiple=True,
            help=help,
        )
    return click.option("--head-precision", type=click.Choice(HEAD_PRECISIONS), help=help)
