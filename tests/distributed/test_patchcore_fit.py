"""PatchCore on Ray: per-shard coresets merged by the driver's final greedy pass, as a local emulation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from padim_edge.export.cli import main as export_main
from padim_edge.export.patchcore import fit as patchcore_fit
from padim_edge.export.patchcore.bank import PartialCoreset
from padim_edge.export.pipeline import build_module
from padim_edge.images import iter_batches, list_images

pytest.importorskip("ray", reason="the [ray] extra is not installed")

from padim_edge.distributed.fit import fit_statistics, split
from padim_edge.distributed.methods import CoresetPartial, plan_for

SMALL = {"dims": 32, "resize": 72, "crop": 64, "random_init": True, "coreset": 0.25}


def _module():
    return build_module("r18", method="patchcore", **SMALL)[0]


def test_patchcore_shards_merge_to_the_emulated_bank(ray_cluster, train_dir: Path) -> None:
    """3 Ray shards == each shard's reduced bank computed here, merged, one final greedy pass."""
    model = _module()
    paths = list_images(train_dir)
    merged, _, _ = fit_statistics(
        model, paths, workers=3, batch_size=5, device="cpu", info=ray_cluster, progress=False
    )
    assert isinstance(merged, CoresetPartial) and merged.count == len(paths) == 12
    assert not model.fitted

    expected = patchcore_fit.make_bank(model)
    for shard in split(paths, 3, batch_size=5):
        bank = patchcore_fit.make_bank(model)
        frames = ([im for _, im in b] for b in iter_batches(shard, 5))
        patchcore_fit.accumulate(model, frames, bank, device="cpu")
        expected.merge(bank.partial(reduce=True))
    assert merged.seen == expected.seen == 12 * model.grid * model.grid
    held = np.concatenate(merged.vectors)
    assert len(held) < merged.seen  # the shards sent coresets, not every vector
    reference = expected.select()

    plan_for(model).install(model, merged)
    bank = model.scorer.bank.cpu().numpy()
    assert bank.shape == reference.shape == (round(0.25 * merged.seen), 32)
    np.testing.assert_allclose(bank, reference, rtol=0, atol=1e-6)


def test_coreset_partials_merge_in_any_order() -> None:
    a = CoresetPartial(vectors=[np.ones((2, 3), np.float32)], seen=10, chunks=1, count=2)
    b = CoresetPartial(vectors=[np.zeros((1, 3), np.float32)], seen=5, chunks=1, count=1)
    merged = a.merge(b)
    assert merged is a and (merged.seen, merged.chunks, merged.count) == (15, 2, 3)
    assert [v.shape for v in merged.vectors] == [(2, 3), (1, 3)]
    assert PartialCoreset(vectors=np.concatenate(merged.vectors), seen=15, chunks=2).vectors.shape == (3, 3)


def test_export_patchcore_on_ray(ray_cluster, train_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pc.onnx"
    args = ["--backbone", "r18", "--method", "patchcore", "--coreset", "0.25", "--dims", "32",
            "--resize", "72", "--crop", "64", "--random-init", "--batch-size", "5"]  # fmt: skip
    result = CliRunner().invoke(
        export_main, [*args, "--data", str(train_dir), "--output", str(out), "--ray", "--device", "cpu", "-q"]
    )
    assert result.exit_code == 0, result.output
    meta = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    grid = _module().grid
    assert meta["padim_edge.method"] == "patchcore"
    assert json.loads(meta["padim_edge.bank_size"]) == round(0.25 * 12 * grid * grid)
