"""Calibration settings, stdlib only: ``padim-calibrate --help`` reads them without importing numpy, onnx
or onnxruntime.quantization. This is their one home; :mod:`.int8`, :mod:`.fidelity` and :mod:`.pipeline`
import (and so still export) the names they use.
"""

from __future__ import annotations

# --------------------------------------------------------------------------- INT8 (:mod:`.int8`)

QOPERATOR = "qoperator"
QDQ = "qdq"
FORMATS = (QOPERATOR, QDQ)
#: Calibration images used when the folder has more (an even spread over the sorted file list).
DEFAULT_CALIBRATION_IMAGES = 100
#: Below this many calibration images the activation ranges are likely to clip real parts.
FEW_CALIBRATION_IMAGES = 20
#: Activation ranges clip the top (100 - PERCENTILE) % of |values| seen during calibration.
PERCENTILE = 99.99
#: Metadata value of the calibration method.
CALIBRATION_METHOD = f"percentile-{PERCENTILE:g}"

# --------------------------------------------------------------------------- threshold (:mod:`.pipeline`)

#: Share of normal images allowed above the threshold when none is given.
DEFAULT_TARGET_FPR = 0.01

# --------------------------------------------------------------------------- fidelity (:mod:`.fidelity`)

#: Lowest Spearman rank correlation of image scores (variant vs reference) that is not LOW FIDELITY.
MIN_SPEARMAN = 0.99
#: Highest median relative L2 error of the anomaly maps that is not LOW FIDELITY. A quarter of the map's
#: norm: past it the map's shape, not just its noise, has changed (a sound INT8 backbone stays below
#: 0.1 on the benchmarks' categories; a head with wrong constants lands near 1).
MAX_MAP_ERROR = 0.25
#: Largest loss of image AUROC on ``--labeled`` (reference minus variant) that is not LOW FIDELITY.
MAX_AUROC_DROP = 0.02
#: Fewer held-out frames than this: no report (a rank correlation of 4 numbers says nothing).
MIN_FRAMES = 5
#: Most held-out frames scored (an even spread over the candidates): two passes over them cost time.
MAX_FRAMES = 50

#: Where the fidelity report's frames came from (its ``source``).
SOURCE_VALIDATE = "validate"
SOURCE_LABELED = "good test images of --labeled"
SOURCE_SPLIT = "held-out split of --data"
SOURCE_DATA = "--data"
