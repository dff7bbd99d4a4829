"""OpenVINO (``--device openvino``) beside onnxruntime's CPU EP: latency, start-up, AUROC.

* ``latency``: R18-Rd100 (random-init, resize 256 / crop 224, fitted on synthetic frames) on 480x640
  frames, batch 1 and 8, 2 threads: ORT fp32, ORT INT8 QOperator and QDQ, OpenVINO fp32, OpenVINO
  running the INT8 QDQ model, OpenVINO bf16 where the CPU has it. Every model is opened once in this
  process; blocks of calls are timed A/B interleaved in rotating order, medians of the per-call means of
  the blocks. Each OpenVINO row also gives its score difference from ORT on the same model.
* ``startup``: model load + first call in fresh processes, ORT session vs OpenVINO with a warm
  compiled-model cache (and a cold one, no cache), interleaved.
* ``eval``: ``padim-eval``'s image / pixel AUROC of a MobileNetV2 PaDiM on the magnetic tile (../shared),
  ORT vs OpenVINO (goal: within 0.001).

``python benchmarks/openvino.py all`` writes ``benchmarks/results/openvino.{json,md}``; a single
section keeps the others from the results file.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import numpy as np

# This file is named like the openvino package: its folder goes last on the path, so that ``import
# openvino`` finds the package and ``import harness`` still finds the suite's helpers.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]
from harness import (  # noqa: E402  (after the path fix above)
    CROP,
    RESIZE,
    ROOT,
    TILES,
    WEIGHTS,
    Run,
    header,
    log,
    num,
    output_options,
    synthetic_images,
    table,
    workspace,
    write_results,
)

STEM = "openvino"
THREADS = 2
FRAME = (480, 640)
SECTIONS = ("latency", "startup", "eval")


def _r18(work: Path) -> dict[str, Path]:
    """R18-Rd100 fp32 and its INT8 QDQ / QOperator variants (made once per work folder)."""
    from padim_edge.calibration.pipeline import calibrate
    from padim_edge.export.pipeline import run_export

    fit = synthetic_images(work / "fit", 16)
    paths = {"fp32": work / "r18.onnx", "qdq": work / "r18-qdq.onnx", "qoperator": work / "r18-qop.onnx"}
    if not paths["fp32"].exists():
        log("exporting R18-Rd100 (random-init)")
        run_export(
            fit, paths["fp32"], backbone="r18", dims=100, resize=RESIZE, crop=CROP, random_init=True,
            device="cpu", parity_images=0, progress=False,
        )  # fmt: skip
    for name, variant in (("qdq", "int8-qdq"), ("qoperator", "int8-qoperator")):
        if not paths[name].exists():
            log(f"calibrating {variant}")
            calibrate(
                paths["fp32"], paths[name], variant=variant, data=fit, calibration_images=8, progress=False
            )
    return paths


def _frames(batch: int) -> np.ndarray:
    """Smooth random uint8 frames of :data:`FRAME` (like camera images, not white noise)."""
    from PIL import Image

    rng = np.random.default_rng(batch)
    out = []
    for _ in range(batch):
        coarse = rng.integers(0, 256, (FRAME[0] // 16, FRAME[1] // 16, 3), dtype=np.uint8)
        out.append(np.asarray(Image.fromarray(coarse).resize(FRAME[::-1], Image.Resampling.BILINEAR)))
    return np.stack(out)


def _configs(paths: dict[str, Path]) -> tuple[list[tuple[str, Path, str, str]], list[str]]:
    """``(label, model, device, reference label)`` rows, and notes on rows left out."""
    from padim_edge.runtime.providers import cpu_has_bf16

    rows = [
        ("ORT fp32", paths["fp32"], "cpu", "ORT fp32"),
        ("ORT INT8 QOperator", paths["qoperator"], "cpu", "ORT INT8 QOperator"),
        ("ORT INT8 QDQ", paths["qdq"], "cpu", "ORT INT8 QDQ"),
        ("OpenVINO fp32", paths["fp32"], "openvino", "ORT fp32"),
        ("OpenVINO INT8 QDQ", paths["qdq"], "openvino", "ORT INT8 QDQ"),
    ]
    notes = []
    if cpu_has_bf16():
        rows.append(("OpenVINO bf16", paths["fp32"], "openvino-bf16", "ORT fp32"))
    else:
        notes.append("OpenVINO bf16: not run, this CPU has no bf16 arithmetic (AVX512-BF16 / AMX)")
    return rows, notes


def latency(work: Path, rounds: int) -> dict[str, Any]:
    """The interleaved latency table (see the module docstring)."""
    from padim_edge.runtime import PadimModel

    paths = _r18(work)
    configs, notes = _configs(paths)
    cache = work / "ov-cache"
    models = {}
    for label, path, device, _ in configs:
        extra = {"ov_cache_dir": cache} if "openvino" in device else {}
        models[label] = PadimModel(path, device=device, threads=THREADS, **extra)
    rows = []
    for batch in (1, 8):
        frames = _frames(batch)
        scores = {
            label: np.array([p.score for p in m.predict(frames, batch_size=batch)])
            for label, m in models.items()
        }
        for model in models.values():  # warm-up: compile / first calls
            for _ in range(2):
                model.run(frames)
        calls = 5 if batch == 1 else 1
        blocks: dict[str, list[float]] = {label: [] for label in models}
        order = list(models)
        log(f"batch {batch}: {rounds} rounds of {len(order)} configurations, {calls} call(s) per block")
        for r in range(rounds):
            for label in order[r % len(order) :] + order[: r % len(order)]:
                start = time.perf_counter()
                for _ in range(calls):
                    models[label].run(frames)
                blocks[label].append((time.perf_counter() - start) / calls)
        base = statistics.median(blocks["ORT fp32"])
        for label, _path, device, reference in configs:
            median = statistics.median(blocks[label])
            top = float(np.abs(scores[reference]).max())
            rows.append(
                {
                    "config": label,
                    "device": device,
                    "batch": batch,
                    "median_ms": median * 1e3,
                    "p10_ms": float(np.percentile(blocks[label], 10)) * 1e3,
                    "p90_ms": float(np.percentile(blocks[label], 90)) * 1e3,
                    "per_image_ms": median * 1e3 / batch,
                    "time_vs_ort_fp32": median / base,
                    "speedup_vs_ort_fp32": base / median,
                    "reference": reference,
                    "score_diff_vs_reference": float(np.abs(scores[label] - scores[reference]).max()) / top,
                    "blocks": len(blocks[label]),
                }
            )
    return {"threads": THREADS, "frame": list(FRAME), "rounds": rounds, "rows": rows, "notes": notes}


_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from padim_edge.runtime import PadimModel
t1 = time.perf_counter()
path, device, cache = sys.argv[1:4]
extra = {"ov_cache_dir": cache} if device == "openvino" else {}
model = PadimModel(path, device=device, threads=2, **extra)
t2 = time.perf_counter()
model.predict(np.full((480, 640, 3), 128, np.uint8))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_call_s": t3 - t2}))
"""


