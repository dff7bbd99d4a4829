"""The TensorRT-target graph vs the default graph on real data: same scores, same AUROC.

MobileNetV2 with its real ImageNet weights (``../shared/weights``), fitted once on
``../shared/data/magnetic_tile/train/good`` (dims 100, resize 256, crop 224), exported twice from the
same fitted module: the default graph (any frame size, antialiased Resize) and the TensorRT target
(``--target tensorrt --input-size 480x640``: resize + crop as two constant MatMuls, opset 17). Every
``test/`` image is resized to 480x640 (Pillow bilinear; the tiles are 100-630 x 220-400, so this also
changes their aspect ratio) and scored by both graphs through the runtime on the CPU EP, from the very
same uint8 frames. Reported: max |d score| relative to the largest score, max |d map|, image AUROC
(good vs defect images) and pixel AUROC (every pixel; masks resized nearest to 480x640, then to the
model's view: nearest 256x256, center crop 224) with ``sklearn.metrics.roc_auc_score``.

Usage::

    python benchmarks/tensorrt_profile.py               # ~10 min on 2 cores
    python benchmarks/tensorrt_profile.py --workdir /tmp/trt-profile

Writes ``benchmarks/results/tensorrt_profile.json`` and ``benchmarks/results/tensorrt_profile.md``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from padim_edge.geometry import Geometry
from padim_edge.images import list_images, load_image, resize_frame
from padim_edge.runtime import PadimModel

ROOT = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("PADIM_EDGE_SHARED") or ROOT.parent.parent / "shared")
DATA = SHARED / "data" / "magnetic_tile"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
RESULTS = ROOT / "results"
RESIZE, CROP = 256, 224
SIZE = (480, 640)


def test_set() -> tuple[list[Path], np.ndarray, list[Path | None]]:
    """Test images, their labels (defect = True) and mask files (``None`` for good images)."""
    paths, labels, masks = [], [], []
    for folder in sorted((DATA / "test").iterdir()):
        for image in list_images(folder):
            paths.append(image)
            labels.append(folder.name != "good")
            masks.append(
                None
                if folder.name == "good"
                else DATA / "ground_truth" / folder.name / f"{image.stem}_mask.png"
            )
    return paths, np.array(labels), masks


def model_mask(path: Path | None, geometry: Geometry) -> np.ndarray:
    """A mask in the model's view of a frame resized to :data:`SIZE`."""
    if path is None:
        return np.zeros((CROP, CROP), dtype=bool)
    with Image.open(path) as image:
        resized = image.convert("L").resize((SIZE[1], SIZE[0]), Image.Resampling.NEAREST)
    return geometry.mask_view(np.asarray(resized))


def fit_and_export(work: Path) -> dict[str, Path]:
    """Fit once, export the default and the TensorRT-target graphs from the same module."""
    from padim_edge.export.pipeline import build_module, export, fit

    paths = {"default": work / "mnv2.onnx", "tensorrt": work / "mnv2-trt-480x640.onnx"}
    if all(p.exists() for p in paths.values()):
        return paths
    model, weights = build_module("mnv2", dims=100, resize=RESIZE, crop=CROP, weights_file=WEIGHTS)
    train = list_images(DATA / "train" / "good")
    report = fit(model, train, batch_size=16, device="cpu", progress=True)
    sample = [load_image(p) for p in train[:4]]
    for target, out in paths.items():
        export(
            model,
            out,
            weights=weights,
            train_images=report.images,
            parity_images=sample,
            input_size=SIZE if target == "tensorrt" else None,
        )
    return paths


