"""The metadata key table: every key a model carries is a row; typed parsing; clear refusals."""

from __future__ import annotations

import pytest

from padim_edge import metadata

REQUIRED = {
    "version": "0.1",
    "backbone": "r18",
    "dims": 8,
    "resize": 72,
    "crop": 64,
    "weights": "x",
    "train_images": 3,
}


def test_encode_refuses_keys_outside_the_table() -> None:
    with pytest.raises(KeyError, match="unknown padim-edge metadata key 'thresold'"):
        metadata.encode({"thresold": 1.0})
    with pytest.raises(KeyError):
        metadata.prop("nope")
    assert metadata.prop("threshold") == "padim_edge.threshold"


def test_round_trip_is_typed() -> None:
    props = metadata.encode(
        {**REQUIRED, "threshold": 2.5, "input_size": [480, 640], "fidelity": {"rho": 0.99}}
    )
    assert props[metadata.FORMAT_KEY] == metadata.FORMAT_VERSION
    info = metadata.parse(props, source="m.onnx")
    assert (info.dims, info.crop, info.threshold, info.input_size) == (8, 64, 2.5, (480, 640))
    assert info.method == "padim" and info.precision == "fp32" and info.head_precision == "fp32"
    assert info.get("fidelity") == {"rho": 0.99}
    assert info.get("seed") is None and info.get("seed", 0) == 0
    assert info.description == "padim r18, dims 8, crop 64, fp32 backbone, input 480x640"


def test_updates_remove_with_none() -> None:
    updates = metadata.encode_updates({"threshold": None, "threshold_method": "f1"})
    assert updates == {"padim_edge.threshold": None, "padim_edge.threshold_method": "f1"}
    assert set(metadata.THRESHOLD_KEYS) >= {"threshold", "threshold_method", "threshold_fpr"}


def test_parse_refuses_foreign_and_incomplete_models() -> None:
    with pytest.raises(metadata.NotAPadimModelError, match="not a padim-edge model"):
        metadata.parse({"producer": "other"}, source="x.onnx")
    props = metadata.encode(REQUIRED)
    del props["padim_edge.crop"]
    with pytest.raises(metadata.NotAPadimModelError, match=r"missing \['crop'\]"):
        metadata.parse(props)


def test_fidelity_property_and_summary() -> None:
    record = {
        "reference": "m.onnx (fp32 backbone / fp32 head)",
        "source": "validate",
        "frames": 12,
        "spearman": 0.95,
        "map_error_median": 0.1,
        "map_error_worst": 0.4,
        "score_ratio_median": 1.02,
        "image_auroc": [0.98, 0.91],
        "pixel_auroc": None,
        "low": True,
        "error": None,
    }
    info = metadata.parse(metadata.encode({**REQUIRED, "fidelity": record}))
    assert info.fidelity == record
    assert metadata.parse(metadata.encode(REQUIRED)).fidelity is None
    with pytest.raises(metadata.MetadataError, match=r"fidelity = '\[1, 2\]' must be a JSON object;"):
        metadata.parse(metadata.encode({**REQUIRED, "fidelity": [1, 2]}))  # not a report
    line = metadata.fidelity_summary(record)
    assert line.startswith("LOW FIDELITY: Spearman 0.9500, map error median 0.100 (worst 0.400)")
    assert "image auroc 0.980 -> 0.910" in line and "pixel auroc" not in line
    assert line.endswith("(vs m.onnx (fp32 backbone / fp32 head), 12 frames: validate)")
    fine = metadata.fidelity_summary({**record, "low": False, "spearman": None})
    assert fine.startswith("Spearman n/a,")
    unsure = metadata.fidelity_summary({**record, "low": None, "verdict": "not enough evidence"})
    assert unsure.startswith("NOT ENOUGH EVIDENCE: Spearman 0.9500,")
    failed = metadata.fidelity_summary({**record, "low": None, "error": "no fp16 kernel"})
    assert failed.startswith("NOT MEASURED: no fp16 kernel")