def _probe(path: Path, device: str, cache: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path), device, cache],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def startup(work: Path, repeats: int) -> dict[str, Any]:
    """Load + first call in fresh processes: ORT vs OpenVINO warm cache (interleaved), and cold."""
    path = _r18(work)["fp32"]
    cache = work / "ov-startup-cache"
    _probe(path, "openvino", str(cache))  # fills the cache for batch 1 at 480x640
    runs: dict[str, list[dict[str, float]]] = {
        "ORT session": [],
        "OpenVINO, warm cache": [],
        "OpenVINO, no cache": [],
    }
    for _ in range(repeats):
        runs["ORT session"].append(_probe(path, "cpu", ""))
        runs["OpenVINO, warm cache"].append(_probe(path, "openvino", str(cache)))
    runs["OpenVINO, no cache"].append(_probe(path, "openvino", ""))
    rows = []
    for label, probes in runs.items():
        rows.append(
            {
                "config": label,
                "runs": len(probes),
                **{
                    k: statistics.median(p[k] for p in probes) * 1e3
                    for k in ("import_s", "load_s", "first_call_s")
                },
                "load_plus_first_ms": statistics.median(p["load_s"] + p["first_call_s"] for p in probes)
                * 1e3,
            }
        )
    return {"model": "R18-Rd100 fp32, default graph, one 480x640 frame, 2 threads", "rows": rows}


