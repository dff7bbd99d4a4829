"""OpenVINO (``--device openvino``) beside onnxruntime's CPU EP: latency, start-up, AUROC.

* ``latency``: R18-Rd100 (random-init, resize 256 / crop 224) on 480x640 frames, batch 1 and 8, 2
  threads: ORT fp32, INT8 QOperator and QDQ; OpenVINO fp32, INT8 QDQ, bf16 where the CPU has it, and
  ``--anomalib`` IR. Models opened once per batch size in this process; blocks of calls timed A/B
  interleaved in rotating order, medians of the blocks' per-call means; score differences vs ORT's.
* ``models``: the same for WR50-Rd550 and PatchCore (:data:`MODELS`), each its own results section.
* ``startup``: import, load and first call in fresh processes, ORT session vs OpenVINO with a warm
  cache (and, with ``--before``, an older source tree's OpenVINO backend), in rotating order; one cold.
* ``eval``: ``padim-eval``'s image / pixel AUROC of a MobileNetV2 PaDiM on the magnetic tile (../shared),
  ORT vs OpenVINO (goal: within 0.001).

``python benchmarks/openvino.py all`` writes ``results/openvino.{json,md}``; one section keeps the rest.
"""

from __future__ import annotations

import datetime as _dt
import gc
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
import harness  # noqa: E402
from harness import CROP, RESIZE, ROOT, TILES, WEIGHTS, Run, comma_list, header, ints, log, num  # noqa: E402

STEM = "openvino"
THREADS = 2
FRAME = (480, 640)
SECTIONS = ("latency", "models", "startup", "eval")
#: The ``models`` section: name -> (title, export arguments, variants); random-init, backbone r18 by default.
MODELS = {
    "wr50-rd550": ("WR50-Rd550", dict(backbone="wr50", dims=550), ()),  # INT8 calibration: OOM at 16 GB
    "patchcore-r18": ("PatchCore R18 d256 coreset 0.1", dict(method="patchcore", coreset=0.1), ("int8-qdq",)),
}


def _export(work: Path, stem: str, fit_images: int, variants: tuple[str, ...], **export: Any) -> dict:
    """An fp32 export (random-init) and its padim-calibrate variants, made once per work folder."""
    from padim_edge.calibration.pipeline import calibrate
    from padim_edge.export.pipeline import run_export

    fit = harness.synthetic_images(work / f"fit{fit_images}", fit_images)
    paths = {"fp32": work / f"{stem}.onnx"}
    if not paths["fp32"].exists():
        log(f"exporting {stem} (random-init) {export}")
        run_export(
            fit, paths["fp32"], resize=RESIZE, crop=CROP, random_init=True, device="cpu", parity_images=0,
            progress=False, **export,
        )  # fmt: skip
    for variant in variants:
        paths[variant] = work / f"{stem}-{variant}.onnx"
        if not paths[variant].exists():
            log(f"calibrating {stem} {variant}")
            calibrate(
                paths["fp32"], paths[variant], variant=variant, data=fit, calibration_images=8, progress=False
            )
    return paths


