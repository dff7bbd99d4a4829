"""Calibration fixtures: small fitted models, synthetic textures, the real MobileNetV2 model."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

from padim_edge import graph_names
from padim_edge.calibration.pipeline import calibrate
from padim_edge.images import list_images, load_image
from padim_edge.runtime import PadimModel
from tests.conftest import MAGNETIC_TILE as TILES
from tests.conftest import MNV2_WEIGHTS

# --------------------------------------------------------------------------- fixtures


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random grey texture, uint8 RGB."""
    coarse = rng.normal(128, 30, (height // 8 + 1, width // 8 + 1))
    image = np.kron(coarse, np.ones((8, 8)))[:height, :width] + rng.normal(0, 6, (height, width))
    return np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def defect(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = image.copy()
    y, x = rng.integers(10, image.shape[0] - 30), rng.integers(10, image.shape[1] - 30)
    out[y : y + 18, x : x + 18] = 255
    return out


def write_folder(folder: Path, images: list[np.ndarray], prefix: str = "img") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{prefix}_{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train / held-out / labelled folders of synthetic frames (sizes vary)."""
    root = tmp_path_factory.mktemp("synthetic")
    rng = np.random.default_rng(0)
    sizes = [(80, 96), (72, 72), (96, 80)]
    frames = [texture(rng, *sizes[i % 3]) for i in range(40)]
    write_folder(root / "train", frames[:10])
    write_folder(root / "holdout", frames[10:30])
    labeled = root / "labeled"
    write_folder(labeled / "test" / "good", frames[30:40])
    write_folder(labeled / "test" / "spot", [defect(f, rng) for f in frames[:8]])
    write_folder(root / "one", frames[:1])
    return {"root": root, "train": root / "train", "holdout": root / "holdout", "labeled": labeled}


@pytest.fixture(scope="session")
def r18_model(synthetic: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny float32 model: random-init ResNet-18, dims 16, resize 72, crop 64."""
    from padim_edge.export.pipeline import run_export

    out = tmp_path_factory.mktemp("r18") / "r18.onnx"
    run_export(
        synthetic["train"], out, backbone="r18", dims=16, resize=72, crop=64, random_init=True,
        parity_images=0, progress=False,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def r18_int8(r18_model: Path, synthetic: dict[str, Path]) -> Path:
    """The tiny model's INT8 QOperator variant (no threshold)."""
    out = r18_model.with_name("r18-int8.onnx")
    calibrate(r18_model, out, variant="int8-qoperator", data=synthetic["holdout"], progress=False)
    return out


@pytest.fixture(scope="session")
def mnv2_real(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileNetV2 with real ImageNet weights, fitted on 40 magnetic-tile train images (crop 112)."""
    if not TILES.is_dir() or not MNV2_WEIGHTS.is_file():
        pytest.skip(f"needs the project's ../shared data and weights ({TILES}, {MNV2_WEIGHTS}); not present")
    import shutil

    from padim_edge.export.pipeline import run_export

    root = tmp_path_factory.mktemp("mnv2")
    train = root / "train"
    train.mkdir()
    paths = list_images(TILES / "train" / "good")
    for p in paths[:: len(paths) // 40][:40]:
        shutil.copy(p, train / p.name)
    out = root / "mnv2.onnx"
    run_export(
        train, out, backbone="mnv2", dims=32, resize=128, crop=112, weights_file=MNV2_WEIGHTS,
        parity_images=0, progress=False,
    )  # fmt: skip
    return out


def scores_of(model: Path | PadimModel, folder: Path) -> np.ndarray:
    runtime = model if isinstance(model, PadimModel) else PadimModel(model, device="cpu")
    return np.array(
        [p.score for p in runtime.predict([load_image(f) for f in list_images(folder)])], np.float32
    )


def stage_ops(path: Path, stage: str) -> Counter:
    proto = onnx.load(str(path))
    return Counter(n.op_type for n in proto.graph.node if n.name.startswith(stage))


def props_of(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def graph_outputs(path: Path, names: list[str], images: list[Path]) -> list[np.ndarray]:
    """Run ``path`` with ``names`` added as graph outputs; each stacked over ``images`` (float64)."""
    proto = onnx.load(str(path))
    for name in names:
        proto.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [session.run(names, {graph_names.INPUT: load_image(p)[None]}) for p in images]
    return [np.concatenate([r[i] for r in runs]).astype(np.float64) for i in range(len(names))]
