"""INT8 vs float32: accuracy on real data (MobileNetV2) and CPU latency (ResNet-18), in one report.

Accuracy: MobileNetV2 with its real ImageNet weights (``../shared/weights``), fitted on the full
``../shared/data/magnetic_tile/train/good`` (dims 100, resize 256, crop 224), exported, quantised with
``padim-calibrate``'s library (calibration frames from ``train/good``), then every ``test/`` image is
scored through the runtime by both models. Image AUROC (good vs defect images) and pixel AUROC (every
pixel; masks resized nearest to 256x256 then center-cropped 224 at offset 16, good images all normal)
with ``sklearn.metrics.roc_auc_score``.

Latency: ResNet-18 random-init, dims 100, crop 224 (latency does not depend on the weights), fitted on
a few ``train/good`` frames, quantised the same way. ``PadimModel.run`` at 2 threads on random
224x224 uint8 frames, batch 1 and 8. Only one session is alive at a time (idle onnxruntime threads
spin and would steal the cores), and float32 / INT8 alternate over several rounds; the median of the
round medians is reported. ``backbone`` rows time the same graphs cut (``onnx.utils.extract_model``)
from the preprocessed frames to the three tapped maps: the part INT8 changes.

Usage::

    python benchmarks/int8_accuracy.py                 # ~5 min on 2 cores
    python benchmarks/int8_accuracy.py --workdir /tmp/int8 --skip-accuracy

Writes ``benchmarks/results/int8.json`` and ``benchmarks/results/int8.md``.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from padim_edge import graph_names
from padim_edge.calibration.pipeline import calibrate
from padim_edge.images import iter_batches, list_images
from padim_edge.runtime import PadimModel

ROOT = Path(__file__).resolve().parent
SHARED = ROOT.parent.parent / "shared"
DATA = SHARED / "data" / "magnetic_tile"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
RESULTS = ROOT / "results"
RESIZE, CROP = 256, 224
OFFSET = (RESIZE - CROP) // 2


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine from /proc/stat (0, 0 where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class BackgroundCpu:
    """Share of the machine's CPU that *other* processes used between :meth:`start` and :meth:`stop`."""

    def start(self) -> None:
        self.jiffies, self.own = _cpu_jiffies(), _own_cpu_seconds()

    def stop(self) -> float:
        busy, total = _cpu_jiffies()
        hz = os.sysconf("SC_CLK_TCK")
        span = (total - self.jiffies[1]) / hz
        if span <= 0:
            return float("nan")
        others = (busy - self.jiffies[0]) / hz - (_own_cpu_seconds() - self.own)
        return max(0.0, others) / span


def wait_idle(limit_s: float, threshold: float = 0.1) -> float:
    """Wait up to ``limit_s`` for other processes to use < ``threshold`` of the CPU.

    Returns:
        The last measured share.
    """
    meter, deadline, share = BackgroundCpu(), time.monotonic() + limit_s, float("nan")
    while True:
        meter.start()
        time.sleep(1.0)
        share = meter.stop()
        if share < threshold or time.monotonic() >= deadline:
            return share


# --------------------------------------------------------------------------- accuracy


def _mask(path: Path | None) -> np.ndarray:
    """Ground truth in the model's view: nearest resize to 256x256, center crop 224."""
    if path is None:
        return np.zeros((CROP, CROP), dtype=bool)
    with Image.open(path) as image:
        mask = np.asarray(image.convert("L").resize((RESIZE, RESIZE), Image.NEAREST)) > 0
    return mask[OFFSET : OFFSET + CROP, OFFSET : OFFSET + CROP]


def _test_set() -> tuple[list[Path], np.ndarray, list[Path | None]]:
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


