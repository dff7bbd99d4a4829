"""padim-predict --video over a 10,000-frame video: throughput, latency, drops, and flat memory.

Two runs of :func:`padim_edge.runtime.video.run_video` on one generated MJPG AVI (every frame a key
frame), in one process, with the same model:

* ``file``: the video as a file: every frame is decoded and scored (the reader waits for the scorer);
* ``live``: the same frames paced like a camera at ``--live-rate`` x the file run's frame rate
  (default 2x): scoring cannot keep up, so the bounded buffer drops the oldest frames and counts them.

A sampler thread records the process's RSS every 0.2 s against the frames done; "flat" means the RSS
over the last 10 % of frames is within ``MAX_GROWTH_MB`` of the RSS over the first 10 % (after the
first batches: the onnxruntime arena and OpenCV's decoder are sized by then).

Model: ``--model PATH``, or a small random-init PaDiM (R18 taps, 24 dims, 72 resize / 64 crop) exported
to a temporary folder (needs the ``export`` extra; memory and drops do not depend on the weights).

Usage::

    nice -n 10 python benchmarks/video.py                      # 10,000 frames of 120x160
    python benchmarks/video.py --frames 2000 --model model.onnx --threads 2

Writes ``benchmarks/results/video.{json,md}``.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from padim_edge import atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: The bound on RSS growth from the first to the last tenth of a run.
MAX_GROWTH_MB = 10.0
SMALL = {"backbone": "r18", "dims": 24, "resize": 72, "crop": 64, "random_init": True}


def export_small(tmp: Path) -> Path:
    """Export the small random-init model in a child process (this one stays torch-free, as on a box)."""
    from PIL import Image

    (tmp / "train").mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        noise = rng.normal(128, 30, (96, 96, 3)).clip(0, 255).astype(np.uint8)
        Image.fromarray(noise).save(tmp / "train" / f"{i:02d}.png")
    path = tmp / "small.onnx"
    code = (
        "import sys; from padim_edge.export.pipeline import run_export; "
        f"run_export(sys.argv[1], sys.argv[2], device='cpu', parity_images=0, progress=False, **{SMALL!r})"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp / "train"), str(path)], check=True)
    return path


def write_video(path: Path, frames: int, size: tuple[int, int], fps: float = 25.0) -> Path:
    """A moving striped pattern with noise, MJPG in AVI (each frame decodes on its own)."""
    from padim_edge.runtime.video import load_cv2

    cv2 = load_cv2()
    h, w = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    rng = np.random.default_rng(0)
    xx, yy = np.mgrid[0:h, 0:w][1], np.mgrid[0:h, 0:w][0]
    noise = rng.normal(0, 8, (16, h, w))
    for i in range(frames):
        base = 128 + 60 * np.sin((xx + 2 * i) / 6.0) * np.cos(yy / 9.0) + noise[i % 16]
        frame = np.stack([base, 0.8 * base + 20, 255 - base], axis=-1).clip(0, 255).astype(np.uint8)
        writer.write(frame)
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
        self.delivered = 0

    def frames(self, every: int = 1) -> Iterator[Any]:
        start = time.monotonic()
        for frame in self.source.frames(every):
            wait = start + frame.index / self.fps - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.delivered += 1
            yield frame

    def release(self) -> None:
        self.source.release()


def measure(model: Any, source: Any, frames: int, batch_size: int, tmp: Path) -> dict[str, Any]:
    """One run with an RSS sampler; returns the run's summary and the RSS trace."""
    from padim_edge.bench.system import rss_mb
    from padim_edge.runtime.video import run_video

    counting = Counting(model)
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            samples.append((counting.done, rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rss_start = rss_mb()
    try:
        run = run_video(counting, source, tmp / "out", batch_size=batch_size, err=io.StringIO())
    finally:
        stop.set()
        sampler.join()
    lines = (tmp / "out" / "frames.jsonl").read_text().splitlines()
    indices = [json.loads(line)["frame"] for line in lines]
    assert indices == sorted(set(indices)), "results out of order"
    first = [rss for done, rss in samples if 0.05 * frames <= done <= 0.15 * frames] or [samples[0][1]]
    last = [rss for done, rss in samples if done >= 0.9 * run.frames] or [samples[-1][1]]
    return {
        "summary": run.as_json(),
        "frames_in_source": frames,
        "result_lines": len(lines),
        "rss_before_mb": round(rss_start, 1),
        "rss_first_tenth_mb": round(max(first), 1),
        "rss_last_tenth_mb": round(max(last), 1),
        "rss_max_mb": round(max(rss for _, rss in samples), 1),
        "rss_growth_mb": round(max(last) - max(first), 1),
        "rss_trace": [(done, round(rss, 1)) for done, rss in samples[:: max(1, len(samples) // 50)]],
    }


def markdown(result: dict[str, Any]) -> str:
    m, cfg = result["machine"], result["config"]
    lines = [
        "# padim-predict --video: 10,000 frames, file and paced live source",
        "",
        f"**Machine:** {m['cpu']} ({', '.join(m['isa'])}), {m['logical_cpus']} logical CPUs, "
        f"{m['memory_gb']} GB RAM, {m['os']}; Python {m['python']}, onnxruntime {m['onnxruntime']}, "
        f"OpenCV {cfg['opencv']}; load average at start {', '.join(f'{x:.1f}' for x in m['loadavg'])} "
        "(a shared 2-core machine: rates are indicative, the drop and memory behaviour is the point).",
        "",
        f"**Run:** {cfg['model']}, {cfg['frames']} frames of {cfg['size'][0]}x{cfg['size'][1]} MJPG, "
        f"batch {cfg['batch_size']}, buffer {2 * cfg['batch_size']} frames (file) / "
        f"{cfg['batch_size']} (live), "
        f"{cfg['threads']} graph threads, this process torch-free; "
        f"`{cfg['command']}` ({result['date']}).",
        "",
        "| source | frames in | scored | dropped | frames/s | p50 ms | p99 ms | buffer max "
        "| RSS first 10 % MB | RSS last 10 % MB | growth MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in result["runs"].items():
        s = run["summary"]
        lines.append(
            f"| {name} | {run['frames_in_source']} | {s['scored']} | {s['dropped']} | {s['frames_per_s']} | "
            f"{s['p50_ms']} | {s['p99_ms']} | {s['buffer_high_water']} | {run['rss_first_tenth_mb']} | "
            f"{run['rss_last_tenth_mb']} | {run['rss_growth_mb']} |"
        )
    verdict = "PASS" if result["flat"] else "FAIL"
    lines += [
        "",
        f"**Memory flat** (growth from the first to the last tenth under {MAX_GROWTH_MB:g} MB in both runs): "
        f"**{verdict}**. Latency is decode -> result line written (it includes the wait in the buffer). "
        "The live source delivers frames at "
        f"{result['runs']['live']['paced_fps']:.0f} frames/s ({cfg['live_rate']:g}x the file run's rate): "
        "every frame is either scored or dropped and counted; the buffer never holds more than its bound.",
    ]
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--frames", type=click.IntRange(min=100), default=10_000, show_default=True)
@click.option("--size", default="120x160", show_default=True, help="HxW of the generated frames.")
@click.option("--model", "model_path", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--live-rate", type=click.FloatRange(min=1.0), default=2.0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS / "video.json", show_default=True)
def main(
    frames: int,
    size: str,
    model_path: Path | None,
    batch_size: int,
    threads: int,
    live_rate: float,
    out: Path,
) -> None:
    """Measure throughput, latency, drops and RSS of --video over FRAMES frames."""
    from padim_edge.bench.system import machine_info
    from padim_edge.runtime import PadimModel
    from padim_edge.runtime.video import OpenCVSource, load_cv2

    machine = machine_info()
    h, w = (int(x) for x in size.lower().split("x"))
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if model_path is None:
            model_path = export_small(tmp)
            label = "small random-init PaDiM (R18 taps, 24 dims, 64 crop)"
        else:
            label = str(model_path)
        model = PadimModel(model_path, device="cpu", threads=threads)
        click.echo(f"writing {frames} frames of {h}x{w}", err=True)
        video = write_video(tmp / "frames.avi", frames, (h, w))
        runs: dict[str, Any] = {}
        (tmp / "file").mkdir()
        runs["file"] = measure(model, str(video), frames, batch_size, tmp / "file")
        click.echo(f"file: {runs['file']['summary']}", err=True)
        rate = live_rate * runs["file"]["summary"]["frames_per_s"]
        paced = Paced(OpenCVSource(str(video)), rate)  # the file's frames, at a camera's pace
        (tmp / "live").mkdir()
        runs["live"] = measure(model, paced, frames, batch_size, tmp / "live")
        runs["live"]["paced_fps"] = round(rate, 1)
        click.echo(f"live: {runs['live']['summary']}", err=True)
    result = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "config": {
            "model": label,
            "frames": frames,
            "size": [h, w],
            "batch_size": batch_size,
            "threads": threads,
            "live_rate": live_rate,
            "opencv": load_cv2().__version__,
            "command": " ".join(["python benchmarks/video.py", *sys.argv[1:]]),
        },
        "runs": runs,
        "flat": all(run["rss_growth_mb"] < MAX_GROWTH_MB for run in runs.values()),
    }
    atomic.write_json(out, result)
    atomic.write_text(out.with_suffix(".md"), markdown(result))
    click.echo(markdown(result))


if __name__ == "__main__":
    main()
