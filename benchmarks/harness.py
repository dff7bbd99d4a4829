"""What every benchmark suite shares: paths, provenance, atomic results, the data sets, Markdown bits.

* **Provenance**: :class:`Run` stamps a result with the command, the machine and versions
  (:func:`padim_edge.bench.system.machine_info`, load average included), start / finish times and
  the load average when it ended; :func:`header` turns that into the report's first lines.
* **Results**: :func:`write_results` writes ``<stem>.json`` and ``<stem>.md`` atomically
  (:mod:`padim_edge.atomic`), into ``benchmarks/results`` unless ``--output`` says otherwise.
* **Data sets** (MVTec layout): the magnetic tile from ``../shared`` (``PADIM_EDGE_SHARED``
  overrides it), and two sets generated into the work folder, the procedural woven fabric demo and the
  dark low-contrast texture (:func:`prepare_set`, :func:`prepare_fit`).
* **Arguments**: every suite is a click group, one command per measurement, with ``--output`` /
  ``-o`` (results folder) and ``--workdir`` (keep and reuse models; default: a temporary folder,
  deleted afterwards, :func:`workspace`); comma lists go through :func:`comma_list`.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
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


def require_shared(*paths: Path) -> None:
    """Stop with one line when the shared data or weights a measurement needs are missing."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise click.ClickException(f"needs {', '.join(missing)} (set PADIM_EDGE_SHARED to the shared folder)")


def output_options(command: Any) -> Any:
    """The options every measurement takes: ``--output`` / ``-o`` and ``--workdir``."""
    command = click.option(
        "--workdir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Keep / reuse models and generated data here (default: a temporary folder, deleted).",
    )(command)
    return click.option(
        "--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True
    )(command)


@contextmanager
def workspace(workdir: Path | None, prefix: str) -> Iterator[Path]:
    """``workdir`` (created, kept), or a temporary folder deleted afterwards."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Run:
    """Provenance of one measurement: ``Run().stamp(result)`` adds command, machine, times and load."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.command = " ".join(["python", "benchmarks/" + Path(sys.argv[0]).name, *sys.argv[1:]])
        self.load_before = list(os.getloadavg())

    def stamp(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result`` with ``command``, ``machine``, ``finished``, ``seconds`` and the load averages."""
        from padim_edge.bench.system import machine_info

        result.update(
            command=self.command,
            machine=machine_info(),
            finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            seconds=time.perf_counter() - self.started,
            load_before=self.load_before,
            load_after=list(os.getloadavg()),
        )
        return result


def header(result: dict[str, Any], title: str) -> list[str]:
    """The report's title, machine, command and load lines (from :meth:`Run.stamp`)."""
    from padim_edge.bench.markdown import machine_line

    loads = " -> ".join(
        f"{result[key][0]:.1f}" if result.get(key) else "?" for key in ("load_before", "load_after")
    )
    return [
        f"# {title}",
        "",
        f"**Machine:** {machine_line(result['machine'])}.",
        f"**Command:** `{result['command']}` (finished {result['finished']}, {result['seconds']:.0f} s; "
        f"load average {loads}).",
        "",
    ]


def write_results(output: Path, stem: str, result: dict[str, Any], markdown: str) -> None:
    """``<output>/<stem>.json`` and ``.md``, each written atomically; their paths on stdout."""
    output.mkdir(parents=True, exist_ok=True)
    for path in (
        atomic.write_json(output / f"{stem}.json", result, indent=1),
        atomic.write_text(output / f"{stem}.md", markdown),
    ):
        click.echo(str(path))


def num(value: Any, fmt: str = ".4f") -> str:
    """``value`` formatted, ``-`` when missing."""
    return "-" if value is None else format(value, fmt)


def table(headers: list[str], body: list[list[str]]) -> list[str]:
    """A Markdown table."""
    return [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *["| " + " | ".join(row) + " |" for row in body],
    ]


def synthetic_images(folder: Path, count: int, size: int = 256) -> Path:
    """Write ``count`` random RGB PNGs of smooth noise (they compress like photos) into ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        coarse = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR).save(folder / f"{i:04d}.png")
    return folder


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


def prepare_fit(
    name: str, workdir: Path, *, folder: str, max_train: int | None
) -> tuple[tuple[Path, Path, Path, int] | None, str]:
    """A set made ready for a fit: ``((root, here, fit_dir, train_images), description)``.

    ``here`` is ``workdir / folder`` (created; one per set and settings, so models are reused),
    ``fit_dir`` the fit's images in it (:func:`fit_folder`). ``(None, why)`` when the set is skipped
    (logged).
    """
    root, description = prepare_set(name, workdir)
    if root is None:
        log(f"{name}: SKIPPED: {description}")
        return None, description
    here = workdir / folder
    here.mkdir(parents=True, exist_ok=True)
    fit_dir, train_images = fit_folder(root / "train" / "good", here / "fit", max_train)
    return (root, here, fit_dir, train_images), description
