"""TensorRT execution provider options, chosen from the model's metadata (pure Python; no onnx, no torch).

:func:`tensorrt_options` builds the dict the runtime hands onnxruntime's TensorRT EP:

* precision flags that match the variant: ``trt_fp16_enable`` for an fp16 backbone or an fp16 head
  (TensorRT otherwise builds the head's float16 MatMul in float32), ``trt_int8_enable
  for an INT8 QDQ backbone (explicit quantization: no calibration table, which TensorRT refuses next
  to Q/DQ layers), float32 otherwise (an INT8 QOperator model's QLinear* ops are not TensorRT ops:
  onnxruntime runs them on the CPU EP);
* an engine cache and a timing cache under one folder (default
  ``padim_edge.integrity.cache_dir() / "tensorrt"``), so the engine is built once per model, profile
  and GPU, not at every start;
* explicit min / opt / max shapes of ``images``: the model's fixed frame size (TensorRT target) with
  a batch range, or :class:`TrtProfile` for models that take any size;
* a workspace limit (default 1 GiB) that a Jetson's shared CPU/GPU memory can afford.

Option names differ between onnxruntime releases and an unknown name makes the session fail
("Invalid TensorRT EP option"), so every name is gated by :data:`OPTION_SINCE` against the installed
onnxruntime. Python 3.8 compatible (JetPack 5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from padim_edge import metadata
from padim_edge.integrity import cache_dir
from padim_edge.metadata import ModelInfo
from padim_edge.runtime.modelfile import ModelFileError, read_metadata

#: The first onnxruntime release that accepts each option we may pass (from the TensorRT EP's
#: option struct and PRs; see docs/edge-targets.md). Options not listed here are never passed.
OPTION_SINCE: dict[str, tuple[int, int]] = {
    "trt_fp16_enable": (1, 9),
    "trt_int8_enable": (1, 9),
    "trt_max_workspace_size": (1, 9),
    "trt_engine_cache_enable": (1, 9),
    "trt_engine_cache_path": (1, 9),
    "trt_timing_cache_enable": (1, 15),
    "trt_profile_min_shapes": (1, 15),
    "trt_profile_opt_shapes": (1, 15),
    "trt_profile_max_shapes": (1, 15),
    "trt_timing_cache_path": (1, 17),
}
#: Default workspace limit: 1 GiB (Jetson boards share 8-64 GB between the CPU and the GPU).
DEFAULT_WORKSPACE_BYTES = 1 << 30
#: Default batch range (min, opt, max) of the optimisation profile.
DEFAULT_BATCH = (1, 1, 8)

#: ``(N, H, W)`` (a runtime alias: ``typing.Tuple`` for Python 3.8).
Shape = Tuple[int, int, int]


@dataclass(frozen=True)
class TrtProfile:
    """One TensorRT optimisation profile for ``images``: ``(N, H, W)`` at min, opt and max.

    Frames outside it are not what the engine was built for (onnxruntime then rebuilds the engine or
    fails, depending on its version): choose it to cover the camera.
    """

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for axis, name in enumerate(("batch", "height", "width")):
            lo, mid, hi = self.min[axis], self.opt[axis], self.max[axis]
            if not 1 <= lo <= mid <= hi:
                raise ValueError(
                    f"TensorRT profile {name}: need 1 <= min <= opt <= max, got {lo}, {mid}, {hi}"
                )

    def shapes(self) -> tuple[str, str, str]:
        """``images:NxHxWx3`` strings for min, opt and max."""
        low, mid, high = (f"images:{n}x{h}x{w}x3" for n, h, w in (self.min, self.opt, self.max))
        return low, mid, high

    def __str__(self) -> str:
        return ":".join("x".join(str(v) for v in shape) for shape in (self.min, self.opt, self.max))


#: Profile for models that take any frame size: 1-8 frames from 64x64 up to 1080x1920 (H x W).
DEFAULT_DYNAMIC_PROFILE = TrtProfile(min=(1, 64, 64), opt=(1, 480, 640), max=(8, 1080, 1920))


def parse_profile(text: str) -> TrtProfile:
    """``"1x480x640:4x480x640:8x480x640"`` (min:opt:max, each ``NxHxW``) or one ``NxHxW`` for all three.

    Raises:
        ValueError: Not that form, or not ``min <= opt <= max``.
    """
    parts = text.strip().lower().split(":")
    if len(parts) not in (1, 3):
        raise ValueError(
            f"expected MIN:OPT:MAX with each NxHxW (e.g. 1x480x640:4x480x640:8x480x640), got {text!r}"
        )
    shapes = []
    for part in parts:
        try:
            values = tuple(int(v) for v in part.split("x"))
        except ValueError:
            raise ValueError(f"expected NxHxW (frames x height x width), got {part!r} in {text!r}") from None
        if len(values) != 3:
            raise ValueError(f"expected NxHxW (frames x height x width), got {part!r} in {text!r}")
        shapes.append(values)
    if len(shapes) == 1:
        shapes *= 3
    return TrtProfile(min=shapes[0], opt=shapes[1], max=shapes[2])


def fixed_profile(size: tuple[int, int], batch: tuple[int, int, int] = DEFAULT_BATCH) -> TrtProfile:
    """The profile of a model built for frames of ``size`` = (H, W): only the batch varies."""
    height, width = size
    return TrtProfile(
        min=(batch[0], height, width), opt=(batch[1], height, width), max=(batch[2], height, width)
    )


def model_profile(info: ModelInfo | None, profile: TrtProfile | None) -> TrtProfile:
    """The profile a model runs with: the requested one, checked against a fixed-size model's frames.

    Raises:
        ValueError: ``profile`` asks a fixed-size model for other frame sizes.
    """
    size = info.input_size if info is not None else None
    if size is None:
        return profile if profile is not None else DEFAULT_DYNAMIC_PROFILE
    if profile is None:
        return fixed_profile(size)
    for shape in (profile.min, profile.opt, profile.max):
        if tuple(shape[1:]) != tuple(size):
            raise ValueError(
                f"this model was built for {size[0]}x{size[1]} frames; a TensorRT profile for it may only "
                f"change the batch (e.g. 1x{size[0]}x{size[1]}:4x{size[0]}x{size[1]}:8x{size[0]}x{size[1]}), "
                f"got {profile}"
            )
    return profile


def default_cache_dir() -> Path:
    """``padim_edge.integrity.cache_dir() / "tensorrt"`` (``~/.cache/padim-edge/tensorrt``)."""
    return cache_dir() / "tensorrt"


def version_tuple(version: str) -> tuple[int, int]:
    """``"1.16.3"`` -> ``(1, 16)``; ``"1.18.0.dev2024"`` -> ``(1, 18)``."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 2:
        parts.append(0)
    return parts[0], parts[1]


