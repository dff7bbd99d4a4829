"""What every benchmark suite shares: provenance (:class:`Run`), atomic results (:func:`measurement`,
:func:`write_results`), timing loops (:func:`timed`, :func:`paired`), Markdown, data sets, options."""

from __future__ import annotations

import datetime as _dt
import functools
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np

from padim_edge import atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: The project's ``../shared`` folder (``PADIM_EDGE_SHARED`` overrides it, as in the tests).
SHARED = Path(os.environ.get("PADIM_EDGE_SHARED") or ROOT.parent / "shared")
TILES = SHARED / "data" / "magnetic_tile"
WEIGHTS = SHARED / "weights" / "mobilenet_v2-b0353104.pth"
SETS = ("magnetic_tile", "demo", "dark_texture")
#: The accuracy models' geometry: MobileNetV2, resize 256, crop 224, PaDiM dims 100.
RESIZE, CROP, DIMS = 256, 224, 100
#: Sizes of the two generated sets (the dark texture set's defaults; the demo set made as large).
GENERATED = {"train": 200, "test_good": 60, "test_defect_per_type": 40}
#: What :func:`prepare_fit` returns for a set it can fit: root, its work folder, fit images folder, count.
Fit = tuple[Path, Path, Path, int]
#: Every suite's click context.
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

_START = time.perf_counter()


def log(message: str) -> None:
    """A progress line with the seconds since the start (stderr)."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def finite(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when missing or not finite."""
    return None if value is None or not math.isfinite(float(value)) else float(value)


def even_spread(items: list, limit: int | None) -> list:
    """At most ``limit`` of ``items``, evenly spread (all of them when ``limit`` is None or larger)."""
    if limit is None or limit >= len(items):
        return list(items)
    index = np.unique(np.linspace(0, len(items) - 1, limit).round().astype(int))
    return [items[i] for i in index]


def comma_list(value: str, choices: tuple[str, ...], option: str) -> tuple[str, ...]:
    """``a,b`` as ``("a", "b")``, every item one of ``choices``; a click usage error names the option."""
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    unknown = sorted(set(items) - set(choices))
    if unknown or not items:
        raise click.BadParameter(f"{option}: {unknown or 'empty'}; choose from {', '.join(choices)}")
    return items


def ints(value: str) -> tuple[int, ...]:
    """``1,2,4`` as ``(1, 2, 4)``."""
    return tuple(int(v) for v in value.split(",") if v.strip())


def require_shared(*paths: Path) -> None:
    """Stop with one line when the shared data or weights a measurement needs are missing."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise click.ClickException(f"needs {', '.join(missing)} (set PADIM_EDGE_SHARED to the shared folder)")


def group(help: str) -> click.Group:
    """A suite: one click group, one command per measurement."""
    return click.Group("main", help=help, context_settings=CONTEXT)


def output_options(command: Any) -> Any:
    """The options every measurement takes: ``--output`` / ``-o`` and ``--workdir``."""
    folder = click.Path(file_okay=False, path_type=Path)
    keep = "Keep / reuse models and generated data here (default: a temporary folder, deleted)."
    command = click.option("--workdir", type=folder, help=keep)(command)
    return click.option("--output", "-o", type=folder, default=RESULTS, show_default=True)(command)


def measurement(stem: str, render: Callable[[dict], str]) -> Any:
    """A command measuring into ``<output>/<stem>.{json,md}``: the function gets its options and ``work``
    (``--workdir`` or a temporary folder) and returns the result, which is stamped, rendered and written."""

    def decorate(function: Callable[..., dict]) -> Any:
        @functools.wraps(function)
        def command(output: Path, workdir: Path | None, **options: Any) -> None:
            run = Run()
            with workspace(workdir, f"padim-{stem}-") as work:
                result = run.stamp(function(work=work, **options))
            write_results(output, stem, result, render(result))

        return output_options(command)

    return decorate


@contextmanager
def workspace(workdir: Path | None, prefix: str) -> Iterator[Path]:
    """``workdir`` (created, kept), or a temporary folder deleted afterwards."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as folder:
        yield Path(folder)


class Run:
    """Provenance of one measurement: ``Run().stamp(result)`` adds command, machine, times and load."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
        self.load_before = list(os.getloadavg())

    def stamp(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` with ``command``, ``machine``, ``finished``, ``seconds`` and the load averages."""
        from padim_edge.bench.system import machine_info

        finished = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        result.update(command=self.command, machine=machine_info(), finished=finished)
        result.update(seconds=time.perf_counter() - self.started, load_before=self.load_before)
        result.update(load_after=list(os.getloadavg()))
        return result


def header(result: dict[str, Any], title: str) -> list[str]:
    """The report's title, machine, command and load lines (from :meth:`Run.stamp`)."""
    from padim_edge.bench.markdown import machine_line

    loads = " -> ".join(f"{result[k][0]:.1f}" if result.get(k) else "?"
                        for k in ("load_before", "load_after"))  # fmt: skip
    return [f"# {title}", "", f"**Machine:** {machine_line(result['machine'])}.",
            f"**Command:** `{result['command']}` (finished {result['finished']}, {result['seconds']:.0f} s; "
            f"load average {loads}).", ""]  # fmt: skip


def write_results(output: Path, stem: str, result: dict[str, Any], markdown: str) -> None:
    """``<output>/<stem>.json`` and ``.md``, each written atomically; their paths on stdout."""
    output.mkdir(parents=True, exist_ok=True)
    click.echo(atomic.write_json(output / f"{stem}.json", result, indent=1))
    click.echo(atomic.write_text(output / f"{stem}.md", markdown))


def num(value: Any, fmt: str = ".4f") -> str:
    """``value`` formatted, ``-`` when missing."""
    return "-" if value is None else format(value, fmt)