def _frames(batch: int) -> np.ndarray:
    """Smooth random uint8 frames of :data:`FRAME` (like camera images, not white noise)."""
    from PIL import Image

    shape = (batch, FRAME[0] // 16, FRAME[1] // 16, 3)
    coarse = np.random.default_rng(batch).integers(0, 256, shape, np.uint8)
    smooth = [Image.fromarray(c).resize(FRAME[::-1], Image.Resampling.BILINEAR) for c in coarse]
    return np.stack([np.asarray(image) for image in smooth])


def _configs(paths: dict[str, Path], extra: bool = True) -> tuple[list[tuple], list[str]]:
    """``(label, model, device, reference)`` rows (``extra``: QOperator, bf16), and notes on rows left out."""
    from padim_edge.runtime.providers import cpu_has_bf16

    rows = [("ORT fp32", paths["fp32"], "cpu", "ORT fp32")]
    rows += [("ORT INT8 QOperator", paths["int8-qoperator"], "cpu", "ORT INT8 QOperator")] if extra else []
    qdq = "int8-qdq" in paths
    rows += [("ORT INT8 QDQ", paths["int8-qdq"], "cpu", "ORT INT8 QDQ")] if qdq else []
    rows += [("OpenVINO fp32", paths["fp32"], "openvino", "ORT fp32")]
    rows += [("OpenVINO INT8 QDQ", paths["int8-qdq"], "openvino", "ORT INT8 QDQ")] if qdq else []
    if extra and cpu_has_bf16():
        return [*rows, ("OpenVINO bf16", paths["fp32"], "openvino-bf16", "ORT fp32")], []
    note = "OpenVINO bf16: not run, this CPU has no bf16 arithmetic (AVX512-BF16 / AMX)"
    return rows, [note] if extra else []


def _interleaved(configs: list[tuple], work: Path, rounds: int, batches: tuple) -> list[dict[str, Any]]:
    """Per batch size, every config opened (one compiled shape each); blocks of calls timed interleaved."""
    from padim_edge.runtime import ModelLoadError, PadimModel

    rows = []
    for batch in batches:
        models = {}
        for label, path, device, _ in configs:
            extra = {"ov_cache_dir": work / "ov-cache"} if "openvino" in device else {}
            own = _Anomalib(path, batch) if device == "anomalib" else None
            try:
                models[label] = own or PadimModel(path, device=device, threads=THREADS, **extra)
            except ModelLoadError as exc:  # refused (PatchCore INT8 QDQ on OpenVINO): logged, not timed
                log(f"{label}: not run: {exc}")
        frames = _frames(batch)
        scores = {label: np.asarray(m.run(frames)["score"]).ravel() for label, m in models.items()}
        for model in models.values():  # warm-up: compile / first calls
            model.run(frames)
        blocks: dict[str, list[float]] = {label: [] for label in models}
        order, calls = list(models), 5 if batch == 1 else 1
        log(f"batch {batch}: {rounds} rounds of {len(order)} configurations, {calls} call(s) per block")
        for r in range(rounds):
            for label in order[r % len(order) :] + order[: r % len(order)]:
                start = time.perf_counter()
                for _ in range(calls):
                    models[label].run(frames)
                blocks[label].append((time.perf_counter() - start) / calls)
        base = statistics.median(blocks["ORT fp32"])
        for label, _path, device, reference in [c for c in configs if c[0] in models]:
            median = statistics.median(blocks[label])
            rows.append(
                {
                    "config": label, "device": device, "batch": batch, "median_ms": median * 1e3,
                    "p10_ms": float(np.percentile(blocks[label], 10)) * 1e3,
                    "p90_ms": float(np.percentile(blocks[label], 90)) * 1e3,
                    "per_image_ms": median * 1e3 / batch, "time_vs_ort_fp32": median / base,
                    "speedup_vs_ort_fp32": base / median, "reference": reference,
                    "score_diff_vs_reference": float(np.abs(scores[label] - scores[reference]).max())
                    / float(np.abs(scores[reference]).max()),
                    "blocks": len(blocks[label]),
                }
            )  # fmt: skip
        del models
        gc.collect()
    return rows


class _Anomalib:
    """anomalib's exported OpenVINO IR run as its OpenVINOInferencer does: default compile settings (the
    CPU's: f32 here, LATENCY, all cores), float NCHW frames in [0, 1] (the graph resizes and normalises)."""

    def __init__(self, xml: Path, batch: int) -> None:
        import openvino

        core = openvino.Core()
        model = core.read_model(str(xml))
        model.reshape([batch, 3, *FRAME])  # static, as the other rows
        self.request = core.compile_model(model, "CPU").create_infer_request()

    def run(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255)
        return {"score": self.request.infer({0: x})["pred_score"].ravel()}


def latency(work: Path, rounds: int, anomalib: Path | None = None) -> dict[str, Any]:
    """R18-Rd100: every runtime and precision, batch 1 and 8 (see the module docstring)."""
    paths = _export(work, "r18", 16, ("int8-qdq", "int8-qoperator"), backbone="r18", dims=100)
    configs, notes = _configs(paths)
    label = "anomalib PaDiM R18, its OpenVINO IR"
    configs += [(label, anomalib, "anomalib", label)] if anomalib else []
    rows = _interleaved(configs, work, rounds, (1, 8))
    return {"threads": THREADS, "frame": list(FRAME), "rounds": rounds, "rows": rows, "notes": notes}


def models(work: Path, rounds: int, batches: tuple[int, ...], stem: str) -> dict[str, Any]:
    """One of :data:`MODELS` on ORT and OpenVINO, fp32 and INT8 QDQ, one batch size open at a time."""
    name, export, variants = MODELS[stem]
    paths = _export(work, stem, 64 if "coreset" in export else 16, variants, **export)
    rows = _interleaved(_configs(paths, extra=False)[0], work, rounds, batches)
    return {"name": name, "threads": THREADS, "frame": list(FRAME), "rounds": rounds, "rows": rows}


_PROBE = """import json, sys, time; t0 = time.perf_counter(); import numpy as np
from padim_edge.runtime import PadimModel; t1 = time.perf_counter(); path, dev, cache = sys.argv[1:4]
model = PadimModel(path, device=dev, threads=2, **({"ov_cache_dir": cache} if dev == "openvino" else {}))
t2 = time.perf_counter(); model.predict(np.full((480, 640, 3), 128, np.uint8)); t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_call_s": t3 - t2}))"""
PARTS = ("import_s", "load_s", "first_call_s")


def _probe(path: Path, device: str, cache: str, source: Path = ROOT) -> dict[str, float]:
    """One fresh process importing padim_edge from ``source``: its import, load and first call."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    command = [sys.executable, "-c", _PROBE, str(path), device, cache]
    done = subprocess.run(command, capture_output=True, text=True, cwd=source, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def startup(work: Path, repeats: int, before: Path | None) -> dict[str, Any]:
    """Load + first call in fresh processes, in rotating order: ORT vs OpenVINO's warm cache, and cold."""
    path = _export(work, "r18", 16, (), backbone="r18", dims=100)["fp32"]
    arms = {
        "ORT session": ("cpu", "", ROOT),
        "OpenVINO, warm cache": ("openvino", str(work / "ov-warm"), ROOT),
    }
    if before is not None:
        arms[f"OpenVINO, warm cache, {before.name}"] = ("openvino", str(work / "ov-before"), before)
    for arm in (a for a in arms.values() if a[0] == "openvino"):
        _probe(path, *arm)  # fills the cache for batch 1 at 480x640
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in arms}
    order = list(arms)
    for r in range(repeats):
        for label in order[r % len(order) :] + order[: r % len(order)]:
            runs[label].append(_probe(path, *arms[label]))
    runs["OpenVINO, no cache"] = [_probe(path, "openvino", "")]
    rows = []
    for label, probes in runs.items():
        row: dict[str, Any] = {"config": label, "runs": len(probes)}
        for key in PARTS:
            row[key] = statistics.median(p[key] for p in probes) * 1e3
        for key, parts in (("load_plus_first", PARTS[1:]), ("total", PARTS)):
            values = [sum(p[k] for k in parts) * 1e3 for p in probes]
            row[f"{key}_ms"] = statistics.median(values)
            row[f"{key}_p10_p90_ms"] = [float(np.percentile(values, 10)), float(np.percentile(values, 90))]
        rows.append(row)
    return {"model": "R18-Rd100 fp32, default graph, one 480x640 frame, 2 threads", "rows": rows}


