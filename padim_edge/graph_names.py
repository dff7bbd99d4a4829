"""Names in the exported graph: its input, its outputs, and the stage prefix of every node.

Calibration relies on the stage prefixes: INT8 and FP16 touch ``padim_backbone/`` nodes only, so the
preprocessing and the Mahalanobis head stay float32. No torch, no onnx: the runtime imports this.
"""

INPUT = "images"
ANOMALY_MAP = "anomaly_map"
SCORE = "score"
IS_ANOMALOUS = "is_anomalous"
NORMALIZED_SCORE = "normalized_score"

PREPROCESS = "padim_preprocess/"
BACKBONE = "padim_backbone/"
REDUCE = "padim_reduce/"
HEAD = "padim_head/"
STAGES = (PREPROCESS, BACKBONE, REDUCE, HEAD)
