"""PatchCore with an INT8 backbone: the float32 fit's memory bank kept, or selected again from INT8 features.

``padim-calibrate --int8`` on a PatchCore model selects the bank again from the INT8 backbone's own
patch features (the fit's coreset settings, from the metadata; ``--refit-data`` the training images),
as PaDiM's Gaussians are refitted. This script measures that choice, for both INT8 formats, on the
INT8 benchmark's sets (:mod:`int8_sets`: the magnetic tile from ``$PADIM_EDGE_SHARED``, the generated
woven-fabric demo set and the dark low-contrast texture):

* PatchCore, MobileNetV2 with its ImageNet weights, coreset ``--coreset`` (default 0.1, the default
  streaming selection, dims 192, resize 256, crop 224), fitted on ``train/good`` (all of it unless
  ``--max-train``) and exported;
* four variants through ``padim_edge.calibration.calibrate``: ``int8-qoperator`` and ``int8-qdq``, each
  with the bank *kept* from the float32 fit (``refit=False``, ``--no-refit``) and *reselected* (the
  default, on the fit's own images); calibration frames from ``train/good``, the fidelity report's
  from ``test/good``;
* every model scored on the test split through the torch-free runtime with padim-eval's code (image
  AUROC, pixel AUROC, PRO), and the Spearman rank correlation of its test-image scores with the
  float32 model's.

The goal is the PaDiM INT8 one (issue 12), as a loss: image and pixel AUROC at most 0.01 below float32
on every set (a reselected bank is another bank; scoring better is not a failure).

Usage::

    python benchmarks/patchcore_int8.py --workdir /tmp/pc-int8            # all three sets (~1 h on 2 cores)
    python benchmarks/patchcore_int8.py --sets dark_texture --max-test 60 -o /tmp/pci8   # smaller run

Writes ``<output>/patchcore_int8.json`` and ``<output>/patchcore_int8.md`` (default
``benchmarks/results``); models and calibration records in ``--workdir`` are reused.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parent))
from int8_eval import evaluate, make_variant
from int8_report import num, table
from int8_sets import (
    CROP,
    MAX_AUROC_DELTA,
    RESIZE,
    RESULTS,
    SETS,
    WEIGHTS,
    finite,
    log,
    prepare_fit,
)

from padim_edge.atomic import write_json, write_text

#: (label, calibrate variant, refit): the bank kept from the float32 fit, or selected again (default).
VARIANTS = (
    ("int8-qoperator, bank kept", "int8-qoperator", False),
    ("int8-qoperator, bank reselected", "int8-qoperator", None),
    ("int8-qdq, bank kept", "int8-qdq", False),
    ("int8-qdq, bank reselected", "int8-qdq", None),
)
METRICS = ("image_auroc", "pixel_auroc", "pro")


def bank_size(model: Path) -> int | None:
    """The ``bank_size`` a model's metadata records."""
    from padim_edge.metadata import prop
    from padim_edge.runtime.modelfile import read_metadata

    value = read_metadata(model).get(prop("bank_size"))
    return None if value is None else int(value)


def measure_set(
    name: str, workdir: Path, *, coreset: float, max_train: int | None, max_test: int | None,
    calibration_images: int,
) -> dict[str, Any]:  # fmt: skip
    """One set: fit and export, the four variants, every model scored."""
    from padim_edge.calibration.fidelity import spearman
    from padim_edge.export.pipeline import run_export

    started = time.perf_counter()
    folder = f"patchcore-{name}-coreset{coreset}-train{max_train or 'all'}-cal{calibration_images}"
    ready, description = prepare_fit(name, workdir, folder=folder, max_train=max_train)
    if ready is None:
        return {"skipped": description}
    root, here, fit_dir, train_images = ready
    fp32 = here / "mnv2-patchcore.onnx"
    if not fp32.is_file():
        log(f"{name}: fitting + exporting PatchCore mnv2 on {train_images} images")
        run_export(
            fit_dir, fp32, method="patchcore", backbone="mnv2", coreset=coreset, resize=RESIZE, crop=CROP,
            weights_file=WEIGHTS, device="cpu", parity_images=2, progress=False,
        )  # fmt: skip
    log(f"{name}: scoring fp32")
    reference = evaluate(fp32, root, max_test)
    rows: dict[str, dict[str, Any]] = {
        "fp32": {"variant": "fp32", "bank_size": bank_size(fp32), **reference["row"]}
    }
    for label, variant, refit in VARIANTS:
        out = here / f"mnv2-patchcore-{label.replace(', ', '-').replace(' ', '-')}.onnx"
        log(f"{name}: calibrating {label}")
        try:
            record = make_variant(
                fp32,
                out,
                variant,
                refit,
                None,
                root=root,
                fit_dir=fit_dir,
                calibration_images=calibration_images,
            )
            log(f"{name}: scoring {label}")
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
            f"{name}: {label}: image {num(row['image_auroc'])} ({num(row['image_auroc_delta'], '+.4f')}), "
            f"pixel {num(row['pixel_auroc'])} ({num(row['pixel_auroc_delta'], '+.4f')})"
        )
    return {
        "description": description,
        "train_images": train_images,
        "test_images": reference["row"]["test_images"],
        "defect_images": reference["row"]["defect_images"],
        "rows": rows,
        "seconds": time.perf_counter() - started,
    }


