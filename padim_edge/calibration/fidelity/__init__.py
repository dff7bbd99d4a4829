"""Fidelity report: how closely a calibrated variant follows the model it was made from.

Every ``padim-calibrate --int8 / --fp16 / --head-precision`` run scores held-out defect-free frames with
the input model (the reference) and with the new variant, both through the torch-free runtime
(:mod:`padim_edge.calibration.scoring`), and reports:

* ``synthetic_image_auroc`` / ``synthetic_pixel_auroc``: ``[reference, variant]`` image and pixel
  AUROC on the held-out frames with and without pasted synthetic defects
  (:mod:`.synthetic_defects`), and ``synthetic_*_drop``: the 95 % paired
  bootstrap interval over the frames of ``reference - variant`` (:mod:`.stats`).
* ``separation``: the variant's change of the anomaly maps in units of the reference's own gap between
  defect and normal pixels (:func:`.stats.separation`).
* ``spearman``: Spearman rank correlation of the normal frames' image scores (secondary: normal frames
  score close together, so it reorders near-equal scores without any AUROC change).
* ``map_error_median`` / ``map_error_worst``: per-frame relative L2 error of the anomaly maps,
  ``||map_variant - map_reference|| / ||map_reference||``, median and worst over the frames.
* ``score_ratio_median``: median of ``score_variant / score_reference`` (a systematic scale change; a
  threshold chosen on the reference's scores would not fit the variant).
* ``image_auroc`` / ``pixel_auroc`` with ``--labeled ROOT``: ``[reference, variant]`` on its test images
  (:mod:`padim_edge.evaluation.metrics`, which needs scikit-learn and scipy), flagged past
  :data:`MAX_AUROC_DROP` / :data:`MAX_PIXEL_AUROC_DROP`.

The frames are chosen by :mod:`.frames`, both models scored by :mod:`.measure`, the figures computed
by :mod:`.figures` and :mod:`.stats`; :mod:`.report` holds the report and its verdict.
The ``verdict`` (:attr:`Fidelity.verdict`) is one of:

* ``low fidelity`` (``LOW FIDELITY``): a labelled AUROC lost more than :data:`MAX_AUROC_DROP`, or the
  whole interval of a synthetic drop lies above :data:`MAX_SYNTHETIC_AUROC_DROP` (a loss beyond doubt)
  on both the image and the pixel AUROC, or on one of them and the maps moved at least
  :data:`MIN_LOW_SEPARATION` of the reference's defect-to-normal gap, or a
  synthetic drop beyond doubt is more than :data:`MAX_SKILL_LOSS` of the reference's margin over chance
  (a collapse, however little the maps moved), or NaN / inf scores;
* ``ok``: the labelled AUROCs held, or every synthetic check with power rules out a drop past
  :data:`MAX_PLAUSIBLE_DROP`, or the maps moved less than :data:`MAX_SEPARATION` of the reference's
  defect-to-normal gap;
* ``not enough evidence`` (``NOT ENOUGH EVIDENCE``): neither can be told from these frames (too few, or
  the reference's own synthetic AUROC too close to chance), with how to give it more. It is a line of
  the report (:meth:`Fidelity.verdict_line`), not a warning: nothing was found wrong.

With fewer than :data:`MIN_FRAMES` frames it prints ``NO FIDELITY REPORT`` and how to get one. The
figures and the verdict are stored as JSON in the model's ``padim_edge.fidelity`` metadata
(:attr:`padim_edge.metadata.ModelInfo.fidelity`). Needs numpy and onnxruntime only (no torch, no
scipy); the labelled AUROC figures import the evaluation package.
"""

from __future__ import annotations

from padim_edge.calibration.fidelity.figures import (  # noqa: F401 (the report's names, importable here)
    auroc,
    finite,
    map_error,
    rankdata,
    rounded,
    spearman,
    summarise,
)
from padim_edge.calibration.fidelity.frames import (  # noqa: F401
    HOW_TO_GET_ONE,
    FramePlan,
    applies,
    no_report_warning,
    plan_frames,
    split_data,
    spread,
)
from padim_edge.calibration.fidelity.measure import measure, synthetic_figures  # noqa: F401
from padim_edge.calibration.fidelity.report import (  # noqa: F401
    LABELLED_EVIDENCE,
    LOW,
    MORE_EVIDENCE,
    OK,
    UNSURE,
    Fidelity,
    Pair,
    SyntheticFigures,
    drop,
)
from padim_edge.calibration.settings import (  # noqa: F401 (their home; importable from here too)
    MAX_AUROC_DROP,
    MAX_FRAMES,
    MAX_MAP_ERROR,
    MAX_PIXEL_AUROC_DROP,
    MAX_PLAUSIBLE_DROP,
    MAX_SEPARATION,
    MAX_SKILL_LOSS,
    MAX_SYNTHETIC_AUROC_DROP,
    MAX_SYNTHETIC_PIXEL_AUROC_DROP,
    MIN_FRAMES,
    MIN_LOW_SEPARATION,
    MIN_REFERENCE_AUROC,
    MIN_SPEARMAN,
    MIN_VERDICT_FRAMES,
    SOURCE_DATA,
    SOURCE_LABELED,
    SOURCE_SPLIT,
    SOURCE_VALIDATE,
)