def _auroc(model_path: Path, device: str) -> dict[str, Any]:
    from padim_edge.datasets import load_category
    from padim_edge.evaluation.metrics import image_auroc, pixel_auroc
    from padim_edge.evaluation.predictions import predict_category
    from padim_edge.runtime import PadimModel

    started = time.perf_counter()
    model = PadimModel(model_path, device=device, threads=THREADS)
    predictions = predict_category(model, load_category(TILES), batch_size=8)
    return {
        "device": device,
        "image_auroc": float(image_auroc(predictions.scores, predictions.labels)),
        "pixel_auroc": None
        if predictions.masks is None
        else float(pixel_auroc(predictions.maps, predictions.masks)),
        "test_images": int(predictions.labels.size),
        "seconds": time.perf_counter() - started,
        "scores": predictions.scores,
    }


def evaluate(work: Path) -> dict[str, Any]:
    """padim-eval's AUROC on the magnetic tile, ORT vs OpenVINO, same MobileNetV2 PaDiM model."""
    from padim_edge.export.pipeline import run_export

    if not (TILES / "train" / "good").is_dir() or not WEIGHTS.is_file():
        return {"skipped": f"needs {TILES} and {WEIGHTS} (../shared)"}
    path = work / "mnv2-tile.onnx"
    if not path.exists():
        log("fitting MobileNetV2 PaDiM on the magnetic tile")
        run_export(
            TILES / "train" / "good", path, backbone="mnv2", dims=100, resize=RESIZE, crop=CROP,
            weights_file=WEIGHTS, device="cpu", parity_images=0, progress=False,
        )  # fmt: skip
    rows = []
    for device in ("cpu", "openvino"):
        log(f"scoring the magnetic tile on {device}")
        rows.append(_auroc(path, device))
    ort, ov = rows
    score_diff = float(np.abs(ov["scores"] - ort["scores"]).max() / np.abs(ort["scores"]).max())
    for row in rows:
        row.pop("scores")
    return {
        "model": "MobileNetV2 PaDiM dims 100, resize 256 / crop 224, fitted on train/good",
        "rows": rows,
        "image_auroc_diff": abs(ov["image_auroc"] - ort["image_auroc"]),
        "pixel_auroc_diff": None
        if ort["pixel_auroc"] is None
        else abs(ov["pixel_auroc"] - ort["pixel_auroc"]),
        "max_score_diff": score_diff,
    }


def _provenance(section: dict[str, Any]) -> str:
    where = section.get("provenance") or {}
    loads = " -> ".join(f"{v:.1f}" for v in where.get("load_average", []))
    return f"`{where.get('command', '?')}` (finished {where.get('finished', '?')}, load average {loads}).\n"


