"""Which frames the fidelity report compares on, and which INT8 calibrates on (paths only, no scoring).

Held-out frames, in order of preference: ``--validate DIR``; the ``test/good`` images of ``--labeled``;
for INT8 a part of ``--data`` that does not calibrate (:func:`split_data`); for FP16 and head variants,
which calibrate on nothing, ``--data`` itself. At most :data:`MAX_FRAMES`, spread evenly; INT8
calibration frames are never among them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from padim_edge.calibration import int8
from padim_edge.calibration.errors import CalibrationError
from padim_edge.calibration.settings import (
    MAX_FRAMES,
    MIN_FRAMES,
    SOURCE_DATA,
    SOURCE_LABELED,
    SOURCE_SPLIT,
    SOURCE_VALIDATE,
)

if TYPE_CHECKING:
    from padim_edge.calibration.formats import Variant

HOW_TO_GET_ONE = (
    f"pass --validate DIR (at least {MIN_FRAMES} defect-free images that the model was not fitted on and "
    "INT8 did not calibrate on), or more --data images"
)


def applies(variant: Variant) -> bool:
    """Whether a variant gets a fidelity report: it changes the backbone's or the head's arithmetic."""
    return variant.precision is not None or variant.head_precision is not None


def spread(paths: list[Path], count: int) -> list[Path]:
    """At most ``count`` of ``paths``, spread evenly (all of them when there are fewer)."""
    if len(paths) <= count:
        return list(paths)
    picks = np.unique(np.linspace(0, len(paths) - 1, count).round().astype(int))
    return [paths[i] for i in picks]


def split_data(paths: list[Path], count: int, *, hold_out: bool) -> tuple[list[Path], list[Path], list[str]]:
    """Split ``--data`` into INT8 calibration frames and held-out frames for the fidelity report.

    With enough images the calibration frames are the even spread of ``count`` that
    :func:`padim_edge.calibration.int8.pick_calibration_images` picks, and every other image is held
    out. With fewer than ``count + MIN_FRAMES``, ``max(MIN_FRAMES, n // 5)`` images (an even spread) are
    held out and the rest calibrate, with a warning; with too few for both, all calibrate and none are
    held out.

    Returns:
        ``(calibration, held_out, warnings)``; the two lists never share a file.

    Raises:
        CalibrationError: Fewer than 2 images, or ``count`` below 2 (as for INT8 calibration).
    """
    calibration = int8.pick_calibration_images(paths, count)
    if not hold_out:
        return calibration, [], []
    if len(paths) >= count + MIN_FRAMES:
        chosen = set(calibration)
        return calibration, [p for p in paths if p not in chosen], []
    held_count = max(MIN_FRAMES, len(paths) // 5)
    if len(paths) - held_count < 2:
        return calibration, [], []  # the report's own NO FIDELITY REPORT warning says why
    held = spread(paths, held_count)
    kept = set(held)
    calibration = [p for p in paths if p not in kept]
    return (
        calibration,
        held,
        [
            f"--data has {len(paths)} images, fewer than the {count} INT8 calibration frames plus "
            f"{MIN_FRAMES} held-out frames asked for: {len(calibration)} calibrate and {len(held)} are held "
            "out for the fidelity report (pass more images, or --validate DIR for the report)"
        ],
    )


@dataclass
class FramePlan:
    """The frames a calibration run uses.

    Attributes:
        calibration: INT8 calibration frames.
        frames: Held-out normal frames for the fidelity report (empty: no report).
        source: Where ``frames`` came from.
        measure: Whether this variant gets a fidelity report at all (it changes the arithmetic).
        candidates: Held-out frames available before the :data:`MAX_FRAMES` cap.
        warnings: Caveats about the split.
    """

    calibration: list[Path]
    frames: list[Path]
    source: str
    measure: bool
    candidates: int = 0
    warnings: list[str] = field(default_factory=list)


def plan_frames(
    *,
    measure: bool,
    calibrates: bool,
    data_paths: list[Path] | None,
    calibration_count: int,
    validate_paths: list[Path] | None = None,
    labeled_normal: list[Path] | None = None,
) -> FramePlan:
    """Choose the INT8 calibration frames and the held-out frames (see the module docstring).

    Args:
        measure: The variant changes the arithmetic (INT8 / FP16 / head precision): make a report.
        calibrates: The variant calibrates on ``data_paths`` (INT8).
        data_paths: The ``--data`` images, or ``None``.
        calibration_count: Most INT8 calibration frames.
        validate_paths: The ``--validate`` images, or ``None``.
        labeled_normal: The ``test/good`` images of ``--labeled``, or ``None``.

    Raises:
        CalibrationError: As :func:`split_data`.
    """
    calibration: list[Path] = []
    held: list[Path] = []
    warnings: list[str] = []
    if calibrates:
        if data_paths is None:
            raise CalibrationError("INT8 calibrates on normal images: pass --data DIR")
        hold_out = measure and validate_paths is None and labeled_normal is None
        calibration, held, warnings = split_data(data_paths, calibration_count, hold_out=hold_out)
    if not measure:
        return FramePlan(calibration, [], "", measure=False)
    if validate_paths is not None:
        candidates, source = validate_paths, SOURCE_VALIDATE
    elif labeled_normal is not None:
        candidates, source = labeled_normal, SOURCE_LABELED
    elif calibrates:
        candidates, source = held, SOURCE_SPLIT
    else:
        candidates, source = list(data_paths or []), SOURCE_DATA
    used = {p.resolve() for p in calibration}
    overlap = [p for p in candidates if p.resolve() in used]
    if overlap:
        warnings.append(
            f"{len(overlap)} of the {source} frames are INT8 calibration frames too; they are left out of "
            "the fidelity report (a variant is always closest to the reference on its calibration frames)"
        )
        candidates = [p for p in candidates if p.resolve() not in used]
    return FramePlan(
        calibration,
        spread(candidates, MAX_FRAMES),
        source,
        measure=True,
        candidates=len(candidates),
        warnings=warnings,
    )


def no_report_warning(plan: FramePlan, variant: str) -> str:
    """``NO FIDELITY REPORT``: why, and how to get one."""
    found = len(plan.frames)
    where = f" ({plan.source})" if plan.source else ""
    return (
        f"NO FIDELITY REPORT: the {variant} model was not compared with the model it was made from: "
        f"{found} held-out normal frame{'s' if found != 1 else ''}{where}, at least {MIN_FRAMES} needed; "
        + HOW_TO_GET_ONE
    )
