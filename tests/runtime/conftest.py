"""Fixtures of the OpenVINO tests: held-out and textured frames, a PatchCore export, every variant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_images

#: Frame sizes (H, W): above the small model's 72 resize (downscale, antialias matters) and below it.
SIZES = [(80, 96), (60, 50)]


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ov_held")
    write_images(folder, 8, seed=5, sizes=[(80, 96), (70, 70)])
    return folder


@pytest.fixture(scope="module")
def textured(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """Two textured frames of each size in :data:`SIZES` (the images the fits see, not noise)."""
    from padim_edge.images import load_image

    folder = tmp_path_factory.mktemp("ov_frames")
    return [load_image(p) for p in write_images(folder, 4, seed=9, sizes=SIZES)]


@pytest.fixture(scope="module")
def patchcore_onnx(train_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from padim_edge.export.pipeline import run_export
    from tests.export.patchcore.test_pipeline import SMALL as PATCHCORE

    out = tmp_path_factory.mktemp("ov_pc") / "pc.onnx"
    run_export(
        train_dir, out, method="patchcore", coreset=0.25, batch_size=6, parity_images=0, progress=False,
        **PATCHCORE,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def variant_path(request: pytest.FixtureRequest, held_out: Path):
    """``name -> .onnx``: the exports, and padim-calibrate's variants of them (each made on first use)."""
    from padim_edge.calibration.pipeline import calibrate

    exports = {"default": "small_onnx", "fixed-size": "small_trt_onnx", "patchcore": "patchcore_onnx"}
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name in exports:
            return request.getfixturevalue(exports[name])
        if name not in made:
            pc = name.startswith("patchcore-")
            source, variant = (
                get("patchcore") if pc else get("default"),
                name[len("patchcore-") :] if pc else name,
            )
            out = source.with_name(f"{source.stem}-ov-{variant}.onnx")
            extra = {"target_fpr": 0.2} if variant == "fp32-threshold" else {}
            data = held_out if not variant.startswith("head-") else None
            calibrate(source, out, variant=variant, data=data, calibration_images=4, progress=False, **extra)
            made[name] = out
        return made[name]

    return get
