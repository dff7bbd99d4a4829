"""The accuracy benchmarks' data sets and settings under an older name; their home is :mod:`harness`."""

from harness import *  # noqa: F403  (CROP, DIMS, RESIZE, RESULTS, SETS, TILES, WEIGHTS, prepare_fit, ...)
