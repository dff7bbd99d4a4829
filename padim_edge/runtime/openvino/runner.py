"""Run uint8 frame batches on OpenVINO: one compiled model per ``(N, H, W)``, infer requests pooled.

The first batch of a shape compiles it (or, with a warm cache, imports the compiled blob);
later batches of that shape reuse it. A camera sends one frame size; a data set on disk may send
hundreds (the magnetic tile: 590 sizes in 630 test images), where a compile (and a cached blob the size
of the model) per size would not pay: past :data:`STATIC_SIZES` frame sizes, new sizes run on one
model per batch size that takes the resize matrices as inputs (computed here in numpy, the same
matrices). An ``InferRequest`` serves one call at a time, so each shape
keeps a small pool: concurrent :meth:`OpenVinoRunner.run` calls from several threads each take their
own request (:class:`padim_edge.runtime.PadimModel` is documented thread-safe). Python 3.8 compatible.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from padim_edge.runtime.openvino.loader import PROVIDER, ModelLoader
from padim_edge.runtime.openvino.resize import resize_crop_matrices
from padim_edge.runtime.openvino.specialise import COLS_T, ROWS

#: Frame sizes compiled statically (each its own compiled model per batch size); later sizes share one.
STATIC_SIZES = 4


class _Compiled:
    """One compiled shape and its idle infer requests."""

    def __init__(self, compiled: Any, *, any_size: bool = False) -> None:
        self.compiled = compiled
        self.any_size = any_size
        self.idle: list[Any] = []
        self.lock = threading.Lock()

    def take(self) -> Any:
        with self.lock:
            if self.idle:
                return self.idle.pop()
        return self.compiled.create_infer_request()

    def give(self, request: Any) -> None:
        with self.lock:
            self.idle.append(request)


class OpenVinoRunner:
    """Scores batches of one model on OpenVINO's CPU plugin.

    Args:
        loader: The read model and its compile options.

    Attributes:
        providers: ``["OpenVINO-CPU"]`` (what ``PadimModel.providers`` reports).
        inputs: Graph input names.
        outputs: Graph output names, in graph order.
        output_shapes: ``{output: shape}`` of the read graph (``None`` for a dynamic axis).
        props: The file's ``metadata_props`` (set by :func:`padim_edge.runtime.session.open_openvino`).
    """

    def __init__(self, loader: ModelLoader) -> None:
        self.loader = loader
        self.providers = [PROVIDER]
        self.inputs = list(loader.input_names)
        self.outputs = list(loader.output_names)
        self.props: dict[str, str] = {}
        self.output_shapes = dict(loader.output_shapes)
        self._shapes: dict[tuple[int, ...], _Compiled] = {}
        self._lock = threading.Lock()

    def compiled(self, shape: tuple[int, ...]) -> _Compiled:
        """The compiled model for a ``[N, H, W, 3]`` batch shape (compiled on first use)."""
        entry = self._shapes.get(shape)
        if entry is None:
            with self._lock:
                entry = self._shapes.get(shape)
                if entry is None:
                    entry = self._compile(shape)
                    self._shapes[shape] = entry
        return entry

    def _compile(self, shape: tuple[int, ...]) -> _Compiled:
        sizes = {s[1:3] for s, e in self._shapes.items() if not e.any_size}
        if len(sizes | {shape[1:3]}) > STATIC_SIZES:
            key = (shape[0], -1, -1, 3)
            if key not in self._shapes:
                compiled = self.loader.compile_any_size(shape[0])
                if compiled is not None:
                    self._shapes[key] = _Compiled(compiled, any_size=True)
            if key in self._shapes:
                return self._shapes[key]
        return _Compiled(self.loader.compile(shape[0], shape[1], shape[2]))

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Run one validated uint8 ``[N, H, W, 3]`` batch; returns every graph output by name (copies)."""
        entry = self.compiled(tuple(batch.shape))
        request = entry.take()
        inputs = {0: batch}
        if entry.any_size:
            rows, cols = resize_crop_matrices(self.loader.geometry, batch.shape[1], batch.shape[2])
            inputs[ROWS] = rows.astype(np.float32)
            inputs[COLS_T] = np.ascontiguousarray(cols.T, dtype=np.float32)
        try:
            request.infer(inputs)
            return {
                name: np.array(request.get_output_tensor(i).data, copy=True)
                for i, name in enumerate(self.outputs)
            }
        finally:
            entry.give(request)
