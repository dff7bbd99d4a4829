"""Open a padim-edge ONNX model and predict with it (numpy + onnxruntime only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from padim_edge import graph_names, metadata
from padim_edge.integrity import IntegrityError, renamed_pair_error, verify_data_file
from padim_edge.metadata import ModelInfo
from padim_edge.naming import data_file
from padim_edge.runtime import providers as _providers
from padim_edge.runtime import tensorrt as _tensorrt
from padim_edge.runtime.modelfile import ModelFileError, external_locations
from padim_edge.runtime.openvino.errors import OpenVinoModelError
from padim_edge.runtime.session import open_openvino, open_session

INPUT_NAME = graph_names.INPUT
REQUIRED_OUTPUTS = (graph_names.ANOMALY_MAP, graph_names.SCORE)


class ModelLoadError(RuntimeError):
    """The model file is missing, not ONNX, not ours, or lacks (or mismatches) its external-data file."""


class InputError(ValueError):
    """Frames given to :meth:`PadimModel.predict` are not uint8 ``[H, W, 3]`` images."""


@dataclass(frozen=True)
class Prediction:
    """One image's result.

    Attributes:
        score: Image anomaly score (the anomaly map's maximum).
        anomaly_map: float32 ``[crop, crop]`` per-pixel Mahalanobis distance, blurred.
        is_anomalous: Decision at the baked threshold (``None`` when the model has none).
        normalized_score: ``score / threshold`` (1.0 is the decision boundary), or ``None``.
    """

    score: float
    anomaly_map: np.ndarray
    is_anomalous: bool | None = None
    normalized_score: float | None = None


def _load_error(path: Path, exc: Exception) -> ModelLoadError:
    """One line for a model onnxruntime could not open; the external-data cases are told apart by what
    the graph names (:func:`padim_edge.runtime.modelfile.external_locations`), not by onnxruntime's
    wording, which differs between versions."""
    message = str(exc).strip()
    expected = data_file(path)
    try:
        locations = external_locations(path)
    except (ModelFileError, OSError):
        locations = []
    for name in locations:
        normal = os.path.normpath(name)
        if os.path.isabs(name) or normal == ".." or normal.startswith(".." + os.sep) or name[1:2] == ":":
            return ModelLoadError(
                f"{path} refers to its external-data file as {name!r}, which is outside the model's folder "
                f"{path.parent}; onnxruntime refuses that (a padim-edge model keeps {expected.name} beside "
                "it): re-save the model, or copy the data file beside it and point the graph at it with "
                "padim_edge.onnx_files.relink_data_file"
            )
    for name in locations:
        if not (path.parent / name).is_file():
            renamed = renamed_pair_error(path, name)
            if renamed:
                return ModelLoadError(renamed)
            return ModelLoadError(
                f"{path} keeps its constants in {name} beside it, which is missing: copy both files "
                "together as padim-export wrote them"
            )
    lowered = message.lower()
    if "outside" in lowered or "escape" in lowered or (".." in message and "external" in lowered):
        return ModelLoadError(
            f"{path} refers to an external-data file outside its own folder, which onnxruntime refuses (a "
            f"padim-edge model keeps {expected.name} beside it). onnxruntime said: {message[:300]}"
        )
    if locations or "external" in lowered or (not expected.exists() and ".data" in message):
        state = "is missing" if not expected.exists() else "could not be read (truncated, or another model's)"
        return ModelLoadError(
            f"{path} keeps its constants in {(locations or [expected.name])[0]} beside it, which {state}: "
            f"copy both files together as padim-export wrote them. onnxruntime said: {message[:300]}"
        )
    if "protobuf" in lowered or "parse" in lowered or "invalid_graph" in lowered:
        return ModelLoadError(f"{path} is not a readable ONNX model: {message[:300]}")
    return ModelLoadError(f"cannot load {path}: {message[:500]}")


def as_batches(images: np.ndarray | Sequence[np.ndarray]) -> list[tuple[list[int], np.ndarray]]:
    """Validate frames and group them into same-size batches.

    Args:
        images: One uint8 ``[H, W, 3]`` frame, a sequence of them (sizes may differ), or a uint8
            ``[N, H, W, 3]`` batch.

    Returns:
        ``(positions, batch)`` pairs: each batch is ``[n, H, W, 3]`` and ``positions`` says where its
        frames were in the input.

    Raises:
        InputError: Wrong type, dtype, rank or channel count (the message says which frame).
    """
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            _check_shape(images.shape[1:], "batch", images.dtype)
            return [(list(range(len(images))), np.ascontiguousarray(images))] if len(images) else []
        if images.ndim in (2, 3):
            images = [images]
        else:
            raise InputError(
                f"expected [H, W, 3] or [N, H, W, 3] uint8 frames, got an array of shape {images.shape}"
            )
    if not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
        raise InputError(
            f"expected a numpy array or a sequence of arrays, got {type(images).__name__} "
            "(decode files first, e.g. with padim_edge.images.load_image)"
        )
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, frame in enumerate(images):
        if not isinstance(frame, np.ndarray):
            raise InputError(f"frame {i}: expected a numpy array, got {type(frame).__name__}")
        _check_shape(frame.shape, f"frame {i}", frame.dtype)
        groups.setdefault(frame.shape, []).append(i)
    return [(pos, np.stack([images[i] for i in pos])) for pos in groups.values()]


def _check_shape(shape: tuple[int, ...], where: str, dtype: np.dtype) -> None:
    if dtype != np.uint8:
        hint = (
            " (for 0-1 floats use (x * 255).round().astype(np.uint8))"
            if np.issubdtype(dtype, np.floating)
            else ""
        )
        raise InputError(f"{where}: frames must be uint8 RGB, got dtype {dtype}{hint}")
    if len(shape) == 2:
        raise InputError(
            f"{where}: grayscale [H, W] frame; stack it to RGB with np.repeat(x[..., None], 3, -1)"
        )
    if len(shape) != 3:
        raise InputError(f"{where}: expected [H, W, 3], got shape {tuple(shape)}")
    if shape[-1] != 3:
        kind = {1: "one channel (grayscale)", 4: "4 channels (RGBA: drop alpha with x[..., :3])"}
        raise InputError(
            f"{where}: expected 3 channels (RGB, channels last), got "
            f"{kind.get(shape[-1], f'{shape[-1]} channels')} in shape {tuple(shape)}"
        )
    if shape[0] < 1 or shape[1] < 1:
        raise InputError(f"{where}: empty frame of shape {tuple(shape)}")


class PadimModel:
    """A padim-edge ONNX model opened for inference.

    Safe to share between threads: :meth:`predict` keeps no state between calls (onnxruntime's
    ``InferenceSession.run`` is thread-safe; the OpenVINO backend gives each call its own request).

    Args:
        path: The ``.onnx`` file (its ``.onnx.data`` file beside it, if it has one).
        device: ``auto`` (TensorRT, then CUDA, then CPU, whichever this build has), ``cpu``,
            ``cuda``, ``tensorrt`` or ``openvino`` (OpenVINO's CPU plugin, not onnxruntime).
        threads: Intra-op threads for the CPU provider (``None``: onnxruntime's default, all cores).
        verify_data: How the external-data file (big models only) is checked against the model's
            record of it: ``once`` (hash the first time a file is seen, then its size and mtime),
            ``always`` (hash every load) or ``size`` (size only). See :mod:`padim_edge.integrity`.
        trt_cache_dir: TensorRT EP only: folder of the engine and timing caches (default
            ``~/.cache/padim-edge/tensorrt``). The first run builds the engine (minutes on a Jetson);
            later runs load it from here.
        trt_profile: TensorRT EP only: min/opt/max ``(N, H, W)`` of ``images``
            (:class:`padim_edge.runtime.tensorrt.TrtProfile` or ``"1x480x640:1x480x640:8x480x640"``).
            Default: the model's fixed frame size with 1-8 frames, else
            :data:`padim_edge.runtime.tensorrt.DEFAULT_DYNAMIC_PROFILE`.
        trt_workspace: TensorRT EP only: workspace limit in bytes (default 1 GiB).
        precision: OpenVINO only: ``fp32`` (default, pinned: never OpenVINO's silent bf16) or ``bf16``
            (opt-in, CPUs with bf16 arithmetic; refused for PatchCore); ``device="openvino-bf16"`` is
            the same as ``device="openvino", precision="bf16"``.
        ov_cache_dir: ``device="openvino"`` only: folder of compiled models (default
            ``~/.cache/padim-edge/openvino``; ``""``: no cache). Each ``(batch, frame size)`` is compiled
            once, static, with the default graph's antialiased resize rewritten as the frame size's
            MatMuls (OpenVINO would silently drop the antialias).
        spin: onnxruntime only: whether idle intra-op threads spin between calls (the default, lowest
            latency) or sleep (``False``: more CPU for other threads of the process, e.g. decoding).

    A model exported with ``--target tensorrt`` takes frames of its one size only
    (``info.input_size``); :meth:`predict` refuses others with an :class:`InputError` that names it.

    Raises:
        ModelLoadError: Missing file, not ONNX, missing or mismatched external data, or not a
            padim-edge model.
        padim_edge.runtime.providers.ProviderError: The device is not available.

    Example:
        >>> model = PadimModel("model.onnx", device="auto")
        >>> result = model.predict(frame)[0]  # frame: uint8 [H, W, 3] RGB
        >>> result.score, result.anomaly_map.shape
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "auto",
        threads: int | None = None,
        verify_data: str = "once",
        trt_cache_dir: str | os.PathLike[str] | None = None,
        trt_profile: _tensorrt.TrtProfile | str | None = None,
        trt_workspace: int = _tensorrt.DEFAULT_WORKSPACE_BYTES,
        precision: str | None = None,
        ov_cache_dir: str | os.PathLike[str] | None = None,
        spin: bool = True,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"model file not found: {self.path}")
        self.device = device
        self.threads = threads
        on_openvino = (
            device in _providers.DEVICES and _providers.DEVICES[device].backend == _providers.OPENVINO
        )
        self.tensorrt_options: dict[str, object] | None = (
            None
            if on_openvino
            else _tensorrt.options_for_file(
                self.path, device, cache=trt_cache_dir, profile=trt_profile, workspace_bytes=trt_workspace
            )
        )
        #: The OpenVINO backend (``device="openvino"``), else ``None`` and :attr:`session` is onnxruntime's.
        self.openvino = None
        self.session = None
        try:
            if on_openvino:
                wanted = _providers.DEVICES[device].precision
                if precision not in (None, wanted) and wanted != "fp32":
                    raise ValueError(
                        f"device {device!r} runs in {wanted}; precision={precision!r} contradicts it"
                    )
                self.openvino = open_openvino(
                    self.path, threads=threads, precision=precision or wanted, cache_dir=ov_cache_dir
                )
            elif precision not in (None, "fp32"):
                raise ValueError(f"precision={precision!r} applies to device='openvino' only")
            if self.openvino is None:
                self.session = open_session(
                    self.path, device=device, threads=threads, tensorrt=self.tensorrt_options, spin=spin
                )
        except OpenVinoModelError as exc:
            raise ModelLoadError(str(exc)) from exc
        except (_providers.ProviderError, ValueError):
            raise
        except Exception as exc:
            raise _load_error(self.path, exc) from exc
        backend = self.openvino
        self.providers: list[str] = list(backend.providers if backend else self.session.get_providers())
        try:
            self.info: ModelInfo = metadata.parse(
                backend.props if backend else self.session.get_modelmeta().custom_metadata_map,
                source=str(self.path),
            )
            verify_data_file(self.path, self.info.get("external_data"), mode=verify_data)
            shapes = (
                backend.output_shapes if backend else {o.name: o.shape for o in self.session.get_outputs()}
            )
            metadata.check_graph(self.info, shapes, source=str(self.path))
        except (metadata.NotAPadimModelError, IntegrityError) as exc:
            raise ModelLoadError(str(exc)) from exc
        inputs = list(backend.inputs) if backend else [i.name for i in self.session.get_inputs()]
        self.outputs = list(backend.outputs) if backend else [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or any(o not in self.outputs for o in REQUIRED_OUTPUTS):
            raise ModelLoadError(f"{self.path}: unexpected inputs {inputs} / outputs {self.outputs}")

    def __repr__(self) -> str:
        info = self.info
        return f"PadimModel({str(self.path)!r}, {info.description}, providers={self.providers})"

    def check_size(self, batches: list[tuple[list[int], np.ndarray]]) -> None:
        """Refuse frames of another size than a fixed-size model's (TensorRT target).

        Raises:
            InputError: Names the size the model was built for and the first frame that differs.
        """
        size = self.info.input_size
        if size is None:
            return
        for positions, batch in batches:
            if tuple(batch.shape[1:3]) != tuple(size):
                raise InputError(
                    f"frame {positions[0]}: this model was built for {size[0]}x{size[1]} (HxW) frames "
                    f"(padim-export --target tensorrt --input-size {size[0]}x{size[1]}), got "
                    f"{batch.shape[1]}x{batch.shape[2]}; resize the frames to {size[0]}x{size[1]} "
                    "(padim_edge.images.resize_frame) or use a model exported for any size (the default "
                    "target)"
                )

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one validated uint8 ``[N, H, W, 3]`` batch; returns every graph output by name."""
        if self.openvino is not None:
            return self.openvino.run(batch)
        values = self.session.run(None, {INPUT_NAME: batch})
        return dict(zip(self.outputs, values))  # one value per output (no zip(strict=): Python 3.8)

    def predict(self, images: np.ndarray | Sequence[np.ndarray], *, batch_size: int = 8) -> list[Prediction]:
        """Score frames.

        Args:
            images: One uint8 ``[H, W, 3]`` RGB frame, a sequence of them (any sizes), or a uint8
                ``[N, H, W, 3]`` batch.
            batch_size: Most frames per session run.

        Returns:
            One :class:`Prediction` per frame, in input order.

        Raises:
            InputError: The frames are not uint8 RGB images, or not of the size a fixed-size model
                (TensorRT target) was built for.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        results: dict[int, Prediction] = {}
        batches = as_batches(images)
        self.check_size(batches)
        for positions, batch in batches:
            for lo in range(0, len(positions), batch_size):
                out = self.run(batch[lo : lo + batch_size])
                for k, pos in enumerate(positions[lo : lo + batch_size]):
                    flag = out.get(graph_names.IS_ANOMALOUS)
                    norm = out.get(graph_names.NORMALIZED_SCORE)
                    results[pos] = Prediction(
                        score=float(out["score"][k]),
                        anomaly_map=out["anomaly_map"][k],
                        is_anomalous=None if flag is None else bool(flag[k]),
                        normalized_score=None if norm is None else float(norm[k]),
                    )
        return [results[i] for i in range(len(results))]

    def predict_files(self, paths, **options):
        """Score image files and folders, pipelined: :func:`padim_edge.runtime.pipeline.predict_files`."""
        from padim_edge.runtime.pipeline import predict_files

        return predict_files(self, paths, **options)
