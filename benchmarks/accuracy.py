"""Accuracy suite: what INT8 / FP16 variants cost in AUROC, on three data sets with different statistics.

Sets (:mod:`harness`): the magnetic tile (real photos, ``../shared``; skipped with a message when
absent), the procedural woven-fabric demo set and the dark low-contrast texture (both generated into
the work folder). Models: MobileNetV2 with its ImageNet weights (``../shared/weights``), resize 256,
crop 224, fitted on ``train/good`` and exported. Variants by ``padim_edge.calibration.calibrate``
(calibration frames from ``train/good``, the fidelity report's from ``test/good``). Every model is
scored on the test split through the torch-free runtime with padim-eval's code: image AUROC, pixel
AUROC, PRO, and the Spearman correlation of its test-image scores with the float32 model's.

Commands:

* ``int8``: PaDiM (dims 100, at most ``--max-train`` fit images): ``int8-qoperator`` and ``int8-qdq``,
  each *plain* (``--no-refit``), *default* (Gaussians refitted on the INT8 backbone's embeddings) and
  *refit + 2 float convs*, and ``fp16``. Goal: every INT8 variant's image and pixel AUROC within 0.01 of
  float32. Writes ``int8_accuracy.{json,md}``.
* ``reduction``: PaDiM's random channel subset (``select``) against a fixed random semi-orthogonal
  projection (``--reduction orthogonal``, Kim et al. 2021) at dims 100 / 50 / 25, seeds 0-2, fitted on
  every ``train/good`` image of one set; the mean over seeds and orthogonal - select. Writes
  ``reduction.{json,md}`` (magnetic tile) or ``reduction_<set>.{json,md}``.
* ``patchcore-int8``: PatchCore (coreset 0.1, every fit image): both INT8 formats with the float32
  bank kept (``--no-refit``) or reselected from the INT8 features (the default). Goal, as a loss: image
  and pixel AUROC at most 0.01 below float32. Writes ``patchcore_int8.{json,md}``.

Models, generated sets and calibration records (``<model>.calibration.json``) in ``--workdir`` are
reused (the same folders as :mod:`fidelity_verdicts`). About 20-60 minutes per command on 2 cores;
``--sets demo --max-test 40 --calibration-images 20`` is a smoke run of a few minutes.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    CROP,
    DIMS,
    RESIZE,
    SETS,
    WEIGHTS,
    Run,
    comma_list,
    even_spread,
    finite,
    header,
    log,
    num,
    output_options,
    prepare_fit,
    require_shared,
    table,
    workspace,
    write_results,
)

from padim_edge.atomic import write_json

#: The largest AUROC change (PaDiM: either way; PatchCore: a loss) a default variant may have.
MAX_AUROC_DELTA = 0.01
METRICS = ("image_auroc", "pixel_auroc", "pro")


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
        if self.name == "patchcore":
            return "mnv2-patchcore" + (
                "" if label == "fp32" else "-" + label.replace(", ", "-").replace(" ", "-")
            )
        return "mnv2" + ("" if label == "fp32" else "-" + label.replace(" ", "-"))


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
    from padim_edge.datasets import load_category
    from padim_edge.evaluation.metrics import image_auroc, pixel_auroc
    from padim_edge.evaluation.predictions import predict_category
    from padim_edge.evaluation.pro import pro_score
    from padim_edge.runtime import PadimModel

    category = load_category(root)
    category = dataclasses.replace(category, samples=tuple(even_spread(list(category.samples), max_test)))
    started = time.perf_counter()
    model = PadimModel(model_path, device="cpu")
    predictions = predict_category(model, category, batch_size=8)
    seconds = time.perf_counter() - started
    row = {
        "image_auroc": finite(image_auroc(predictions.scores, predictions.labels)),
        "pixel_auroc": None,
        "pro": None,
        "score_seconds": seconds,
        "test_images": int(predictions.labels.size),
        "defect_images": int(predictions.labels.sum()),
        "file_mb": model_path.stat().st_size / 1e6,
    }
    if predictions.masks is not None:
        row["pixel_auroc"] = finite(pixel_auroc(predictions.maps, predictions.masks))
        row["pro"] = finite(pro_score(predictions.maps, predictions.masks))
    scores = predictions.scores
    del predictions, model
    gc.collect()
    return {"row": row, "scores": scores}


def refresh_fidelity(fp32: Path, variant: Path, root: Path) -> dict[str, Any] | None:
    """An existing variant's fidelity report on ``test/good``, as ``calibrate(validate=...)`` makes it."""
    from padim_edge.calibration import fidelity
    from padim_edge.images import list_images

    plan = fidelity.plan_frames(
        measure=True, calibrates=False, data_paths=None, calibration_count=2,
        validate_paths=list_images(root / "test" / "good"),
    )  # fmt: skip
    report = fidelity.measure(
        fp32,
        variant,
        plan,
        reference=f"{fp32.name} (fp32 backbone / fp32 head)",
        device="cpu",
        progress=False,
    )
    return None if report is None else report.record()


