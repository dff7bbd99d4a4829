"""PatchCore end to end on the demo set: export, runtime, padim-eval, padim-calibrate, padim-bench, CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from padim_edge import graph_names
from padim_edge.export.pipeline import check_parity, run_export
from padim_edge.images import list_images, load_image
from padim_edge.runtime import PadimModel

SMALL = {"backbone": "r18", "dims": 32, "resize": 72, "crop": 64, "random_init": True}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    from padim_edge.demo import make_demo_dataset

    return make_demo_dataset(
        tmp_path_factory.mktemp("demo"), train=12, test_good=4, test_defect_per_type=2, size=64
    )


@pytest.fixture(scope="module")
def exported(demo, tmp_path_factory: pytest.TempPathFactory):
    """12 demo images x 64 patches = 768 vectors, streamed in chunks of 200 to a 25 % bank (192)."""
    out = tmp_path_factory.mktemp("patchcore") / "patchcore.onnx"
    run = run_export(
        demo.train_dir, out, method="patchcore", coreset=0.25, coreset_chunk=200, batch_size=5,
        parity_images=2, progress=False, **SMALL,
    )  # fmt: skip
    return run, out


def props(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def stage_ops(path: Path, stage: str) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node if n.name.startswith(stage))


def test_export_writes_one_graph_with_patchcore_metadata(exported) -> None:
    run, path = exported
    assert run.parity is not None and run.parity.ok and run.parity.relative < 1e-4
    meta = props(path)
    assert meta["padim_edge.method"] == "patchcore"
    assert meta["padim_edge.dims"] == "32" and meta["padim_edge.feature_size"] == "8"
    assert json.loads(meta["padim_edge.taps"]) == ["layer2", "layer3"]
    assert meta["padim_edge.channels"] == "384" and meta["padim_edge.coreset"] == "0.25"
    assert meta["padim_edge.bank_size"] == "192" and meta["padim_edge.neighbours"] == "9"
    selection = json.loads(meta["padim_edge.coreset_selection"])
    assert selection == {"train_vectors": 768, "mode": "streaming", "chunk_vectors": 200, "oversample": 2.0}
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    names = [n.name for n in proto.graph.node]
    assert all(any(name.startswith(s) for s in graph_names.STAGES) for name in names)
    assert stage_ops(path, graph_names.REDUCE)["Conv"] == 2  # the two channel poolings
    assert {"Gemm", "TopK", "Softmax"} <= set(stage_ops(path, graph_names.HEAD))
    assert [o.name for o in proto.graph.output] == ["anomaly_map", "score"]


def test_runtime_scores_like_the_reference(exported, demo) -> None:
    run, path = exported
    images = [load_image(p) for p in list_images(demo.test_dir / "scratch")]
    model = PadimModel(path, device="cpu")
    assert model.info.method == "patchcore" and "patchcore r18" in model.info.description
    predictions = model.predict(images, batch_size=2)
    assert [p.anomaly_map.shape for p in predictions] == [(64, 64)] * len(images)
    parity = check_parity(run.model, path, images)  # held-out defect images, not training ones
    assert parity.ok and parity.relative < 1e-4, parity
    # the score is the paper's re-weighted s*, not the map's maximum
    maps, scores = run.model.score_frames(images)
    assert np.all(scores < maps.reshape(len(images), -1).max(axis=1) * 1.5)
    assert not np.allclose(scores, maps.reshape(len(images), -1).max(axis=1))


def test_padim_eval_on_a_patchcore_model(exported, demo, tmp_path: Path) -> None:
    from padim_edge.evaluation.cli import main

    _, path = exported
    result = CliRunner().invoke(main, [str(path), str(demo.root), "-o", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert data["model"]["method"] == "patchcore"
    assert "(patchcore r18, 32 dims" in result.output
    assert 0.0 <= data["image_auroc"] <= 1.0 and 0.0 <= data["pixel_auroc"] <= 1.0
    assert data["images"] == 4 + 3 * 2
    assert (tmp_path / "eval" / "grid.png").is_file()


@pytest.mark.parametrize("variant", ["fp32-threshold", "int8-qoperator", "fp16"])
def test_padim_calibrate_on_a_patchcore_model(exported, demo, tmp_path: Path, variant: str) -> None:
    from padim_edge.calibration.pipeline import calibrate

    _, path = exported
    out = tmp_path / f"{variant}.onnx"
    report = calibrate(path, out, variant=variant, data=demo.test_dir / "good", progress=False)
    model = PadimModel(out, device="cpu")
    assert model.info.method == "patchcore"
    image = load_image(list_images(demo.test_dir / "good")[0])
    prediction = model.predict([image])[0]
    assert np.isfinite(prediction.score) and prediction.anomaly_map.shape == (64, 64)
    for stage in (graph_names.REDUCE, graph_names.HEAD):  # only the backbone changes precision
        assert stage_ops(out, stage) - Counter({"Greater": 9, "Div": 9, "Cast": 9}) == stage_ops(path, stage)
    if variant == "fp32-threshold":
        assert report.choice is not None and prediction.is_anomalous is not None
    else:
        assert model.info.precision == variant.split("-")[0]


def test_padim_bench_on_a_patchcore_model(exported, tmp_path: Path) -> None:
    from padim_edge.bench.runner import BenchConfig, run_benchmark
    from padim_edge.bench.timing import TimingPolicy

    _, path = exported
    config = BenchConfig(
        backbones=["r18"], models=[path], method="patchcore", coreset=0.5, dims=16, resize=72, crop=64,
        batch_sizes=[1, 2], threads=["1"], devices=["cpu"], fit_frames=3, backbone=False, isolate=False,
        policy=TimingPolicy(warmup=1, min_reps=2, min_seconds=0.0, max_seconds=1.0, floor_reps=1),
        workdir=tmp_path, progress=False,
    )  # fmt: skip
    result = run_benchmark(config)
    labels = Counter((r["model"], r["variant"]) for r in result.rows)
    assert labels == {
        ("PatchCore-R18-d16-c0.5-m96", "fused"): 2,  # round(0.5 x 3 frames x 64 patches)
        ("PatchCore-R18-d16-c0.5-m96", "eager"): 2,
        ("PatchCore-R18-d32-c0.25-m192 fp32", "fused"): 2,
        ("PatchCore-R18-d32-c0.25-m192 fp32", "eager"): 2,
    }
    built = next(r for r in result.rows if r["model"] == "PatchCore-R18-d16-c0.5-m96")
    assert built["bank_size"] == 96 and built["method"] == "patchcore"
    assert all(r["per_image_ms"]["p50"] > 0 for r in result.rows)


def test_cli_export_and_option_errors(demo, tmp_path: Path) -> None:
    from padim_edge.export.cli import main

    base = ["--data", str(demo.train_dir), "--backbone", "r18", "--resize", "72", "--crop", "64"]
    base += ["--random-init", "-q", "--parity-images", "1"]
    out = tmp_path / "pc.onnx"
    result = CliRunner().invoke(
        main, [*base, "--method", "patchcore", "--dims", "16", "--coreset", "0.05", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "memory bank   38 of 768 patch vectors (coreset 0.05, mode streaming" in result.output
    assert "taps layer2, layer3" in result.output and "ok" in result.output
    assert props(out)["padim_edge.bank_size"] == "38"
    wrong = CliRunner().invoke(main, [*base, "--coreset", "0.1", "-o", str(tmp_path / "x.onnx")])
    assert wrong.exit_code != 0 and "--coreset do(es) not apply to --method padim" in wrong.output
    wrong = CliRunner().invoke(
        main, [*base, "--method", "patchcore", "--blocks", "2", "-o", str(tmp_path / "y")]
    )
    assert wrong.exit_code != 0 and "--blocks do(es) not apply to --method patchcore" in wrong.output
    wrong = CliRunner().invoke(
        main, [*base, "--method", "patchcore", "--dims", "999", "-o", str(tmp_path / "z")]
    )
    assert wrong.exit_code != 0 and "dims must be in 1..512 for patchcore r18" in wrong.output
    assert not (tmp_path / "x.onnx").exists()


def test_padim_predict_cli_on_a_patchcore_model(exported, demo, tmp_path: Path) -> None:
    from padim_edge.runtime.cli import main as predict_main

    run, path = exported
    out = tmp_path / "pred"
    folder = demo.test_dir / "stain"
    result = CliRunner().invoke(predict_main, [str(path), str(folder), "--output", str(out), "-q"])
    assert result.exit_code == 0, result.output
    scores = json.loads((out / "scores.json").read_text())
    names = sorted(p.name for p in list_images(folder))
    assert sorted(scores) == names
    _, reference = run.model.score_frames([load_image(folder / name) for name in names])
    np.testing.assert_allclose([scores[n] for n in names], reference, rtol=1e-4)
    assert len(list(out.glob("*_overlay.png"))) == len(names)


def test_local_fit_skips_unreadable_images_when_asked(demo, tmp_path: Path) -> None:
    """padim-export --method patchcore: a corrupt training image stops the local fit, naming it;
    --skip-unreadable fits the bank without it and records it (as PaDiM's local and Ray fits do)."""
    import shutil

    from padim_edge.export.cli import main

    data = tmp_path / "good"
    shutil.copytree(demo.train_dir, data)
    bad = sorted(data.iterdir())[3]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "pc.onnx"
    args = ["--data", str(data), "--backbone", "r18", "--resize", "72", "--crop", "64", "--random-init"]
    args += ["-q", "--parity-images", "1", "--method", "patchcore", "--dims", "16", "--coreset", "0.25"]
    args += ["-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and not out.exists(), result.output
    assert "Error: 1 of 12 training images could not be read" in result.output and bad.name in result.output

    result = CliRunner().invoke(main, [*args, "--skip-unreadable"])
    assert result.exit_code == 0, result.output
    assert "images used   11" in result.output and "skipped       cannot decode image" in result.output
    meta = props(out)
    assert meta["padim_edge.train_images"] == "11"
    assert [s["file"] for s in json.loads(meta["padim_edge.skipped_images"])] == [bad.name]
    assert json.loads(meta["padim_edge.coreset_selection"])["train_vectors"] == 11 * 64
