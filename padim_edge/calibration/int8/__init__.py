"""Static INT8 post-training quantisation of the backbone (onnxruntime.quantization, no torch).

Calibration feeds uint8 frames to the model's own ``images`` input, one frame per batch (sizes may
differ), so activation ranges are measured after the same in-graph preprocessing the deployed model
runs. Activation ranges: the 99.99th percentile of |activation| (histograms collected ten frames at a
time to bound memory); weights: int8 per channel. Only ``padim_backbone/`` nodes are quantised
(``nodes_to_exclude`` = every other node, ``op_types_to_quantize`` = the backbone's quantisable op
types, which also keeps the calibration from recording the head's large intermediate tensors): the
preprocessing, the channel reduction and the Mahalanobis head stay float32.

Two formats:

* ``qoperator``: QLinearConv / QLinearAdd, uint8 activations, int8 weights. The fastest on the CPU
  execution provider.

Weights use 7 bits (``reduce_range``): x86 CPUs without VNNI (AVX2 only: many edge boxes) multiply
uint8 x int8 pairs with ``vpmaddubsw``, whose int16 pair sums saturate with 8-bit weights
(``255 * 127 * 2 > 32767``), in both formats (onnxruntime shifts QDQ's int8 activations to uint8); with
7-bit weights they cannot (``255 * 63 * 2 < 32767``). Measured on an AVX2 Zen 3 with 8-bit weights:
the magnetic tile lost 0.030 / 0.024 image / pixel AUROC (QDQ) and 0.008 / 0.014 (QOperator), against
at most 0.005 on a VNNI CPU (``benchmarks/results/fidelity_verdicts.md``).
* ``qdq``: QuantizeLinear / DequantizeLinear pairs around float ops, which TensorRT (and the CUDA EP)
  consume. TensorRT only takes symmetric signed int8 (zero point 0), so activations are int8 with
  symmetric ranges here, weights int8 symmetric per channel. Conv biases stay float32
  (``QuantizeBias: False``): by default onnxruntime stores them as int32 behind a DequantizeLinear,
  which TensorRT rejects ("only activation types allowed as input to this layer").

``quant_pre_process`` (symbolic shape inference + ORT graph optimisation) is not run: the exporter's
graph already has BatchNorm folded into Conv, and with it the quantised MobileNetV2 graph came out node
for node the same with the same scores, so it would only add a shape-inference and optimisation pass
over multi-GB graphs (WR50-Rd550).

Why percentile, measured on magnetic_tile with MobileNetV2 (ImageNet weights, dims 100, 224, 100
calibration frames, ``benchmarks/int8_accuracy.py``; image / pixel AUROC change vs float32):
QOperator MinMax -0.0047 / -0.0019, percentile 99.99 -0.0036 / +0.0042; QDQ (symmetric) MinMax
-0.0124 / -0.0126, entropy the same, percentile 99.999 -0.0083 / -0.0038, percentile 99.99
-0.0025 / +0.0011. Symmetric int8 wastes half its range on post-ReLU tensors, so clipping the rare
extremes matters most there.

The first backbone convolutions can stay float32 (``float_convs``, :func:`first_convs`): they are
added to ``nodes_to_exclude``, so onnxruntime puts a DequantizeLinear / QuantizeLinear around them (or
leaves them outside the Q/DQ pairs). The stem sees the raw, full-range frame, where int8 steps cost the
most, and it is cheap; the INT8 rows keep two in float (issue 12), which cost little speed.

``CalibMaxIntermediateOutputs`` is not used: in onnxruntime 1.32 the MinMax ranges it merges came out
narrower than one pass over the same frames (a small MobileNetV2 case lost 0.1 image AUROC).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.calibrate import TensorsData, load_tensors_data
from tqdm import tqdm

from padim_edge import graph_names
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.graph import (
    backbone_nodes,
    io_signature,
    non_backbone_node_names,
    prefix_unstaged,
)
from padim_edge.calibration.modelio import needs_external_data, save_model
from padim_edge.calibration.settings import (  # noqa: F401  (their home; re-exported here)
    CALIBRATION_METHOD,
    DEFAULT_CALIBRATION_IMAGES,
    FEW_CALIBRATION_IMAGES,
    FORMATS,
    PERCENTILE,
    QDQ,
    QOPERATOR,
)
from padim_edge.images import ImageError, load_image, resize_frame

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Op types onnxruntime can quantise that appear in the supported backbones.
QUANTIZABLE_OPS = frozenset(
    {
        "Conv",
        "Add",
        "Mul",
        "Relu",
        "Clip",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Concat",
        "MatMul",
        "Gemm",
    }
)
#: Most frames whose activations are held at once while the histograms are collected.
FRAMES_PER_PASS = 10
#: File names onnxruntime's ``write_calibration_table`` writes, for the TensorRT EP.
TENSORRT_TABLE_FILES = ("calibration.flatbuffers", "calibration.cache", "calibration.json")


@dataclass
class Int8Result:
    """A quantised model and how it was calibrated.

    Attributes:
        proto: The quantised model (metadata not yet updated).
        images: Calibration images used.
        ranges: Activation ranges of the backbone's tensors (name -> min/max), for a TensorRT table.
        quantized_nodes: Backbone op counts after quantisation.
        warnings: Caveats for the user.
        float_convs: Names of the backbone Conv nodes kept in float32.
    """

    proto: onnx.ModelProto
    images: int
    ranges: TensorsData
    quantized_nodes: dict[str, int]
    warnings: list[str]
    float_convs: list[str] = field(default_factory=list)


class FrameReader(CalibrationDataReader):
    """Feeds one decoded uint8 ``[1, H, W, 3]`` frame per calibration batch.

    ``set_range`` lets onnxruntime collect the histograms a few frames at a time
    (``CalibStridedMinMax``), so only that many frames' activations are ever held in memory.

    Args:
        paths: Image files.
        progress: Show a progress bar.
        size: ``(H, W)`` of a fixed-size model (TensorRT target): frames are resized to it first.
    """

    def __init__(
        self, paths: list[Path], *, progress: bool = True, size: tuple[int, int] | None = None
    ) -> None:
        self.paths = list(paths)
        self.progress = progress
        self.size = size
        self._frames: Iterator[Path] = iter(self.paths)
        self._bar: tqdm | None = None
        self._done = 0

    def __len__(self) -> int:
        return len(self.paths)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Feed ``paths[start_index:end_index]`` next."""
        self._frames = iter(self.paths[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next ``{"images": frame}`` feed, or ``None`` at the end of the range."""
        if self._bar is None:
            self._bar = tqdm(
                total=len(self.paths), desc="int8 calibration", unit="img", disable=not self.progress
            )
        path = next(self._frames, None)
        if path is None:
            return None
        try:
            frame = load_image(path)
        except ImageError as exc:
            raise CalibrationError(str(exc)) from exc
        self._done += 1
        self._bar.update(1)
        if self._done == len(self.paths):
            self._bar.close()
        if self.size is not None:
            frame = resize_frame(frame, self.size)
        return {graph_names.INPUT: frame[None]}


def frames_per_pass(count: int, most: int = FRAMES_PER_PASS) -> int:
    """The largest number of frames ``<= most`` that divides ``count`` (onnxruntime needs a divisor)."""
    return next(k for k in range(min(most, count), 0, -1) if count % k == 0)


def pick_calibration_images(paths: list[Path], count: int) -> list[Path]:
    """``count`` images spread evenly over ``paths`` (all of them when there are fewer).

    Raises:
        CalibrationError: Fewer than 2 images available or asked for.
    """
    if count < 2:
        raise CalibrationError(f"--calibration-images must be at least 2, got {count}")
    if len(paths) < 2:
        raise CalibrationError(f"INT8 calibration needs at least 2 images, found {len(paths)}")
    if len(paths) <= count:
        return list(paths)
    picks = np.unique(np.linspace(0, len(paths) - 1, count).round().astype(int))
    return [paths[i] for i in picks]


def quantize_options(fmt: str, *, frames: int) -> dict[str, object]:
    """``quantize_static`` keyword arguments of a format (besides the graph-specific ones).

    Args:
        fmt: ``qoperator`` or ``qdq``.
        frames: Calibration frames (the histograms are collected a divisor of it at a time).
    """
    calibration = {"CalibPercentile": PERCENTILE, "CalibStridedMinMax": frames_per_pass(frames)}
    common = {"weight_type": QuantType.QInt8, "calibrate_method": CalibrationMethod.Percentile}
    if fmt == QOPERATOR:
        return {
            **common,
            "quant_format": QuantFormat.QOperator,
            "activation_type": QuantType.QUInt8,
            "extra_options": calibration,
        }
    if fmt == QDQ:
        symmetric = {"ActivationSymmetric": True, "WeightSymmetric": True}
        return {
            **common,
            "quant_format": QuantFormat.QDQ,
            "activation_type": QuantType.QInt8,
            # int32 bias DequantizeLinear: TensorRT refuses it
            "extra_options": {**calibration, **symmetric, "QuantizeBias": False},
        }
    raise CalibrationError(f"unknown INT8 format {fmt!r}; choose one of {', '.join(FORMATS)}")


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """Silence onnxruntime.quantization's root-logger warnings and its histogram ``print`` calls."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def _stage_ops(proto: onnx.ModelProto, *, backbone: bool) -> Counter[tuple[str, str]]:
    return Counter(
        (n.name.split("/", 1)[0], n.op_type)
        for n in proto.graph.node
        if n.name.startswith(graph_names.BACKBONE) == backbone
    )


def first_convs(proto: onnx.ModelProto, n: int) -> list[str]:
    """Names of the first ``n`` ``Conv`` nodes of the backbone, in topological order.

    The order is the graph's own wherever it is valid (an ONNX graph must be topologically sorted, and
    the exporter's is), else the earliest-ready node first: the stem comes first.

    Args:
        proto: A padim-edge model.
        n: How many (0: none; more than the backbone has: all of them).

    Raises:
        CalibrationError: ``n`` is negative, or the graph has no backbone nodes.
    """
    if n < 0:
        raise CalibrationError(f"the number of float convolutions must be >= 0, got {n}")
    nodes = backbone_nodes(proto.graph)
    producer = {o: index for index, node in enumerate(nodes) for o in node.output if o}
    waiting = [{producer[i] for i in node.input if i in producer} for node in nodes]
    consumers: dict[int, list[int]] = {}
    for index, deps in enumerate(waiting):
        for dep in deps:
            consumers.setdefault(dep, []).append(index)
    ready = [index for index, deps in enumerate(waiting) if not deps]
    heapq.heapify(ready)
    convs: list[str] = []
    while ready and len(convs) < n:
        index = heapq.heappop(ready)
        if nodes[index].op_type == "Conv":
            convs.append(nodes[index].name)
        for nxt in consumers.get(index, []):
            waiting[nxt].discard(index)
            if not waiting[nxt]:
                heapq.heappush(ready, nxt)
    return convs


def quantize_backbone(
    proto: onnx.ModelProto,
    images: list[Path],
    *,
    fmt: str = QOPERATOR,
    progress: bool = True,
    size: tuple[int, int] | None = None,
    float_convs: int = 0,
) -> Int8Result:
    """Quantise the backbone of a float32 padim-edge graph.

    Args:
        proto: The float32 model (without decision outputs).
        images: Calibration images (normal parts, any sizes).
        fmt: ``qoperator`` or ``qdq``.
        progress: Show a progress bar while calibrating.
        size: ``(H, W)`` of a fixed-size model: calibration frames are resized to it.
        float_convs: Keep the backbone's first this many ``Conv`` nodes float32 (:func:`first_convs`).

    Raises:
        CalibrationError: Too few images, no backbone nodes, a negative ``float_convs``, or a quantised
            graph that changed the model's inputs/outputs or its float32 stages.
    """
    if len(images) < 2:
        raise CalibrationError(f"INT8 calibration needs at least 2 images, got {len(images)}")
    options = quantize_options(fmt, frames=len(images))
    ops = sorted({n.op_type for n in backbone_nodes(proto.graph)} & QUANTIZABLE_OPS)
    kept_float = first_convs(proto, float_convs)
    excluded = non_backbone_node_names(proto.graph) + kept_float
    external = needs_external_data(proto)
    warnings = []
    if len(images) < FEW_CALIBRATION_IMAGES:
        warnings.append(
            f"only {len(images)} calibration images: activation ranges may clip parts the calibration did "
            f"not see; {FEW_CALIBRATION_IMAGES}-{DEFAULT_CALIBRATION_IMAGES * 2} normal images are typical"
        )
    with tempfile.TemporaryDirectory(prefix="padim-int8-") as tmp:
        source, target, cache = Path(tmp) / "float32.onnx", Path(tmp) / "int8.onnx", Path(tmp) / "ranges.json"
        save_model(proto, source, check=False)
        with _quiet_quantizer():
            quantize_static(
                str(source),
                str(target),
                FrameReader(images, progress=progress, size=size),
                op_types_to_quantize=ops,
                nodes_to_exclude=excluded,
                per_channel=True,
                reduce_range=True,  # 7-bit weights: no int16 saturation on CPUs without VNNI
                use_external_data_format=external,
                calibration_cache_path=str(cache),
                **options,  # type: ignore[arg-type]
            )
        measured = load_tensors_data(cache)
        quantized = onnx.load(str(target))
    # keep the backbone's tensors only (a preprocessing Add is of a calibrated op type too)
    backbone_tensors = {t for n in backbone_nodes(proto.graph) for t in [*n.input, *n.output]}
    ranges = TensorsData(
        measured.calibration_method, {name: measured[name] for name in measured if name in backbone_tensors}
    )
    prefix_unstaged(quantized.graph)
    if io_signature(quantized) != io_signature(proto):
        raise CalibrationError(
            f"quantisation changed the model's interface: {io_signature(proto)} -> {io_signature(quantized)}"
        )
    if _stage_ops(quantized, backbone=False) != _stage_ops(proto, backbone=False):
        raise CalibrationError("quantisation changed nodes outside the backbone; they must stay float32")
    counts = Counter(n.op_type for n in quantized.graph.node if n.name.startswith(graph_names.BACKBONE))
    return Int8Result(
        proto=quantized,
        images=len(images),
        ranges=ranges,
        quantized_nodes=dict(counts),
        warnings=warnings,
        float_convs=kept_float,
    )


def write_tensorrt_table(ranges: TensorsData, folder: Path) -> list[Path]:
    """Write the TensorRT EP's INT8 calibration table (backbone activations) into ``folder``.

    The TensorRT EP reads it for the float32 model with ``trt_int8_enable`` and
    ``trt_int8_calibration_table_name`` (file names are fixed by onnxruntime).
    """
    from onnxruntime.quantization import write_calibration_table

    folder.mkdir(parents=True, exist_ok=True)
    write_calibration_table({name: ranges[name] for name in ranges}, dir=str(folder))
    return [folder / name for name in TENSORRT_TABLE_FILES if (folder / name).exists()]