def relimit(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its stored fidelity figures judged against today's limits (``low`` and the limits)."""
    from padim_edge.calibration.fidelity import Fidelity

    if row.get("fidelity"):
        row["fidelity"] = Fidelity.from_record(row["fidelity"]).record()
    return row


def calibrate_variant(
    fp32: Path, out: Path, variant: str, refit: bool | None, float_convs: int | None,
    root: Path, fit_dir: Path, calibration_images: int,
) -> dict[str, Any]:  # fmt: skip
    """Calibrate one variant as the INT8 benchmarks do (held-out ``test/good`` for the fidelity report);
    its record is also written beside it (``.calibration.json``) for a later run to reuse."""
    from padim_edge.calibration.pipeline import calibrate

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
        "calibration_seconds": report.seconds,
        "calibration_images": report.calibration_images,
        "refit": refit,
        "float_convs": float_convs,
        "fidelity": None if report.fidelity is None else report.fidelity.record(),
        "warnings": list(report.warnings),
    }
    write_json(out.with_suffix(".calibration.json"), record)
    return record


def make_variant(
    fp32: Path, out: Path, variant: str, refit: bool | None, float_convs: int | None, *,
    root: Path, fit_dir: Path, calibration_images: int,
) -> dict[str, Any]:  # fmt: skip
    """Calibrate one variant (or reuse it and its record from an earlier run in the same workdir)."""

    record_path = out.with_suffix(".calibration.json")
    if out.is_file() and record_path.is_file():
        record = json.loads(record_path.read_text())
        fid = record.get("fidelity") or {}
        if fid and "synthetic_image_auroc" not in fid:  # made before the synthetic-defect figures
            log(f"{out.name}: re-measuring the fidelity report (synthetic-defect figures)")
            record["fidelity"] = refresh_fidelity(fp32, out, root)
            record["fidelity_refreshed"] = True
            write_json(record_path, record)
        return relimit({**record, "reused": True})
    return calibrate_variant(fp32, out, variant, refit, float_convs, root, fit_dir, calibration_images)


def bank_size(model: Path) -> int | None:
    """The ``bank_size`` a PatchCore model's metadata records (``None`` for PaDiM)."""
    from padim_edge.metadata import prop
    from padim_edge.runtime.modelfile import read_metadata

    value = read_metadata(model).get(prop("bank_size"))
    return None if value is None else int(value)


