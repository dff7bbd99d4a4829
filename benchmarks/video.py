"""padim-predict --video over a 10,000-frame MJPG video, in one torch-free process: ``file`` (every frame
scored) and ``live`` (paced at ``--live-rate`` x the file rate: the bounded buffer drops and counts), with
an RSS sampler (flat: the last tenth within ``MAX_GROWTH_MB`` of the first). Model: ``--model`` or a small
random-init PaDiM. Usage: ``nice -n 10 python benchmarks/video.py [--frames 2000]`` -> ``video.{json,md}``.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import harness as h
import numpy as np
from PIL import Image

from padim_edge.bench.system import rss_mb
from padim_edge.runtime import PadimModel
from padim_edge.runtime.video import OpenCVSource, load_cv2, run_video

#: The bound on RSS growth from the first to the last tenth of a run.
MAX_GROWTH_MB = 10.0
SMALL = {"backbone": "r18", "dims": 24, "resize": 72, "crop": 64, "random_init": True}


def export_small(tmp: Path) -> Path:
    """Export the small random-init model in a child process (this one stays torch-free, as on a box)."""
    (tmp / "train").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(12):
        noise = rng.normal(128, 30, (96, 96, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(noise).save(tmp / "train" / f"{i:02d}.png")
    code = "import sys; from padim_edge.export.pipeline import run_export; run_export(*sys.argv[1:3], "
    code += f"device='cpu', parity_images=0, progress=False, **{SMALL!r})"
    subprocess.run([sys.executable, "-c", code, str(tmp / "train"), str(tmp / "small.onnx")], check=True)
    return tmp / "small.onnx"


def write_video(path: Path, frames: int, size: tuple[int, int], fps: float = 25.0) -> Path:
    """A moving striped pattern with noise, MJPG in AVI (each frame decodes on its own)."""
    cv2 = load_cv2()
    (height, width), rng = size, np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    yy, xx = np.mgrid[0:height, 0:width]
    noise = rng.normal(0, 8, (16, height, width))
    for i in range(frames):
        base = 128 + 60 * np.sin((xx + 2 * i) / 6.0) * np.cos(yy / 9.0) + noise[i % 16]
        writer.write(np.stack([base, 0.8 * base + 20, 255 - base], axis=-1).clip(0, 255).astype(np.uint8))
    writer.release()
    return path


class Counting:
    """Wraps the model: counts frames scored, for the memory sampler."""

    def __init__(self, model: Any) -> None:
        self.model, self.info, self.done = model, model.info, 0

    def predict(self, images: Any, *, batch_size: int = 8) -> Any:
        out = self.model.predict(images, batch_size=batch_size)
        self.done += len(out)
        return out


class Paced:
    """An :class:`~padim_edge.runtime.video.OpenCVSource` delivering its frames at ``fps``, like a camera."""

    live = True

    def __init__(self, source: Any, fps: float) -> None:
        self.source, self.fps, self.name = source, fps, f"{source.name} paced at {fps:.0f} frames/s"

    def frames(self, every: int = 1) -> Iterator[Any]:
        start = time.monotonic()
        for frame in self.source.frames(every):
            time.sleep(max(0.0, start + frame.index / self.fps - time.monotonic()))
            yield frame

    def release(self) -> None:
        self.source.release()


def measure(model: Any, source: Any, frames: int, batch_size: int, out: Path) -> dict[str, Any]:
    """One run with an RSS sampler; returns the run's summary and the RSS trace."""
    counting, samples, stop = Counting(model), [], threading.Event()
    shutil.rmtree(out, ignore_errors=True)  # a kept --workdir: no results of an earlier run
    out.mkdir(parents=True)

    def sample() -> None:
        while not stop.wait(0.2):
            samples.append((counting.done, rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rss_start = rss_mb()
    try:
        run = run_video(counting, source, out, batch_size=batch_size, err=io.StringIO())
    finally:
        stop.set()
        sampler.join()
    lines = (out / "frames.jsonl").read_text().splitlines()
    indices = [json.loads(line)["frame"] for line in lines]
    assert indices == sorted(set(indices)), "results out of order"
    first = max([rss for done, rss in samples if 0.05 * frames <= done <= 0.15 * frames] or [samples[0][1]])
    last = max([rss for done, rss in samples if done >= 0.9 * run.frames] or [samples[-1][1]])
    return {
        "summary": run.as_json(), "frames_in_source": frames, "result_lines": len(lines),
        "rss_before_mb": round(rss_start, 1), "rss_first_tenth_mb": round(first, 1),
        "rss_last_tenth_mb": round(last, 1), "rss_max_mb": round(max(rss for _, rss in samples), 1),
        "rss_growth_mb": round(last - first, 1),
        "rss_trace": [(done, round(rss, 1)) for done, rss in samples[:: max(1, len(samples) // 50)]],
    }  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    """The report: one row per run, then the memory verdict."""
    cfg = result["config"]
    keys = ("scored", "dropped", "frames_per_s", "p50_ms", "p99_ms", "buffer_high_water")
    body = [
        [name, run["frames_in_source"], *(run["summary"][k] for k in keys),
         *(run[k] for k in ("rss_first_tenth_mb", "rss_last_tenth_mb", "rss_growth_mb"))]
        for name, run in result["runs"].items()
    ]  # fmt: skip
    headers = ["source", "frames in", "scored", "dropped", "frames/s", "p50 ms", "p99 ms", "buffer max"]
    return "\n".join([
        *h.header(result, f"padim-predict --video: {cfg['frames']} frames, file and paced live source"),
        f"**Run:** {cfg['model']}, {cfg['frames']} frames of {cfg['size'][0]}x{cfg['size'][1]} MJPG, batch "
        f"{cfg['batch_size']}, buffer {2 * cfg['batch_size']} frames (file) / {cfg['batch_size']} (live), "
        f"{cfg['threads']} graph threads, OpenCV {cfg['opencv']}, this process torch-free (on a shared "
        "machine the rates are indicative: the drop and memory behaviour is the point).",
        "",
        *h.table([*headers, "RSS first 10 % MB", "RSS last 10 % MB", "growth MB"], body),
        "",
        f"**Memory flat** (growth from the first to the last tenth under {MAX_GROWTH_MB:g} MB in both runs): "
        f"**{'PASS' if result['flat'] else 'FAIL'}**. Latency is decode -> result line written (the wait in "
        f"the buffer included). The live source delivers {result['runs']['live']['paced_fps']:.0f} frames/s "
        f"({cfg['live_rate']:g}x the file run's rate): every frame is scored or dropped and counted.",
    ]) + "\n"  # fmt: skip


@click.command(context_settings=h.CONTEXT)
@click.option("--frames", type=click.IntRange(min=100), default=10_000, show_default=True)
@click.option("--size", default="120x160", show_default=True, help="HxW of the generated frames.")
@click.option("--model", "model_path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--live-rate", type=click.FloatRange(min=1.0), default=2.0, show_default=True)
@h.measurement("video", markdown)
def main(work, frames, size, model_path, batch_size, threads, live_rate) -> dict[str, Any]:
    """Measure throughput, latency, drops and RSS of --video over FRAMES frames."""
    height, width = (int(x) for x in size.lower().split("x"))
    label = "small random-init PaDiM (R18 taps, 24 dims, 64 crop)" if model_path is None else str(model_path)
    model = PadimModel(model_path or export_small(work), device="cpu", threads=threads)
    h.log(f"writing {frames} frames of {height}x{width}")
    video = str(write_video(work / "frames.avi", frames, (height, width)))
    runs: dict[str, Any] = {"file": measure(model, video, frames, batch_size, work / "file")}
    rate = live_rate * runs["file"]["summary"]["frames_per_s"]
    runs["live"] = measure(model, Paced(OpenCVSource(video), rate), frames, batch_size, work / "live")
    runs["live"]["paced_fps"] = round(rate, 1)
    config = {"model": label, "frames": frames, "size": [height, width], "batch_size": batch_size}
    config.update(threads=threads, live_rate=live_rate, opencv=load_cv2().__version__)
    flat = all(r["rss_growth_mb"] < MAX_GROWTH_MB for r in runs.values())
    return {"config": config, "runs": runs, "flat": flat}


if __name__ == "__main__":
    main()