def _auroc(model_path: Path, device: str) -> dict[str, Any]:
    from padim_edge.datasets import load_category
    from padim_edge.evaluation.metrics import image_auroc, pixel_auroc
    from padim_edge.evaluation.predictions import predict_category
    from padim_edge.runtime import PadimModel

    log(f"scoring the magnetic tile on {device}")
    started = time.perf_counter()
    model = PadimModel(model_path, device=device, threads=THREADS)
    predictions = predict_category(model, load_category(TILES), batch_size=8)
    masks = predictions.masks
    return {
        "device": device, "image_auroc": float(image_auroc(predictions.scores, predictions.labels)),
        "pixel_auroc": None if masks is None else float(pixel_auroc(predictions.maps, masks)),
        "test_images": int(predictions.labels.size), "seconds": time.perf_counter() - started,
        "scores": predictions.scores,
    }  # fmt: skip


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
    rows = [_auroc(path, device) for device in ("cpu", "openvino")]
    ort, ov = rows
    score_diff = float(np.abs(ov["scores"] - ort["scores"]).max() / np.abs(ort["scores"]).max())
    for row in rows:
        row.pop("scores")
    pixel = None if ort["pixel_auroc"] is None else abs(ov["pixel_auroc"] - ort["pixel_auroc"])
    return {
        "model": "MobileNetV2 PaDiM dims 100, resize 256 / crop 224, fitted on train/good", "rows": rows,
        "image_auroc_diff": abs(ov["image_auroc"] - ort["image_auroc"]),
        "pixel_auroc_diff": pixel, "max_score_diff": score_diff,
    }  # fmt: skip