def measure_set(method: Method, name: str, workdir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """One set: fit and export, every variant made and scored beside the float32 model."""
    from padim_edge.calibration.fidelity import spearman
    from padim_edge.export.pipeline import run_export

    started = time.perf_counter()
    max_train, max_test, calibration_images = (settings[k] for k in ("max_train", "max_test", "calibration"))
    folder = method.folder(name, max_train, calibration_images, settings["coreset"])
    ready, description = prepare_fit(name, workdir, folder=folder, max_train=max_train)
    if ready is None:
        return {"skipped": description}
    root, here, fit_dir, train_images = ready
    fp32 = here / f"{method.file('fp32')}.onnx"
    if not fp32.is_file():
        log(f"{name}: fitting + exporting {method.name} mnv2 on {train_images} images")
        extra = (
            {"method": "patchcore", "coreset": settings["coreset"]}
            if method.name == "patchcore"
            else {"dims": DIMS}
        )
        run_export(
            fit_dir, fp32, backbone="mnv2", resize=RESIZE, crop=CROP, weights_file=WEIGHTS, device="cpu",
            parity_images=2, progress=False, **extra,
        )  # fmt: skip
    log(f"{name}: scoring fp32")
    reference = evaluate(fp32, root, max_test)
    rows: dict[str, dict[str, Any]] = {
        "fp32": {"variant": "fp32", "bank_size": bank_size(fp32), **reference["row"]}
    }
    for label, variant, refit, float_convs in method.variants:
        out = here / f"{method.file(label)}.onnx"
        log(f"{name}: {label}")
        try:
            record = make_variant(
                fp32, out, variant, refit, float_convs, root=root, fit_dir=fit_dir,
                calibration_images=calibration_images,
            )  # fmt: skip
            result = evaluate(out, root, max_test)
        except Exception as exc:  # a variant that cannot be built or run is a result, not a crash
            log(f"{name}: {label} FAILED: {exc}")
            rows[label] = {"variant": variant, "error": f"{type(exc).__name__}: {exc}"}
            continue
        row = {"variant": variant, **record, "bank_size": bank_size(out), **result["row"]}
        for key in METRICS:
            a, b = row[key], rows["fp32"][key]
            row[f"{key}_delta"] = None if a is None or b is None else a - b
        row["test_score_spearman"] = finite(spearman(reference["scores"], result["scores"]))
        rows[label] = row
        log(
            f"{name}: {label}: Δ image {num(row['image_auroc_delta'])}, pixel {num(row['pixel_auroc_delta'])}"
        )
    return {
        "description": description,
        "train_images": train_images,
        "test_images": reference["row"]["test_images"],
        "defect_images": reference["row"]["defect_images"],
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }


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


def _cell(row: dict[str, Any], key: str) -> str:
    delta = row.get(f"{key}_delta")
    return num(row.get(key)) + ("" if delta is None else f" ({delta:+.4f})")


def render(method: Method, result: dict[str, Any]) -> str:
    """The Markdown report: one table per set, then the goals."""
    goal = "|Δ|" if method.symmetric else "loss"
    lines = [
        *header(result, method.title),
        f"{result['model']}; fit on at most {result['max_train'] or 'all'} `train/good` images, "
        f"{result['calibration_images']} calibration frames, {result['max_test'] or 'all'} test images. "
        "Δ: variant - float32. Spearman: rank correlation of the test-image scores with float32's. "
        f"Goal: image and pixel AUROC {goal} <= {MAX_AUROC_DELTA} for every INT8 variant.",
        "",
    ]
    for name, section in result["sets"].items():
        lines += [f"## {name}", ""]
        if "skipped" in section:
            lines += [f"Skipped: {section['skipped']}", ""]
            continue
        lines += [
            f"{section['description']}; {section['train_images']} training images, {section['test_images']} "
            f"test images ({section['defect_images']} defective).",
            "",
        ]
        body = []
        for label, row in section["rows"].items():
            if "error" in row:
                body.append([label, f"failed: {row['error']}", *[""] * 6])
                continue
            fid = row.get("fidelity") or {}
            cells = [num(row.get("test_score_spearman"), ".3f"), fid.get("verdict") or "-"]
            cells += [num(row.get("calibration_seconds"), ".0f"), str(row.get("bank_size") or "-")]
            body.append([label, *(_cell(row, key) for key in METRICS), *cells])
        headers = ["variant", "image AUROC (Δ)", "pixel AUROC (Δ)", "PRO@0.3 (Δ)", "Spearman", "fidelity"]
        lines += [*table([*headers, "calibration s", "bank"], body), ""]
    body = [
        [g["set"], g["variant"], " / ".join(num(d, "+.4f") for d in g["deltas"]), g["result"]]
        for g in result["goals"]
    ]
    return (
        "\n".join(
            [*lines, "## Goals", "", *table(["set", "variant", "Δ image / pixel AUROC", "result"], body)]
        )
        + "\n"
    )


def run(method: Method, output: Path, workdir: Path | None, sets: str, settings: dict[str, Any]) -> None:
    """Measure every set and write ``<method.stem>.{json,md}``."""
    names = comma_list(sets, SETS, "--sets")
    require_shared(WEIGHTS)
    stamp = Run()
    with workspace(workdir, f"padim-{method.stem}-") as work:
        measured = {name: measure_set(method, name, work, settings) for name in names}
    extra = f"coreset {settings['coreset']}" if method.name == "patchcore" else f"dims {DIMS}"
    extra += f", resize {RESIZE}, crop {CROP}"
    result = stamp.stamp(
        {
            "model": f"{method.name} mnv2 (ImageNet weights {WEIGHTS.name}), {extra}",
            "max_train": settings["max_train"],
            "max_test": settings["max_test"],
            "calibration_images": settings["calibration"],
            "sets": measured,
            "goals": goals(method, measured),
        }
    )
    write_results(output, method.stem, result, render(method, result))


REDUCTIONS = ("select", "orthogonal")


def measure_reduction(
    name: str, work: Path, dims_list: tuple[int, ...], seeds: tuple[int, ...]
) -> dict[str, Any]:
    """Every (dims, seed, reduction) model of one set, fitted, exported and scored."""
    from padim_edge.export.pipeline import run_export

    ready, description = prepare_fit(name, work, folder=f"reduction-{name}", max_train=None)
    if ready is None:
        return {"skipped": description}
    root, here, fit_dir, train_images = ready
    rows = []
    for dims in dims_list:
        for seed in seeds:
            for reduction in REDUCTIONS:
                path = here / f"mnv2-d{dims}-{reduction}-s{seed}.onnx"
                if not path.is_file():
                    log(f"{name}: dims {dims}, {reduction}, seed {seed}: fitting on {train_images} images")
                    run_export(
                        fit_dir, path, backbone="mnv2", dims=dims, reduction=reduction, seed=seed,
                        resize=RESIZE, crop=CROP, weights_file=WEIGHTS, device="cpu", parity_images=2,
                        progress=False,
                    )  # fmt: skip
                row = evaluate(path, root, None)["row"]
                rows.append(
                    {"dims": dims, "reduction": reduction, "seed": seed, **{m: row[m] for m in METRICS}}
                )
    return {"description": description, "train_images": train_images, "rows": rows}


def render_reduction(result: dict[str, Any]) -> str:
    """Mean [min-max] over seeds per (dims, reduction), and orthogonal - select."""
    lines = header(result, "Reduction: random index-select vs semi-orthogonal projection")
    if "skipped" in result:
        return "\n".join([*lines, f"Skipped: {result['skipped']}", ""])
    lines += [
        f"MobileNetV2 (ImageNet weights), {result['description']}, {result['train_images']} training images, "
        f"resize {RESIZE}, crop {CROP}; exported graph through the runtime. A seed picks both the subset "
        "and the projection.",
        "",
    ]
    body = []
    for dims in sorted({r["dims"] for r in result["rows"]}, reverse=True):
        means = {}
        for reduction in REDUCTIONS:
            chosen = [r for r in result["rows"] if r["dims"] == dims and r["reduction"] == reduction]
            values = {m: [r[m] for r in chosen if r[m] is not None] for m in METRICS}
            means[reduction] = {m: sum(v) / len(v) if v else None for m, v in values.items()}
            cells = [
                f"{num(means[reduction][m])} [{min(v):.4f}-{max(v):.4f}]" if v else "-"
                for m, v in values.items()
            ]
            body.append([str(dims), reduction, str(len(chosen)), *cells])
        delta = [
            means["orthogonal"][m] - means["select"][m]
            if None not in (means["orthogonal"][m], means["select"][m])
            else None
            for m in METRICS
        ]
        body.append([str(dims), "orthogonal - select", "", *(f"**{num(d, '+.4f')}**" for d in delta)])
    headers = ["dims", "reduction", "seeds", "image AUROC", "pixel AUROC", "PRO@0.3"]
    return "\n".join([*lines, *table(headers, body), ""])


def _options(max_train: int | None) -> Any:
    """The accuracy commands' options."""

    def decorate(command: Any) -> Any:
        for option in (
            click.option("--calibration-images", type=click.IntRange(min=1), default=100, show_default=True),
            click.option("--max-test", type=click.IntRange(min=2), help="Test images (default: all)."),
            click.option(
                "--max-train", type=click.IntRange(min=2), default=max_train, show_default=True,
                help="Fit images, an even spread (default: all).",
            ),
            click.option("--sets", default=",".join(SETS), show_default=True, help="Comma-separated sets."),
        ):  # fmt: skip
            command = option(command)
        return output_options(command)

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def main() -> None:
    """Accuracy of INT8 / FP16 variants against float32 (see the module docstring)."""


@main.command("int8")
@_options(max_train=200)
def int8(output, workdir, sets, max_train, max_test, calibration_images) -> None:
    """PaDiM: INT8 QOperator / QDQ (plain, default, 2 float convs) and FP16 on three sets."""
    settings = {
        "max_train": max_train,
        "max_test": max_test,
        "calibration": calibration_images,
        "coreset": None,
    }
    run(PADIM, output, workdir, sets, settings)


@main.command("reduction")
@output_options
@click.option("--set", "set_name", type=click.Choice(SETS), default="magnetic_tile", show_default=True)
@click.option("--dims", "dims_list", default="100,50,25", show_default=True, help="Comma-separated dims.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds of the subset / projection.")
def reduction(output, workdir, set_name, dims_list, seeds) -> None:
    """PaDiM's random channel subset vs a semi-orthogonal projection: accuracy on one set."""
    require_shared(WEIGHTS)
    stamp = Run()
    dims, seed_list = (tuple(int(v) for v in text.split(",") if v.strip()) for text in (dims_list, seeds))
    with workspace(workdir, "padim-reduction-") as work:
        result = stamp.stamp(measure_reduction(set_name, work, dims, seed_list))
    stem = "reduction" if set_name == "magnetic_tile" else f"reduction_{set_name}"
    write_results(output, stem, result, render_reduction(result))


@main.command("patchcore-int8")
@_options(max_train=None)
@click.option("--coreset", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.1, show_default=True)
def patchcore_int8(output, workdir, sets, max_train, max_test, calibration_images, coreset) -> None:
    """PatchCore: INT8 QOperator / QDQ with the bank kept or reselected, on three sets."""
    settings = {
        "max_train": max_train,
        "max_test": max_test,
        "calibration": calibration_images,
        "coreset": coreset,
    }
    run(PATCHCORE, output, workdir, sets, settings)


if __name__ == "__main__":
    main()