def markdown(result: dict[str, Any]) -> str:
    lines = header(result, "OpenVINO vs onnxruntime (CPU)")
    lat = result.get("latency")
    if lat:
        lines += [
            f"## Latency: R18-Rd100, {lat['frame'][0]}x{lat['frame'][1]} frames, {lat['threads']} threads",
            "",
            _provenance(lat),
            f"A/B interleaved in one process, {lat['rounds']} rounds; median of the blocks' per-call means. "
            "Score diff: largest |score - reference's| over the batch, / the reference's max score.",
            "",
            *table(
                [
                    "config",
                    "batch",
                    "median ms",
                    "p10-p90 ms",
                    "time vs ORT fp32",
                    "speed-up",
                    "score diff (vs)",
                ],
                [
                    [
                        r["config"],
                        str(r["batch"]),
                        num(r["median_ms"], ".1f"),
                        f"{r['p10_ms']:.1f}-{r['p90_ms']:.1f}",
                        num(r["time_vs_ort_fp32"], ".2f"),
                        num(r["speedup_vs_ort_fp32"], ".2f") + "x",
                        f"{r['score_diff_vs_reference']:.1e} ({r['reference']})",
                    ]
                    for r in lat["rows"]
                ],
            ),
            "",
            *[f"- {note}" for note in lat["notes"]],
            "",
        ]
    up = result.get("startup")
    if up:
        lines += [
            f"## Start-up: {up['model']}",
            "",
            _provenance(up),
            "Fresh processes, medians; load = PadimModel(...), first call = one predict.",
            "",
            *table(
                ["config", "runs", "import ms", "load ms", "first call ms", "load + first call ms"],
                [
                    [
                        r["config"],
                        str(r["runs"]),
                        num(r["import_s"], ".0f"),
                        num(r["load_s"], ".0f"),
                        num(r["first_call_s"], ".0f"),
                        num(r["load_plus_first_ms"], ".0f"),
                    ]
                    for r in up["rows"]
                ],
            ),
            "",
        ]
    ev = result.get("eval")
    if ev:
        lines += ["## padim-eval AUROC on the magnetic tile", ""]
        if "skipped" in ev:
            lines += [f"Skipped: {ev['skipped']}", ""]
        else:
            lines += [
                _provenance(ev),
                ev["model"] + ".",
                "",
                *table(
                    ["device", "image AUROC", "pixel AUROC", "test images", "seconds"],
                    [
                        [
                            r["device"],
                            num(r["image_auroc"]),
                            num(r["pixel_auroc"]),
                            str(r["test_images"]),
                            num(r["seconds"], ".0f"),
                        ]
                        for r in ev["rows"]
                    ],
                ),
                "",
                f"|diff| image AUROC {ev['image_auroc_diff']:.5f}, pixel AUROC "
                f"{num(ev['pixel_auroc_diff'], '.5f')} (goal: <= 0.001); largest score difference "
                f"{ev['max_score_diff']:.1e} of the max score.",
                "",
            ]
    return "\n".join(lines)


@click.command()
@click.argument("sections", nargs=-1, type=click.Choice([*SECTIONS, "all"]))
@click.option("--rounds", type=int, default=30, show_default=True, help="Latency: interleaved rounds.")
@click.option(
    "--repeats", type=int, default=3, show_default=True, help="Start-up: fresh processes per config."
)
@output_options
def main(sections: tuple[str, ...], rounds: int, repeats: int, output: Path, workdir: Path | None) -> None:
    """Measure SECTIONS (latency, startup, eval; default all) into <output>/openvino.{json,md}."""
    chosen = SECTIONS if not sections or "all" in sections else sections
    run = Run()
    previous = output / f"{STEM}.json"
    result: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    measure = {"latency": lambda work: latency(work, rounds), "startup": lambda work: startup(work, repeats)}
    measure["eval"] = evaluate
    with workspace(workdir, "padim-ov-") as work:
        for section in chosen:
            load = os.getloadavg()[0]
            result[section] = measure[section](work)
            # each section keeps its own provenance (a later run of another section keeps this one)
            result[section]["provenance"] = {
                "command": run.command,
                "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "load_average": [load, os.getloadavg()[0]],
            }
    import openvino

    result["openvino"] = openvino.get_version()
    run.stamp(result)
    write_results(output, STEM, result, markdown(result))


if __name__ == "__main__":
    main()
