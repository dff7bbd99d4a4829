"""Accuracy suite: what INT8 / FP16 variants cost in AUROC (docs/results.md has the method and results).

MobileNetV2 (ImageNet weights) fitted on each of harness.SETS, variants by padim-calibrate, scored with
padim-eval's code: ``int8`` (PaDiM) -> ``int8_accuracy.*``, ``patchcore-int8`` -> ``patchcore_int8.*``.
``--workdir`` keeps models and calibration records (fidelity_verdicts.py reads them). Smoke run: ``int8
--sets demo --max-test 40 --calibration-images 20``.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import harness as h

from padim_edge.atomic import write_json
from padim_edge.calibration import fidelity
from padim_edge.calibration.fidelity import Fidelity, spearman
from padim_edge.calibration.pipeline import calibrate
from padim_edge.datasets import load_category
from padim_edge.evaluation.predictions import predict_category
from padim_edge.evaluation.pro import pro_score
from padim_edge.images import list_images
from padim_edge.metadata import prop
from padim_edge.runtime import PadimModel
from padim_edge.runtime.modelfile import read_metadata

#: The largest AUROC change (PaDiM: either way; PatchCore: a loss) a default variant may have.
MAX_AUROC_DELTA = 0.01
METRICS = ("image_auroc", "pixel_auroc", "pro")
main = h.group("Accuracy of INT8 / FP16 variants against float32 (see the module docstring).")


@dataclass(frozen=True)
class Method:
    """One accuracy benchmark: the fit, its variants ``(label, calibrate variant, refit, float convs)``."""

    name: str
    stem: str
    title: str
    variants: tuple[tuple[str, str, bool | None, int | None], ...]
    #: Judge ``|delta|`` (PaDiM: the variant should score like the model) or only a loss (PatchCore).
    symmetric: bool

    def folder(self, name: str, max_train: int | None, calibration_images: int, coreset: float) -> str:
        prefix = f"patchcore-{name}-coreset{coreset}" if self.name == "patchcore" else name
        return f"{prefix}-train{max_train or 'all'}-cal{calibration_images}"

    def file(self, label: str) -> str:
        suffix = "" if label == "fp32" else "-" + label.replace(", ", "-").replace(" ", "-")
        return ("mnv2-patchcore" if self.name == "patchcore" else "mnv2") + suffix


PADIM = Method(
    "padim", "int8_accuracy", "INT8 and FP16 vs float32: PaDiM accuracy on three data sets",
    (
        ("int8-qoperator plain", "int8-qoperator", False, 0),
        ("int8-qoperator default", "int8-qoperator", None, None),
        ("int8-qoperator refit + 2 float convs", "int8-qoperator", True, 2),
        ("int8-qdq plain", "int8-qdq", False, 0),
        ("int8-qdq default", "int8-qdq", None, None),
        ("int8-qdq refit + 2 float convs", "int8-qdq", True, 2),
        ("fp16", "fp16", None, None),
    ),
    symmetric=True,
)  # fmt: skip
PATCHCORE = Method(
    "patchcore", "patchcore_int8", "PatchCore with an INT8 backbone: the float32 bank kept or reselected",
    (
        ("int8-qoperator, bank kept", "int8-qoperator", False, None),
        ("int8-qoperator, bank reselected", "int8-qoperator", None, None),
        ("int8-qdq, bank kept", "int8-qdq", False, None),
        ("int8-qdq, bank reselected", "int8-qdq", None, None),
    ),
    symmetric=False,
)  # fmt: skip


def evaluate(model_path: Path, root: Path, max_test: int | None) -> dict[str, Any]:
    """padim-eval's numbers (overall image AUROC, pixel AUROC, PRO) and the image scores."""
    from padim_edge.evaluation.metrics import image_auroc, pixel_auroc

    category = load_category(root)
    category = dataclasses.replace(category, samples=tuple(h.even_spread(list(category.samples), max_test)))
    started = time.perf_counter()
    p = predict_category(PadimModel(model_path, device="cpu"), category, batch_size=8)
    row = {
        "image_auroc": h.finite(image_auroc(p.scores, p.labels)), "pixel_auroc": None, "pro": None,
        "score_seconds": time.perf_counter() - started, "test_images": int(p.labels.size),
        "defect_images": int(p.labels.sum()), "file_mb": model_path.stat().st_size / 1e6,
    }  # fmt: skip
    if p.masks is not None:
        row.update(pixel_auroc=h.finite(pixel_auroc(p.maps, p.masks)))
        row.update(pro=h.finite(pro_score(p.maps, p.masks)))
    scores = p.scores
    del p
    gc.collect()
    return {"row": row, "scores": scores}


