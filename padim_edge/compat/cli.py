"""``padim-check``: what each TensorRT / onnxruntime version would do with a model (static, no GPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from padim_edge.cli_options import command_settings, json_option, model_argument
from padim_edge.compat.targets import ONNXRUNTIME, ONNXRUNTIME_VERSIONS, TENSORRT, TENSORRT_VERSIONS, target
from padim_edge.extras import MissingExtraError, missing, require


def _rule_table() -> str:
    """The rules, one line each; a hint instead when onnx (which the rules read graphs with) is missing."""
    if missing("check"):
        return "  (listed once onnx is installed: pip install 'padim-edge[check]')"
    from padim_edge.compat.rules import RULES

    return "\n".join(f"  {r.name}: {r.summary}" for r in RULES.values())


class _Command(click.Command):
    """A command whose epilog (the rule table) is built only when --help shows it."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.epilog = "\b\nRules:\n" + _rule_table()
        super().format_epilog(ctx, formatter)


@click.command(
    cls=_Command,
    context_settings=command_settings(110),
)
@model_argument()
@click.option(
    "--tensorrt",
    "tensorrt_versions",
    multiple=True,
    metavar="VERSION",
    help=f"TensorRT version to check for ({', '.join(TENSORRT_VERSIONS)}; 10.x means 10). Repeatable.",
)
@click.option(
    "--onnxruntime",
    "ort_versions",
    multiple=True,
    metavar="VERSION",
    help=f"onnxruntime version to check for ({', '.join(ONNXRUNTIME_VERSIONS)}). Repeatable.",
)
@click.option(
    "--openvino",
    is_flag=True,
    help="Check for OpenVINO's CPU plugin (--device openvino): what it computes differently, what it cannot "
    "read. Alone: only OpenVINO.",
)
@json_option("Print the report as JSON.")
def main(
    model: Path,
    tensorrt_versions: tuple[str, ...],
    ort_versions: tuple[str, ...],
    openvino: bool,
    as_json: bool,
) -> None:
    """Check MODEL against TensorRT and onnxruntime versions (all of them unless some are named).

    Prints, per target, what would FAIL (rejected; under onnxruntime's TensorRT EP the node falls back to
    the CUDA / CPU EP), CHANGE NUMBERS (accepted, computes something else) or is a NOTE (outside the
    documented range, no known failure). Exits 1 when a requested target fails or changes numbers.

    \b
    Examples:
      padim-check model.onnx
      padim-check model-trt.onnx --tensorrt 8.5 --tensorrt 10
      padim-check model.onnx --onnxruntime 1.16 --json
    """
    try:
        require("padim-check", "check")
    except MissingExtraError as exc:
        raise click.ClickException(str(exc)) from None
    from padim_edge.compat.check import CheckError, check_file, format_report

    try:
        targets = [target(TENSORRT, v) for v in tensorrt_versions]
        targets += [target(ONNXRUNTIME, v) for v in ort_versions]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        report = check_file(model, targets or None)
        if openvino:
            from padim_edge.compat.openvino import add_openvino

            add_openvino(report, model, only=not targets)
    except CheckError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo("\n".join(format_report(report)))
    sys.exit(0 if report.ok else 1)