def table(headers: list[str], body: list[list[Any]]) -> list[str]:
    """A Markdown table (cells through ``str``)."""
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *["| " + " | ".join(map(str, row)) + " |" for row in body],
    ]


def percentiles(seconds: list[float], qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """``p50_ms`` / ``p90_ms`` / ``p99_ms`` (or ``qs``) of per-call ``seconds``, in ms."""
    values = np.percentile(np.asarray(seconds), qs) * 1e3
    return {f"p{q}_ms": round(float(v), 2) for q, v in zip(qs, values, strict=True)}


def clock(call: Callable[[], Any]) -> float:
    """Seconds one call of ``call`` takes."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def timed(call: Callable[[], Any], seconds: float, *, per_call: int = 1, warmup: int = 1) -> dict[str, float]:
    """``warmup`` calls, then calls for ``seconds``: ``rps`` (``per_call`` items a call), percentiles."""
    for _ in range(warmup):
        call()
    latencies, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds:
        latencies.append(clock(call))
    rps = round(per_call * len(latencies) / (time.perf_counter() - start), 2)
    return {"rps": rps, **percentiles(latencies), "requests": len(latencies)}


def paired(a: Callable[[], Any], b: Callable[[], Any], pairs: int, *, warmup: int = 2) -> dict[str, float]:
    """A/B interleaved call by call (a drifting background load hits both alike): each one's p50 and
    ``b - a`` per pair (p25 / p50 / p75), in ms."""
    times = np.array([[clock(a), clock(b)] for _ in range(pairs + warmup)])[warmup:]
    overhead = percentiles(list(times[:, 1] - times[:, 0]), (25, 50, 75))
    diffs = {f"overhead_{k}": v for k, v in overhead.items()}
    a_p50, b_p50 = (percentiles(list(times[:, i]), (50,))["p50_ms"] for i in (0, 1))
    return {"pairs": pairs, "a_p50_ms": a_p50, "b_p50_ms": b_p50, **diffs}


def median_of(rounds: list[Any]) -> Any:
    """The per-key median over rounds of (nested) dicts of numbers; of numbers, their median."""
    if not isinstance(rounds[0], dict):
        return round(float(statistics.median(rounds)), 2)
    return {key: median_of([r[key] for r in rounds]) for key in rounds[0]}


def textured_frame(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A striped RGB frame with noise (uint8), a stand-in for a camera frame."""
    xx = np.mgrid[0:height, 0:width][1]
    base = 128 + 40 * np.sin(xx / 9.0 + rng.uniform(0, 6)) + rng.normal(0, 12, (height, width))
    return np.stack([base, base * 0.9 + 10, base * 0.8 + 20], -1).clip(0, 255).astype(np.uint8)


def synthetic_images(folder: Path, count: int, size: int = 256) -> Path:
    """Write ``count`` random RGB PNGs of smooth noise (they compress like photos) into ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR).save(folder / f"{i:04d}.png")
    return folder


def r18_model(train: Path, path: Path) -> Path:
    """R18-Rd100, crop 224, random-init (time does not depend on the weights), fitted on ``train`` once."""
    if not path.is_file():
        from padim_edge.export.pipeline import run_export

        log(f"fitting R18-Rd100 (random-init) on {train}")
        options = {"device": "cpu", "parity_images": 0, "progress": False}
        run_export(train, path, backbone="r18", dims=100, random_init=True, **options)
    return path


def prepare_set(name: str, workdir: Path) -> tuple[Path | None, str]:
    """The set's MVTec root, or ``(None, why it is skipped)``."""
    if name == "magnetic_tile":
        if not (TILES / "train" / "good").is_dir():
            return None, f"{TILES} not found (set PADIM_EDGE_SHARED to the project's shared folder)"
        return TILES, "magnetic tile (real photos; shared data)"
    root = workdir / "data" / name
    if name == "demo":
        from padim_edge.demo.dataset import make_demo_dataset

        make_demo_dataset(root, seed=0, **GENERATED)
        return root, "procedural woven fabric (padim_edge.demo), seed 0"
    from padim_edge.demo.dark_texture import make_dark_texture
    from padim_edge.extras import MissingExtraError

    try:
        make_dark_texture(root, seed=0, **GENERATED)
    except MissingExtraError as exc:
        return None, f"dark texture set not generated: {exc}"
    return root, "dark low-contrast texture (padim_edge.demo.dark_texture), seed 0"


def fit_folder(train: Path, out: Path, limit: int | None) -> tuple[Path, int]:
    """``train`` itself, or a folder of symlinks to an even spread of at most ``limit`` of its images."""
    from padim_edge.images import list_images

    images = list_images(train)
    chosen = even_spread(images, limit)
    if len(chosen) == len(images):
        return train, len(images)
    if out.is_dir() and sorted(p.name for p in out.iterdir()) != sorted(p.name for p in chosen):
        shutil.rmtree(out)
    if not out.is_dir():
        out.mkdir(parents=True)
        for path in chosen:
            (out / path.name).symlink_to(path.resolve())
    return out, len(chosen)


def prepare_fit(name: str, workdir: Path, *, folder: str, max_train: int | None) -> tuple[Fit | None, str]:
    """``((root, workdir / folder, fit images folder, count), description)``, or ``(None, why)`` (logged)."""
    root, description = prepare_set(name, workdir)
    if root is None:
        log(f"{name}: SKIPPED: {description}")
        return None, description
    here = workdir / folder
    here.mkdir(parents=True, exist_ok=True)
    fit_dir, train_images = fit_folder(root / "train" / "good", here / "fit", max_train)
    return (root, here, fit_dir, train_images), description