def refresh_fidelity(fp32: Path, variant: Path, root: Path) -> dict[str, Any] | None:
    """An existing variant's fidelity report on ``test/good``, as ``calibrate(validate=...)`` makes it."""
    plan = fidelity.plan_frames(
        measure=True, calibrates=False, data_paths=None, calibration_count=2,
        validate_paths=list_images(root / "test" / "good"),
    )  # fmt: skip
    reference = f"{fp32.name} (fp32 backbone / fp32 head)"
    report = fidelity.measure(fp32, variant, plan, reference=reference, device="cpu", progress=False)
    return None if report is None else report.record()


def calibrate_variant(
    fp32: Path, out: Path, variant: str, refit: bool | None, float_convs: int | None,
    root: Path, fit_dir: Path, calibration_images: int,
) -> dict[str, Any]:  # fmt: skip
    """Calibrate one variant as the INT8 benchmarks do (held-out ``test/good`` for the fidelity report);
    its record is also written beside it (``.calibration.json``) for a later run to reuse."""
    options: dict[str, Any] = {}
    if variant != "fp16":
        options = {"refit": refit, "float_convs": float_convs}
        if refit is not False:  # None: the default, which refits
            options["refit_data"] = fit_dir
    report = calibrate(
        fp32, out, variant=variant, data=root / "train" / "good", validate=root / "test" / "good",
        calibration_images=calibration_images, device="cpu", progress=False, **options,
    )  # fmt: skip
    record = {
        "calibration_seconds": report.seconds, "calibration_images": report.calibration_images,
        "refit": refit, "float_convs": float_convs, "warnings": list(report.warnings),
        "fidelity": None if report.fidelity is None else report.fidelity.record(),
    }  # fmt: skip
    write_json(out.with_suffix(".calibration.json"), record)
    return record


def make_variant(fp32: Path, out: Path, variant: str, refit: bool | None, float_convs: int | None, **kw):
    """Calibrate one variant, or reuse it and its record from an earlier run in the same workdir (the
    fidelity report re-measured when it predates the synthetic-defect figures; judged by today's limits)."""
    record_path = out.with_suffix(".calibration.json")
    if not (out.is_file() and record_path.is_file()):
        return calibrate_variant(fp32, out, variant, refit, float_convs, **kw)
    record = json.loads(record_path.read_text())
    if record.get("fidelity") and "synthetic_image_auroc" not in record["fidelity"]:
        h.log(f"{out.name}: re-measuring the fidelity report (synthetic-defect figures)")
        record.update(fidelity=refresh_fidelity(fp32, out, kw["root"]), fidelity_refreshed=True)
        write_json(record_path, record)
    if record.get("fidelity"):
        record["fidelity"] = Fidelity.from_record(record["fidelity"]).record()
    return {**record, "reused": True}


def bank_size(model: Path) -> int | None:
    """The ``bank_size`` a PatchCore model's metadata records (``None`` for PaDiM)."""
    value = read_metadata(model).get(prop("bank_size"))
    return None if value is None else int(value)


def export_mnv2(fit_dir: Path, out: Path, **options: Any) -> Path:
    """MobileNetV2 (ImageNet weights, resize 256, crop 224) fitted on ``fit_dir``, exported once."""
    from padim_edge.export.pipeline import run_export

    if not out.is_file():
        h.log(f"fitting + exporting {out.name} ({options})")
        run_export(fit_dir, out, backbone="mnv2", resize=h.RESIZE, crop=h.CROP, weights_file=h.WEIGHTS,
                   device="cpu", parity_images=2, progress=False, **options)  # fmt: skip
    return out


