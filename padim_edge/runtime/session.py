"""Opening onnxruntime sessions and OpenVINO runners: the one place their options are chosen.

:class:`padim_edge.runtime.PadimModel` opens its model here, and so do the benchmarks for the graphs
they compare against it, so every measurement runs with the settings users get.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnxruntime as ort

from padim_edge.runtime import providers as _providers

if TYPE_CHECKING:
    from padim_edge.runtime.openvino import OpenVinoRunner


def session_options(threads: int | None = None, *, spin: bool = True) -> ort.SessionOptions:
    """Session options: full graph optimisation, quiet logs, ``threads`` intra-op threads (``None``: all).

    ``spin=False`` lets idle intra-op threads sleep instead of spinning, which leaves the CPU to other
    work in the same process between calls (padim-predict's decoding threads: 1.31x instead of 1.25x the
    sequential command on a 2-core machine; measured: ``benchmarks/results/predict_files.md`` at commit
    a5d9d66, the no-spinning rows).

    Raises:
        ValueError: ``threads`` below 1.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def open_session(
    path: str | os.PathLike[str],
    *,
    device: str = "auto",
    threads: int | None = None,
    tensorrt: dict[str, Any] | None = None,
    spin: bool = True,
) -> ort.InferenceSession:
    """Open ``path`` on ``device``.

    Args:
        path: An ``.onnx`` file.
        device: A name from :data:`padim_edge.runtime.providers.DEVICES`.
        threads: CPU intra-op threads.
        tensorrt: TensorRT EP options (see :func:`padim_edge.runtime.providers.provider_options`).
        spin: Whether idle intra-op threads spin (see :func:`session_options`).

    Raises:
        ValueError: Unknown device or bad thread count.
        padim_edge.runtime.providers.ProviderError: The device's provider is missing or could not start.
        Exception: Whatever onnxruntime raises for a file it cannot load (callers word it).
    """
    wanted = _providers.resolve(device)
    session = ort.InferenceSession(
        str(Path(path)),
        session_options(threads, spin=spin),
        providers=wanted,
        provider_options=_providers.provider_options(wanted, tensorrt=tensorrt),
    )
    got = list(session.get_providers())
    if device != "auto" and wanted[0] not in got:
        raise _providers.ProviderError(
            f"{wanted[0]} is in this onnxruntime build but could not start (check the CUDA / TensorRT "
            f"libraries); the session only got {got}"
        )
    return session


def open_openvino(
    path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    precision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> OpenVinoRunner:
    """Open ``path`` on OpenVINO's CPU plugin (``device="openvino"``).

    Args:
        path: An ``.onnx`` file.
        threads: ``INFERENCE_NUM_THREADS`` (``None``: all cores).
        precision: ``fp32`` (default: ``INFERENCE_PRECISION_HINT`` pinned to f32) or ``bf16``.
        cache_dir: Compiled-model cache (``None``: ``~/.cache/padim-edge/openvino``; ``""``: none).

    Returns:
        A runner with ``run(batch) -> {output: array}``, ``providers``, ``inputs``, ``outputs`` and the
        file's ``props`` (``metadata_props``, read without onnx).

    Raises:
        padim_edge.runtime.openvino.OpenVinoModelError: Not readable, a QOperator model, bf16 on
            PatchCore, or preprocessing the resize rewrite does not know.
        padim_edge.runtime.providers.ProviderError: openvino is missing, or bf16 on a CPU without it.
        ValueError: Bad precision or thread count.
        Exception: Whatever OpenVINO raises for a file it cannot load (callers word it).
    """
    from padim_edge.runtime.modelfile import ModelFileError, read_metadata
    from padim_edge.runtime.openvino import CompileOptions, ModelLoader, OpenVinoModelError, OpenVinoRunner

    try:
        props = read_metadata(path)
    except ModelFileError as exc:
        raise OpenVinoModelError(f"{path} is not a readable ONNX model: {exc}") from exc
    options = CompileOptions(precision=precision or "fp32", threads=threads, cache_dir=cache_dir)
    runner = OpenVinoRunner(ModelLoader(path, props, options))
    runner.props = props
    return runner
