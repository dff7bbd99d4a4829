"""Issue 12: does INT8 lose accuracy, on which data, and does the fidelity report see it coming?

Two parts (``--parts``, default both; a run replaces only its parts in an existing JSON):

* ``accuracy``: on three MVTec-layout sets with different statistics (magnetic tile from
  ``$PADIM_EDGE_SHARED/data``, skipped with a message when absent; the procedural woven-fabric demo
  set; the dark, low-contrast texture set; the last two generated into ``--workdir``), PaDiM MobileNetV2
  with the real ImageNet weights (dims 100, resize 256, crop 224) is fitted on ``train/good`` (at most
  ``--max-train`` images, an even spread) and exported. ``padim_edge.calibration.calibrate`` then makes
  seven variants: ``int8-qoperator`` and ``int8-qdq`` each *plain* (``refit=False, float_convs=0``, the
  behaviour before issue 12), *default* (what ``--int8`` does now: Gaussians refitted on the INT8
  backbone's embeddings of the fit's own images, every conv int8) and *refit + 2 float convs* (the
  other lever measured: the first two convs stay float32), and ``fp16``. Calibration frames come
  from ``train/good`` (``--calibration-images``), the fidelity report's frames from ``test/good``. Each
  model and the float32 one are scored on the test split (at most ``--max-test`` images, an even spread)
  through the torch-free runtime with padim-eval's code (``predict_category``; image AUROC, pixel
  AUROC, PRO over all test images). Per variant: the AUROCs, their deltas vs float32, the fidelity
  report (synthetic-defect image / pixel AUROC of fp32 and the variant on ``test/good`` frames with
  pasted defects, Spearman, median map error, median score ratio, LOW flag) and the calibration time.
  Calibration records from an earlier run without the synthetic figures get their fidelity report
  re-measured on the same frames (the variant files are reused).
* ``latency``: R18-Rd100 random-init (latency does not depend on the weights) fitted on 16 demo frames;
  float32 vs ``int8-qoperator`` plain / default / refit + 2 float convs and ``int8-qdq`` default, batch
  1 and 8, ONE onnxruntime thread, end to end (``PadimModel.run`` on random 224x224 uint8 frames) and
  the backbone cut (``onnx.utils.extract_model`` from the preprocessed frames to the tapped maps).
  Models are timed in interleaved rounds, one session alive at a time; per round the mean process CPU
  time per call and the median wall time per call; the report gives the median of the rounds with their
  min-max. CPU time is the steady figure on a busy shared machine (wall time stretches with the other
  jobs).

Goals (issue 12): each INT8 method's image and pixel AUROC within 0.01 of float32 on every set; the
INT8 end-to-end speed-up (default) within :data:`SPEEDUP_TOLERANCE` of the plain one at batch 1 and 8
(a refit only changes constants; float convs would change the graph); the fidelity Spearman shown
beside the AUROC loss for every set and method, with the rank correlation between them across rows;
here also the synthetic-defect AUROC drop, the label-free predictor (``int8_predictors``).

Modules: ``int8_sets`` (settings, data sets), ``int8_eval`` (accuracy part), ``int8_latency`` (latency
part), ``int8_predictors`` (predictors vs loss), ``int8_report`` (goals, Markdown); this file is the
command line. ``--parts accuracy`` leaves the latency section of an existing JSON as it was (the report
labels it with its own run date).

Usage::

    python benchmarks/int8_accuracy.py                               # everything, defaults
    python benchmarks/int8_accuracy.py --parts accuracy --workdir /tmp/int8work   # reuse models
    python benchmarks/int8_accuracy.py --quick --output /tmp/int8smoke --workdir /tmp/int8smokework

Runtime on 2 shared cores: ``--quick`` about 2.5 minutes (measured: accuracy 122 s, latency 29 s);
the full run (200 train, all test images, 100 calibration frames, 5 rounds) is estimated at 15-25
minutes: 15 calibrations (fit-size refits, 100 calibration frames, 2 x 50 fidelity frames each), three
200-image fits, 18 evaluations (about 17 s per model on the magnetic tile's 630 test images, most of
it PRO) and five latency rounds of about 40 s plus the idle waits. Models, generated sets and per-variant
calibration records in ``--workdir`` are reused on the next run with the same settings.

Writes ``<output>/int8_accuracy.json`` and ``<output>/int8_accuracy.md`` (default
``benchmarks/results``).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_eval import relimit, run_accuracy
from int8_latency import run_latency
from int8_predictors import fidelity_correlation, fidelity_rows, flag_agreement
from int8_report import accuracy_goals, latency_goals, render
from int8_sets import (
    MAX_AUROC_DELTA,
    PARTS,
    RESULTS,
    SETS,
    SPEEDUP_TOLERANCE,
    WEIGHTS,
    log,
)

from padim_edge.atomic import write_json, write_text


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--parts", default=",".join(PARTS), show_default=True, help="Comma-separated parts to run.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path),
    help="Keep / reuse generated sets, models and calibration records here (default: temporary).",
)  # fmt: skip
@click.option("--sets", default=",".join(SETS), show_default=True, help="Comma-separated data sets.")
@click.option("--max-train", type=click.IntRange(min=2), default=200, show_default=True, help="Fit images.")
@click.option("--max-test", type=click.IntRange(min=2), default=None, help="Test images (default: all).")
@click.option("--calibration-images", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True, help="Latency rounds.")
@click.option(
    "--wait-idle", type=float, default=20.0, show_default=True,
    help="Before each latency round, wait up to this many seconds for other processes to leave the CPU.",
)  # fmt: skip
@click.option(
    "--render-only", is_flag=True,
    help="Measure nothing: judge the stored fidelity figures against today's limits and rewrite the report.",
)  # fmt: skip
@click.option("--quick", is_flag=True, help="Smoke run: 30 train, 40 test, 20 calibration images, 1 round.")
def main(
    parts: str,
    output: Path,
    workdir: Path | None,
    sets: str,
    max_train: int,
    max_test: int | None,
    calibration_images: int,
    rounds: int,
    wait_idle: float,
    render_only: bool,
    quick: bool,
) -> None:
    """Measure INT8 (plain / default / float convs) and FP16 accuracy on three sets, and INT8 latency."""
    from padim_edge.bench.system import machine_info

    chosen = [p.strip() for p in parts.split(",") if p.strip()]
    unknown = set(chosen) - set(PARTS)
    if unknown:
        raise click.BadParameter(f"unknown parts {sorted(unknown)}; choose from {', '.join(PARTS)}")
    names = tuple(s.strip() for s in sets.split(",") if s.strip())
    if set(names) - set(SETS):
        raise click.BadParameter(
            f"unknown sets {sorted(set(names) - set(SETS))}; choose from {', '.join(SETS)}"
        )
    if not WEIGHTS.is_file() and "accuracy" in chosen:
        raise click.ClickException(f"needs {WEIGHTS} (set PADIM_EDGE_SHARED to the project's shared folder)")
    if quick:
        max_train, max_test, calibration_images, rounds, wait_idle = 30, 40, 20, 1, 0.0
    output.mkdir(parents=True, exist_ok=True)
    path = output / "int8_accuracy.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    if render_only:
        chosen = []
        for section in (result.get("accuracy") or {}).get("sets", {}).values():
            for row in section.get("rows", {}).values():
                relimit(row)
    temporary = workdir is None
    work = Path(tempfile.mkdtemp(prefix="padim-int8-bench-")) if temporary else workdir
    work.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/int8_accuracy.py", *sys.argv[1:]])
    try:
        for part in chosen:
            started = time.perf_counter()
            log(f"== {part}")
            if part == "accuracy":
                section = run_accuracy(
                    work, sets=names, max_train=max_train, max_test=max_test,
                    calibration_images=calibration_images,
                )  # fmt: skip
            else:
                section = run_latency(
                    work,
                    rounds=rounds,
                    calibration_images=calibration_images,
                    wait_idle=wait_idle,
                    quick=quick,
                )
            section.update(
                seconds=time.perf_counter() - started,
                command=command,
                quick=quick,
                machine=machine_info(),
                finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            )
            result[part] = section
            write_json(path, result)
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    rows = fidelity_rows(result["accuracy"]) if "accuracy" in result else []
    result["goals"] = {
        "max_auroc_delta": MAX_AUROC_DELTA,
        "speedup_tolerance": SPEEDUP_TOLERANCE,
        "accuracy": accuracy_goals(result["accuracy"]) if "accuracy" in result else [],
        "latency": latency_goals(result["latency"]) if "latency" in result else [],
        "fidelity_rows": rows,
        "fidelity_correlation": fidelity_correlation(rows) if rows else {},
        "flag_agreement": flag_agreement(rows) if rows else {},
    }
    write_json(path, result)
    write_text(output / "int8_accuracy.md", render(result))
    log(f"wrote {path} and {output / 'int8_accuracy.md'}")


if __name__ == "__main__":
    main()
