"""Calibration: bake a decision threshold, and INT8 / FP16 variants of the exported graph.

Needs onnx, onnxruntime and onnxconverter-common (``pip install 'padim-edge[calibrate,cpu]'``), never
torch: it runs on the same edge and CI boxes as the runtime.

Example:
    >>> from padim_edge.calibration import calibrate
    >>> report = calibrate("model.onnx", "model-int8.onnx", variant="int8-qoperator", data="holdout/good",
    ...                    target_fpr=0.01)
    >>> report.choice.threshold, [str(f) for f in report.files]
"""

from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.formats import VARIANTS, Variant
from padim_edge.calibration.pipeline import CalibrationReport, calibrate
from padim_edge.calibration.threshold import ThresholdChoice, threshold_for_f1, threshold_for_fpr

__all__ = [
    "VARIANTS",
    "CalibrationError",
    "CalibrationReport",
    "ThresholdChoice",
    "Variant",
    "calibrate",
    "threshold_for_f1",
    "threshold_for_fpr",
]
