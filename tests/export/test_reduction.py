"""PaDiM's reductions: the random channel subset and the semi-orthogonal projection (``--reduction``)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from padim_edge import graph_names
from padim_edge.export.cli import main as export_main
from padim_edge.export.padim.reduction import OrthogonalReducer, make_reducer, select_channels
from padim_edge.export.pipeline import build_module
from tests.conftest import SMALL


def test_projection_is_semi_orthogonal_and_seeded() -> None:
    w = OrthogonalReducer((24, 32, 96), 100, seed=0).projection().double()
    assert w.shape == (152, 100)
    assert (w.T @ w - torch.eye(100, dtype=torch.float64)).abs().max() < 1e-6
    again = OrthogonalReducer((24, 32, 96), 100, seed=0).projection()
    other = OrthogonalReducer((24, 32, 96), 100, seed=1).projection()
    assert torch.equal(again.double(), w) and not torch.equal(other.double(), w)
    with pytest.raises(ValueError, match=r"dims must be in \[1, 152\]"):
        OrthogonalReducer((24, 32, 96), 153, seed=0)


def test_per_map_projection_equals_projecting_the_upsampled_concatenation() -> None:
    """Projecting each map on its own grid, then upsampling and summing == W^T of PaDiM's embedding."""
    module = OrthogonalReducer((8, 16, 32), 20, seed=3)
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, c, s, s, generator=g) for c, s in ((8, 16), (16, 8), (32, 4))]
    full = torch.cat([maps[0]] + [F.interpolate(m, size=(16, 16), mode="nearest") for m in maps[1:]], 1)
    expected = torch.einsum("nchw,cd->ndhw", full.double(), module.projection().double())
    got = module(maps).double()
    assert got.shape == (2, 20, 16, 16)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()


def test_make_reducer_rows() -> None:
    reducer, indices = make_reducer("select", (8, 16, 32), 10, 0)
    assert torch.equal(indices, select_channels(56, 10, 0))
    reducer, indices = make_reducer("orthogonal", (8, 16, 32), 10, 0)
    assert indices is None and isinstance(reducer, OrthogonalReducer)
    with pytest.raises(ValueError, match="reduction must be one of select, orthogonal, got 'pca'"):
        make_reducer("pca", (8, 16, 32), 10, 0)


def test_projection_travels_with_the_state_dict() -> None:
    """A rebuilt module (a Ray worker) gets the driver's W from the state dict, not from its own QR."""
    options = {k: v for k, v in SMALL.items() if k != "backbone"}
    driver, _ = build_module("r18", reduction="orthogonal", **options)
    state = driver.state_dict()
    assert {"reducer.weight0", "reducer.weight1", "reducer.weight2"} <= set(state)
    state["reducer.weight1"] = state["reducer.weight1"] * 2
    worker, _ = build_module("r18", reduction="orthogonal", **options)
    worker.load_state_dict(state, strict=True)
    assert torch.equal(worker.reducer.weight1, state["reducer.weight1"])
    selected, _ = build_module("r18", **options)
    assert not any(k.startswith("reducer.") for k in selected.state_dict())  # as before: nothing new saved


def test_export_orthogonal_reduction(train_dir: Path, tmp_path: Path) -> None:
    """padim-export --reduction orthogonal: the projection is in the graph (1x1 convolutions in the
    reduction stage, parity checked by the export), recorded in the metadata, and PatchCore refuses it."""
    out = tmp_path / "orth.onnx"
    args = ["--data", str(train_dir), "-o", str(out), "--dims", "24", "--resize", "72", "--crop", "64"]
    args += ["--random-init", "-q", "--parity-images", "2", "--device", "cpu"]
    result = CliRunner().invoke(export_main, [*args, "--reduction", "orthogonal"])
    assert result.exit_code == 0, result.output
    assert "24 projected from 448 channels" in result.output and "parity" in result.output
    proto = onnx.load(out)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["padim_edge.reduction"] == "orthogonal" and "padim_edge.channel_indices" not in props
    convs = [n for n in proto.graph.node if n.op_type == "Conv" and n.name.startswith(graph_names.REDUCE)]
    assert len(convs) == 3

    result = CliRunner().invoke(export_main, [*args, "-o", str(tmp_path / "sel.onnx")])
    props = {p.key: p.value for p in onnx.load(tmp_path / "sel.onnx").metadata_props}
    assert (
        props["padim_edge.reduction"] == "select"
        and len(json.loads(props["padim_edge.channel_indices"])) == 24
    )

    result = CliRunner().invoke(export_main, [*args, "--method", "patchcore", "--reduction", "orthogonal"])
    assert result.exit_code != 0 and "--reduction do(es) not apply to --method patchcore" in result.output
