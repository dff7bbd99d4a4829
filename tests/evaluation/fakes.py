"""A fake model with PadimModel's interface and a tiny MVTec-layout category, for padim-eval's tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from padim_edge.evaluation import cli
from padim_edge.geometry import Geometry
from padim_edge.metadata import ModelInfo

RESIZE, CROP, SIZE = 40, 36, 40  # test images are RESIZE-sized, so the model view is an exact crop


@dataclass(frozen=True)
class FakePrediction:
    score: float
    anomaly_map: np.ndarray
    is_anomalous: bool | None
    normalized_score: float | None


class FakeModel:
    """Same interface as padim_edge.runtime.PadimModel: anomaly map = brightness in the crop geometry."""

    def __init__(self, threshold: float | None = None, crop: int = CROP) -> None:
        self.info = ModelInfo(
            backbone="r18", dims=100, resize=RESIZE, crop=crop, weights="imagenet", train_images=5,
            threshold=threshold,
        )  # fmt: skip
        self.providers = ["CPUExecutionProvider"]
        self.calls: list[int] = []

    def predict(self, images, batch_size: int = 8) -> list[FakePrediction]:
        self.calls.append(len(images))
        out = []
        for image in images:
            view = Geometry(RESIZE, self.info.crop).image_view(image)
            anomaly_map = view.mean(axis=2).astype(np.float32) / 255.0
            score = float(anomaly_map.max())
            threshold = self.info.threshold
            out.append(
                FakePrediction(score, anomaly_map, None if threshold is None else score >= threshold, None)
            )
        return out


def save_image(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_category(root: Path, *, seed: int = 0, good: int = 6, per_defect: int = 4) -> Path:
    """Good images are dark noise; 'scratch' adds a bright box (easy), 'stain' a dark box (invisible)."""
    rng = np.random.default_rng(seed)

    def noise() -> np.ndarray:
        return rng.integers(20, 60, size=(SIZE, SIZE, 3), dtype=np.uint8)

    for i in range(good):
        save_image(noise(), root / "test" / "good" / f"{i:03d}.png")
    for defect, value in (("scratch", 220), ("stain", 0)):
        for i in range(per_defect):
            image = noise()
            mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
            y, x = rng.integers(4, 20, size=2)
            mask[y : y + 6, x : x + 5] = 255
            image[mask > 0] = value
            save_image(image, root / "test" / defect / f"{i:03d}.png")
            save_image(mask, root / "ground_truth" / defect / f"{i:03d}_mask.png")
    (root / "train" / "good").mkdir(parents=True)
    return root


def use_model(monkeypatch: pytest.MonkeyPatch, model: FakeModel) -> list[tuple[Path, str]]:
    opened: list[tuple[Path, str]] = []

    def opener(path: Path, device: str) -> FakeModel:
        opened.append((path, device))
        return model

    monkeypatch.setattr(cli, "open_model", opener)
    return opened
