"""The pieces every PaDiM head precision shares: the head's name prefix and the panel slicing nodes.

The lowest of the head's modules (numpy + onnx): :mod:`.graph_head` (the float32 head and the
dispatch on precision) and :mod:`.compact_head` (the int8 / float16 panels) both build on it, so their
dependencies run one way: ``graph_head -> compact_head -> panel_nodes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from padim_edge import graph_names

#: Name prefix of every head node and initializer (backbone calibration leaves these alone).
HEAD_PREFIX = graph_names.HEAD


def head_name(name: str) -> str:
    """``name`` under the head's prefix."""
    return HEAD_PREFIX + name


def panel_slices(
    delta: str, *, dims: int, lo: int, hi: int, index: int, columns: bool = True
) -> tuple[list[NodeProto], list[TensorProto], str, str]:
    """Slice nodes for panel ``index``: rows ``delta[..., lo:]`` it multiplies, columns ``[lo:hi]``.

    A slice that would take all of ``delta`` is ``delta`` itself (the rows of the first panel, the columns
    of a single panel), and the last panel's columns are its rows. With ``columns=False`` only the rows
    are sliced (the returned column name is then ``delta``).
    """
    n = head_name
    base = delta.removeprefix(HEAD_PREFIX)
    nodes: list[NodeProto] = []
    bounds: dict[int, str] = {}  # one int64 initializer per bound value
    made: dict[tuple[int, int], str] = {(0, dims): delta}  # the last panel's rows are its columns

    def bound(value: int, key: str) -> str:
        if value not in bounds:
            bounds[value] = n(f"{key}_{index}")
        return bounds[value]

    def cut(name: str, start: int, stop: int) -> str:
        # no copy of what is there already: each costs a pass over [P, N, d] (~30 us at R18-Rd100)
        if (start, stop) not in made:
            ends = [bound(start, "lo"), bound(stop, "end" if stop == dims else "hi"), n("axis2")]
            nodes.append(helper.make_node("Slice", [delta, *ends], [name], name=name))
            made[start, stop] = name
        return made[start, stop]

    rows = cut(n(f"{base}_tail_{index}"), lo, dims)
    cols = cut(n(f"{base}_block_{index}"), lo, hi) if columns else delta
    inits = [numpy_helper.from_array(np.array([v], dtype=np.int64), name) for v, name in bounds.items()]
    return nodes, inits, rows, cols


def iter_bounded(panels: Iterable[np.ndarray], dims: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(lo, hi, panel)`` for consecutive panels, checking that each has the rows ``lo:`` of ``dims``.

    Raises:
        ValueError: A panel of the wrong height, or panels that do not cover exactly ``dims`` columns.
    """
    lo = 0
    for panel in panels:
        hi = lo + panel.shape[-1]
        if panel.ndim != 3 or panel.shape[1] != dims - lo or hi > dims:
            raise ValueError(f"panel of shape {panel.shape} does not fit columns {lo}:{hi} of {dims}")
        yield lo, hi, panel
        lo = hi
    if lo != dims:
        raise ValueError(f"the panels cover {lo} columns, the embedding has {dims}")


def unpack_panels(panels: list[np.ndarray], patches: slice) -> np.ndarray:
    """The symmetric ``[n, d, d]`` float32 matrices of ``patches`` back from their packed panels."""
    widths = [p.shape[-1] for p in panels]
    dims = sum(widths)
    first = panels[0][patches]
    full = np.empty((first.shape[0], dims, dims), dtype=np.float32)
    lo = 0
    for panel, width in zip(panels, widths, strict=True):
        hi = lo + width
        full[:, lo:, lo:hi] = panel[patches]
        full[:, hi:, lo:hi] *= 0.5  # undo the doubling of the rows below the diagonal block
        full[:, lo:hi, hi:] = full[:, hi:, lo:hi].transpose(0, 2, 1)
        lo = hi
    return full
