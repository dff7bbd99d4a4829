"""Rewrite a read OpenVINO model for one frame size: the antialiased resize + crop as two MatMuls.

OpenVINO's CPU plugin reads the default graph's ``Resize(antialias=1)`` as ``Interpolate`` and computes
it without the antialias filter, with no warning (scores move by 3-5 % of the max score). For a fixed
frame size the resize and the center crop are the linear map ``R @ X @ C.T``
(:mod:`padim_edge.runtime.openvino.resize`), so this replaces the ``Interpolate`` and the two crop
``Slice`` ops behind it with ``MatMul(MatMul(R, X), C.T)`` on the float frames, through OpenVINO's
model API: exactly the TensorRT target's graph, built in memory from the read model without onnx or
torch. Any other shape of preprocessing is refused (:class:`SpecialiseError`) rather than guessed.
Python 3.8 compatible.
"""

from __future__ import annotations

import numpy as np

from padim_edge.geometry import Geometry
from padim_edge.runtime.openvino.errors import OpenVinoModelError
from padim_edge.runtime.openvino.resize import resize_crop_matrices

#: What the refusals tell the user to do instead.
FIX = "export it with padim-export --target tensorrt --input-size HxW (resize and crop as MatMuls)"


#: Input names of the resize matrices in a model made for any frame size (:func:`matrices_as_inputs`).
ROWS, COLS_T = "padim_resize_rows", "padim_resize_cols_t"


class SpecialiseError(OpenVinoModelError):
    """The graph's preprocessing is not the resize + crop this rewrite knows."""


def antialiased_resizes(model: object) -> list[object]:
    """The ``Interpolate`` ops of ``model`` (an ``openvino.Model``) that ask for antialiasing."""
    return [
        op
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Interpolate" and op.get_attributes().get("antialias")
    ]


def _constant(node: object) -> np.ndarray:
    if node.get_type_name() != "Constant":
        raise SpecialiseError(f"the crop's {node.get_friendly_name()} is not a constant; {FIX}")
    return np.asarray(node.get_vector()).reshape(-1)


def _crop_slices(resize: object, geometry: Geometry) -> list[object]:
    """The chain of ``Slice`` ops after ``resize`` that cut the center crop on axes 2 and 3."""
    chain: list[object] = []
    node, axes = resize, set()
    while axes != {2, 3}:
        users = list(node.output(0).get_target_inputs())
        if len(users) != 1 or users[0].get_node().get_type_name() != "Slice":
            raise SpecialiseError(f"the resize is not followed by the center crop's Slice ops; {FIX}")
        node = users[0].get_node()
        start, stop, step, axis = (_constant(node.input_value(i).get_node()) for i in range(1, 5))
        for a, s, e, k in zip(axis, start, stop, step):
            a = int(a) % 4
            if a not in (2, 3) or a in axes or int(s) != geometry.offset or int(k) != 1:
                raise SpecialiseError(f"unexpected crop Slice {node.get_friendly_name()}; {FIX}")
            if min(int(e), geometry.resize) != geometry.offset + geometry.crop:
                raise SpecialiseError(f"unexpected crop Slice {node.get_friendly_name()}; {FIX}")
            axes.add(a)
        chain.append(node)
    return chain


def check_resize(resize: object, geometry: Geometry) -> list[object]:
    """Check one antialiased ``Interpolate`` is the model's resize followed by its center crop.

    Returns:
        The crop's ``Slice`` ops, in order.

    Raises:
        SpecialiseError: Another mode, coordinate rule or size, or no center crop behind it.
    """
    attrs = resize.get_attributes()
    shape = resize.get_output_partial_shape(0)
    spatial = [shape[2], shape[3]] if shape.rank.is_static and shape.rank.get_length() == 4 else []
    if (
        attrs.get("mode") not in ("linear", "linear_onnx")
        or attrs.get("coordinate_transformation_mode") != "half_pixel"
        or [d.get_length() if d.is_static else None for d in spatial] != [geometry.resize] * 2
    ):
        raise SpecialiseError(
            f"the antialiased resize {resize.get_friendly_name()} is not the model's bilinear "
            f"{geometry.resize}x{geometry.resize} resize; {FIX}"
        )
    return _crop_slices(resize, geometry)


def specialise_resize(model: object, geometry: Geometry, height: int, width: int) -> int:
    """Replace each antialiased resize + crop of ``model`` by constant MatMuls for ``height x width``.

    Args:
        model: An ``openvino.Model`` read from a padim-edge graph (edited in place).
        geometry: The model's resize and crop (its metadata).
        height: Frame height the compiled model will see.
        width: Frame width.

    Returns:
        How many resizes were replaced (0 for a graph without one: the TensorRT target).

    Raises:
        SpecialiseError: The resize is not the linear-mode, half-pixel resize to ``resize x resize``
            followed by the center crop, so the rewrite would not be exact.
    """
    from openvino import opset13 as ops

    rows, cols = resize_crop_matrices(geometry, height, width)
    left = ops.constant(rows.astype(np.float32))
    right = ops.constant(np.ascontiguousarray(cols.T).astype(np.float32))
    return _replace(model, geometry, left, right)


def matrices_as_inputs(model: object, geometry: Geometry) -> bool:
    """Replace the antialiased resize + crop by MatMuls with two new inputs, for frames of any size.

    The inputs are :data:`ROWS` ``float32 [crop, H]`` and :data:`COLS_T` ``float32 [W, crop]`` (``R`` and
    ``C.T`` of :func:`padim_edge.runtime.openvino.resize.resize_crop_matrices` for the frame size fed),
    so one compiled model serves every frame size: what the runner falls back to for data sets whose
    frames come in many sizes (one static compile per size would not pay).

    Returns:
        Whether the graph had the resize (``False``: nothing changed, no inputs added).

    Raises:
        SpecialiseError: As :func:`specialise_resize`.
    """
    from openvino import PartialShape
    from openvino import opset13 as ops

    left = ops.parameter(PartialShape([geometry.crop, -1]), np.float32, name=ROWS)
    right = ops.parameter(PartialShape([-1, geometry.crop]), np.float32, name=COLS_T)
    if not _replace(model, geometry, left, right, validate=False):
        return False
    for parameter in (left, right):
        parameter.output(0).get_tensor().set_names({parameter.get_friendly_name()})
    model.add_parameters([left, right])
    model.validate_nodes_and_infer_types()
    return True


def _replace(model: object, geometry: Geometry, left: object, right: object, *, validate: bool = True) -> int:
    """``MatMul(MatMul(left, frames), right)`` in place of each antialiased resize + crop."""
    from openvino import opset13 as ops

    replaced = 0
    for resize in antialiased_resizes(model):
        last = check_resize(resize, geometry)[-1]
        x = ops.matmul(left, resize.input_value(0), False, False)
        x = ops.matmul(x, right, False, False)
        last.output(0).replace(x.output(0))
        replaced += 1
    if replaced and validate:
        model.validate_nodes_and_infer_types()
    return replaced
