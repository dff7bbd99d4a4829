"""``padim-bench --files DIR``: what ``padim-predict`` delivers on real files, stage by stage.

The graph benchmarks time a batch already in memory; a user scores files. This measures, on one model
and the images of a folder, in one process:

* ``decode``: decoding alone, one thread (what one decode worker can feed);
* ``graph``: the graph alone on the decoded frames, in the run's batches;
* ``sequential``: decode, score and write one batch after the other (the loop padim-predict ran
  before its pipeline: :class:`padim_edge.runtime.pipeline.FilePipeline` with no worker threads);
* ``pipelined``: the pipeline padim-predict runs (decode threads and overlay writer overlap the graph),

each with and without overlays, rounds interleaved, every rate in images/s with the pipeline's stage
times (decode and write busy time summed over their threads, graph time, the scoring thread's waits).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from padim_edge import atomic
from padim_edge.images import expand_paths, load_image

#: Most files timed (the decoded frames of the graph-alone row are held in memory).
MAX_FILES = 400


@dataclass
class FilesBench:
    """One ``--files`` run's numbers.

    Attributes:
        model: The model's description.
        folder: The images' folder.
        files: Files timed.
        frame: The first file's (H, W).
        batch_size: Images per graph run.
        threads: onnxruntime intra-op threads (``None``: all cores).
        decode_threads: The pipeline's decode threads.
        rates: ``{row: images/s}`` (median over rounds).
        stages: ``{row: stage times of the median round}``.
        machine: :func:`padim_edge.bench.system.machine_info`, plus the background CPU share.
    """

    model: str
    folder: str
    files: int
    frame: tuple[int, int]
    batch_size: int
    threads: int | None
    decode_threads: int
    rates: dict[str, float] = field(default_factory=dict)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def run_files_bench(
    model_path: Path,
    folder: Path,
    *,
    batch_size: int = 8,
    threads: int | None = None,
    decode_threads: int | None = None,
    rounds: int = 3,
    overlays: bool = True,
    device: str = "cpu",
    log=None,
) -> FilesBench:
    """Measure decode, graph, and the sequential and pipelined commands on ``folder``'s images.

    Raises:
        padim_edge.images.ImageError: The folder holds no image.
    """
    from padim_edge.bench.system import BackgroundLoad, machine_info
    from padim_edge.naming import image_keys
    from padim_edge.runtime import PadimModel
    from padim_edge.runtime.outputs import OverlayWriter, overlay_names
    from padim_edge.runtime.pipeline import FilePipeline, default_decode_workers

    files = [file for _, file in expand_paths([folder])][:MAX_FILES]
    keys = image_keys(files)
    model = PadimModel(model_path, device=device, threads=threads)
    workers = default_decode_workers() if decode_threads is None else decode_threads
    first = load_image(files[0])
    result = FilesBench(
        model=model.info.description,
        folder=str(folder),
        files=len(files),
        frame=(int(first.shape[0]), int(first.shape[1])),
        batch_size=batch_size,
        threads=threads,
        decode_threads=workers,
    )
    say = log or (lambda message: None)
    load = BackgroundLoad()
    samples: dict[str, list[tuple[float, dict[str, float]]]] = {}

    def record(row: str, seconds: float, stages: dict[str, float] | None = None) -> None:
        samples.setdefault(row, []).append((_rate(len(files), seconds), stages or {}))

    with tempfile.TemporaryDirectory(prefix="padim-bench-files-") as tmp:
        names = overlay_names(keys)
        for round_ in range(rounds):
            say(f"  round {round_ + 1}/{rounds}")
            start = time.perf_counter()
            frames = [load_image(f) for f in files]
            record("decode", time.perf_counter() - start)
            start = time.perf_counter()
            for lo in range(0, len(frames), batch_size):
                model.predict(frames[lo : lo + batch_size], batch_size=batch_size)
            record("graph", time.perf_counter() - start)
            del frames
            variants = [("sequential", 0), ("pipelined", workers)]
            for with_overlays in (False, True) if overlays else (False,):
                for row, decoders in variants:
                    out = Path(tmp) / f"{row}-{round_}-{with_overlays}"
                    writer = OverlayWriter(out, model.info, names) if with_overlays else None
                    pipeline = FilePipeline(
                        model,
                        batch_size=batch_size,
                        decode_workers=decoders,
                        write_workers=1 if decoders else 0,
                        overlays=writer,
                    )
                    with pipeline:
                        for _ in pipeline.run(files, keys):
                            pass
                    if writer is not None:
                        writer.finish()
                    name = f"{row} + overlays" if with_overlays else row
                    record(name, pipeline.times.wall, pipeline.times.to_dict())
    for row, values in samples.items():
        values.sort(key=lambda v: v[0])
        rate, stages = values[len(values) // 2]
        result.rates[row] = round(rate, 2)
        if stages:
            result.stages[row] = stages
    result.machine = {**machine_info(), "background_cpu": load.fraction()}
    return result


def render_markdown(result: FilesBench) -> str:
    """The run as a markdown report: rates, the pipeline's stage times, the machine."""
    h, w = result.frame
    threads = "all cores" if result.threads is None else f"{result.threads}"
    lines = [
        f"# padim-bench --files: {result.model} on {result.files} files ({h}x{w}) of {result.folder}",
        "",
        f"Batch {result.batch_size}, onnxruntime threads: {threads}, decode threads: "
        f"{result.decode_threads}.",
        "",
        "| row | images/s | decode s | graph s | write s | waited for decode s | waited for writes s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row, rate in result.rates.items():
        stages = result.stages.get(row)
        cells = (
            [f"{stages[k]:.2f}" for k in ("decode_s", "graph_s", "write_s", "wait_decode_s", "wait_write_s")]
            if stages
            else [""] * 5
        )
        lines.append(f"| {row} | {rate:.1f} | " + " | ".join(cells) + " |")
    pipelined, sequential = result.rates.get("pipelined"), result.rates.get("sequential")
    lines.append("")
    if pipelined and sequential:
        lines.append(f"Pipelined / sequential: {pipelined / sequential:.2f}x.")
    with_overlays = result.rates.get("pipelined + overlays")
    if pipelined and with_overlays:
        lines.append(f"Pipelined with overlays / without: {with_overlays / pipelined:.2f}x.")
    machine = result.machine
    background = machine.get("background_cpu")
    lines += [
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('usable_cpus')} usable CPUs, onnxruntime "
        f"{machine.get('onnxruntime')}, Python {machine.get('python')}"
        + (
            f"; other processes used {background:.0%} of the CPU meanwhile."
            if background is not None
            else "."
        ),
        "",
        "decode / write s: busy time summed over their threads; graph s: time in the graph; rates are the "
        "median round.",
    ]
    return "\n".join(lines) + "\n"


