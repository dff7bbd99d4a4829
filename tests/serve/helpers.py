"""Request builders shared by the serve tests (plain http.client, no tritonclient)."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image


def frames(count: int, height: int = 80, width: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def binary_infer(batch: np.ndarray, *, outputs: list[str] | None = None) -> tuple[bytes, dict[str, str]]:
    """A v2 binary-data-extension request body and its headers."""
    tensor = {
        "name": "images",
        "datatype": "UINT8",
        "shape": list(batch.shape),
        "parameters": {"binary_data_size": batch.nbytes},
    }
    request: dict = {"inputs": [tensor], "parameters": {"binary_data_output": True}}
    if outputs is not None:
        request["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
    head = json.dumps(request).encode()
    return head + batch.tobytes(), {"Inference-Header-Content-Length": str(len(head))}


def parse_binary(body: bytes, headers: dict[str, str]) -> tuple[dict, dict[str, np.ndarray]]:
    """A v2 response (binary outputs) -> (its JSON header, outputs by name)."""
    length = int(headers["Inference-Header-Content-Length"])
    head = json.loads(body[:length])
    dtypes = {"FP32": np.float32, "BOOL": np.bool_}
    out, offset = {}, length
    for tensor in head["outputs"]:
        size = tensor["parameters"]["binary_data_size"]
        data = np.frombuffer(body[offset : offset + size], dtype=dtypes[tensor["datatype"]])
        out[tensor["name"]] = data.reshape(tensor["shape"])
        offset += size
    assert offset == len(body)
    return head, out


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = "padimTestBoundary42"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
