"""Every metadata key is checked once, when a model is read: its type, its range and its agreement with
the graph. A hand-edited value is refused with one line naming the key and the file, the same way by
the runtime, padim-calibrate and padim-check (small graphs built with onnx.helper, no fit)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from padim_edge import metadata, onnx_files

TAIL = "; re-export or re-calibrate the model, or restore the value padim-edge wrote"
VALUES = {
    "version": "0.1.0",
    "method": "padim",
    "backbone": "r18",
    "dims": 3,
    "channels": 8,
    "channel_indices": [0, 2, 5],
    "resize": 72,
    "crop": 64,
    "weights": "random-init",
    "train_images": 12,
    "train_scores": {"count": 12, "p50": 2.5, "p99": 3.0, "max": 3.1, "map_p50": 2.2},
}


def padim_graph(
    *, crop: int = 64, threshold: float | None = None, props: dict[str, str | None] | None = None
) -> onnx.ModelProto:
    """A padim-edge-shaped model: ``images`` uint8 [N, H, W, 3] -> ``anomaly_map`` [N, crop, crop],
    ``score`` [N] (and ``is_anomalous`` / ``normalized_score`` with a ``threshold``), with its metadata.

    ``props`` overrides raw metadata strings after the good ones are written (``None`` removes one).
    Its one constant (``crop x crop`` floats) goes to the data file when saved with external data.
    """
    ones = numpy_helper.from_array(np.ones((crop, crop), np.float32), "ones")
    axes = numpy_helper.from_array(np.array([1, 2], np.int64), "axes")
    nodes = [
        helper.make_node("Cast", ["images"], ["x"], to=onnx.TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["x"], ["score"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Unsqueeze", ["score", "axes"], ["s3"]),
        helper.make_node("Mul", ["s3", "ones"], ["anomaly_map"]),
    ]
    outputs = [
        helper.make_tensor_value_info("anomaly_map", onnx.TensorProto.FLOAT, ["N", crop, crop]),
        helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, ["N"]),
    ]
    constants = [ones, axes]
    values = dict(VALUES, crop=crop)
    if threshold is not None:
        constants.append(numpy_helper.from_array(np.array(threshold, np.float32), "threshold"))
        nodes += [
            helper.make_node("Greater", ["score", "threshold"], ["is_anomalous"]),
            helper.make_node("Div", ["score", "threshold"], ["normalized_score"]),
        ]
        outputs += [
            helper.make_tensor_value_info("is_anomalous", onnx.TensorProto.BOOL, ["N"]),
            helper.make_tensor_value_info("normalized_score", onnx.TensorProto.FLOAT, ["N"]),
        ]
        values["threshold"] = threshold
    graph = helper.make_graph(
        nodes,
        "padim",
        [helper.make_tensor_value_info("images", onnx.TensorProto.UINT8, ["N", "H", "W", 3])],
        outputs,
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx_files.set_props(model, {**metadata.encode(values), **(props or {})})
    return model


def refusal(source: object, key: str, value: str | None, problem: str) -> str:
    """The one-line refusal :mod:`padim_edge.metadata` gives for a bad key, as a full-match pattern."""
    shown = "" if value is None else f" = {value!r}"
    return "^" + re.escape(f"{source}: metadata key padim_edge.{key}{shown} {problem}{TAIL}") + "$"


def props_of(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


# key, stored text, the problem named
BAD_VALUES = [
    ("dims", "abc", "is not an integer"),
    ("dims", "2.5", "is not an integer"),
    ("dims", "0", "must be at least 1"),
    ("resize", "0", "must be at least 1"),
    ("crop", "0", "must be at least 1"),
    ("crop", "80", "is larger than resize 72"),
    ("train_images", "-1", "must not be negative"),
    ("threshold", "nan", "is not a finite number"),
    ("threshold", "inf", "is not a finite number"),
    ("threshold", "-1", "must be a positive number"),
    ("threshold", "high", "is not a number"),
    ("sigma", "nan", "is not a finite number"),
    ("train_scores", "{not json", "is not valid JSON (Expecting property name enclosed in double quotes)"),
    (
        "train_scores",
        '{"p99": "high"}',
        "must be a JSON object of finite numbers (count, p50, p99, max, map_p50)",
    ),
    ("train_scores", "[1, 2]", "must be a JSON object of finite numbers (count, p50, p99, max, map_p50)"),
    ("input_size", "[0, 64]", "must be a JSON list [H, W] of two positive integers"),
    ("input_size", "[64]", "must be a JSON list [H, W] of two positive integers"),
    ("taps", "[]", "must be a non-empty JSON list of module names"),
    ("method", "padium", "must be one of padim, patchcore"),
    ("precision", "fp8", "must be one of fp32, int8, fp16"),
    ("head_precision", "int4", "must be one of fp32, fp16, int8"),
    ("target", "jetson", "must be one of default, tensorrt"),
    ("coreset", "0", "must be in (0, 1]"),
    ("threshold_fpr", "1.5", "must be between 0 and 1"),
    ("fidelity", '"good"', "must be a JSON object"),
    (
        "external_data",
        '{"bytes": 4, "sha256": "' + "a" * 64 + '"}',
        "lacks 'file' (it must be a JSON object {file, bytes, sha256})",
    ),
    ("external_data", '"m.onnx.data"', "must be a JSON object {file, bytes, sha256}"),
    (
        "external_data",
        '{"file": "../m.onnx.data", "bytes": 4, "sha256": "' + "a" * 64 + '"}',
        "names the data file '../m.onnx.data', which is outside the model's folder (a model's data file "
        "must sit beside it)",
    ),
    (
        "external_data",
        '{"file": "/srv/m.onnx.data", "bytes": 4, "sha256": "' + "a" * 64 + '"}',
        "names the data file '/srv/m.onnx.data', which is outside the model's folder (a model's data file "
        "must sit beside it)",
    ),
    (
        "external_data",
        '{"file": "m.onnx.data", "bytes": -4, "sha256": "x"}',
        "has a 'bytes' that is not a byte count",
    ),
    (
        "external_data",
        '{"file": "m.onnx.data", "bytes": 4, "sha256": "x"}',
        "has a 'sha256' that is not a hex SHA-256",
    ),
]


@pytest.mark.parametrize(("key", "text", "problem"), BAD_VALUES)
def test_every_bad_value_is_one_line_naming_key_and_file(key: str, text: str, problem: str) -> None:
    props = props_of(padim_graph(props={metadata.prop(key): text}))
    shown = text if len(text) <= 60 else text[:57] + "..."
    with pytest.raises(metadata.MetadataError, match=refusal("cam/m.onnx", key, shown, problem)):
        metadata.parse(props, source="cam/m.onnx")


def test_cross_key_checks() -> None:
    props = props_of(padim_graph(props={metadata.prop("channel_indices"): "[0, 2]"}))
    with pytest.raises(
        metadata.MetadataError,
        match=refusal("m.onnx", "channel_indices", None, "lists 2 channels but dims is 3"),
    ):
        metadata.parse(props, source="m.onnx")
    props = props_of(padim_graph(props={metadata.prop("channel_indices"): "[0, 2, 8]"}))
    problem = "lists channel 8 but the backbone taps have 8"
    with pytest.raises(metadata.MetadataError, match=refusal("m.onnx", "channel_indices", None, problem)):
        metadata.parse(props, source="m.onnx")


def test_a_newer_format_is_named() -> None:
    props = props_of(padim_graph(props={metadata.FORMAT_KEY: "2"}))
    expected = (
        "m.onnx: metadata key padim_edge.format = '2' is not format 1, the one this padim-edge reads; "
        "use the padim-edge version that wrote it"
    )
    with pytest.raises(metadata.MetadataError, match="^" + re.escape(expected) + "$"):
        metadata.parse(props, source="m.onnx")


def test_good_metadata_parses_and_unknown_keys_are_kept() -> None:
    props = props_of(padim_graph(threshold=4.5, props={"padim_edge.from_the_future": "x"}))
    info = metadata.parse(
        props, source="m.onnx", outputs=onnx_files.graph_outputs(padim_graph(threshold=4.5))
    )
    assert (info.dims, info.crop, info.threshold) == (3, 64, 4.5)
    assert info.get("train_scores")["p99"] == 3.0 and info.raw["padim_edge.from_the_future"] == "x"


def test_metadata_is_checked_against_the_graph() -> None:
    plain, flagged = padim_graph(), padim_graph(threshold=4.5)
    # a threshold key on a graph that never computes is_anomalous: every image would be labelled "ok"
    props = props_of(padim_graph(props={metadata.prop("threshold"): "4.5"}))
    problem = (
        "is set but the graph has no is_anomalous output (a threshold is baked into the graph by "
        "padim-calibrate, not by editing the metadata)"
    )
    with pytest.raises(metadata.MetadataError, match=refusal("m.onnx", "threshold", "4.5", problem)):
        metadata.parse(props, source="m.onnx", outputs=onnx_files.graph_outputs(plain))
    # the graph decides without the key: accepted, the decision is the graph's
    props = props_of(padim_graph(threshold=4.5, props={metadata.prop("threshold"): None}))
    info = metadata.parse(props, source="m.onnx", outputs=onnx_files.graph_outputs(flagged))
    assert info.threshold is None
    # crop=32 on a crop-64 graph
    props = props_of(padim_graph(props={metadata.prop("crop"): "32"}))
    problem = "does not match the graph, whose anomaly_map is 64x64"
    with pytest.raises(metadata.MetadataError, match=refusal("m.onnx", "crop", "32", problem)):
        metadata.parse(props, source="m.onnx", outputs=onnx_files.graph_outputs(plain))
    # a graph whose map edge is symbolic cannot contradict crop
    metadata.parse(props, source="m.onnx", outputs={"anomaly_map": ["N", "H", "W"], "score": ["N"]})


CASES = [
    ({"props": {metadata.prop("dims"): "abc"}}, "dims", "abc", "is not an integer"),
    (
        {"props": {metadata.prop("train_scores"): "{not json"}},
        "train_scores",
        "{not json",
        "is not valid JSON (Expecting property name enclosed in double quotes)",
    ),
    (
        {"props": {metadata.prop("threshold"): "4.5"}},
        "threshold",
        "4.5",
        "is set but the graph has no is_anomalous output (a threshold is baked into the graph by "
        "padim-calibrate, not by editing the metadata)",
    ),
    (
        {"threshold": 4.5, "props": {metadata.prop("threshold"): "nan"}},
        "threshold",
        "nan",
        "is not a finite number",
    ),
    (
        {"props": {metadata.prop("crop"): "32"}},
        "crop",
        "32",
        "does not match the graph, whose anomaly_map is 64x64",
    ),
    (
        {"props": {metadata.prop("resize"): "0", metadata.prop("crop"): "0"}},
        "resize",
        "0",
        "must be at least 1",
    ),
]


@pytest.mark.parametrize(("build", "key", "text", "problem"), CASES)
def test_runtime_calibrate_and_check_refuse_alike(
    tmp_path: Path, build: dict, key: str, text: str, problem: str
) -> None:
    """The same one line from PadimModel, padim-calibrate's reader and padim-check, at load."""
    from padim_edge.calibration.errors import CalibrationError
    from padim_edge.calibration.modelio import load_model
    from padim_edge.compat.check import CheckError, check_file
    from padim_edge.runtime.model import ModelLoadError, PadimModel

    path = tmp_path / "m.onnx"
    onnx_files.save_model(padim_graph(**build), path, external_data="never")
    pattern = refusal(path, key, text, problem)
    with pytest.raises(ModelLoadError, match=pattern):
        PadimModel(path, device="cpu")
    with pytest.raises(CalibrationError, match=pattern):
        load_model(path)
    with pytest.raises(CheckError, match=pattern):
        check_file(path)


def test_a_good_small_graph_loads_and_scores(tmp_path: Path) -> None:
    from padim_edge.runtime.model import PadimModel

    path = tmp_path / "m.onnx"
    onnx_files.save_model(padim_graph(threshold=100.0), path, external_data="always")
    model = PadimModel(path, device="cpu")
    frame = np.full((10, 12, 3), 120, np.uint8)
    result = model.predict(frame)[0]
    assert result.score == 120.0 and result.anomaly_map.shape == (64, 64)
    assert result.is_anomalous is True and result.normalized_score == pytest.approx(1.2)
