"""End to end with real ImageNet weights: MobileNetV2 PaDiM on the magnetic-tile defect set.

Fits on all of train/good, exports, and scores test/ through the runtime, exactly as deployed. The
shared README gives the level a correct float64 PaDiM reaches here (image AUROC about 0.88).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from padim_edge.images import iter_batches, list_images
from padim_edge.runtime import PadimModel
from tests.conftest import MAGNETIC_TILE, MNV2_WEIGHTS, needs_shared

pytestmark = [needs_shared(), pytest.mark.slow]


@pytest.fixture(scope="module")
def tile_model(tmp_path_factory: pytest.TempPathFactory):
    from padim_edge.export.pipeline import run_export

    out = tmp_path_factory.mktemp("tile") / "mnv2_tile.onnx"
    return run_export(
        MAGNETIC_TILE / "train" / "good",
        out,
        backbone="mnv2",
        weights_file=MNV2_WEIGHTS,
        batch_size=32,
        device="cpu",
        parity_images=2,
        progress=False,
    )


def test_real_weights_image_auroc(tile_model) -> None:
    assert tile_model.weights.startswith("sha256:b03531047ffacf1e")
    assert tile_model.parity.relative <= 1e-4
    model = PadimModel(tile_model.export.files[0], device="cpu")
    labels, scores = [], []
    for folder in sorted(p for p in (MAGNETIC_TILE / "test").iterdir() if p.is_dir()):
        paths: list[Path] = list_images(folder)
        for batch in iter_batches(paths, 32):
            scores += [p.score for p in model.predict([image for _, image in batch], batch_size=32)]
            labels += [int(folder.name != "good")] * len(batch)
    auroc = roc_auc_score(np.array(labels), np.array(scores))
    print(f"magnetic_tile mnv2 image AUROC {auroc:.4f} on {len(labels)} test images")
    assert auroc > 0.8, auroc
