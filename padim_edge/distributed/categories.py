"""Many categories at once: one model per category of an MVTec-style root, one Ray task each.

The driver builds the module once and puts its ``state_dict`` in the object store; each task rebuilds
it (no weight download per category), runs the local pipeline (:func:`padim_edge.export.pipeline.run_export`:
fit, export, parity check) on ``ROOT/<category>/train/good`` and writes ``OUTPUT/<category>.onnx``.
A category that fails (missing folder, unreadable image, too few images, a crashed worker) becomes a
row with its error; the others go on. ``summary.json`` and ``summary.md`` are rewritten (atomically)
as each category finishes, so an interrupted run still leaves a true table.

Tasks read ROOT and write OUTPUT themselves: on a multi-node cluster both must be on a shared file
system at the same path on every node.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ray

from padim_edge import atomic
from padim_edge.datasets import training_folders
from padim_edge.distributed.cluster import LOCAL, ClusterInfo, connect
from padim_edge.distributed.methods import ShardPlan, plan_for, state_of

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


@dataclass(frozen=True)
class CategoryResult:
    """One category's outcome (a row of the summary).

    Attributes:
        category: Its name (the sub-folder).
        ok: Whether its model was written.
        images: Training images fitted (0 when it failed).
        fit_seconds: Wall time of the fit.
        seconds: Wall time of the whole task (build, fit, export, parity).
        model: The written ``.onnx`` file.
        bytes: Size of the model's files.
        parity: Worst ONNX-vs-PyTorch difference on training images (``None``: not checked).
        error: Why it failed (``"Type: message"``), ``None`` when it did not.
    """

    category: str
    ok: bool
    images: int = 0
    fit_seconds: float = 0.0
    seconds: float = 0.0
    model: str | None = None
    bytes: int = 0
    parity: float | None = None
    error: str | None = None


@ray.remote
def _fit_category(
    name: str,
    data: str,
    output: str,
    plan: ShardPlan,
    state: dict[str, Any],
    weights: str,
    options: dict,
    threads: int,
) -> CategoryResult:
    """A task: the local export pipeline on one category, its failure returned as a row, never raised."""
    start = time.perf_counter()
    try:
        import torch

        from padim_edge.export.pipeline import run_export

        torch.set_num_threads(threads)
        run = run_export(data, output, module=(plan.build(state), weights), progress=False, **options)
        return CategoryResult(
            category=name,
            ok=True,
            images=run.fit.images,
            fit_seconds=round(run.fit.seconds, 3),
            seconds=round(time.perf_counter() - start, 3),
            model=str(run.export.files[0]),
            bytes=run.export.bytes,
            parity=None if run.parity is None else float(run.parity.max_abs),
        )
    except Exception as exc:  # a category's failure is its row: the others go on
        return CategoryResult(
            category=name, ok=False, seconds=round(time.perf_counter() - start, 3), error=_describe(exc)
        )


def fit_categories(
    root: str | Path,
    output: str | Path,
    *,
    module: tuple[Any, str],
    threads: int = 1,
    batch_size: int = 16,
    device: str = "auto",
    external_data: str = "auto",
    blocks: int | None = None,
    head_precision: str | None = None,
    parity_images: int = 4,
    skip_unreadable: bool = False,
    info: ClusterInfo | None = None,
    on_result: Callable[[CategoryResult], None] | None = None,
) -> list[CategoryResult]:
    """Fit and export one model per category of ``root`` into ``output``, one Ray task each.

    Args:
        root: A folder of MVTec-style categories (``ROOT/<category>/train/good``).
        output: Folder for ``<category>.onnx`` and the summary.
        module: The built, unfitted ``(model, weights identity)`` every category starts from.
        threads: Torch threads (and Ray CPUs) per task.
        batch_size: Images per forward pass.
        device: ``auto`` (CUDA where the cluster has GPUs), ``cpu`` or ``cuda``.
        external_data: As ``padim-export --external-data``.
        blocks: Column blocks of the packed Sigma^-1 (default: the exporter's).
        head_precision: The Mahalanobis head's precision (default: the exporter's, fp32).
        parity_images: Training images of the parity check (0: skip).
        skip_unreadable: Fit each category without its undecodable images (recorded in its model).
        info: The connected cluster (default: a local instance).
        on_result: Called with each category's row as it finishes.

    Returns:
        The rows, in category order (also written to ``summary.json`` / ``summary.md``).

    Raises:
        padim_edge.datasets.DatasetError: ``root`` holds no category.
        padim_edge.atomic.OutputError: ``output`` cannot be written.
    """
    folders = training_folders(root)
    output = atomic.check_output_folder(output, what="--output")
    info = info or connect(LOCAL)
    if device == "auto":
        device = "cuda" if info.gpus > 0 else "cpu"
    resources: dict[str, float] = {"num_cpus": threads, **({"num_gpus": 1} if device == "cuda" else {})}
    model, weights = module
    plan = plan_for(model)
    state = ray.put(state_of(model))
    options: dict[str, Any] = {
        "batch_size": batch_size,
        "device": device,
        "external_data": external_data,
        "parity_images": parity_images,
        **({"skip_unreadable": True} if skip_unreadable else {}),
        **({"blocks": blocks} if blocks is not None else {}),
        **({"head_precision": head_precision} if head_precision is not None else {}),
    }
    task = _fit_category.options(**resources, max_retries=0)
    refs = {
        task.remote(
            name, str(data), str(output / f"{name}.onnx"), plan, state, weights, options, threads
        ): name
        for name, data in folders.items()
    }
    results: dict[str, CategoryResult] = {}
    pending = list(refs)
    while pending:
        (done,), pending = ray.wait(pending, num_returns=1)
        try:
            row = ray.get(done)
        except ray.exceptions.RayError as exc:  # the worker died (out of memory, killed): still one row
            row = CategoryResult(category=refs[done], ok=False, error=_describe(exc))
        results[row.category] = row
        write_summary(
            output, [results[n] for n in folders if n in results], root=root, cluster=info.describe()
        )
        if on_result is not None:
            on_result(row)
    return [results[name] for name in folders]


def write_summary(output: Path, rows: list[CategoryResult], *, root: str | Path, cluster: str) -> list[Path]:
    """Write ``summary.json`` and ``summary.md`` (atomically) for the rows so far."""
    failed = [r.category for r in rows if not r.ok]
    document = {
        "root": str(root),
        "output": str(output),
        "cluster": cluster,
        "categories": len(rows),
        "failed": failed,
        "rows": [asdict(r) for r in rows],
    }
    lines = [
        f"# padim-export --categories {root}",
        "",
        f"{len(rows) - len(failed)} of {len(rows)} categories fitted on {cluster}.",
        "",
        "| category | status | images | fit s | total s | model | MB | parity max abs | error |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in rows:
        parity = "" if r.parity is None else f"{r.parity:.2e}"
        model = Path(r.model).name if r.model else ""
        size = f"{r.bytes / 1e6:.1f}" if r.ok else ""
        error = (r.error or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {r.category} | {'ok' if r.ok else 'FAILED'} | {r.images} | {r.fit_seconds:.1f} | "
            f"{r.seconds:.1f} | {model} | {size} | {parity} | {error} |"
        )
    return [
        atomic.write_json(output / SUMMARY_JSON, document),
        atomic.write_text(output / SUMMARY_MD, "\n".join(lines) + "\n"),
    ]


def _describe(exc: BaseException) -> str:
    """``Type: first line`` of an error (a Ray error's cause, not its traceback banner)."""
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, BaseException) else exc
    text = str(exc).strip()
    first = text.splitlines()[0] if text else "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return f"{type(exc).__name__}: {first[:500]}"