def goals(sets: dict[str, Any]) -> list[dict[str, Any]]:
    """Per set and variant: neither AUROC more than :data:`MAX_AUROC_DELTA` below float32's.

    A loss, not a distance: a reselected bank is another bank, and scoring better than the float32 model
    is not a failure of the INT8 variant (issue 12's PaDiM rows judge ``|delta|``).
    """
    out = []
    for name, section in sets.items():
        for label, row in section.get("rows", {}).items():
            if label == "fp32":
                continue
            deltas = [row.get(f"{key}_delta") for key in ("image_auroc", "pixel_auroc")]
            ok = all(d is not None and d >= -MAX_AUROC_DELTA for d in deltas)
            out.append({"set": name, "variant": label, "deltas": deltas, "pass": ok})
    return out


def render(result: dict[str, Any]) -> str:
    """The Markdown report."""
    from padim_edge.bench.markdown import machine_line

    lines = [
        "# PatchCore with an INT8 backbone: the float32 bank kept or reselected",
        "",
        f"**Command:** `{result['command']}` (finished {result['finished']}, {result['seconds']:.0f} s).",
        f"**Machine:** {machine_line(result['machine'])}.",
        "",
        f"PatchCore, {result['model']}. Variants by `padim_edge.calibration.calibrate`: the bank kept from "
        "the float32 fit (`--no-refit`) or selected again from the INT8 backbone's features of the fit's "
        "images (the default). Metrics by padim-eval's code through the runtime (CPU EP); Spearman: rank "
        "correlation of the test-image scores with the float32 model's. Goal (issue 12's, as a loss): "
        f"image and pixel AUROC at most {MAX_AUROC_DELTA} below float32.",
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
                body.append([label, f"failed: {row['error']}", "", "", "", "", ""])
                continue
            cells = [label]
            for key in METRICS:
                delta = row.get(f"{key}_delta")
                cells.append(num(row[key]) + ("" if delta is None else f" ({delta:+.4f})"))
            cells += [
                num(row.get("test_score_spearman"), ".3f") if label != "fp32" else "-",
                "LOW" if (row.get("fidelity") or {}).get("low") else ("-" if label == "fp32" else "ok"),
                str(row.get("bank_size")),
            ]
            body.append(cells)
        lines += table(
            ["Model", "image AUROC", "pixel AUROC", "PRO@0.3", "Spearman vs fp32", "fidelity report", "bank"],
            body,
        )
        lines.append("")
    lines += ["## Goals", ""]
    lines += table(
        ["Set", "Variant", "d image / pixel AUROC", "Result"],
        [
            [
                g["set"],
                g["variant"],
                " / ".join(num(d, "+.4f") for d in g["deltas"]),
                "PASS" if g["pass"] else "FAIL",
            ]
            for g in result["goals"]
        ],
    )
    return "\n".join(lines) + "\n"


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=RESULTS)
@click.option(
    "--workdir", type=click.Path(file_okay=False, path_type=Path),
    help="Keep / reuse generated sets, models and calibration records here (default: temporary).",
)  # fmt: skip
@click.option("--sets", default=",".join(SETS), show_default=True, help="Comma-separated data sets.")
@click.option("--coreset", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.1, show_default=True)
@click.option("--max-train", type=click.IntRange(min=2), default=None, help="Fit images (default: all).")
@click.option("--max-test", type=click.IntRange(min=2), default=None, help="Test images (default: all).")
@click.option("--calibration-images", type=click.IntRange(min=1), default=100, show_default=True)
def main(
    output: Path,
    workdir: Path | None,
    sets: str,
    coreset: float,
    max_train: int | None,
    max_test: int | None,
    calibration_images: int,
) -> None:
    """PatchCore INT8 (QOperator / QDQ), bank kept vs reselected: accuracy on three sets."""
    from padim_edge.bench.system import machine_info

    names = tuple(s.strip() for s in sets.split(",") if s.strip())
    if set(names) - set(SETS):
        raise click.BadParameter(
            f"unknown sets {sorted(set(names) - set(SETS))}; choose from {', '.join(SETS)}"
        )
    if not WEIGHTS.is_file():
        raise click.ClickException(f"needs {WEIGHTS} (set PADIM_EDGE_SHARED to the project's shared folder)")
    started = time.perf_counter()
    temporary = workdir is None
    work = Path(tempfile.mkdtemp(prefix="padim-pc-int8-")) if temporary else workdir
    work.mkdir(parents=True, exist_ok=True)
    try:
        measured = {
            name: measure_set(
                name, work, coreset=coreset, max_train=max_train, max_test=max_test,
                calibration_images=calibration_images,
            )
            for name in names
        }  # fmt: skip
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "command": " ".join(["python", "benchmarks/patchcore_int8.py", *sys.argv[1:]]),
        "model": f"mnv2 (ImageNet weights {WEIGHTS.name}), coreset {coreset}, resize {RESIZE}, crop {CROP}",
        "max_train": max_train,
        "max_test": max_test,
        "calibration_images": calibration_images,
        "machine": machine_info(),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": time.perf_counter() - started,
        "sets": measured,
    }
    result["goals"] = goals(measured)
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "patchcore_int8.json", result)
    write_text(output / "patchcore_int8.md", render(result))
    log(f"wrote {output / 'patchcore_int8.json'} and {output / 'patchcore_int8.md'}")


if __name__ == "__main__":
    main()