def score(model: PadimModel, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Scores and maps of frames, 8 at a time."""
    scores, maps = [], []
    for lo in range(0, len(frames), 8):
        for p in model.predict(frames[lo : lo + 8]):
            scores.append(p.score)
            maps.append(p.anomaly_map)
    return np.array(scores, dtype=np.float32), np.stack(maps)


@click.command()
@click.option("--workdir", type=click.Path(path_type=Path), help="Where the models go (default: a temp dir).")
def main(workdir: Path | None) -> None:
    """Fit, export both targets, score the resized test set with both, write the comparison."""
    if not DATA.is_dir() or not WEIGHTS.is_file():
        raise click.ClickException(f"needs {DATA} and {WEIGHTS} (../shared; set PADIM_EDGE_SHARED)")
    work = workdir or Path(tempfile.mkdtemp(prefix="padim-trt-profile-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    models = fit_and_export(work)
    fit_s = time.perf_counter() - started
    paths, labels, mask_paths = test_set()
    frames = [resize_frame(load_image(p), SIZE) for p in paths]
    geometry = Geometry(RESIZE, CROP)
    truth = np.stack([model_mask(m, geometry) for m in mask_paths]).reshape(-1)
    rows, outputs = {}, {}
    for target, path in models.items():
        runtime = PadimModel(path, device="cpu")
        started = time.perf_counter()
        scores, maps = score(runtime, frames)
        outputs[target] = (scores, maps)
        rows[target] = {
            "file": path.name,
            "opset": runtime.info.get("opset"),
            "ir_version": runtime.info.get("ir_version"),
            "image_auroc": float(roc_auc_score(labels, scores)),
            "pixel_auroc": float(roc_auc_score(truth, maps.reshape(-1))),
            "score_seconds": time.perf_counter() - started,
        }
        click.echo(
            f"{target}: image AUROC {rows[target]['image_auroc']:.4f}, "
            f"pixel {rows[target]['pixel_auroc']:.4f}"
        )
    (a, map_a), (b, map_b) = outputs["default"], outputs["tensorrt"]
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "model": "mnv2 (ImageNet weights), dims 100, resize 256, crop 224, fitted on all of train/good",
        "frames": f"every test/ image resized to {SIZE[0]}x{SIZE[1]} (Pillow bilinear), the same frames "
        "for both",
        "test_images": len(paths),
        "defect_images": int(labels.sum()),
        "fit_export_seconds": fit_s,
        "rows": rows,
        "max_abs_score": float(np.abs(a - b).max()),
        "max_score": float(a.max()),
        "relative_score": float(np.abs(a - b).max() / a.max()),
        "max_abs_map": float(np.abs(map_a - map_b).max()),
        "image_auroc_delta": rows["tensorrt"]["image_auroc"] - rows["default"]["image_auroc"],
        "pixel_auroc_delta": rows["tensorrt"]["pixel_auroc"] - rows["default"]["pixel_auroc"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tensorrt_profile.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        "# TensorRT-target graph vs default graph (magnetic tile, MobileNetV2)",
        "",
        f"{result['model']}; {result['frames']}; {len(paths)} test images "
        f"({result['defect_images']} defective); "
        f"CPU EP, {result['machine']}. Command: `python benchmarks/tensorrt_profile.py`.",
        "",
        "| graph | opset / IR | image AUROC | pixel AUROC |",
        "|---|---|---|---|",
    ]
    for target, row in rows.items():
        md.append(
            f"| {target} ({row['file']}) | {row['opset']} / {row['ir_version']} | {row['image_auroc']:.4f} | "
            f"{row['pixel_auroc']:.4f} |"
        )
    md += [
        "",
        f"max |d score| = {result['max_abs_score']:.3g} ({result['relative_score']:.2e} of the max score "
        f"{result['max_score']:.3f}); max |d map| = {result['max_abs_map']:.3g}; AUROC change image "
        f"{result['image_auroc_delta']:+.4f}, pixel {result['pixel_auroc_delta']:+.4f}.",
    ]
    (RESULTS / "tensorrt_profile.md").write_text("\n".join(md) + "\n")
    click.echo("\n".join(md))


if __name__ == "__main__":
    main()
