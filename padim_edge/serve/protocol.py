"""The Open Inference Protocol (KServe v2) over HTTP: inference requests in, responses out.

Both tensor encodings of the protocol are supported:

* **JSON tensors**: ``{"name", "datatype", "shape", "data"}`` with ``data`` a flat (row-major) or
  nested list;
* **the binary-data extension** (what ``tritonclient.http`` sends by default): the body is the JSON
  header followed by raw little-endian tensor bytes, the header's length in the
  ``Inference-Header-Content-Length`` HTTP header and each binary tensor's byte count in its
  ``parameters.binary_data_size``. Outputs are returned binary when the request asks for it
  (``parameters.binary_data`` on an output, or ``parameters.binary_data_output`` on the request).

Pure numpy + json; every refusal is a :class:`~padim_edge.serve.errors.RequestError` naming the field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from padim_edge.serve.errors import RequestError

#: The HTTP header that carries the JSON part's length in a binary-data request or response.
HEADER_LENGTH = "Inference-Header-Content-Length"

#: v2 datatype -> numpy dtype (the ones a padim-edge graph has, and a few a client may send by mistake).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(bool),
    "UINT8": np.dtype(np.uint8),
    "INT8": np.dtype(np.int8),
    "UINT16": np.dtype("<u2"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype of a numpy array (``FP32`` for float32 ...)."""
    for name, dtype in DATATYPES.items():
        if array.dtype == dtype:
            return name
    raise TypeError(f"no v2 datatype for numpy dtype {array.dtype}")


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request.

    Attributes:
        id: The request's ``id`` (echoed in the response), or ``None``.
        frames: uint8 ``[N, H, W, 3]``.
        outputs: ``(name, binary)`` of each requested output, or ``None`` for all of them.
        binary_default: Whether outputs not named in ``outputs`` (all, when it is ``None``) go binary.
        timeout: The request's own ``parameters.timeout`` in seconds (sent in microseconds), or ``None``.
    """

    id: str | None
    frames: np.ndarray
    outputs: list[tuple[str, bool]] | None
    binary_default: bool
    timeout: float | None = None


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise RequestError(400, f"{where}: 'parameters' must be a JSON object, got {type(params).__name__}")
    return params


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """Split a request body into its JSON header (parsed) and the binary data after it.

    Raises:
        RequestError: 400 for a bad ``Inference-Header-Content-Length`` or malformed JSON.
    """
    binary = memoryview(b"")
    head: bytes | memoryview = body
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            raise RequestError(
                400, f"{HEADER_LENGTH} must be an integer byte count, got {header_length!r}"
            ) from None
        if not 0 < length <= len(body):
            raise RequestError(
                400, f"{HEADER_LENGTH} is {length} but the body has {len(body)} bytes: it must be the "
                "length of the JSON part at the start of the body"
            )  # fmt: skip
        view = memoryview(body)
        head, binary = view[:length], view[length:]
    try:
        request = json.loads(bytes(head))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(400, f"malformed JSON in the inference request: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError(400, f"the inference request must be a JSON object, got {type(request).__name__}")
    return request, binary


def decode_infer_request(
    body: bytes, header_length: str | None, *, input_name: str, output_names: list[str]
) -> InferRequest:
    """Decode a ``POST /v2/models/{name}/infer`` body.

    Args:
        body: The request body.
        header_length: The ``Inference-Header-Content-Length`` header, if sent.
        input_name: The graph's one input (``images``).
        output_names: The graph's outputs, the only ones a request may ask for.

    Raises:
        RequestError: 400 naming the field that is wrong (malformed JSON, unknown input or output,
            datatype other than UINT8, rank other than 4, channels other than 3, data size mismatch).
    """
    request, binary = split_body(body, header_length)
    params = _parameters(request, "request")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(400, f"the request needs 'inputs': a list with one tensor named '{input_name}'")
    if len(inputs) != 1 or not isinstance(inputs[0], dict) or inputs[0].get("name") != input_name:
        names = [i.get("name") if isinstance(i, dict) else i for i in inputs]
        raise RequestError(400, f"this model has one input, '{input_name}'; the request sent {names}")
    frames, used = _decode_input(inputs[0], binary, input_name)
    if used != len(binary):
        raise RequestError(
            400, f"the body carries {len(binary)} bytes of binary data after the JSON but the inputs' "
            f"binary_data_size add up to {used}"
        )  # fmt: skip
    outputs = request.get("outputs")
    requested: list[tuple[str, bool]] | None = None
    binary_default = bool(params.get("binary_data_output", False))
    if outputs is not None:
        if not isinstance(outputs, list):
            raise RequestError(400, f"'outputs' must be a list, got {type(outputs).__name__}")
        requested = []
        for item in outputs:
            name = item.get("name") if isinstance(item, dict) else None
            if name not in output_names:
                raise RequestError(400, f"unknown output {name!r}: this model's outputs are {output_names}")
            flag = _parameters(item, f"output '{name}'").get("binary_data", binary_default)
            requested.append((name, bool(flag)))
        requested = requested or None  # an empty list asks for every output, as no list does
    timeout = params.get("timeout")
    if timeout is not None and (
        not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0
    ):
        raise RequestError(
            400, f"parameters.timeout must be a positive number of microseconds, got {timeout!r}"
        )
    request_id = request.get("id")
    return InferRequest(
        id=None if request_id is None else str(request_id),
        frames=frames,
        outputs=requested,
        binary_default=binary_default,
        timeout=None if timeout is None else timeout / 1e6,
    )


def _decode_input(tensor: dict[str, Any], binary: memoryview, name: str) -> tuple[np.ndarray, int]:
    """One input tensor as uint8 ``[N, H, W, 3]``, and the binary bytes it used."""
    datatype = tensor.get("datatype")
    if datatype != "UINT8":
        raise RequestError(
            400, f"input '{name}' has datatype {datatype!r}; this model takes UINT8 [N, H, W, 3] RGB frames "
            "(0-255, channels last)"
        )  # fmt: skip
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise RequestError(400, f"input '{name}': 'shape' must be a list of integers, got {shape!r}")
    if len(shape) != 4:
        hint = " (add the batch dimension: [1, H, W, 3])" if len(shape) == 3 else ""
        raise RequestError(
            400, f"input '{name}' has shape {shape} (rank {len(shape)}); expected rank 4, [N, H, W, 3]{hint}"
        )
    if shape[3] != 3:
        raise RequestError(
            400, f"input '{name}' has {shape[3]} channels in shape {shape}; expected 3 (RGB, channels last)"
        )
    if min(shape) < 1:
        raise RequestError(400, f"input '{name}' has an empty or negative dimension in shape {shape}")
    count = int(np.prod(shape))
    size = _parameters(tensor, f"input '{name}'").get("binary_data_size")
    if size is not None:
        if "data" in tensor:
            raise RequestError(400, f"input '{name}' has both 'data' and parameters.binary_data_size")
        if size != count:
            raise RequestError(
                400, f"input '{name}': binary_data_size is {size} bytes but UINT8 {shape} needs {count}"
            )
        if len(binary) < count:
            raise RequestError(
                400, f"input '{name}': binary_data_size is {count} bytes; only {len(binary)} follow the JSON"
            )
        return np.frombuffer(binary[:count], dtype=np.uint8).reshape(shape), count
    data = tensor.get("data")
    if data is None:
        raise RequestError(400, f"input '{name}' has no 'data' (JSON values) and no binary_data_size")
    try:
        values = np.asarray(data)
    except ValueError as exc:  # ragged nesting
        raise RequestError(400, f"input '{name}': 'data' is not a regular array: {exc}") from None
    if values.size != count:
        raise RequestError(
            400, f"input '{name}': 'data' holds {values.size} values but shape {shape} needs {count}"
        )
    if values.dtype.kind not in "iu" or (values.size and (values.min() < 0 or values.max() > 255)):
        raise RequestError(400, f"input '{name}': 'data' must be integers 0-255 for UINT8")
    return values.astype(np.uint8).reshape(shape), 0


def encode_infer_response(
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: dict[str, np.ndarray],
    requested: list[tuple[str, bool]] | None,
    binary_default: bool,
    parameters: dict[str, Any],
) -> tuple[bytes, int | None]:
    """Encode an inference response.

    Returns:
        ``(body, header_length)``: ``header_length`` is the JSON part's length when some output is
        binary (send it as ``Inference-Header-Content-Length``), else ``None`` (the body is JSON).
    """
    chosen = requested if requested is not None else [(name, binary_default) for name in outputs]
    tensors, blobs = [], []
    for name, binary in chosen:
        array = np.ascontiguousarray(outputs[name])
        tensor: dict[str, Any] = {"name": name, "datatype": datatype_of(array), "shape": list(array.shape)}
        if binary:
            blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.reshape(-1).tolist()
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    response["parameters"] = parameters
    response["outputs"] = tensors
    head = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return b"".join([head, *blobs]), len(head)
