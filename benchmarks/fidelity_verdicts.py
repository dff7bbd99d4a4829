"""Does the fidelity verdict of padim-calibrate agree with the real AUROC loss, row by row?

Rebuilds the variants of the INT8 benchmark (PaDiM MobileNetV2 on the three sets of :mod:`int8_sets`,
seven variants per set) and of the PatchCore-INT8 benchmark (four variants per set) with the same
settings and ``padim_edge.calibration.calibrate`` calls (the fidelity report on ``test/good``), plus
one deliberately broken PaDiM variant per set: ``int8-qoperator`` calibrated on 20 blank grey frames
(every activation range collapses). Every model is scored on the set's whole test split (image and
pixel AUROC, padim-eval's code): the real loss is that of the rebuilt model; the loss stored in
``benchmarks/results/int8_accuracy.json`` / ``patchcore_int8.json`` is listed beside it (those models
came from older calibration code and need not be the same). Per row: the real loss, the report's
figures (synthetic-defect AUROC pairs, the 95 % interval of their drop, separation) and the verdict of
:attr:`padim_edge.calibration.fidelity.Fidelity.verdict` under today's settings.

Goals: no ``low fidelity`` on a row whose real image and pixel loss are both <= 0.005; ``low fidelity``
on the broken rows and on rows whose real loss is > 0.01 (the stored dark-texture plain QOperator row
lost 0.014 image AUROC).

Usage::

    python benchmarks/fidelity_verdicts.py --workdir /tmp/fv/work            # ~1 h on 2 busy cores
    python benchmarks/fidelity_verdicts.py --methods padim --sets demo       # one set, PaDiM only

Models and calibration records in ``--workdir`` are reused. Writes ``<output>/fidelity_verdicts.json``
and ``.md`` (default ``benchmarks/results``).
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


def _rows(name: str, build_row: Any, labels: list[str]) -> dict[str, dict[str, Any]]:
    records = {}
    for label in labels:
        log(f"{name}: {label}")
        try:
            records[label] = build_row(label)
        except NotBuilt as exc:
            log(f"{name}: {label}: not built ({exc})")
    return records


def build_padim(name: str, work: Path, chosen: set[str]) -> dict[str, dict[str, Any]]:
    """The PaDiM set's calibration records, by row label (the INT8 benchmark's folder and file names)."""
    from padim_edge.export.pipeline import run_export

    ready = _prepare(name, work, f"{name}-train200-cal100", 200)
    if ready is None:
        return {}
    root, here, fit_dir = ready
    fp32 = here / "mnv2.onnx"
    _built(fp32)
    if not fp32.is_file():
        log(f"{name}: fitting PaDiM")
        run_export(
            fit_dir, fp32, backbone="mnv2", dims=DIMS, resize=RESIZE, crop=CROP, weights_file=WEIGHTS,
            device="cpu", parity_images=2, progress=False,
        )  # fmt: skip
    settings = {row[0]: row[1:] for row in PADIM_VARIANTS}

    def build_row(label: str) -> dict[str, Any]:
        if label == BROKEN:
            out = here / "mnv2-int8-qoperator-blank-calibration.onnx"
            return {**_broken(fp32, here, root), **real_auroc(out, root)}
        variant, refit, float_convs = settings[label]
        out = here / f"mnv2-{label.replace(' ', '-')}.onnx"
        record = make_variant(
            fp32, out, variant, refit, float_convs, root=root, fit_dir=fit_dir, calibration_images=100
        )
        return {**record, **real_auroc(out, root)}

    labels = [label for label in [BROKEN, *settings] if label in chosen]
    return {"fp32": real_auroc(fp32, root), **_rows(name, build_row, labels)}


def build_patchcore(name: str, work: Path, chosen: set[str]) -> dict[str, dict[str, Any]]:
    """The PatchCore set's calibration records (``patchcore_int8``'s folder and file names)."""
    from padim_edge.export.pipeline import run_export

    ready = _prepare(name, work, f"patchcore-{name}-coreset0.1-trainall-cal100", None)
    if ready is None:
        return {}
    root, here, fit_dir = ready
    fp32 = here / "mnv2-patchcore.onnx"
    _built(fp32)
    if not fp32.is_file():
        log(f"{name}: fitting PatchCore")
        run_export(
            fit_dir, fp32, method="patchcore", backbone="mnv2", coreset=0.1, resize=RESIZE, crop=CROP,
            weights_file=WEIGHTS, device="cpu", parity_images=2, progress=False,
        )  # fmt: skip
    settings = {row[0]: row[1:] for row in PATCHCORE_VARIANTS}

    def build_row(label: str) -> dict[str, Any]:
        variant, refit = settings[label]
        out = here / f"mnv2-patchcore-{label.replace(', ', '-').replace(' ', '-')}.onnx"
        record = make_variant(
            fp32, out, variant, refit, None, root=root, fit_dir=fit_dir, calibration_images=100
        )
        return {**record, **real_auroc(out, root)}

    labels = [label for label in settings if label in chosen]
    return {"fp32": real_auroc(fp32, root), **_rows(name, build_row, labels)}


def _loss(stored: dict[str, Any], fp32: dict[str, Any], key: str) -> float | None:
    value, base = stored.get(key), fp32.get(key)
    return None if value is None or base is None else base - value


def judge_row(
    method: str, name: str, label: str, record: dict[str, Any], fp32: dict[str, Any], stored_rows: dict
) -> dict[str, Any]:
    """One results row: the real loss, the report's figures, and today's verdict."""
    from padim_edge.calibration.fidelity import LOW, Fidelity

    stored, stored_fp32 = stored_rows.get(label, {}), stored_rows.get("fp32", {})
    fidelity = record.get("fidelity") or {}
    report = Fidelity.from_record(fidelity) if fidelity else None
    image_loss, pixel_loss = _loss(record, fp32, "image_auroc"), _loss(record, fp32, "pixel_auroc")
    losses = [v for v in (image_loss, pixel_loss) if v is not None]
    verdict = None if report is None else report.verdict
    worst = max(losses) if losses else None
    expected = "any"
    if worst is not None and worst <= NO_LOSS:
        expected = "not low"
    elif worst is not None and worst > REAL_LOSS:
        expected = "low"
    stored_pair = ((stored.get("fidelity") or {}).get("synthetic_image_auroc")) if stored else None
    return {
        "method": method,
        "set": name,
        "variant": label,
        "real_image_loss": image_loss,
        "real_pixel_loss": pixel_loss,
        "synthetic_image_auroc": fidelity.get("synthetic_image_auroc"),
        "synthetic_image_drop_interval": fidelity.get("synthetic_image_drop"),
        "synthetic_pixel_auroc": fidelity.get("synthetic_pixel_auroc"),
        "synthetic_pixel_drop_interval": fidelity.get("synthetic_pixel_drop"),
        "synthetic_reference_low": fidelity.get("synthetic_reference_low"),
        "separation": fidelity.get("separation"),
        "spearman": fidelity.get("spearman"),
        "map_error_median": fidelity.get("map_error_median"),
        "frames": fidelity.get("frames"),
        "verdict": verdict,
        "reasons": [] if report is None else report.problems,
        "stored_real_image_loss": _loss(stored, stored_fp32, "image_auroc") if stored else None,
        "stored_real_pixel_loss": _loss(stored, stored_fp32, "pixel_auroc") if stored else None,
        "old_report_low": (stored.get("fidelity") or {}).get("low") if stored else None,
        "same_synthetic_auroc_as_stored": (
            None if not stored_pair else stored_pair == fidelity.get("synthetic_image_auroc")
        ),
        "rebuilt": bool(record),
        "expected": expected,
        "meets_goal": (
            None
            if not record
            else verdict is not None and (expected == "any" or (expected == "low") == (verdict == LOW))
        ),
    }


def _stored(path: Path, name: str) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    sets = (data.get("accuracy") or data).get("sets", {})
    return (sets.get(name) or {}).get("rows", {})


def _num(value: Any, fmt: str = ".4f") -> str:
    return "n/a" if value is None else format(float(value), fmt)


def _pair(values: Any) -> str:
    return "n/a" if not values else f"{_num(values[0])} -> {_num(values[1])}"


def _interval(values: Any) -> str:
    return "n/a" if not values else f"[{_num(values[0])}, {_num(values[1])}]"


def render(result: dict[str, Any]) -> str:
    """The Markdown table of every row."""
    lines = [
        "# Fidelity verdicts vs real AUROC loss",
        "",
        f"Command: `{result['command']}`; finished {result['finished']}; machine: {result['machine']}.",
        "",
        "Real loss = fp32 AUROC minus variant AUROC on the set's test split (positive: the variant lost), "
        "of the rebuilt models (stored: the loss in int8_accuracy.json / patchcore_int8.json). Synthetic "
        "figures: the fidelity report on 50 test/good frames with pasted defects, `reference -> variant`, "
        "and the 95 % paired bootstrap interval of the drop. Separation: the variant's map change over the "
        "reference's defect-to-normal gap. Goal: no `low fidelity` where both real losses are <= "
        f"{NO_LOSS}; `low fidelity` where a real loss is > {REAL_LOSS} (the plain QOperator dark-texture "
        "row, the broken rows).",
        "",
        "| method | set | variant | real image / pixel loss | stored loss | synthetic image AUROC | "
        "drop 95 % | synthetic pixel AUROC | drop 95 % | separation | old report | verdict | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        old = {True: "LOW", False: "ok", None: "-"}[row["old_report_low"]]
        goal = {True: "met", False: "MISSED", None: "-"}[row["meets_goal"]]
        verdict = row["verdict"] if row["rebuilt"] else "not re-run"
        lines.append(
            f"| {row['method']} | {row['set']} | {row['variant']} | {_num(row['real_image_loss'], '+.4f')} / "
            f"{_num(row['real_pixel_loss'], '+.4f')} | {_num(row['stored_real_image_loss'], '+.4f')} / "
            f"{_num(row['stored_real_pixel_loss'], '+.4f')} | {_pair(row['synthetic_image_auroc'])} | "
            f"{_interval(row['synthetic_image_drop_interval'])} | {_pair(row['synthetic_pixel_auroc'])} | "
            f"{_interval(row['synthetic_pixel_drop_interval'])} | {_num(row['separation'], '.3f')} | {old} | "
            f"**{verdict}** | {goal} ({row['expected']}) |"
        )
    summary = result["summary"]
    lines += [
        "",
        f"Rows re-run: {summary['rows']} of {summary['listed']}; goal met on {summary['met']}; "
        f"`low fidelity` {summary['low']}, `ok` "
        f"{summary['ok']}, `not enough evidence` {summary['unsure']}; the old report flagged "
        f"{summary['old_low']} of the {summary['old_rows']} re-run benchmark rows.",
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
            if method == "padim":
                records, results = build_padim(name, workdir, kept), "int8_accuracy.json"
            else:
                records, results = build_patchcore(name, workdir, kept), "patchcore_int8.json"
            stored = _stored(RESULTS / results, name)
            fp32 = records.pop("fp32", {})
            for label, record in records.items():
                rows.append(judge_row(method, name, label, record, fp32, stored))
            for label in stored:
                if label != "fp32" and label not in records:  # a benchmark row not rebuilt here
                    rows.append(judge_row(method, name, label, {}, fp32, stored))
    info = machine_info()
    result = {
        "command": " ".join(["python", "benchmarks/fidelity_verdicts.py", *sys.argv[1:]]),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{info.get('cpu')}, {info.get('usable_cpus')} CPUs, load {info.get('loadavg')}",
        "no_loss": NO_LOSS,
        "real_loss": REAL_LOSS,
        "rows": rows,
        "summary": {
            "listed": len(rows),
            "rows": sum(r["rebuilt"] for r in rows),
            "met": sum(bool(r["meets_goal"]) for r in rows),
            "low": sum(r["verdict"] == "low fidelity" for r in rows),
            "ok": sum(r["verdict"] == "ok" for r in rows),
            "unsure": sum(r["verdict"] == "not enough evidence" for r in rows),
            "old_rows": sum(r["old_report_low"] is not None for r in rows if r["rebuilt"]),
            "old_low": sum(bool(r["old_report_low"]) for r in rows if r["rebuilt"]),
        },
    }
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "fidelity_verdicts.json", result)
    write_text(output / "fidelity_verdicts.md", render(result))
    log(f"wrote {output / 'fidelity_verdicts.json'}: {result['summary']}")


if __name__ == "__main__":
    main()
