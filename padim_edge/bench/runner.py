"""Plan and run a benchmark: models x devices x threads x engines, each swept over batch sizes.

Every (model, engine, device, threads) configuration is measured by its own worker: by default a
fresh Python process (:mod:`padim_edge.bench.worker`), so its peak RSS is that configuration's own
and an onnxruntime worker never has torch loaded. ``isolate=False`` runs everything in this process
(fast, for tests); rows then say their peak RSS is the whole process's.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from padim_edge.bench import system
from padim_edge.bench.artifacts import Artifacts, model_label
from padim_edge.bench.config import CONTENDED, DEFAULT_BATCH_SIZES, VARIANTS, BenchConfig, BenchResult
from padim_edge.bench.timing import Summary
from padim_edge.bench.worker import files_bytes, run_job

__all__ = [
    "CONTENDED",
    "DEFAULT_BATCH_SIZES",
    "VARIANTS",
    "BenchConfig",
    "BenchResult",
    "Subject",
    "plan_devices",
    "read_model_metadata",
    "run_benchmark",
]


@dataclass(frozen=True)
class Subject:
    """One model to benchmark, with the comparators built for it."""

    label: str
    fused: str | None
    backbone_graph: str | None
    state: str | None
    module: dict[str, Any]
    precision: str
    head_precision: str = "fp32"


def _log(config: BenchConfig, message: str) -> None:
    if config.progress:
        print(message, file=sys.stderr, flush=True)


def plan_devices(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """Devices to run and notes for those skipped (provider missing from this build).

    Raises:
        ValueError: An unknown device name.
    """
    from padim_edge.runtime.providers import CONCRETE_DEVICES, DEVICES, available_devices

    have = available_devices()
    if requested is None:
        return have, []
    notes = []
    devices = []
    for device in requested:
        if device not in CONCRETE_DEVICES:
            raise ValueError(f"unknown device {device!r}; choose from {', '.join(CONCRETE_DEVICES)}")
        if device in have:
            devices.append(device)
        else:
            notes.append(
                f"{device}: skipped, {DEVICES[device].providers[0]} is not in this onnxruntime build "
                f"(it has {', '.join(system.onnxruntime_info()[1])})"
            )
    return devices, notes


def read_model_metadata(path: Path) -> dict[str, Any]:
    """Method, backbone, dims, resize, crop, seed, precision (and PatchCore's coreset and bank size) of a
    padim-edge model file, without its weights."""
    import onnx

    from padim_edge import metadata

    proto = onnx.load(str(path), load_external_data=False)
    info = metadata.parse({p.key: p.value for p in proto.metadata_props}, source=str(path))
    return {
        "method": info.method,
        "backbone": info.backbone,
        "dims": info.dims,
        "resize": info.resize,
        "crop": info.crop,
        "seed": info.get("seed", 0),
        "coreset": info.get("coreset"),
        "bank_size": info.get("bank_size"),
        "precision": info.precision,
        "head_precision": info.head_precision,
    }


def _head_variant(config: BenchConfig, fused: str, precision: str) -> str:
    """The built float32 model with its head rewritten to ``precision`` (made once, beside it)."""
    target = Path(fused).with_name(f"{Path(fused).stem}-head-{precision}.onnx")
    if not target.is_file():
        _log(config, f"{target.name}: rewriting the head to {precision}")
        run_job({"job": "head", "source": fused, "output": str(target), "precision": precision}, isolate=True)
    return str(target)


def _prepare(config: BenchConfig, workdir: Path, backbone: str, **kwargs: Any) -> Artifacts:
    spec = {
        "job": "prepare",
        "args": {
            "backbone": backbone,
            "folder": str(workdir),
            "resize": kwargs.pop("resize", config.resize),
            "crop": kwargs.pop("crop", config.crop),
            "seed": kwargs.pop("seed", config.seed),
            "fit_frames": config.fit_frames,
            "progress": config.progress,
            **kwargs,
        },
    }
    return Artifacts.from_dict(run_job(spec, isolate=config.isolate))


#: What a worker needs to rebuild a model's eager twin.
_MODULE_KEYS = ("method", "backbone", "dims", "resize", "crop", "seed", "coreset", "bank_size")


def _subjects(config: BenchConfig, workdir: Path) -> list[Subject]:
    subjects = []
    for backbone in config.backbones:
        art = _prepare(
            config,
            workdir,
            backbone,
            method=config.method,
            coreset=config.coreset,
            dims=config.dims,
            backbone_alone=config.backbone,
            eager=config.eager,
        )
        module = {
            "method": art.method,
            "backbone": art.backbone,
            "dims": art.dims,
            "resize": art.resize,
            "crop": art.crop,
            "seed": art.seed,
            "coreset": art.coreset,
            "bank_size": art.bank_size,
        }
        for head in config.head_precisions:
            if head == "fp32":
                subjects.append(Subject(art.label, art.fused, art.backbone_graph, art.state, module, "fp32"))
            elif art.fused is not None:
                label = model_label(
                    art.method,
                    art.backbone,
                    art.dims,
                    coreset=art.coreset,
                    bank_size=art.bank_size,
                    head_precision=head,
                )
                fused = _head_variant(config, art.fused, head)
                subjects.append(Subject(label, fused, art.backbone_graph, art.state, module, "fp32", head))
    for path in config.models:
        meta = read_model_metadata(path)
        module = {k: meta[k] for k in _MODULE_KEYS}
        label = model_label(
            meta["method"],
            meta["backbone"],
            meta["dims"],
            coreset=meta["coreset"],
            bank_size=meta["bank_size"],
            precision=meta["precision"],
            head_precision=meta["head_precision"],
        )
        graph = None
        if config.backbone:
            build = {k: module[k] for k in _MODULE_KEYS if k != "bank_size"}
            art = _prepare(config, workdir, fused=False, backbone_alone=True, eager=False, **build)
            graph = art.backbone_graph
        subjects.append(
            Subject(label, str(path), graph, None, module, meta["precision"], meta["head_precision"])
        )
    return subjects


def _rows(
    subject: Subject, variant: str, job: dict[str, Any], result: dict[str, Any], model_bytes: int | None
) -> list[dict[str, Any]]:
    load = result["load"] or {}
    frame = job["frame"]
    rows = []
    for point in result["points"]:
        batch = point["batch"]
        latency = Summary(**point["latency_s"])
        per_image = latency.scaled(1e3 / batch)
        rows.append(
            {
                "model": subject.label,
                "method": subject.module.get("method", "padim"),
                "bank_size": subject.module.get("bank_size"),
                "variant": variant,
                "engine": load.get("engine"),
                "engine_version": load.get("engine_version"),
                "provider": (load.get("providers") or ["?"])[0],
                "providers": load.get("providers"),
                "device": job["device"],
                "threads": job["threads"],
                "threads_label": job["threads_label"],
                "batch": batch,
                "frame": f"{frame[0]}x{frame[1]}",
                "precision": load.get("precision", "fp32") if variant == "fused" else "fp32",
                "head_precision": (
                    load.get("head_precision", subject.head_precision)
                    if variant == "fused"
                    else ("fp32" if variant == "eager" else None)
                ),
                "reps": latency.reps,
                "latency_ms": latency.scaled(1e3).to_dict(),
                "per_image_ms": {k: getattr(per_image, k) for k in ("mean", "p50", "p90", "p99")},
                "images_per_s": batch * latency.reps / latency.total,
                "model_bytes": model_bytes,
                "path": job.get("path"),
                "load_s": load.get("load_s"),
                "first_call_s": load.get("first_call_s"),
                "rss_before_load_mb": load.get("rss_before_load_mb"),
                "rss_after_load_mb": load.get("rss_after_load_mb"),
                "peak_rss_mb": point["peak_rss_mb"],
                "peak_rss_scope": "subprocess" if job["isolate"] else "process",
                "background_cpu": point.get("background_cpu"),
            }
        )
    return rows


def run_benchmark(config: BenchConfig) -> BenchResult:
    """Run every configuration of ``config`` and collect the rows.

    Raises:
        ValueError: No device left to run, or a bad setting.
    """
    start = time.perf_counter()
    if not config.backbones and not config.models:
        raise ValueError("nothing to benchmark: give at least one backbone or model file")
    if not config.batch_sizes or min(config.batch_sizes) < 1:
        raise ValueError(f"batch sizes must be positive, got {config.batch_sizes}")
    devices, notes = plan_devices(config.devices)
    for note in notes:
        _log(config, note)
    if not devices:
        raise ValueError("none of the requested devices is available: " + "; ".join(notes))
    threads = [system.resolve_threads(t) for t in config.threads]
    machine = system.machine_info()
    temporary = config.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="padim-bench-")) if temporary else Path(config.workdir)
    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    settings = config.to_dict()
    settings["devices_run"] = devices
    settings["threads_resolved"] = [{"label": label, "threads": count} for label, count in threads]
    settings["started"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        subjects = _subjects(config, workdir)
        outcomes: list[tuple[Subject, str, dict[str, Any], dict[str, Any]]] = []
        for subject in subjects:
            for device in devices:
                settings_for_device = threads if device == "cpu" else [("-", None)]
                for threads_label, count in settings_for_device:
                    for variant in VARIANTS:
                        job = _job(config, subject, variant, device, threads_label, count, notes)
                        if job is not None:
                            _log(config, f"{subject.label} {variant} on {device}, threads {threads_label}")
                            outcomes.append((subject, variant, job, _measure(config, job)))
        _retry_contended(config, outcomes, notes)
        for subject, variant, job, result in outcomes:
            path = job.get("path")
            rows.extend(_rows(subject, variant, job, result, files_bytes(path) if path else None))
            if result["error"] and not result["points"]:
                failures.append(
                    {
                        "model": subject.label,
                        "variant": variant,
                        "device": job["device"],
                        "threads_label": job["threads_label"],
                        "error": result["error"],
                    }
                )
            elif result["error"]:
                where = f"{subject.label} {variant} {job['device']} threads={job['threads_label']}"
                notes.append(f"{where}: {result['error']}; larger batch sizes not measured")
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)
    return BenchResult(
        machine=machine,
        runs=[settings],
        rows=rows,
        notes=notes,
        seconds=time.perf_counter() - start,
        failures=failures,
    )


def background(result: dict[str, Any]) -> float:
    """Largest background CPU share seen while a configuration was timed (0 when unknown)."""
    return max((point.get("background_cpu") or 0.0 for point in result["points"]), default=0.0)


def _measure(config: BenchConfig, job: dict[str, Any]) -> dict[str, Any]:
    if config.wait_idle > 0:
        system.wait_for_idle(timeout=config.wait_idle, threshold=CONTENDED, log=lambda m: _log(config, m))
    return run_job(job, isolate=config.isolate)


def _retry_contended(
    config: BenchConfig, outcomes: list[tuple[Subject, str, dict[str, Any], dict[str, Any]]], notes: list[str]
) -> None:
    """Measure again, up to ``config.retries`` times, configurations timed while others used the CPU.

    Keeps, per configuration, the attempt with the least background load (in place).
    """
    redone: list[str] = []
    for attempt in range(config.retries):
        pending = [i for i, (*_, result) in enumerate(outcomes) if background(result) > CONTENDED]
        if not pending:
            break
        _log(
            config,
            f"re-measuring {len(pending)} configuration(s) timed on a busy machine (round {attempt + 1})",
        )
        for i in pending:
            subject, variant, job, old = outcomes[i]
            _log(
                config,
                f"{subject.label} {variant} on {job['device']}, threads {job['threads_label']} "
                f"(was {background(old):.0%} busy)",
            )
            new = _measure(config, job)
            redone.append(subject.label)
            if new["points"] and (
                background(new) < background(old) or len(new["points"]) > len(old["points"])
            ):
                outcomes[i] = (subject, variant, job, new)
    if redone:
        notes.append(
            f"{', '.join(dict.fromkeys(redone))}: {len(redone)} configuration measurement(s) repeated "
            f"because other processes used more than {CONTENDED:.0%} of the CPU; the least contended attempt "
            "is kept"
        )


def _job(
    config: BenchConfig,
    subject: Subject,
    variant: str,
    device: str,
    threads_label: str,
    threads: int | None,
    notes: list[str],
) -> dict[str, Any] | None:
    """The worker spec of one configuration, or ``None`` when it does not apply."""
    base = {
        "job": "measure",
        "variant": variant,
        "device": device,
        "threads": threads,
        "threads_label": threads_label,
        "batch_sizes": sorted(set(config.batch_sizes)),
        "frame": list(config.frame),
        "policy": config.policy.to_dict(),
        "isolate": config.isolate,
    }
    if variant == "fused":
        return {**base, "engine": "ort", "path": subject.fused} if subject.fused else None
    if variant == "backbone":
        if not config.backbone or not subject.backbone_graph:
            return None
        return {**base, "engine": "ort", "path": subject.backbone_graph}
    if not config.eager:
        return None
    if device == "tensorrt":
        note = "eager rows are not run for tensorrt (PyTorch eager has no TensorRT path; see the cuda rows)"
        if note not in notes:
            notes.append(note)
        return None
    if subject.state is None:
        note = (
            f"{subject.label}: the eager module is built from the file's metadata with random weights and "
            "value-free head constants of the same shapes (PaDiM: identity Sigma^-1, PatchCore: a random "
            "bank of the file's size) (latency does not depend on the values)"
        )
        if note not in notes:
            notes.append(note)
    return {**base, "engine": "torch", "path": subject.state, "module": subject.module}
