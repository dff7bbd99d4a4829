"""Does the fidelity verdict of padim-calibrate agree with the real AUROC loss, row by row?

Rebuilds the variants of the INT8 and PatchCore-INT8 benchmarks (MobileNetV2 on the three sets of
:mod:`harness`) with the ``padim_edge.calibration.calibrate`` calls they use (fidelity report on
``test/good``), plus one deliberately broken PaDiM variant per set (``int8-qoperator`` calibrated on 20
blank frames), scores every model on the set's whole test split (padim-eval's code) and judges each
stored fidelity record with today's :attr:`padim_edge.calibration.fidelity.Fidelity.verdict`.

Goals: no ``low fidelity`` where the real image and pixel loss are both <= 0.005; ``low fidelity`` where
a real loss is > 0.01 and on the broken rows.

Usage::

    python benchmarks/fidelity_verdicts.py --workdir /tmp/fv            # ~1 h on 2 cores
    python benchmarks/fidelity_verdicts.py --workdir /tmp/fv --no-build # judge what it holds again

Models and records in ``--workdir`` are reused. Writes ``<output>/fidelity_verdicts.{json,md}``.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import refresh_fidelity
from int8_sets import CROP, DIMS, RESIZE, RESULTS, SETS, TILES, WEIGHTS, finite, log, prepare_fit

from padim_edge.atomic import write_json, write_text

PADIM_VARIANTS = (  # the cheapest first
    ("int8-qoperator plain", "int8-qoperator", False, 0),
    ("int8-qdq plain", "int8-qdq", False, 0),
    ("fp16", "fp16", None, None),
    ("int8-qoperator default", "int8-qoperator", None, None),
    ("int8-qdq default", "int8-qdq", None, None),
    ("int8-qoperator refit + 2 float convs", "int8-qoperator", True, 2),
    ("int8-qdq refit + 2 float convs", "int8-qdq", True, 2),
)
PATCHCORE_VARIANTS = (
    ("int8-qoperator, bank kept", "int8-qoperator", False),
    ("int8-qoperator, bank reselected", "int8-qoperator", None),
    ("int8-qdq, bank kept", "int8-qdq", False),
    ("int8-qdq, bank reselected", "int8-qdq", None),
)
BROKEN = "int8-qoperator calibrated on blank frames"
#: ``--no-build`` clears it: judge only what the workdir holds.
BUILD = {"on": True}


class NotBuilt(Exception):
    """A model or record ``--no-build`` would have to make."""


def _built(*paths: Path) -> None:
    if not BUILD["on"] and not all(path.is_file() for path in paths):
        raise NotBuilt(", ".join(str(p) for p in paths))


#: A row with at most this real loss (image and pixel) must not be called low fidelity.
NO_LOSS = 0.005
#: A row with more than this real loss should be.
REAL_LOSS = 0.01


def make_variant(
    fp32: Path, out: Path, variant: str, refit: bool | None, float_convs: int | None, *,
    root: Path, fit_dir: Path, calibration_images: int,
) -> dict[str, Any]:  # fmt: skip
    """Calibrate one variant as the INT8 benchmarks do (or reuse it and its record from ``out``'s folder)."""

    record_path = out.with_suffix(".calibration.json")
    _built(out, record_path)
    if out.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        if "verdict" not in (record.get("fidelity") or {"verdict": None}):  # made before the verdict
            record["fidelity"] = refresh_fidelity(fp32, out, root)
            write_json(record_path, record)
        return record
    from accuracy import calibrate_variant

    return calibrate_variant(fp32, out, variant, refit, float_convs, root, fit_dir, calibration_images)


def real_auroc(model: Path, root: Path) -> dict[str, float | None]:
    """Image and pixel AUROC of ``model`` on the set's whole test split (cached beside the model)."""
    from padim_edge.datasets import load_category
    from padim_edge.evaluation.metrics import image_auroc, pixel_auroc
    from padim_edge.evaluation.predictions import predict_category
    from padim_edge.runtime import PadimModel

    cache = model.with_suffix(".auroc.json")
    _built(cache)
    if cache.is_file():
        return json.loads(cache.read_text())
    log(f"scoring {model.name} on the test split")
    predictions = predict_category(PadimModel(model, device="cpu"), load_category(root), batch_size=8)
    row = {
        "image_auroc": finite(image_auroc(predictions.scores, predictions.labels)),
        "pixel_auroc": None
        if predictions.masks is None
        else finite(pixel_auroc(predictions.maps, predictions.masks)),
    }
    write_json(cache, row)
    return row


def _blank_folder(here: Path) -> Path:
    folder = here / "blank"
    if not folder.is_dir():
        folder.mkdir()
        for index in range(20):
            Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(folder / f"blank{index:02d}.png")
    return folder


def _broken(fp32: Path, here: Path, root: Path) -> dict[str, Any]:
    """The blank-calibrated variant: its fidelity record and its real AUROC on the test split."""
    from padim_edge.calibration.pipeline import calibrate

    out = here / "mnv2-int8-qoperator-blank-calibration.onnx"
    record_path = out.with_suffix(".calibration.json")
    _built(record_path)
    if record_path.is_file():
        return json.loads(record_path.read_text())
    if out.is_file():
        fidelity = refresh_fidelity(fp32, out, root)
    else:
        report = calibrate(
            fp32, out, variant="int8-qoperator", data=_blank_folder(here), validate=root / "test" / "good",
            calibration_images=20, device="cpu", progress=False, refit=False, float_convs=0,
        )  # fmt: skip
        fidelity = None if report.fidelity is None else report.fidelity.record()
    record = {"fidelity": fidelity}
    write_json(record_path, record)
    return record


def _prepare(name: str, work: Path, folder: str, max_train: int | None) -> tuple[Path, Path, Path] | None:
    """``(root, here, fit_dir)`` of a set; with ``--no-build`` the existing folders, nothing generated."""
    if BUILD["on"]:
        ready, _ = prepare_fit(name, work, folder=folder, max_train=max_train)
        return None if ready is None else ready[:3]
    root = TILES if name == "magnetic_tile" else work / "data" / name
    here = work / folder
    return (root, here, here / "fit") if here.is_dir() and root.is_dir() else None


def build(method: str, name: str, work: Path, chosen: set[str]) -> dict[str, dict[str, Any]]:
    """One set's calibration records with their real AUROC, by row label (the benchmarks' file names)."""
    from padim_edge.export.pipeline import run_export

    padim = method == "padim"
    folder = f"{name}-train200-cal100" if padim else f"patchcore-{name}-coreset0.1-trainall-cal100"
    ready = _prepare(name, work, folder, 200 if padim else None)
    if ready is None:
        return {}
    root, here, fit_dir = ready
    fp32 = here / ("mnv2.onnx" if padim else "mnv2-patchcore.onnx")
    _built(fp32)
    if not fp32.is_file():
        log(f"{name}: fitting {method}")
        extra = {"dims": DIMS} if padim else {"method": "patchcore", "coreset": 0.1}
        run_export(
            fit_dir, fp32, backbone="mnv2", resize=RESIZE, crop=CROP, weights_file=WEIGHTS, device="cpu",
            parity_images=2, progress=False, **extra,
        )  # fmt: skip
    settings = {row[0]: row[1:] for row in (PADIM_VARIANTS if padim else PATCHCORE_VARIANTS)}
    records = {"fp32": real_auroc(fp32, root)}
    for label in [*([BROKEN] if padim else []), *settings]:
        if label not in chosen:
            continue
        log(f"{name}: {label}")
        try:
            if label == BROKEN:
                out = here / "mnv2-int8-qoperator-blank-calibration.onnx"
                record = _broken(fp32, here, root)
            else:
                variant, refit, float_convs = (*settings[label], None)[:3]
                stem = label.replace(", ", "-").replace(" ", "-")
                out = here / (f"mnv2-{stem}.onnx" if padim else f"mnv2-patchcore-{stem}.onnx")
                record = make_variant(
                    fp32, out, variant, refit, float_convs, root=root, fit_dir=fit_dir, calibration_images=100
                )
            records[label] = {**record, **real_auroc(out, root)}
        except NotBuilt as exc:
            log(f"{name}: {label}: not built ({exc})")
    return records


def _loss(row: dict[str, Any], fp32: dict[str, Any], key: str) -> float | None:
    value, base = row.get(key), fp32.get(key)
    return None if value is None or base is None else base - value


def judge_row(method: str, name: str, label: str, record: dict, fp32: dict, stored: dict) -> dict[str, Any]:
    """One results row: the real loss, the report's figures, and today's verdict."""
    from padim_edge.calibration.fidelity import LOW, Fidelity

    fidelity = record.get("fidelity") or {}
    report = Fidelity.from_record(fidelity) if fidelity else None
    image_loss, pixel_loss = _loss(record, fp32, "image_auroc"), _loss(record, fp32, "pixel_auroc")
    losses = [v for v in (image_loss, pixel_loss) if v is not None]
    verdict = None if report is None else report.verdict
    worst = max(losses) if losses else None
    expected = "any"
    if worst is not None and worst <= NO_LOSS:
        expected = "not low"
    elif (worst is not None and worst > REAL_LOSS) or label == BROKEN:
        expected = "low"
    figures = (
        "synthetic_image_auroc",
        "synthetic_image_drop",
        "synthetic_pixel_auroc",
        "synthetic_pixel_drop",
    )
    return {
        "method": method, "set": name, "variant": label,
        "real_image_loss": image_loss, "real_pixel_loss": pixel_loss,
        **{key: fidelity.get(key) for key in (*figures, "synthetic_reference_low", "separation", "frames")},
        "verdict": verdict, "reasons": [] if report is None else report.problems,
        "old_report_low": ((stored.get(label) or {}).get("fidelity") or {}).get("low"),
        "expected": expected,
        "meets_goal": verdict is not None and (expected == "any" or (expected == "low") == (verdict == LOW)),
    }  # fmt: skip


def _stored(path: Path, name: str) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    sets = (data.get("accuracy") or data).get("sets", {})
    return (sets.get(name) or {}).get("rows", {})


def _num(value: Any, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(float(value), fmt)


def render(result: dict[str, Any]) -> str:
    """The Markdown table of every row."""
    lines = [
        "# Fidelity verdicts vs real AUROC loss",
        "",
        f"Command: `{result['command']}`; finished {result['finished']}; machine: {result['machine']}.",
        "",
        "Real loss = fp32 AUROC minus variant AUROC on the set's test split (positive: the variant lost). "
        "Synthetic figures: the fidelity report on 50 test/good frames with pasted defects, `reference -> "
        "variant`, and the 95 % paired bootstrap interval of the drop. Separation: the variant's map change "
        "over the reference's defect-to-normal gap. Old report: the verdict stored with the benchmark's "
        f"earlier build of the row. Goal: no `low fidelity` where both real losses are <= {NO_LOSS}; `low "
        f"fidelity` where a real loss is > {REAL_LOSS} and on the broken rows.",
        "",
        "| method | set | variant | real image / pixel loss | synthetic image AUROC | drop 95 % | "
        "synthetic pixel AUROC | drop 95 % | separation | old report | verdict | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        pairs = [
            "n/a" if not row[key] else f"{_num(row[key][0])} -> {_num(row[key][1])}"
            for key in ("synthetic_image_auroc", "synthetic_pixel_auroc")
        ]
        drops = [
            "n/a" if not row[key] else f"[{_num(row[key][0])}, {_num(row[key][1])}]"
            for key in ("synthetic_image_drop", "synthetic_pixel_drop")
        ]
        old = {True: "LOW", False: "ok", None: "-"}[row["old_report_low"]]
        goal = "met" if row["meets_goal"] else "MISSED"
        lines.append(
            f"| {row['method']} | {row['set']} | {row['variant']} | {_num(row['real_image_loss'], '+.4f')} / "
            f"{_num(row['real_pixel_loss'], '+.4f')} | {pairs[0]} | {drops[0]} | {pairs[1]} | {drops[1]} | "
            f"{_num(row['separation'], '.3f')} | {old} | **{row['verdict']}** | {goal} ({row['expected']}) |"
        )
    summary = result["summary"]
    lines += [
        "",
        f"Rows: {summary['rows']}; goal met on {summary['met']}; `low fidelity` {summary['low']}, `ok` "
        f"{summary['ok']}, `not enough evidence` {summary['unsure']}; the old report flagged "
        f"{summary['old_low']} of the {summary['old_rows']} rows it judged.",
        "",
    ]
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS)
@click.option("--sets", default=",".join(SETS), show_default=True)
@click.option("--methods", default="padim,patchcore", show_default=True)
@click.option(
    "--skip",
    default="",
    help="Comma-separated variant labels (or parts of them) to leave out, e.g. 'float convs'.",
)
@click.option("--no-build", is_flag=True, help="Judge only the models and records the workdir holds.")
def main(workdir: Path, output: Path, sets: str, methods: str, skip: str, no_build: bool) -> None:
    """Rebuild the INT8 benchmarks' variants and judge each with today's fidelity verdict."""
    from padim_edge.bench.system import machine_info

    BUILD["on"] = not no_build
    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    left_out = [part.strip() for part in skip.split(",") if part.strip()]
    labels = [BROKEN] + [row[0] for row in PADIM_VARIANTS + PATCHCORE_VARIANTS]
    kept = {label for label in labels if not any(part in label for part in left_out)}
    rows = []
    for name in (s.strip() for s in sets.split(",") if s.strip()):
        for method in chosen:
            records = build(method, name, workdir, kept)
            stored = _stored(
                RESULTS / ("int8_accuracy.json" if method == "padim" else "patchcore_int8.json"), name
            )
            fp32 = records.pop("fp32", {})
            rows += [
                judge_row(method, name, label, record, fp32, stored) for label, record in records.items()
            ]
    info = machine_info()
    result = {
        "command": " ".join(["python", "benchmarks/fidelity_verdicts.py", *sys.argv[1:]]),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{info.get('cpu')}, {info.get('usable_cpus')} CPUs, load {info.get('loadavg')}",
        "no_loss": NO_LOSS,
        "real_loss": REAL_LOSS,
        "rows": rows,
        "summary": {
            "rows": len(rows),
            "met": sum(bool(r["meets_goal"]) for r in rows),
            "low": sum(r["verdict"] == "low fidelity" for r in rows),
            "ok": sum(r["verdict"] == "ok" for r in rows),
            "unsure": sum(r["verdict"] == "not enough evidence" for r in rows),
            "old_rows": sum(r["old_report_low"] is not None for r in rows),
            "old_low": sum(bool(r["old_report_low"]) for r in rows),
        },
    }
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "fidelity_verdicts.json", result)
    write_text(output / "fidelity_verdicts.md", render(result))
    log(f"wrote {output / 'fidelity_verdicts.json'}: {result['summary']}")


if __name__ == "__main__":
    main()
