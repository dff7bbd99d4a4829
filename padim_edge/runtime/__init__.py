"""The torch-free runtime: numpy + onnxruntime only, for edge boxes.

Example:
    >>> from padim_edge.runtime import PadimModel
    >>> model = PadimModel("model.onnx", device="auto")
    >>> result = model.predict(frame)[0]  # frame: uint8 [H, W, 3] RGB
    >>> result.score, result.anomaly_map.shape
"""

try:
    import onnxruntime  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "padim_edge.runtime needs onnxruntime: pip install 'padim-edge[cpu]' "
        "(or 'padim-edge[gpu]' for CUDA / "
        "TensorRT; never both)"
    ) from exc

from padim_edge.metadata import ModelInfo
from padim_edge.runtime.model import InputError, ModelLoadError, PadimModel, Prediction
from padim_edge.runtime.providers import ProviderError, available
from padim_edge.runtime.tensorrt import TrtProfile

__all__ = [
    "InputError",
    "ModelInfo",
    "ModelLoadError",
    "PadimModel",
    "Prediction",
    "ProviderError",
    "TrtProfile",
    "available",
]