def write_report(result: FilesBench, output: Path, stem: str) -> dict[str, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` to ``output``."""
    output = atomic.check_output_folder(output, what="--output")
    return {
        "json": atomic.write_json(output / f"{stem}.json", result.to_dict()),
        "md": atomic.write_text(output / f"{stem}.md", render_markdown(result)),
    }


def summary_lines(result: FilesBench) -> list[str]:
    """A few console lines: every row's rate."""
    lines = [f"{result.model}, {result.files} files, batch {result.batch_size}:"]
    lines += [f"  {row:<24} {rate:8.1f} img/s" for row, rate in result.rates.items()]
    background = result.machine.get("background_cpu")
    if background is not None:
        lines.append(f"  (other processes used {background:.0%} of the CPU meanwhile)")
    return lines


def run_command(
    models: tuple[Path, ...] | list[Path],
    folder: Path,
    *,
    batch_size: int,
    threads: str,
    devices: list[str] | None,
    output: Path | None,
    name: str,
    quiet: bool,
) -> dict[str, Path]:
    """``padim-bench --files DIR --model MODEL``: measure, print the summary, write ``<name>.json`` / ``.md``.

    Args:
        models: The ``--model`` files (exactly one).
        folder: The images.
        batch_size: Images per graph run.
        threads: The last ``--threads`` item: ``all`` (onnxruntime's default) or a count.
        devices: ``--device`` (the first is used; default cpu).
        output: The report folder (default: a new ``./bench-<time>/``).
        name: File stem of the report.
        quiet: No progress lines.

    Raises:
        click.ClickException: Not exactly one ``--model``, a missing extra, or a folder without images.
    """
    import click

    from padim_edge.bench.cli import default_output
    from padim_edge.extras import MissingExtraError, require
    from padim_edge.images import ImageError

    if len(models) != 1:
        raise click.UsageError("--files DIR measures one model: give it with --model MODEL")
    try:
        require("padim-bench --files", "runtime", "bench")
        result = run_files_bench(
            Path(models[0]),
            folder,
            batch_size=batch_size,
            threads=None if threads == "all" else int(threads),
            device=(devices or ["cpu"])[0],
            log=None if quiet else (lambda message: click.echo(message, err=True)),
        )
    except (MissingExtraError, ImageError) as exc:
        raise click.ClickException(str(exc)) from None
    for line in summary_lines(result):
        click.echo(line, err=True)
    paths = write_report(result, output or default_output(), name)
    for path in paths.values():
        click.echo(str(path))
    return paths
