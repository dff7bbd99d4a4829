"""Plan and run a benchmark: models x devices x threads x engines, each swept over batch sizes.

Every (model, engine, device, threads) configuration is measured by its own worker: by default a
fresh Python process (:mod:`padim_edge.bench.worker`), so its peak RSS is that configuration's own
and an onnxruntime worker never has torch loaded. ``isolate=False`` runs everything in this process
(fast, for tests); rows then say their peak RSS is the whole process's.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from padim_edge.bench import system
from padim_edge.bench.config import CONTENDED, DEFAULT_BATCH_SIZES, VARIANTS, BenchConfig, BenchResult
from padim_edge.bench.subjects import Subject, plan_subjects, progress, read_model_metadata
from padim_edge.bench.timing import Summary
from padim_edge.bench.worker import files_bytes, run_job
from padim_edge.devices import CPU_DEVICES, OPENVINO_DEVICES

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


def plan_devices(requested: list[str] | None) -> tuple[list[str], list[str]]:
    """Devices to run and notes for those skipped (provider missing from this build).

    Raises:
        ValueError: An unknown device name.
    """
    from padim_edge.runtime.providers import CONCRETE_DEVICES, DEVICES, available_devices

    have = available_devices()
    if requested is None:  # OpenVINO is another runtime: its rows are asked for (--device cpu,openvino)
        return [d for d in have if d not in OPENVINO_DEVICES], []
    notes = []
    devices = []
    for device in requested:
        if device not in CONCRETE_DEVICES:
            raise ValueError(f"unknown device {device!r}; choose from {', '.join(CONCRETE_DEVICES)}")
        if device in have:
            devices.append(device)
        elif device in OPENVINO_DEVICES:
            bf16 = DEVICES[device].precision == "bf16"
            why = "this CPU has no bf16 (AVX512-BF16 / AMX)" if bf16 else "pip install 'padim-edge[openvino]'"
            notes.append(f"{device}: skipped, {why}")
        else:
            notes.append(
                f"{device}: skipped, {DEVICES[device].providers[0]} is not in this onnxruntime build "
                f"(it has {', '.join(system.onnxruntime_info()[1])})"
            )
    return devices, notes


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
        progress(config, note)
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
        subjects = plan_subjects(config, workdir)
        outcomes: list[tuple[Subject, str, dict[str, Any], dict[str, Any]]] = []
        for subject in subjects:
            for device in devices:
                settings_for_device = threads if device in CPU_DEVICES else [("-", None)]
                for threads_label, count in settings_for_device:
                    for variant in VARIANTS:
                        job = _job(config, subject, variant, device, threads_label, count, notes)
                        if job is not None:
                            progress(
                                config, f"{subject.label} {variant} on {device}, threads {threads_label}"
                            )
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
        system.wait_for_idle(timeout=config.wait_idle, threshold=CONTENDED, log=lambda m: progress(config, m))
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
        progress(
            config,
            f"re-measuring {len(pending)} configuration(s) timed on a busy machine (round {attempt + 1})",
        )
        for i in pending:
            subject, variant, job, old = outcomes[i]
            progress(
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
    if device in OPENVINO_DEVICES:  # whole models only (PadimModel): the fused rows, beside onnxruntime's
        return (
            {**base, "engine": "openvino", "path": subject.fused}
            if subject.fused and variant == "fused"
            else None
        )
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