def precision_flags(info: ModelInfo | None) -> dict[str, bool]:
    """``trt_fp16_enable`` / ``trt_int8_enable`` for the model's variant.

    FP16 is enabled for an fp16 backbone and for an fp16 head (``head_precision``): without the flag
    TensorRT builds float16 layers in float32.
    """
    precision = info.precision if info is not None else "fp32"
    head = info.head_precision if info is not None else "fp32"
    quant_format = info.get("quant_format") if info is not None else None
    return {
        "trt_fp16_enable": precision == "fp16" or head == "fp16",
        "trt_int8_enable": precision == "int8" and quant_format == "qdq",
    }


def tensorrt_options(
    info: ModelInfo | None,
    *,
    cache: str | os.PathLike[str] | None = None,
    profile: TrtProfile | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    ort_version: str | None = None,
) -> dict[str, object]:
    """The TensorRT EP options for a model (see the module doc). Builds a dict only: no GPU needed.

    Args:
        info: The model's metadata (``None``: treated as a float32 model of any frame size).
        cache: Folder for the engine cache (``engines/``) and timing cache (``timing/``); default
            :func:`default_cache_dir`. Not created here.
        profile: Shapes of ``images``; default: the model's fixed size, else
            :data:`DEFAULT_DYNAMIC_PROFILE`.
        workspace_bytes: TensorRT's workspace limit.
        ort_version: onnxruntime version the options are for (default: the installed one).

    Raises:
        ValueError: A profile that does not fit a fixed-size model, or a workspace below 1 MiB.
    """
    if workspace_bytes < (1 << 20):
        raise ValueError(f"TensorRT workspace must be at least 1 MiB, got {workspace_bytes} bytes")
    if ort_version is None:
        import onnxruntime

        ort_version = onnxruntime.__version__
    root = Path(cache) if cache is not None else default_cache_dir()
    shapes = model_profile(info, profile).shapes()
    options: dict[str, object] = dict(precision_flags(info))
    options.update(
        {
            "trt_max_workspace_size": int(workspace_bytes),
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(root / "engines"),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(root / "timing"),
            "trt_profile_min_shapes": shapes[0],
            "trt_profile_opt_shapes": shapes[1],
            "trt_profile_max_shapes": shapes[2],
        }
    )
    have = version_tuple(ort_version)
    return {name: value for name, value in options.items() if have >= OPTION_SINCE[name]}


def cache_folders(options: dict[str, object]) -> list[Path]:
    """The folders named by ``options`` (to create before the session opens)."""
    return [Path(str(options[k])) for k in ("trt_engine_cache_path", "trt_timing_cache_path") if k in options]


def options_for_file(
    path: str | os.PathLike[str],
    device: str,
    *,
    cache: str | os.PathLike[str] | None = None,
    profile: TrtProfile | str | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
) -> dict[str, object] | None:
    """The TensorRT EP options to open ``path`` on ``device`` with; ``None`` when it resolves to no TensorRT.

    Every session the toolkit opens on the TensorRT EP (:class:`padim_edge.runtime.PadimModel`, the
    benchmark's backbone-alone graphs) gets its options here: the file's metadata is read without
    loading it (a file without padim-edge metadata counts as a float32 model of any frame size), and
    the cache folders are created.

    Raises:
        ValueError: Unknown device, a bad profile string, or a profile that does not fit the model.
        padim_edge.runtime.providers.ProviderError: An explicit device this onnxruntime build lacks.
    """
    from padim_edge.runtime import providers

    if providers.TENSORRT not in providers.resolve(device):
        return None
    try:
        info: ModelInfo | None = metadata.parse(read_metadata(path), source=str(path))
    except (ModelFileError, metadata.NotAPadimModelError, OSError, ValueError):
        info = None  # the session that opens the file reports what is wrong with it
    if isinstance(profile, str):
        profile = parse_profile(profile)
    options = tensorrt_options(info, cache=cache, profile=profile, workspace_bytes=workspace_bytes)
    for folder in cache_folders(options):
        folder.mkdir(parents=True, exist_ok=True)
    return options
