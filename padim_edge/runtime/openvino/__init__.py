"""A native OpenVINO backend for the torch-free runtime (``PadimModel(path, device="openvino")``).

Polygraphy-style: :class:`ModelLoader` reads the file and compiles a static-shape copy per
``(N, H, W)`` (f32 pinned, antialiased resize rewritten as MatMuls, compiled blobs cached on disk);
:class:`OpenVinoRunner` runs batches on them. Needs ``pip install 'padim-edge[openvino]'``; only
imported when that device is asked for.
"""

from __future__ import annotations

from padim_edge.runtime.openvino.errors import OpenVinoModelError
from padim_edge.runtime.openvino.loader import (
    PRECISIONS,
    PROVIDER,
    CompileOptions,
    ModelLoader,
    default_cache_dir,
    refusal,
)
from padim_edge.runtime.openvino.runner import OpenVinoRunner
from padim_edge.runtime.openvino.specialise import SpecialiseError

__all__ = [
    "PRECISIONS",
    "PROVIDER",
    "CompileOptions",
    "ModelLoader",
    "OpenVinoModelError",
    "OpenVinoRunner",
    "SpecialiseError",
    "default_cache_dir",
    "refusal",
]
