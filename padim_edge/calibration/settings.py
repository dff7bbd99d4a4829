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

# The limits below were set on benchmarks/int8_accuracy.py (three sets, 21 INT8 / FP16 variants, every
# AUROC change within 0.015): none of the figures ranks small losses well there (the Spearman of normal
# frames reorders near-equal scores without any AUROC change), so they are set to flag gross changes,
# not noise: every default INT8 variant passes, the old unrefitted ones whose scores moved by a third
# are flagged. ``--labeled`` (the AUROC change itself) is the real check.
#: Lowest Spearman rank correlation of image scores (variant vs reference) that is not LOW FIDELITY.
MIN_SPEARMAN = 0.8
#: Highest median relative L2 error of the anomaly maps that is not LOW FIDELITY (default INT8 variants
#: measured 0.02-0.04; a head with wrong constants lands near 1).
MAX_MAP_ERROR = 0.05
#: Largest loss of image AUROC on ``--labeled`` (reference minus variant) that is not LOW FIDELITY:
#: issue 12's goal.
MAX_AUROC_DROP = 0.01
#: Largest loss of pixel AUROC on ``--labeled`` (with ``ground_truth/`` masks) that is not LOW FIDELITY.
MAX_PIXEL_AUROC_DROP = 0.01

# The synthetic-defect check (:mod:`.synthetic_defects`): the held-out normal frames, each also with one
# pasted defect, scored by both models; the image and pixel AUROC of that labelled set need no labels.
#: Seed of the pasted defects (the set is a pure function of the frames and this seed).
SYNTHETIC_SEED = 0
#: Defect sizes: blob radius as a fraction of the crop edge (a line is 6 radii long, radius / 2.5 wide).
SYNTHETIC_SIZES = (0.03, 0.06, 0.1)
#: Defect contrasts: brightness shift in standard deviations of the frame's grey crop (at least
#: SYNTHETIC_MIN_STD grey levels per unit, so flat frames still get a visible defect).
SYNTHETIC_CONTRASTS = (0.75, 1.5, 3.0)
SYNTHETIC_MIN_STD = 4.0
# The verdict (:mod:`.fidelity.stats`): the synthetic-defect AUROC drop of the variant is judged with a
# paired bootstrap interval over the frames, not a raw threshold; a raw drop of 0.03 on 50 frames is
# often noise (benchmarks/results/fidelity_verdicts.md: every row of the INT8 and PatchCore-INT8
# benchmarks, the real AUROC loss beside the verdict).
#: LOW FIDELITY needs the lower end of the 95 % interval of the synthetic-defect AUROC drop (image or
#: pixel) above this: a loss the frames show beyond doubt, and one past the size that matters.
MAX_SYNTHETIC_AUROC_DROP = 0.005
#: The same for the pixel AUROC.
MAX_SYNTHETIC_PIXEL_AUROC_DROP = 0.005
#: ``ok`` needs the upper end of every drop's interval at most this (a loss past the AUROC goal, 0.01,
#: is ruled out), or the map change below :data:`MAX_SEPARATION`.
MAX_PLAUSIBLE_DROP = 0.01
#: ``ok`` also when the variant moves the anomaly maps by less than this share of the reference's own
#: gap between defect and normal pixels (:func:`.fidelity.stats.separation`): too little to reorder them.
MAX_SEPARATION = 0.05
#: A synthetic drop beyond doubt on ONE of the image and pixel AUROC is LOW FIDELITY only when the variant
#: also moves the anomaly maps by at least this share of the reference's defect-to-normal gap (else NOT
#: ENOUGH EVIDENCE: on the demo set the plain INT8 and PatchCore bank-kept variants lost pixel AUROC on
#: pasted defects beyond doubt with maps moved 0.15-0.20 of the gap, and no real AUROC; the dark texture's
#: plain INT8 variants, real pixel loss 0.010-0.020, moved them 0.42-0.45). A drop beyond doubt on BOTH
#: is LOW whatever the map change (the magnetic tile's PatchCore bank-kept variants: maps moved 0.15, real
#: loss 0.016-0.026). Set on those rows (benchmarks/results/fidelity_verdicts.md).
MIN_LOW_SEPARATION = 0.4
#: LOW FIDELITY whatever the map change when a synthetic drop beyond doubt (the lower end of its 95 %
#: interval) exceeds this share of the reference's own skill above chance (its AUROC - 0.5): the
#: variant lost a third of what the input model tells apart, a collapse no map geometry explains
#: (on the magnetic tile the variant calibrated on blank frames lost 0.41 / 0.46 of it with maps moved
#: only 0.34 of the gap; the plain demo INT8 rows with no real loss lost at most 0.24). Set on those rows.
MAX_SKILL_LOSS = 1 / 3
#: The synthetic check has no power when the lower end of the reference's own AUROC interval is at most
#: this (it barely tells the pasted defects from the normal frames itself).
MIN_REFERENCE_AUROC = 0.6
#: Fewer held-out frames than this: figures but no verdict (``not enough evidence``; a percentile bootstrap
#: of a handful of frames is too narrow), unless NaN / inf scores or a loss on --labeled.
MIN_VERDICT_FRAMES = 20
#: Fewer held-out frames than this: no report (a rank correlation of 4 numbers says nothing).
MIN_FRAMES = 5
#: Most held-out frames scored (an even spread over the candidates): two passes over them cost time.
MAX_FRAMES = 50

#: Where the fidelity report's frames came from (its ``source``).
SOURCE_VALIDATE = "validate"
SOURCE_LABELED = "good test images of --labeled"
SOURCE_SPLIT = "held-out split of --data"
SOURCE_DATA = "--data"
