"""A small built-in demo dataset, generated procedurally (numpy + Pillow; no download, no torch).

* :mod:`.dataset`: :func:`make_demo_dataset` writes (or reuses) the MVTec-layout folder.
* :mod:`.texture`: the woven-fabric texture and the scratch / stain / hole defects.
* :mod:`.dark_texture`: a dark, low-contrast rubber-like set cut from scikit-image's gravel photo
  (optional: needs scikit-image, the ``bench`` extra; not imported here).

``python -m padim_edge.demo ROOT`` writes the demo set from the command line,
``python -m padim_edge.demo.dark_texture ROOT`` the dark one.
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
