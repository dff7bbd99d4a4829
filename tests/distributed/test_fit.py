"""The distributed fit on a local Ray instance: the same statistics and the same graph as the local fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from padim_edge.export.cli import main as export_main
from padim_edge.export.fit import accumulate
from padim_edge.export.pipeline import build_module
from padim_edge.images import UnreadableImagesError, iter_batches, list_images
from tests.common.test_images import write_oversized_png
from tests.conftest import SMALL, write_images

pytest.importorskip("ray", reason="the [ray] extra is not installed")

from padim_edge.distributed.fit import fit_statistics

SMALL_ARGS = ["--dims", "24", "--resize", "72", "--crop", "64", "--random-init", "--batch-size", "5"]


def _small_module():
    return build_module("r18", **{k: v for k, v in SMALL.items() if k != "backbone"})[0]


def _nodes(model: onnx.ModelProto) -> list[tuple]:
    return [(n.op_type, list(n.input), list(n.output), n.name, str(n.attribute)) for n in model.graph.node]


def _metadata(model: onnx.ModelProto) -> dict[str, str]:
    """Every metadata key but the creation time."""
    return {p.key: p.value for p in model.metadata_props if not p.key.endswith("created")}


@pytest.mark.parametrize(
    ("workers", "batch", "exact"),
    [
        (3, 5, True),  # shards of one batch each (5, 5, 2): ((1+2)+3) is the local fold's own arithmetic
        (4, 3, False),  # (1+2)+(3+4): the float64 sums associate differently
    ],
)
def test_distributed_statistics_equal_the_local_fit(
    ray_cluster, train_dir: Path, workers: int, batch: int, exact: bool
) -> None:
    """Shards of whole batches merged in a tree == one local pass: float64 within 1e-9 relative, and
    bit for bit where every merge folds one batch's partial in as the local update folds that batch."""
    model = _small_module()
    paths = list_images(train_dir)
    local = accumulate(model, ([im for _, im in b] for b in iter_batches(paths, batch)), device="cpu")
    merged, device, _ = fit_statistics(
        model, paths, workers=workers, batch_size=batch, device="auto", info=ray_cluster, progress=False
    )
    assert device == "cpu" and merged.count == local.count == 12
    assert not model.fitted  # the driver's module is untouched until install
    scale = np.abs(local.mean).max()
    np.testing.assert_allclose(merged.mean, local.mean, rtol=1e-9, atol=1e-9 * scale)
    inv_local, inv_merged = np.linalg.inv(local.covariance()), np.linalg.inv(merged.covariance())
    assert np.abs(inv_merged - inv_local).max() / np.abs(inv_local).max() <= 1e-9
    np.testing.assert_allclose(inv_merged, inv_local, rtol=1e-9, atol=1e-9 * np.abs(inv_local).max())
    same = np.array_equal(merged.mean, local.mean) and np.array_equal(merged.scatter, local.scatter)
    assert same is exact


def test_orthogonal_reduction_fits_on_ray_as_locally(ray_cluster, train_dir: Path) -> None:
    """--reduction orthogonal on Ray: the plan carries the reduction, the workers get the driver's W
    with the state dict, and the merged statistics are the local fit's."""
    from padim_edge.distributed.methods import plan_for

    options = {k: v for k, v in SMALL.items() if k != "backbone"}
    model = build_module("r18", reduction="orthogonal", **options)[0]
    assert plan_for(model).reduction == "orthogonal" and plan_for(model).indices == ()
    paths = list_images(train_dir)
    local = accumulate(model, ([im for _, im in b] for b in iter_batches(paths, 5)), device="cpu")
    merged, _, _ = fit_statistics(
        model, paths, workers=2, batch_size=5, device="cpu", info=ray_cluster, progress=False
    )
    assert merged.count == local.count == 12
    np.testing.assert_allclose(merged.mean, local.mean, rtol=1e-6, atol=1e-6 * np.abs(local.mean).max())


