"""The model's ``metadata_props``: the key table and a typed view of them.

Written by the exporter and the calibrator, read by the runtime, benchmarks and reports. Every key a
padim-edge model may carry is a row of :data:`KEYS`; :func:`encode` refuses any other, so a key
cannot be misspelt in one module and read under another name elsewhere.

Every key is validated once, when a model is read (:func:`parse`): its type, its range and, given the
graph's outputs, its agreement with the graph (:func:`check_graph`). A hand-edited or corrupted value
is refused there with one line naming the key and the file (:class:`MetadataError`), not later with a
traceback where it is first used. Pure Python, no torch, no onnx.

The pieces live in :mod:`~padim_edge.metadata.keys` (the key table and its string encoding),
:mod:`~padim_edge.metadata.validation` (value and graph checks, the errors),
:mod:`~padim_edge.metadata.info` (:class:`ModelInfo`, :func:`parse`) and
:mod:`~padim_edge.metadata.summary` (one-line summaries); every name is importable from here.
"""

from __future__ import annotations

from padim_edge.metadata.info import ModelInfo, parse
from padim_edge.metadata.keys import (
    FORMAT_KEY,
    FORMAT_VERSION,
    KEYS,
    PREFIX,
    THRESHOLD_KEYS,
    Key,
    encode,
    encode_updates,
    prop,
)
from padim_edge.metadata.summary import fidelity_summary
from padim_edge.metadata.validation import (
    CHECKS,
    MetadataError,
    NotAPadimModelError,
    check_graph,
    decode_all,
    external_data_problem,
)

__all__ = [
    "CHECKS",
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "KEYS",
    "PREFIX",
    "THRESHOLD_KEYS",
    "Key",
    "MetadataError",
    "ModelInfo",
    "NotAPadimModelError",
    "check_graph",
    "decode_all",
    "encode",
    "encode_updates",
    "external_data_problem",
    "fidelity_summary",
    "parse",
    "prop",
]
