"""The shared click options (padim_edge.cli_options): every command's ``--device`` offers, and its
``--help`` lists, exactly the devices the device table (padim_edge.devices) defines for it."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from padim_edge.bench.cli import parse_devices
from padim_edge.cli_options import BENCH_DEFAULT_DEVICES, FIT_DEVICES
from padim_edge.devices import CONCRETE_DEVICES, DEVICE_NAMES, DEVICES, OPENVINO_DEVICES
from tests.common.test_cli_help import _scripts

#: How each console script takes --device: one runtime device, a bench list, a torch fit device, none.
DEVICE_KIND = {
    "padim-predict": "runtime",
    "padim-serve": "runtime",
    "padim-eval": "runtime",
    "padim-calibrate": "runtime",
    "padim-bench": "list",
    "padim-export": "fit",
    "padim-check": None,
}


def _command(script: str) -> click.Command:
    module, _, attr = _scripts()[script].partition(":")
    return getattr(importlib.import_module(module), attr)


def _help(script: str) -> str:
    """The script's --help with white space folded (click wraps lines at its own places)."""
    done = CliRunner().invoke(_command(script), ["--help"], prog_name=script, terminal_width=200)
    assert done.exit_code == 0, done.output
    return " ".join(done.output.split())


def test_every_console_script_is_classified() -> None:
    assert set(DEVICE_KIND) == set(_scripts())


@pytest.mark.parametrize("script", sorted(DEVICE_KIND))
def test_device_help_lists_the_device_table(script: str) -> None:
    kind = DEVICE_KIND[script]
    options = [p for p in _command(script).params if p.name == "device"]
    text = _help(script)
    if kind is None:
        assert options == []  # padim-check only names the device its --openvino checks for
        assert "(--device openvino)" in text and "openvino" in DEVICE_NAMES
        return
    (option,) = options
    if kind == "runtime":
        assert tuple(option.type.choices) == DEVICE_NAMES
        assert f"--device [{'|'.join(DEVICE_NAMES)}]" in text
        bare = "".join(text.split())  # click also breaks lines after a hyphen ('padim-' 'edge')
        for device in DEVICES.values():  # each name with its one line from the table
            assert "".join(f"{device.name}: {device.help}".split()) in bare, device.name
    elif kind == "list":
        assert f"Devices, comma-separated, from {', '.join(CONCRETE_DEVICES)}." in text
        assert f"Default: each of {', '.join(BENCH_DEFAULT_DEVICES)} that" in text
        assert f"({', '.join(OPENVINO_DEVICES)}: only when named)" in text
    else:
        assert tuple(option.type.choices) == FIT_DEVICES
        assert f"--device [{'|'.join(FIT_DEVICES)}]" in text


def test_bench_accepts_exactly_the_devices_its_help_lists() -> None:
    assert parse_devices(",".join(CONCRETE_DEVICES)) == list(CONCRETE_DEVICES)
    assert set(BENCH_DEFAULT_DEVICES) == set(CONCRETE_DEVICES) - set(OPENVINO_DEVICES)
    with pytest.raises(
        click.BadParameter, match="unknown \\['auto'\\]; choose from cpu, cuda, tensorrt, openvino"
    ):
        parse_devices("cpu,auto")
