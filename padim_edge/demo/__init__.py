"""A small built-in demo dataset, generated procedurally (numpy + Pillow; no download, no torch).

* :mod:`.dataset`: :func:`make_demo_dataset` writes (or reuses) the MVTec-layout folder.
* :mod:`.texture`: the woven-fabric texture and the scratch / stain / hole defects.

``python -m padim_edge.demo ROOT`` writes it from the command line.
"""

from padim_edge.demo.dataset import (
    MANIFEST_NAME,
    MIN_SIZE,
    DemoDataset,
    demo_summary,
    main,
    make_demo_dataset,
)
from padim_edge.demo.texture import AREA_RANGE, DEFECT_TYPES

__all__ = [
    "AREA_RANGE",
    "DEFECT_TYPES",
    "MANIFEST_NAME",
    "MIN_SIZE",
    "DemoDataset",
    "demo_summary",
    "main",
    "make_demo_dataset",
]
