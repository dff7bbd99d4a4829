"""Scoring image folders through the torch-free runtime, and finding labelled MVTec test images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from padim_edge.calibration.errors import CalibrationError
from padim_edge.images import ImageError, iter_batches, list_images

GOOD = "good"
LAYOUT = "ROOT/test/good/*.png (defect-free) and ROOT/test/<defect>/*.png (one folder per defect type)"


def normal_images(folder: str | Path, *, what: str = "--data") -> list[Path]:
    """The images directly inside ``folder``.

    Raises:
        CalibrationError: The folder is missing, not a folder, or holds no image.
    """
    try:
        return list_images(folder)
    except ImageError as exc:
        raise CalibrationError(f"{what}: {exc}") from exc


@dataclass(frozen=True)
class LabeledSet:
    """Test images with labels.

    Attributes:
        normal: ``ROOT/test/good`` images.
        anomalous: Images of every ``ROOT/test/<defect>`` folder.
        defects: The defect folder names.
    """

    normal: list[Path]
    anomalous: list[Path]
    defects: list[str]


def labeled_images(root: str | Path) -> LabeledSet:
    """Find the labelled test images of one MVTec-layout category.

    Raises:
        CalibrationError: The layout does not match (the message shows the expected one).
    """
    root = Path(root)
    test = root / "test"
    if not root.is_dir():
        raise CalibrationError(f"--labeled: folder not found: {root}")
    if not (test / GOOD).is_dir():
        raise CalibrationError(f"--labeled: {test / GOOD} not found; expected {LAYOUT}")
    defects = sorted(p.name for p in test.iterdir() if p.is_dir() and p.name != GOOD)
    if not defects:
        raise CalibrationError(f"--labeled: no defect folders in {test}; expected {LAYOUT}")
    normal = normal_images(test / GOOD, what="--labeled")
    anomalous: list[Path] = []
    for defect in defects:
        try:
            anomalous.extend(list_images(test / defect))
        except ImageError:
            continue  # an empty defect folder is fine as long as some other holds images
    if not anomalous:
        raise CalibrationError(f"--labeled: no images in the defect folders {defects} of {test}")
    return LabeledSet(normal=normal, anomalous=anomalous, defects=defects)


def score_images(
    model_path: str | Path,
    paths: list[Path],
    *,
    device: str = "auto",
    progress: bool = True,
    desc: str = "scoring",
    batch_size: int = 8,
) -> np.ndarray:
    """Score image files with :class:`padim_edge.runtime.PadimModel`.

    Returns:
        float32 ``[len(paths)]`` image scores, in the order of ``paths``.

    Raises:
        CalibrationError: An image cannot be decoded, or the model cannot run on ``device``.
    """
    from padim_edge.runtime import ModelLoadError, PadimModel, ProviderError

    try:
        model = PadimModel(model_path, device=device)
    except (ModelLoadError, ProviderError, ValueError) as exc:
        raise CalibrationError(str(exc)) from exc
    scores: list[float] = []
    with tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        try:
            for batch in iter_batches(paths, batch_size):
                scores.extend(
                    p.score for p in model.predict([image for _, image in batch], batch_size=batch_size)
                )
                bar.update(len(batch))
        except ImageError as exc:
            raise CalibrationError(str(exc)) from exc
    return np.asarray(scores, dtype=np.float32)
