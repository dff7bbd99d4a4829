"""The data sets and settings of the accuracy benchmarks, under the name older scripts import.

Their one home is :mod:`harness`; this module only re-exports them.
"""

from __future__ import annotations

from harness import (
    CROP,
    DIMS,
    GENERATED,
    RESIZE,
    RESULTS,
    SETS,
    SHARED,
    TILES,
    WEIGHTS,
    even_spread,
    finite,
    fit_folder,
    log,
    prepare_fit,
    prepare_set,
)

__all__ = [
    "CROP", "DIMS", "GENERATED", "RESIZE", "RESULTS", "SETS", "SHARED", "TILES", "WEIGHTS",
    "even_spread", "finite", "fit_folder", "log", "prepare_fit", "prepare_set",
]  # fmt: skip