def measure_set(method: Method, name: str, workdir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """One set: fit and export, every variant made and scored beside the float32 model."""
    started, keys = time.perf_counter(), ("max_train", "max_test", "calibration", "coreset")
    max_train, max_test, cal, coreset = (settings[k] for k in keys)
    folder = method.folder(name, max_train, cal, coreset)
    ready, description = h.prepare_fit(name, workdir, folder=folder, max_train=max_train)
    if ready is None:
        return {"skipped": description}
    root, here, fit_dir, train_images = ready
    extra = {"dims": h.DIMS} if method.name == "padim" else {"method": "patchcore", "coreset": coreset}
    fp32 = export_mnv2(fit_dir, here / f"{method.file('fp32')}.onnx", **extra)
    reference = evaluate(fp32, root, max_test)
    rows = {"fp32": {"variant": "fp32", "bank_size": bank_size(fp32), **reference["row"]}}
    for label, variant, refit, float_convs in method.variants:
        out = here / f"{method.file(label)}.onnx"
        h.log(f"{name}: {label}")
        try:
            made = {"root": root, "fit_dir": fit_dir, "calibration_images": cal}
            record = make_variant(fp32, out, variant, refit, float_convs, **made)
            result = evaluate(out, root, max_test)
        except Exception as exc:  # a variant that cannot be built or run is a result, not a crash
            h.log(f"{name}: {label} FAILED: {exc}")
            rows[label] = {"variant": variant, "error": f"{type(exc).__name__}: {exc}"}
            continue
        row = rows[label] = {"variant": variant, **record, "bank_size": bank_size(out), **result["row"]}
        for key in METRICS:
            a, b = row[key], rows["fp32"][key]
            row[f"{key}_delta"] = None if a is None or b is None else a - b
        row["test_score_spearman"] = h.finite(spearman(reference["scores"], result["scores"]))
        d = [h.num(row[f"{k}_delta"]) for k in METRICS[:2]]
        h.log(f"{name}: {label}: Δ image {d[0]}, pixel {d[1]}")
    counts = {k: reference["row"][k] for k in ("test_images", "defect_images")}
    return {"description": description, "train_images": train_images, **counts, "rows": rows,
            "seconds": time.perf_counter() - started}  # fmt: skip


def goals(method: Method, sets: dict[str, Any]) -> list[dict[str, Any]]:
    """Per set and INT8 variant: image and pixel AUROC within :data:`MAX_AUROC_DELTA`, PASS / FAIL."""
    out = []
    for name, section in sets.items():
        for label, row in section.get("rows", {}).items():
            if not label.startswith("int8"):
                continue
            deltas = [row.get(f"{key}_delta") for key in ("image_auroc", "pixel_auroc")]
            if any(d is None for d in deltas):
                verdict = "FAIL" if row.get("error") else "-"
            else:
                ok = all((abs(d) if method.symmetric else -d) <= MAX_AUROC_DELTA for d in deltas)
                verdict = "PASS" if ok else "FAIL"
            out.append({"set": name, "variant": label, "deltas": deltas, "result": verdict})
    return out


def render(method: Method, result: dict[str, Any]) -> str:
    """The Markdown report: one table per set, then the goals."""
    lines = [
        *h.header(result, method.title),
        f"{result['model']}; fit on at most {result['max_train'] or 'all'} `train/good` images, "
        f"{result['calibration_images']} calibration frames, {result['max_test'] or 'all'} test images. "
        "Δ: variant - float32. Spearman: rank correlation of the test-image scores with float32's. "
        f"Goal: image and pixel AUROC {'|Δ|' if method.symmetric else 'loss'} <= {MAX_AUROC_DELTA} for every "
        "INT8 variant.",
        "",
    ]
    headers = ["variant", "image AUROC (Δ)", "pixel AUROC (Δ)", "PRO@0.3 (Δ)", "Spearman", "fidelity"]
    for name, section in result["sets"].items():
        lines += [f"## {name}", ""]
        if "skipped" in section:
            lines += [f"Skipped: {section['skipped']}", ""]
            continue
        counts = [section[k] for k in ("train_images", "test_images", "defect_images")]
        lines += [f"{section['description']}; {counts[0]} training images, {counts[1]} test images "
                  f"({counts[2]} defective).", ""]  # fmt: skip
        body = []
        for label, row in section["rows"].items():
            if "error" in row:
                body.append([label, f"failed: {row['error']}", *[""] * 6])
                continue
            deltas = {k: row.get(f"{k}_delta") for k in METRICS}
            cells = [h.num(row.get(k)) + ("" if d is None else f" ({d:+.4f})") for k, d in deltas.items()]
            verdict = (row.get("fidelity") or {}).get("verdict") or "-"
            seconds = h.num(row.get("calibration_seconds"), ".0f")
            body.append([label, *cells, h.num(row.get("test_score_spearman"), ".3f"), verdict, seconds,
                         row.get("bank_size") or "-"])  # fmt: skip
        lines += [*h.table([*headers, "calibration s", "bank"], body), ""]
    body = [[g["set"], g["variant"], " / ".join(h.num(d, "+.4f") for d in g["deltas"]), g["result"]]
            for g in result["goals"]]  # fmt: skip
    lines += ["## Goals", "", *h.table(["set", "variant", "Δ image / pixel AUROC", "result"], body)]
    return "\n".join(lines) + "\n"


def run(method: Method, work: Path, sets: str, max_train, max_test, calibration_images, coreset=None) -> dict:
    """Measure every set: ``<method.stem>.{json,md}``."""
    settings = dict(max_train=max_train, max_test=max_test, calibration=calibration_images, coreset=coreset)
    names = h.comma_list(sets, h.SETS, "--sets")
    h.require_shared(h.WEIGHTS)
    measured = {name: measure_set(method, name, work, settings) for name in names}
    extra = f"coreset {settings['coreset']}" if method.name == "patchcore" else f"dims {h.DIMS}"
    extra += f", resize {h.RESIZE}, crop {h.CROP}"
    return {
        "model": f"{method.name} mnv2 (ImageNet weights {h.WEIGHTS.name}), {extra}",
        "max_train": settings["max_train"], "max_test": settings["max_test"],
        "calibration_images": settings["calibration"], "sets": measured, "goals": goals(method, measured),
    }  # fmt: skip


def set_options(max_train: int | None) -> Any:
    """The options of the commands that measure every set (listed by --help last to first)."""
    options = (
        click.option("--calibration-images", type=click.IntRange(min=1), default=100, show_default=True),
        click.option("--max-test", type=click.IntRange(min=2), help="Test images (default: all)."),
        click.option("--max-train", type=click.IntRange(min=2), default=max_train, show_default=True,
                     help="Fit images, an even spread (default: all)."),
        click.option("--sets", default=",".join(h.SETS), show_default=True, help="Comma-separated sets."),
    )  # fmt: skip
    return lambda command: functools.reduce(lambda decorated, option: option(decorated), options, command)


@main.command("int8")
@set_options(max_train=200)
@h.measurement(PADIM.stem, lambda result: render(PADIM, result))
def int8(work: Path, **options: Any) -> dict[str, Any]:
    """PaDiM: INT8 QOperator / QDQ (plain, default, 2 float convs) and FP16 on three sets."""
    return run(PADIM, work, **options)


@main.command("patchcore-int8")
@set_options(max_train=None)
@click.option("--coreset", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.1, show_default=True)
@h.measurement(PATCHCORE.stem, lambda result: render(PATCHCORE, result))
def patchcore_int8(work: Path, **options: Any) -> dict[str, Any]:
    """PatchCore: INT8 QOperator / QDQ with the bank kept or reselected, on three sets."""
    return run(PATCHCORE, work, **options)


if __name__ == "__main__":
    main()
