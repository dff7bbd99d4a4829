"""Load a padim-edge ONNX model into OpenVINO and compile it for one (batch, frame size).

The loader reads the file once (OpenVINO's ONNX frontend; no onnx package), checks it is something
OpenVINO computes the same as onnxruntime, and compiles a static-shape copy per ``(N, H, W)``:
reshaped, its antialiased resize replaced by the frame size's constant MatMuls
(:mod:`padim_edge.runtime.openvino.specialise`), and compiled on the CPU plugin with

* ``INFERENCE_PRECISION_HINT`` pinned to ``f32`` (OpenVINO's CPU default is bf16 wherever the CPU
  has it: 1 % score error on PaDiM, 79 % on PatchCore); ``bf16`` only when asked for;
* ``PERFORMANCE_HINT`` ``LATENCY`` (predict runs one request at a time; ``THROUGHPUT`` would split the
  cores into streams that a synchronous caller never fills);
* ``INFERENCE_NUM_THREADS`` as ``--threads``;
* ``CACHE_DIR`` (default ``~/.cache/padim-edge/openvino``), so a later process imports the compiled
  blob instead of compiling again; the ONNX file's conversion is kept there too, as IR
  (:meth:`ModelLoader._read`).

``save_model`` is only ever called with ``compress_to_fp16=False`` (its default compresses weights to
fp16). Python 3.8 compatible.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from padim_edge.devices import OPENVINO_CPU, OPENVINO_PRECISIONS
from padim_edge.geometry import Geometry
from padim_edge.integrity import cache_dir
from padim_edge.runtime.openvino import specialise
from padim_edge.runtime.openvino.errors import OpenVinoModelError
from padim_edge.runtime.providers import ProviderError

#: User-facing precision -> OpenVINO ``INFERENCE_PRECISION_HINT``.
PRECISIONS = dict(zip(OPENVINO_PRECISIONS, ("f32", "bf16")))
#: The OpenVINO plugin every model is compiled for (GPU and NPU plugins are out of scope).
PLUGIN = "CPU"
#: Name of the backend in ``PadimModel.providers``.
PROVIDER = OPENVINO_CPU


def default_cache_dir() -> Path:
    """``padim_edge.integrity.cache_dir() / "openvino"`` (``~/.cache/padim-edge/openvino``)."""
    return cache_dir() / "openvino"


def import_openvino() -> Any:
    """The ``openvino`` module.

    Raises:
        ProviderError: It is not installed (names the extra).
    """
    try:
        import openvino
    except ImportError:
        raise ProviderError(
            "device 'openvino' needs the openvino package: pip install 'padim-edge[openvino]'"
        ) from None
    return openvino


@dataclass(frozen=True)
class CompileOptions:
    """How every shape of one model is compiled.

    Attributes:
        precision: ``fp32`` (default) or ``bf16`` (opt-in; only on CPUs with bf16 arithmetic).
        threads: ``INFERENCE_NUM_THREADS`` (``None``: OpenVINO's default, all cores).
        cache_dir: ``CACHE_DIR`` of compiled blobs (``None``: :func:`default_cache_dir`; ``""``: no cache).
        hint: ``PERFORMANCE_HINT``.
    """

    precision: str = "fp32"
    threads: int | None = None
    cache_dir: str | os.PathLike[str] | None = None
    hint: str = "LATENCY"

    def config(self) -> dict[str, str]:
        """The ``compile_model`` properties.

        Raises:
            ValueError: Unknown precision or a thread count below 1.
        """
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        config = {"INFERENCE_PRECISION_HINT": PRECISIONS[self.precision], "PERFORMANCE_HINT": self.hint}
        if self.threads is not None:
            if self.threads < 1:
                raise ValueError(f"threads must be >= 1, got {self.threads}")
            config["INFERENCE_NUM_THREADS"] = str(self.threads)
        folder = default_cache_dir() if self.cache_dir is None else self.cache_dir
        if str(folder):
            config["CACHE_DIR"] = str(folder)
        return config


def refusal(props: dict[str, str], precision: str = "fp32") -> str | None:
    """Why OpenVINO must not run a model with these ``metadata_props``, or ``None``.

    QOperator INT8 graphs fail in OpenVINO's reader (``QLinearConv`` scales, ``com.microsoft`` ops);
    bf16 breaks PatchCore's distance head (the nearest-neighbour distance is a small difference of
    large squared norms).
    """
    if props.get("padim_edge.quant_format") == "qoperator":
        return (
            "a QOperator INT8 model, which OpenVINO cannot read (QLinearConv, com.microsoft QLinearAdd); "
            "make the INT8 model with padim-calibrate --int8 --format qdq, which OpenVINO runs in INT8"
        )
    if precision == "bf16" and props.get("padim_edge.method") == "patchcore":
        return (
            "bf16 breaks PatchCore's distance head (scores off by up to 79 % on a Xeon with AMX); run "
            "this model with precision fp32 (or an int8-qdq variant)"
        )
    return None


class ModelLoader:
    """One model file read into OpenVINO, compiled on demand per ``(N, H, W)``.

    Args:
        path: The ``.onnx`` file.
        props: Its ``metadata_props`` (:func:`padim_edge.runtime.modelfile.read_metadata`).
        options: Precision, threads, cache.

    Raises:
        ProviderError: openvino is missing, or bf16 was asked for on a CPU without it.
        OpenVinoModelError: A QOperator model, bf16 on PatchCore, or preprocessing the resize rewrite
            does not know.
        ValueError: Bad options.
        Exception: Whatever OpenVINO raises for a file it cannot read (callers word it).
    """

    def __init__(self, path: str | os.PathLike[str], props: dict[str, str], options: CompileOptions) -> None:
        self.path = Path(path)
        self.options = options
        self.config = options.config()
        reason = refusal(props, options.precision)
        if reason:
            raise OpenVinoModelError(f"{self.path}: {reason}")
        openvino = import_openvino()
        self.version = openvino.get_version()
        self.core = openvino.Core()
        if options.precision == "bf16":
            capabilities = list(self.core.get_property(PLUGIN, "OPTIMIZATION_CAPABILITIES"))
            if "BF16" not in capabilities:
                raise ProviderError(
                    f"precision bf16: this CPU has no bf16 arithmetic (OpenVINO's CPU plugin offers "
                    f"{', '.join(capabilities)}); use precision fp32"
                )
            warnings.warn(
                "bf16 moves PaDiM scores by about 1 % and maps by about 4 % (measured on a Xeon with "
                "AMX): check it with padim-eval before relying on its threshold",
                stacklevel=3,
            )
        self.model = self._read(openvino)
        resizes = specialise.antialiased_resizes(self.model)
        self.geometry: Geometry | None = None
        if resizes:
            try:
                self.geometry = Geometry(int(props["padim_edge.resize"]), int(props["padim_edge.crop"]))
            except (KeyError, ValueError):
                raise OpenVinoModelError(
                    f"{self.path}: an antialiased resize but no valid padim_edge.resize / padim_edge.crop "
                    "metadata to rewrite it with; re-export it with padim-export"
                ) from None
        for resize in resizes:
            specialise.check_resize(resize, self.geometry)
        self.input_names = [i.get_any_name() for i in self.model.inputs]
        self.output_names = [o.get_any_name() for o in self.model.outputs]

    def _read(self, openvino: Any) -> Any:
        """The file read into OpenVINO: from the cache's converted copy when there is one.

        OpenVINO's ONNX reader takes ~0.5 s for R18-Rd100 (its IR reads in ~20 ms), so with a cache the
        converted model is kept as IR beside the compiled blobs, named by the file's path, size and
        mtime and the OpenVINO version, and saved with ``compress_to_fp16=False`` (never the default
        fp16 compression, which moves scores by 8e-4).
        """
        folder = self.config.get("CACHE_DIR")
        if not folder:
            return self.core.read_model(str(self.path))
        stat = self.path.stat()
        key = f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.version}"
        ir = Path(folder) / "ir" / (hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + ".xml")
        if ir.is_file() and ir.with_suffix(".bin").is_file():
            return self.core.read_model(str(ir))
        model = self.core.read_model(str(self.path))
        try:
            ir.parent.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=".stage-", dir=str(ir.parent)))
            try:
                openvino.save_model(model, str(stage / ir.name), compress_to_fp16=False)
                os.replace(stage / ir.with_suffix(".bin").name, ir.with_suffix(".bin"))
                os.replace(stage / ir.name, ir)  # the .xml last: it is what marks the copy complete
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        except OSError:  # a read-only or full cache only costs the next load its speed
            pass
        return model

    def compile_any_size(self, batch: int) -> Any:
        """An ``openvino.CompiledModel`` for ``[batch, H, W, 3]`` frames of any size.

        A graph with the antialiased resize takes the frame size's matrices as two more inputs
        (:func:`padim_edge.runtime.openvino.specialise.matrices_as_inputs`); one without it (the
        TensorRT target) is compiled for its own size.
        """
        model = self.model.clone()
        if self.geometry is None or not specialise.matrices_as_inputs(model, self.geometry):
            return None
        model.reshape(
            {
                self.input_names[0]: [batch, -1, -1, 3],
                specialise.ROWS: [self.geometry.crop, -1],
                specialise.COLS_T: [-1, self.geometry.crop],
            }
        )
        return self.core.compile_model(model, PLUGIN, self.config)

    def compile(self, batch: int, height: int, width: int) -> Any:
        """An ``openvino.CompiledModel`` for ``[batch, height, width, 3]`` uint8 frames."""
        model = self.model.clone()
        model.reshape({self.input_names[0]: [batch, height, width, 3]})
        if self.geometry is not None:
            specialise.specialise_resize(model, self.geometry, height, width)
        return self.core.compile_model(model, PLUGIN, self.config)