def _score(model_path: Path, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    model = PadimModel(model_path, device="cpu")
    scores = np.empty(len(paths), dtype=np.float32)
    maps = np.empty((len(paths), CROP, CROP), dtype=np.float32)
    i = 0
    for batch in iter_batches(paths, 16):
        for p in model.predict([image for _, image in batch]):
            scores[i], maps[i] = p.score, p.anomaly_map
            i += 1
    return scores, maps


def accuracy(workdir: Path, calibration_images: int) -> dict:
    """Fit + export mnv2, quantise it (both formats), AUROCs of all three on test/."""
    from padim_edge.export.pipeline import run_export

    fp32 = workdir / "mnv2.onnx"
    started = time.perf_counter()
    if not fp32.exists():
        run_export(
            DATA / "train" / "good", fp32, backbone="mnv2", dims=100, resize=RESIZE, crop=CROP,
            weights_file=WEIGHTS, parity_images=2, progress=True,
        )  # fmt: skip
    fit_s = time.perf_counter() - started
    variants = {"fp32": fp32}
    quantise_s = {}
    for name in ("int8-qoperator", "int8-qdq"):
        out = workdir / f"mnv2-{name}.onnx"
        started = time.perf_counter()
        calibrate(
            fp32,
            out,
            variant=name,
            data=DATA / "train" / "good",
            calibration_images=calibration_images,
            progress=True,
        )
        quantise_s[name] = time.perf_counter() - started
        variants[name] = out
    paths, labels, mask_paths = _test_set()
    truth = np.stack([_mask(m) for m in mask_paths]).reshape(-1)
    rows, scores = {}, {}
    for name, path in variants.items():
        started = time.perf_counter()
        scores[name], maps = _score(path, paths)
        rows[name] = {
            "image_auroc": float(roc_auc_score(labels, scores[name])),
            "pixel_auroc": float(roc_auc_score(truth, maps.reshape(-1))),
            "score_seconds": time.perf_counter() - started,
            "file_mb": path.stat().st_size / 1e6,
        }
        del maps
        gc.collect()
        print(
            f"{name}: image AUROC {rows[name]['image_auroc']:.4f}, "
            f"pixel AUROC {rows[name]['pixel_auroc']:.4f}"
        )
    for name in ("int8-qoperator", "int8-qdq"):
        rows[name]["image_auroc_delta"] = rows[name]["image_auroc"] - rows["fp32"]["image_auroc"]
        rows[name]["pixel_auroc_delta"] = rows[name]["pixel_auroc"] - rows["fp32"]["pixel_auroc"]
        rows[name]["score_spearman_vs_fp32"] = float(spearmanr(scores["fp32"], scores[name]).statistic)
        rows[name]["quantise_seconds"] = quantise_s[name]
    return {
        "model": "mnv2 (ImageNet weights), dims 100, resize 256, crop 224",
        "train_images": len(list_images(DATA / "train" / "good")),
        "test_images": len(paths),
        "defect_images": int(labels.sum()),
        "calibration_images": calibration_images,
        "fit_export_seconds": fit_s,
        "rows": rows,
    }


# --------------------------------------------------------------------------- latency


def _backbone_cut(path: Path, out: Path) -> Path:
    """The graph from the preprocessed frames to the backbone's tapped maps."""
    model = onnx.load(str(path))
    nodes = model.graph.node
    start = [n for n in nodes if n.name.startswith(graph_names.PREPROCESS)][-1].output[0]
    produced = {o for n in nodes if n.name.startswith(graph_names.BACKBONE) for o in n.output}
    taps = sorted(
        {i for n in nodes if n.name.startswith(graph_names.REDUCE) for i in n.input if i in produced}
    )
    onnx.utils.extract_model(str(path), str(out), [start], taps)
    return out


def _time_runtime(path: Path, batch: np.ndarray, reps: int) -> list[float]:
    model = PadimModel(path, device="cpu", threads=2)
    for _ in range(3):
        model.run(batch)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        model.run(batch)
        times.append(time.perf_counter() - started)
    del model
    gc.collect()
    return times


def _time_session(path: Path, feed: np.ndarray, reps: int) -> list[float]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(3):
        session.run(None, {name: feed})
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        session.run(None, {name: feed})
        times.append(time.perf_counter() - started)
    del session
    gc.collect()
    return times


def latency(workdir: Path, rounds: int, calibration_images: int, wait_idle_s: float) -> dict:
    """R18-Rd100 at 224: fused graph and backbone cut, float32 vs INT8, batch 1 and 8, 2 threads."""
    from padim_edge.export.pipeline import run_export

    fit_dir = workdir / "r18_fit"
    if not fit_dir.exists():
        fit_dir.mkdir(parents=True)
        for p in list_images(DATA / "train" / "good")[::24]:
            shutil.copy(p, fit_dir / p.name)
    fp32 = workdir / "r18.onnx"
    if not fp32.exists():
        run_export(
            fit_dir,
            fp32,
            backbone="r18",
            dims=100,
            resize=RESIZE,
            crop=CROP,
            random_init=True,
            parity_images=0,
        )
    models = {"fp32": fp32}
    for name in ("int8-qoperator", "int8-qdq"):
        out = workdir / f"r18-{name}.onnx"
        calibrate(
            fp32,
            out,
            variant=name,
            data=DATA / "train" / "good",
            calibration_images=calibration_images,
            progress=False,
        )
        models[name] = out
    cuts = {
        name: _backbone_cut(path, workdir / f"{path.stem}-backbone.onnx") for name, path in models.items()
    }
    rng = np.random.default_rng(0)
    rows = []
    for batch_size, reps in ((1, 40), (8, 12)):
        frames = rng.integers(0, 256, (batch_size, CROP, CROP, 3), dtype=np.uint8)
        floats = rng.standard_normal((batch_size, 3, CROP, CROP)).astype(np.float32)
        for part in ("fused", "backbone"):
            medians: dict[str, list[float]] = {name: [] for name in models}
            background: list[float] = []
            meter = BackgroundCpu()
            for _ in range(rounds):
                wait_idle(wait_idle_s)
                meter.start()
                for name in models:
                    if part == "fused":
                        times = _time_runtime(models[name], frames, reps)
                    else:
                        times = _time_session(cuts[name], floats, reps)
                    medians[name].append(float(np.median(times)) * 1e3)
                background.append(meter.stop())
            ms = {name: float(np.median(v)) for name, v in medians.items()}
            for name in models:
                rows.append(
                    {
                        "part": part,
                        "variant": name,
                        "batch": batch_size,
                        "ms_per_batch": ms[name],
                        "round_medians_ms": medians[name],
                        "speedup_vs_fp32": ms["fp32"] / ms[name],
                        "background_cpu": float(np.nanmax(background)),
                    }
                )
                print(f"{part:8s} b{batch_size} {name:15s} {ms[name]:7.1f} ms  x{ms['fp32'] / ms[name]:.2f}")
    return {
        "model": "r18 random-init, dims 100, resize 256, crop 224, frames 224x224",
        "threads": 2,
        "rounds": rounds,
        "file_mb": {name: path.stat().st_size / 1e6 for name, path in models.items()},
        "rows": rows,
    }


# --------------------------------------------------------------------------- report


def _markdown(result: dict) -> str:
    lines = ["# INT8 vs float32", ""]
    env = result["environment"]
    lines += [
        f"onnxruntime {env['onnxruntime']} (CPU EP), {env['cpus']} CPUs ({env['processor']}), "
        f"python {env['python']}. Produced by `python benchmarks/int8_accuracy.py`.",
        "",
    ]
    if "accuracy" in result:
        acc = result["accuracy"]
        lines += [
            f"## Accuracy: {acc['model']}",
            "",
            f"magnetic_tile: fitted on {acc['train_images']} train/good images, scored on "
            f"{acc['test_images']} test images ({acc['defect_images']} defective); INT8 calibrated on "
            f"{acc['calibration_images']} train/good frames. Pixel AUROC: masks nearest-resized to 256, "
            "center crop 224.",
            "",
            "| variant | image AUROC | Δ vs fp32 | pixel AUROC | Δ vs fp32 | score rank corr. | file |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in acc["rows"].items():
            d_img = f"{row['image_auroc_delta']:+.4f}" if "image_auroc_delta" in row else ""
            d_pix = f"{row['pixel_auroc_delta']:+.4f}" if "pixel_auroc_delta" in row else ""
            rho = f"{row['score_spearman_vs_fp32']:.4f}" if "score_spearman_vs_fp32" in row else ""
            lines.append(
                f"| {name} | {row['image_auroc']:.4f} | {d_img} | {row['pixel_auroc']:.4f} | {d_pix} | "
                f"{rho} | {row['file_mb']:.1f} MB |"
            )
        lines.append("")
    if "latency" in result:
        lat = result["latency"]
        lines += [
            f"## Latency: {lat['model']}",
            "",
            f"`PadimModel.run`, {lat['threads']} threads, CPU EP; median of {lat['rounds']} alternating "
            "rounds (one session alive at a time). `backbone` = the same graphs cut from the preprocessed "
            "frames to the three tapped maps (onnxruntime session, same options).",
            "",
            "| part | batch | variant | ms / batch | speed-up vs fp32 | other processes' CPU (worst round) |",
            "|---|---|---|---|---|---|",
        ]
        for row in lat["rows"]:
            lines.append(
                f"| {row['part']} | {row['batch']} | {row['variant']} | {row['ms_per_batch']:.1f} | "
                f"{row['speedup_vs_fp32']:.2f}x | {row['background_cpu']:.0%} |"
            )
        sizes = ", ".join(f"{k} {v:.1f} MB" for k, v in lat["file_mb"].items())
        lines += ["", f"Files: {sizes}.", ""]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True
)
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), help="Keep / reuse models here.")
@click.option(
    "--calibration-images", type=int, default=100, show_default=True, help="INT8 calibration frames."
)
@click.option("--rounds", type=int, default=5, show_default=True, help="Alternating latency rounds.")
@click.option(
    "--wait-idle", "wait_idle_s", type=float, default=60.0, show_default=True,
    help="Before each latency round, wait up to this long for other processes to leave the CPU.",
)  # fmt: skip
@click.option(
    "--skip-accuracy", is_flag=True, help="Latency only (keeps the accuracy part of an existing int8.json)."
)
@click.option(
    "--skip-latency", is_flag=True, help="Accuracy only (keeps the latency part of an existing int8.json)."
)
def main(
    output: Path,
    workdir: Path | None,
    calibration_images: int,
    rounds: int,
    wait_idle_s: float,
    skip_accuracy: bool,
    skip_latency: bool,
) -> None:
    """Measure INT8 accuracy (mnv2, magnetic_tile) and latency (r18) against float32."""
    if not DATA.is_dir() or not WEIGHTS.is_file():
        sys.exit(f"needs {DATA} and {WEIGHTS} (the project's ../shared folder); not found")
    temp = None
    if workdir is None:
        temp = tempfile.TemporaryDirectory(prefix="padim-int8-bench-")
        workdir = Path(temp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "environment": {
            "onnxruntime": ort.__version__,
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        }
    }
    try:
        if not skip_accuracy:
            result["accuracy"] = accuracy(workdir, calibration_images)
        if not skip_latency:
            result["latency"] = latency(workdir, rounds, calibration_images, wait_idle_s)
    finally:
        if temp is not None:
            temp.cleanup()
    output.mkdir(parents=True, exist_ok=True)
    previous = output / "int8.json"
    if previous.is_file():  # keep the part not measured this time
        old = json.loads(previous.read_text())
        for part in ("accuracy", "latency"):
            if part not in result and part in old:
                result[part] = old[part]
    (output / "int8.json").write_text(json.dumps(result, indent=2) + "\n")
    (output / "int8.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