def test_export_on_ray_writes_the_local_graph(
    ray_cluster, train_dir: Path, small_onnx: Path, tmp_path: Path
) -> None:
    """padim-export --ray: the local fit's graph, every initializer bit for bit.

    Two workers, batches of 5: shards of batches (1, 2) and (3). The first shard folds its batches as
    the local fit does, and merging the second (one batch) performs the local update of batch 3 in the
    same float64 operations, so the statistics, and the float32 constants, are the local ones exactly.
    With more shards the tree associates the sums differently (the test above): float64 within 1e-9,
    a float32 constant then 1 ulp off where float64 sat on a rounding tie (docs/ray.md).
    """
    out = tmp_path / "ray.onnx"
    args = ["--ray", "--ray-workers", "2", "--data", str(train_dir), "-o", str(out), "--device", "cpu", "-q"]
    result = CliRunner().invoke(export_main, [*args, *SMALL_ARGS, "--parity-images", "0"])
    assert result.exit_code == 0, result.output
    assert "images used   12" in result.output and "cpu x 2 Ray workers" in result.output
    local, remote = onnx.load(small_onnx), onnx.load(out)
    assert _nodes(remote) == _nodes(local)
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in local.graph.initializer}
    for tensor in remote.graph.initializer:
        theirs, ours = constants.pop(tensor.name), onnx.numpy_helper.to_array(tensor)
        assert theirs.dtype == ours.dtype
        np.testing.assert_array_equal(ours, theirs, err_msg=tensor.name)
    assert not constants
    assert _metadata(remote) == _metadata(local)


def test_unreadable_training_images_are_named_from_every_shard(ray_cluster, tmp_path: Path) -> None:
    """A worker meets a corrupt image: the fit fails naming it and the other shard's bad file; the rest
    of both shards is fitted and merged (kept on the error), not thrown away."""
    write_images(tmp_path, 12, sizes=[(64, 64)])
    (tmp_path / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")  # shard 1 of 2 (images 0-9)
    write_oversized_png(tmp_path / "img_011.png")  # shard 2 (images 10-11)
    paths = list_images(tmp_path)
    options = {"workers": 2, "batch_size": 5, "device": "cpu", "info": ray_cluster, "progress": False}
    with pytest.raises(
        UnreadableImagesError,
        match=r"2 of 12 training images could not be read: cannot decode image \S*img_001\.png: Truncated.*; "
        r"cannot decode image \S*img_011\.png: .*exceeds limit.*--skip-unreadable",
    ) as caught:
        fit_statistics(_small_module(), paths, **options)
    error = caught.value
    assert [Path(f).name for f, _ in error.failures] == ["img_001.png", "img_011.png"]
    assert error.partial.count == 10  # 9 good images of shard 1 and 1 of shard 2, merged

    merged, _, skipped = fit_statistics(_small_module(), paths, skip_unreadable=True, **options)
    assert merged.count == 10 and [Path(f).name for f, _ in skipped] == ["img_001.png", "img_011.png"]
    # the local fit that skips them embeds the same batches (shards are cut at its batch boundaries), so
    # the same images: float32 embeddings agree to rounding (not bit for bit: a worker's torch runs with
    # its own thread count, and on an Intel Xeon with AMX the 4-image batch then rounded differently,
    # 4.5e-6 relative; one image more or less moves the mean by 4e-2 of its largest entry)
    batches = iter_batches(paths, 5, on_error=lambda path, exc: None)
    local = accumulate(_small_module(), ([im for _, im in b] for b in batches), device="cpu")
    assert local.count == 10
    np.testing.assert_allclose(merged.mean, local.mean, rtol=1e-4, atol=1e-5 * np.abs(local.mean).max())


@pytest.mark.parametrize("ray", [True, False], ids=["ray", "local"])
def test_export_skip_unreadable_records_the_skipped_files(ray_cluster, tmp_path: Path, ray: bool) -> None:
    """padim-export: by default the fit fails naming the bad file; --skip-unreadable exports without it."""
    data = tmp_path / "good"
    write_images(data, 8, sizes=[(64, 64)])
    (data / "img_006.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "m.onnx"
    args = ["--data", str(data), "-o", str(out), "--device", "cpu", "--parity-images", "2", "-q", *SMALL_ARGS]
    args += ["--ray", "--ray-workers", "2"] if ray else []
    result = CliRunner().invoke(export_main, args)
    assert result.exit_code == 1 and not out.exists(), result.output
    assert (
        "Error: 1 of 8 training images could not be read" in result.output and "img_006.png" in result.output
    )
    assert "--skip-unreadable" in result.output

    result = CliRunner().invoke(export_main, [*args, "--skip-unreadable"])
    assert result.exit_code == 0, result.output
    assert "images used   7" in result.output
    assert "skipped       cannot decode image" in result.output and "img_006.png" in result.output
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["padim_edge.train_images"] == "7"
    skipped = json.loads(meta["padim_edge.skipped_images"])
    assert [s["file"] for s in skipped] == ["img_006.png"] and str(data) not in skipped[0]["reason"]
