"""Load a padim-edge ONNX model into OpenVINO and compile it for one (batch, frame size).

The loader reads the file (OpenVINO's ONNX frontend; no onnx package) unless its cache already knows
it, checks it is something OpenVINO computes the same as onnxruntime, and compiles a static-shape copy
per ``(N, H, W)``:
reshaped, its antialiased resize replaced by the frame size's constant MatMuls
(:mod:`padim_edge.runtime.openvino.specialise`), and compiled on the CPU plugin with

* ``INFERENCE_PRECISION_HINT`` pinned to ``f32`` (OpenVINO's CPU default is bf16 wherever the CPU
  has it: 1 % score error on PaDiM, 79 % on PatchCore); ``bf16`` only when asked for;
* ``PERFORMANCE_HINT`` ``LATENCY`` (predict runs one request at a time; ``THROUGHPUT`` would split the
  cores into streams that a synchronous caller never fills);
* ``INFERENCE_NUM_THREADS`` as ``--threads``;
* no ``CACHE_DIR``: the loader keeps its own cache (default ``~/.cache/padim-edge/openvino``,
  :mod:`padim_edge.runtime.openvino.cache`), named by the model file's identity, so a warm start
  imports the compiled blob without reading the ONNX file, rewriting the graph or hashing its weights.

Python 3.8 compatible.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from padim_edge.devices import OPENVINO_CPU, OPENVINO_PRECISIONS
from padim_edge.geometry import Geometry
from padim_edge.integrity import cache_dir
from padim_edge.runtime.openvino import specialise
from padim_edge.runtime.openvino.cache import ModelCache
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
    """The ``openvino`` module, imported without its model-conversion tool until that is used.

    ``import openvino`` also imports ``openvino.tools.ovc`` (``convert_model``) and its telemetry, which
    scans every installed distribution: 60 % of the import (~0.12 s on a 2-core Zen 3). This backend
    only reads and imports models, so on the process's first import that submodule is held back
    (openvino itself skips it when it cannot be imported) and ``openvino.convert_model`` is made lazy:
    it imports the tool on first use, as before.

    Raises:
        ProviderError: It is not installed (names the extra).
    """
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    held = "openvino.tools.ovc"
    hold = held not in sys.modules
    if hold:
        sys.modules[held] = None  # type: ignore[assignment]  # `from openvino.tools.ovc import` fails
    try:
        import openvino
    except ImportError:
        raise ProviderError(
            "device 'openvino' needs the openvino package: pip install 'padim-edge[openvino]'"
        ) from None
    finally:
        if hold and sys.modules.get(held, 0) is None:
            del sys.modules[held]
    if hold and "convert_model" not in vars(openvino) and "__getattr__" not in vars(openvino):
        openvino.__getattr__ = _lazy_convert_model
    return openvino


def _lazy_convert_model(name: str) -> Any:
    """``openvino.convert_model`` imported on first use (see :func:`import_openvino`)."""
    if name != "convert_model":
        raise AttributeError(f"module 'openvino' has no attribute {name!r}")
    import openvino
    from openvino.tools.ovc import convert_model

    openvino.convert_model = convert_model
    return convert_model


@dataclass(frozen=True)
class CompileOptions:
    """How every shape of one model is compiled.

    Attributes:
        precision: ``fp32`` (default) or ``bf16`` (opt-in; only on CPUs with bf16 arithmetic).
        threads: ``INFERENCE_NUM_THREADS`` (``None``: OpenVINO's default, all cores).
        cache_dir: Folder of compiled blobs (``None``: :func:`default_cache_dir`; ``""``: no cache).
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
        return config

    def folder(self) -> Path | None:
        """The cache folder (:mod:`padim_edge.runtime.openvino.cache`), or ``None`` for no cache."""
        folder = default_cache_dir() if self.cache_dir is None else self.cache_dir
        return Path(folder) if str(folder) else None


def refusal(props: dict[str, str], precision: str = "fp32") -> str | None:
    """Why OpenVINO must not run a model with these ``metadata_props``, or ``None``.

    QOperator INT8 graphs fail in OpenVINO's reader (``QLinearConv`` scales, ``com.microsoft`` ops);
    PatchCore's INT8 QDQ graph compiles but scores about 10x off (OpenVINO itself, with or without the
    resize rewrite; measured on an AVX2 CPU, not checked on VNNI ones); bf16 breaks PatchCore's distance
    head (the nearest-neighbour distance is a small difference of large squared norms).
    """
    if props.get("padim_edge.quant_format") == "qoperator":
        return (
            "a QOperator INT8 model, which OpenVINO cannot read (QLinearConv, com.microsoft QLinearAdd); "
            "make the INT8 model with padim-calibrate --int8 --format qdq, which OpenVINO runs in INT8"
        )
    if props.get("padim_edge.quant_format") == "qdq" and props.get("padim_edge.method") == "patchcore":
        return (
            "a PatchCore INT8 QDQ model, which OpenVINO's CPU plugin scores about 10x off onnxruntime "
            "(36.4 vs 3.5 on an AVX2 Zen 3; fp32 3.4); run it with --device cpu, or the fp32 model on "
            "OpenVINO"
        )
    if precision == "bf16" and props.get("padim_edge.method") == "patchcore":
        return (
            "bf16 breaks PatchCore's distance head (scores off by up to 79 % on a Xeon with AMX); run "
            "this model with precision fp32"
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
        OpenVinoModelError: A QOperator model, a PatchCore INT8 QDQ model, bf16 on PatchCore, or
            preprocessing the resize rewrite does not know.
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
        folder = options.folder()
        self.cache = ModelCache(folder, self.path, self.version) if folder else None
        self._model: Any = None
        facts = self.cache.manifest() if self.cache else None
        if facts is None:
            facts = self._inspect(props)
            if self.cache:
                self.cache.save_manifest(facts)
        self.input_names: list[str] = list(facts["inputs"])
        self.output_names: list[str] = list(facts["outputs"])
        #: ``{output: shape}`` of the read graph (``None`` for a dynamic axis).
        self.output_shapes: dict[str, list[int | None]] = {k: list(v) for k, v in facts["output_shapes"]}
        self.geometry: Geometry | None = None
        if facts["resize"]:
            self.geometry = Geometry(int(props["padim_edge.resize"]), int(props["padim_edge.crop"]))

    @property
    def model(self) -> Any:
        """The ``openvino.Model`` read from the file (or the cache's IR), read on first use."""
        if self._model is None:
            self._model = self._read()
        return self._model

    def _inspect(self, props: dict[str, str]) -> dict[str, Any]:
        """Read the graph, check its resize can be rewritten, and return what the cache keeps of it."""
        resizes = specialise.antialiased_resizes(self.model)
        if resizes:
            try:
                geometry = Geometry(int(props["padim_edge.resize"]), int(props["padim_edge.crop"]))
            except (KeyError, ValueError):
                raise OpenVinoModelError(
                    f"{self.path}: an antialiased resize but no valid padim_edge.resize / padim_edge.crop "
                    "metadata to rewrite it with; re-export it with padim-export"
                ) from None
            for resize in resizes:
                specialise.check_resize(resize, geometry)
        outputs = self.model.outputs
        return {
            "inputs": [i.get_any_name() for i in self.model.inputs],
            "outputs": [o.get_any_name() for o in outputs],
            "output_shapes": [
                [o.get_any_name(), [d.get_length() if d.is_static else None for d in o.get_partial_shape()]]
                for o in outputs
            ],
            "resize": bool(resizes),
        }

    def _read(self) -> Any:
        """The file read into OpenVINO: from the cache's IR when there is one (then saved there)."""
        ir = self.cache.ir() if self.cache else None
        if ir is not None:
            return self.core.read_model(str(ir))
        model = self.core.read_model(str(self.path))
        if self.cache:
            self.cache.save_ir(import_openvino(), model)
        return model

    def _compiled(self, shape: tuple[int, ...], build: Callable[[], Any]) -> Any:
        """The shape's compiled model: imported from the cache, else ``build()`` compiled and saved.

        Once compiled, the read graph is let go when the cache holds its IR (a new shape reads that
        again, mapped from disk): a model read from ONNX holds a copy of every weight.
        """
        if self.cache:
            compiled = self.cache.load(self.core, shape, self.config)
            if compiled is not None:
                return compiled
        compiled = self.core.compile_model(build(), PLUGIN, self.config)
        if self.cache:
            self.cache.save(shape, self.config, compiled)
            if self.cache.ir() is not None:
                self._model = None
        return compiled

    def compile_any_size(self, batch: int) -> Any:
        """An ``openvino.CompiledModel`` for ``[batch, H, W, 3]`` frames of any size.

        A graph with the antialiased resize takes the frame size's matrices as two more inputs
        (:func:`padim_edge.runtime.openvino.specialise.matrices_as_inputs`); one without it (the
        TensorRT target) is compiled for its own size.
        """
        geometry = self.geometry
        if geometry is None:
            return None

        def build() -> Any:
            model = self.model.clone()
            specialise.matrices_as_inputs(model, geometry)
            model.reshape(
                {
                    self.input_names[0]: [batch, -1, -1, 3],
                    specialise.ROWS: [geometry.crop, -1],
                    specialise.COLS_T: [-1, geometry.crop],
                }
            )
            return model

        return self._compiled((batch, -1, -1), build)

    def compile(self, batch: int, height: int, width: int) -> Any:
        """An ``openvino.CompiledModel`` for ``[batch, height, width, 3]`` uint8 frames."""

        def build() -> Any:
            model = self.model.clone()
            model.reshape({self.input_names[0]: [batch, height, width, 3]})
            if self.geometry is not None:
                specialise.specialise_resize(model, self.geometry, height, width)
            return model

        return self._compiled((batch, height, width), build)
