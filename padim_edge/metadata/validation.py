"""Validation of the stored metadata: each key's type and range, and its agreement with the graph.

A hand-edited or corrupted value is refused with one line naming the key and the file
(:class:`MetadataError`), not later with a traceback where it is first used. Pure Python.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from padim_edge.metadata.keys import KEYS, PREFIX

if TYPE_CHECKING:
    from padim_edge.metadata.info import ModelInfo


class NotAPadimModelError(ValueError):
    """The file is a valid ONNX model, but not one padim-edge wrote."""


class MetadataError(NotAPadimModelError):
    """A padim-edge model whose metadata holds a malformed value, or one that contradicts its graph.

    A subclass of :class:`NotAPadimModelError`, so every reader that refuses a foreign model with one
    line refuses a hand-edited one the same way.
    """


def _positive_int(value: Any) -> str | None:
    return None if value >= 1 else "must be at least 1"


def _non_negative_int(value: Any) -> str | None:
    return None if value >= 0 else "must not be negative"


def _positive_float(value: Any) -> str | None:
    return None if value > 0 else "must be a positive number"


def _non_negative_float(value: Any) -> str | None:
    return None if value >= 0 else "must not be negative"


def _fraction(value: Any) -> str | None:
    return None if 0 <= value <= 1 else "must be between 0 and 1"


def _coreset(value: Any) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1]"


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}"

    return check


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be a JSON object"


def _list(value: Any) -> str | None:
    return None if isinstance(value, list) else "must be a JSON list"


def _train_scores(value: Any) -> str | None:
    if not isinstance(value, dict) or not all(_is_number(v) for v in value.values()):
        return "must be a JSON object of finite numbers (count, p50, p99, max, map_p50)"
    return None


def _input_size(value: Any) -> str | None:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v >= 1 for v in value)):
        return "must be a JSON list [H, W] of two positive integers"
    return None


def _names(value: Any) -> str | None:
    if not (isinstance(value, list) and value and all(isinstance(v, str) and v for v in value)):
        return "must be a non-empty JSON list of module names"
    return None


def _indices(value: Any) -> str | None:
    if not (isinstance(value, list) and value and all(_is_int(v) and v >= 0 for v in value)):
        return "must be a non-empty JSON list of channel numbers"
    return None


_SHA256 = re.compile(r"[0-9a-f]{64}")


def external_data_problem(record: Any) -> str | None:
    """What is wrong with an ``external_data`` record (``{file, bytes, sha256}``), or ``None``.

    ``file`` must be a plain file name: the data file lives beside its model, never in another folder.
    """
    if not isinstance(record, dict):
        return "must be a JSON object {file, bytes, sha256}"
    missing = [name for name in ("file", "bytes", "sha256") if name not in record]
    if missing:
        return (
            f"lacks {', '.join(repr(m) for m in missing)} (it must be a JSON object {{file, bytes, sha256}})"
        )
    name = record["file"]
    if not isinstance(name, str) or not name:
        return "has a 'file' that is not a file name"
    if name in (".", "..") or "/" in name or "\\" in name or re.match(r"[A-Za-z]:", name):
        return (
            f"names the data file {name!r}, which is outside the model's folder (a model's data file "
            "must sit beside it)"
        )
    if not _is_int(record["bytes"]) or record["bytes"] < 0:
        return "has a 'bytes' that is not a byte count"
    if not isinstance(record["sha256"], str) or not _SHA256.fullmatch(record["sha256"]):
        return "has a 'sha256' that is not a hex SHA-256"
    return None


#: Value checks beyond the key's type, by key: each returns what is wrong, or ``None``.
CHECKS: dict[str, Callable[[Any], str | None]] = {
    "method": _one_of("padim", "patchcore"),
    "dims": _positive_int,
    "channels": _positive_int,
    "taps": _names,
    "resize": _positive_int,
    "crop": _positive_int,
    "feature_size": _positive_int,
    "sigma": _non_negative_float,
    "reduction": _one_of("select", "orthogonal"),
    "channel_indices": _indices,
    "train_images": _non_negative_int,
    "train_scores": _train_scores,
    "skipped_images": _list,
    "coreset": _coreset,
    "bank_size": _positive_int,
    "neighbours": _positive_int,
    "projection_dims": _positive_int,
    "coreset_selection": _object,
    "precision": _one_of("fp32", "int8", "fp16"),
    "head_precision": _one_of("fp32", "fp16", "int8"),
    "opset": _positive_int,
    "ir_version": _positive_int,
    "target": _one_of("default", "tensorrt"),
    "input_size": _input_size,
    "external_data": external_data_problem,
    "quant_format": _one_of("qoperator", "qdq"),
    "calibration_images": _non_negative_int,
    "float_convs": _non_negative_int,
    "gaussians": _object,
    "fidelity": _object,
    "source_model": _object,
    "threshold": _positive_float,
    "threshold_method": _one_of("target-fpr", "f1"),
    "threshold_target_fpr": _fraction,
    "threshold_images": _non_negative_int,
    "threshold_fpr": _fraction,
    "threshold_precision": _fraction,
    "threshold_recall": _fraction,
    "threshold_data": _list,
}
_TYPE_PROBLEMS = {"int": "is not an integer", "float": "is not a number"}


def _shown(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _refuse(source: str, name: str, text: str | None, problem: str) -> MetadataError:
    value = "" if text is None else f" = {_shown(text)}"
    return MetadataError(
        f"{source}: metadata key {PREFIX}{name}{value} {problem}; re-export or re-calibrate the model, or "
        "restore the value padim-edge wrote"
    )


def decode_all(props: Mapping[str, str], *, source: str = "model") -> dict[str, Any]:
    """Decode and check every padim-edge key present in ``props``: ``{name: typed value}``.

    Keys this version does not know (written by a newer padim-edge) are left out, not refused.

    Raises:
        MetadataError: A value that does not decode as its key's type (``dims=abc``, JSON that does not
            parse, a float that is ``nan``), is out of range, or contradicts another key (``crop``
            larger than ``resize``, ``channel_indices`` not ``dims`` long). Names the key and ``source``.
    """
    values: dict[str, Any] = {}
    for name, key in KEYS.items():
        text = props.get(PREFIX + name)
        if text is None:
            continue
        try:
            value = key.decode(text)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            problem = _TYPE_PROBLEMS.get(key.kind, f"is not valid JSON ({getattr(exc, 'msg', exc)})")
            raise _refuse(source, name, text, problem) from exc
        if key.kind == "float" and not math.isfinite(value):
            raise _refuse(source, name, text, "is not a finite number")
        check = CHECKS.get(name)
        problem = check(value) if check is not None else None
        if problem:
            raise _refuse(source, name, text, problem)
        values[name] = value
    if "crop" in values and "resize" in values and values["crop"] > values["resize"]:
        raise _refuse(source, "crop", props[PREFIX + "crop"], f"is larger than resize {values['resize']}")
    indices = values.get("channel_indices")
    if indices is not None and "dims" in values and len(indices) != values["dims"]:
        problem = f"lists {len(indices)} channels but dims is {values['dims']}"
        raise _refuse(source, "channel_indices", None, problem)
    if indices is not None and "channels" in values and max(indices) >= values["channels"]:
        problem = f"lists channel {max(indices)} but the backbone taps have {values['channels']}"
        raise _refuse(source, "channel_indices", None, problem)
    return values


def check_graph(
    info: ModelInfo, outputs: Mapping[str, Sequence[int | str | None] | None], *, source: str = "model"
) -> None:
    """Check the metadata against the graph it describes (its outputs' names and shapes).

    Args:
        info: The parsed metadata.
        outputs: ``{output name: shape}`` of the graph (``session.get_outputs()``, or the ONNX graph's);
            a shape lists ints, symbolic names or ``None`` per axis.
        source: Name used in error messages (usually the file path).

    Raises:
        MetadataError: A ``threshold`` key on a graph without the ``is_anomalous`` output (nothing
            would compute the decision it describes: every image would be labelled normal), or a
            ``crop`` that is not the edge of the graph's anomaly map. (A graph with the output and no
            key is accepted: its decision comes from the graph.)
    """
    from padim_edge import graph_names  # pure Python; keeps the key table importable on its own

    flagged = graph_names.IS_ANOMALOUS in outputs
    text = info.raw.get(PREFIX + "threshold")
    if info.threshold is not None and not flagged:
        raise _refuse(
            source,
            "threshold",
            text,
            f"is set but the graph has no {graph_names.IS_ANOMALOUS} output (a threshold is baked into the "
            "graph by padim-calibrate, not by editing the metadata)",
        )
    shape = outputs.get(graph_names.ANOMALY_MAP)
    edges = [d for d in list(shape or [])[-2:] if isinstance(d, int) and not isinstance(d, bool) and d > 0]
    if len(edges) == 2 and edges != [info.crop, info.crop]:
        raise _refuse(
            source,
            "crop",
            str(info.crop),
            f"does not match the graph, whose {graph_names.ANOMALY_MAP} is {edges[0]}x{edges[1]}",
        )