def _provenance(section: dict[str, Any]) -> str:
    where = section.get("provenance") or {}
    loads = " -> ".join(f"{v:.1f}" for v in where.get("load_average", []))
    return f"`{where.get('command', '?')}` (finished {where.get('finished', '?')}, load average {loads}).\n"


def _latency(title: str, section: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    frames = f"{section['frame'][0]}x{section['frame'][1]} frames, {section['threads']} threads"
    head = ["config", "batch", "median ms", "p10-p90 ms", "time vs ORT fp32", "speed-up", "score diff (vs)"]
    body = [
        [
            r["config"], str(r["batch"]), num(r["median_ms"], ".1f"), f"{r['p10_ms']:.1f}-{r['p90_ms']:.1f}",
            num(r["time_vs_ort_fp32"], ".2f"), num(r["speedup_vs_ort_fp32"], ".2f") + "x",
            f"{r['score_diff_vs_reference']:.1e} ({r['reference']})",
        ]
        for r in rows
    ]  # fmt: skip
    return [
        f"## Latency: {title}, {frames}", "", _provenance(section),
        f"A/B interleaved in one process, {section['rounds']} rounds; median of the blocks' per-call means. "
        "Score diff: largest |score - reference's| over the batch, / the reference's max score.",
        "", *harness.table(head, body), "",
    ]  # fmt: skip


def _spread(row: dict[str, Any], key: str) -> str:
    return "{:.0f} ({:.0f}-{:.0f})".format(row.get(f"{key}_ms", 0), *row.get(f"{key}_p10_p90_ms", [0, 0]))


def markdown(result: dict[str, Any]) -> str:
    lines = header(result, "OpenVINO vs onnxruntime (CPU)")
    lat = result.get("latency")
    if lat:
        lines += [*_latency("R18-Rd100", lat, lat["rows"]), *[f"- {note}" for note in lat["notes"]], ""]
    for key in [k for k in result if k.startswith("models-")]:
        lines += _latency(f"{result[key]['name']} (random-init)", result[key], result[key]["rows"])
    up = result.get("startup")
    if up:
        lines += [
            f"## Start-up: {up['model']}", "", _provenance(up),
            "Fresh processes in rotating order, warm page cache; medians (p10-p90 over the runs). import = "
            "numpy + padim_edge.runtime (which imports onnxruntime); load = PadimModel(...) (for OpenVINO "
            "this imports openvino); 1st call = one predict; total = all three.", "",
            *harness.table(
                ["config", "runs", "import ms", "load ms", "1st call ms", "load + 1st call ms", "total ms"],
                [
                    [r["config"], str(r["runs"]), num(r["import_s"], ".0f"), num(r["load_s"], ".0f"),
                     num(r["first_call_s"], ".0f"), _spread(r, "load_plus_first"), _spread(r, "total")]
                    for r in up["rows"]
                ],
            ),
            "",
        ]  # fmt: skip
    ev = result.get("eval")
    if ev:
        lines += ["## padim-eval AUROC on the magnetic tile", ""]
    if ev and "skipped" in ev:
        lines += [f"Skipped: {ev['skipped']}", ""]
    elif ev:
        lines += [_provenance(ev), ev["model"] + ".", ""]
        lines += harness.table(
            ["device", "image AUROC", "pixel AUROC", "test images", "seconds"],
            [
                [r["device"], num(r["image_auroc"]), num(r["pixel_auroc"]), str(r["test_images"]),
                 num(r["seconds"], ".0f")]
                for r in ev["rows"]
            ],
        )  # fmt: skip
        lines += [
            "", f"|diff| image AUROC {ev['image_auroc_diff']:.5f}, pixel AUROC "
            f"{num(ev['pixel_auroc_diff'], '.5f')} (goal: <= 0.001); largest score difference "
            f"{ev['max_score_diff']:.1e} of the max score.", "",
        ]  # fmt: skip
    return "\n".join(lines)


@click.command()
@click.argument("sections", nargs=-1, type=click.Choice([*SECTIONS, "all"]))
@click.option(
    "--rounds", type=int, default=30, show_default=True, help="Latency, models: interleaved rounds."
)
@click.option(
    "--repeats", type=int, default=15, show_default=True, help="Start-up: fresh processes per config."
)
@click.option("--batches", default="1,8", show_default=True, help="Models: batch sizes.")
@click.option(
    "--anomalib", type=click.Path(dir_okay=False, exists=True, path_type=Path), help="Latency: + this IR."
)
@click.option("--models", "stems", default=",".join(MODELS), show_default=True, help="Models: which ones.")
@click.option(
    "--before", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Start-up: also time the padim_edge in this folder (e.g. an older commit's), named by the folder.",
)  # fmt: skip
@harness.output_options
def main(
    sections: tuple[str, ...], rounds: int, repeats: int, batches: str, anomalib: Path | None, stems: str,
    before: Path | None, output: Path, workdir: Path | None,
) -> None:  # fmt: skip
    """Measure SECTIONS (latency, models, startup, eval; default all) into <output>/openvino.{json,md}."""
    chosen = SECTIONS if not sections or "all" in sections else sections
    run = Run()
    previous = output / f"{STEM}.json"
    result: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    measure = {
        "latency": lambda work: latency(work, rounds, anomalib),
        "startup": lambda work: startup(work, repeats, before),
        "eval": evaluate,
    }
    for stem in comma_list(stems, tuple(MODELS), "--models"):
        measure[f"models-{stem}"] = lambda work, stem=stem: models(work, rounds, ints(batches), stem)
    with harness.workspace(workdir, "padim-ov-") as work:
        for section in [key for key in measure if key.split("-")[0] in chosen]:
            load = os.getloadavg()[0]
            result[section] = measure[section](work)
            # each section keeps its own provenance (a later run of another section keeps this one)
            finished = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            result[section]["provenance"] = {
                "command": run.command, "finished": finished, "load_average": [load, os.getloadavg()[0]]
            }  # fmt: skip
    import openvino

    result["openvino"] = openvino.get_version()
    run.stamp(result)
    harness.write_results(output, STEM, result, markdown(result))


if __name__ == "__main__":
    main()
