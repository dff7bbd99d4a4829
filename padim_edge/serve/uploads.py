"""Encoded images sent to ``POST /v1/predict``: a raw body or a ``multipart/form-data`` field.

Decoding follows :func:`padim_edge.images.to_rgb` (what ``padim-predict`` does with files), so a
file scored here and by ``padim-predict`` gives the same frame. Only PNG, JPEG, BMP and TIFF are
opened: the service does not run every decoder Pillow has on bytes from the network.
"""

from __future__ import annotations

import io
import re

import numpy as np

from padim_edge.serve.errors import RequestError

#: Pillow formats the service decodes.
FORMATS = ("PNG", "JPEG", "BMP", "TIFF")
#: The largest frame decoded (pixels): a small compressed file can expand to gigabytes.
MAX_PIXELS = 64_000_000
#: Multipart fields tried first, in order; otherwise the first part with a body.
FIELDS = ("image", "file")
_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_NAME = re.compile(rb'name="([^"]*)"', re.IGNORECASE)


def image_bytes(body: bytes, content_type: str) -> bytes:
    """The encoded image in a request body: the body itself, or a ``multipart/form-data`` part.

    Raises:
        RequestError: 400 for an empty body, a multipart body without a boundary or without any part.
    """
    if content_type.lower().startswith("multipart/"):
        return _multipart_image(body, content_type)
    if not body:
        raise RequestError(
            400, "empty body: send an encoded image (PNG, JPEG, BMP) as the body, or as the multipart "
            "field 'image'"
        )  # fmt: skip
    return body


def _multipart_image(body: bytes, content_type: str) -> bytes:
    match = _BOUNDARY.search(content_type)
    if match is None:
        raise RequestError(400, f"multipart body without a boundary in its Content-Type {content_type!r}")
    boundary = b"--" + (match.group(1) or match.group(2)).encode("latin-1")
    parts: list[tuple[str, bytes]] = []
    for chunk in body.split(boundary)[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            continue
        name = _NAME.search(head)
        parts.append(
            (name.group(1).decode("latin-1") if name else "", data[:-2] if data.endswith(b"\r\n") else data)
        )
    for field in FIELDS:
        for name, data in parts:
            if name == field and data:
                return data
    for _, data in parts:
        if data:
            return data
    raise RequestError(400, "the multipart body has no non-empty part: send the image as the field 'image'")


def decode_image(data: bytes) -> np.ndarray:
    """Decode an encoded image to ``uint8 [H, W, 3]`` RGB.

    Raises:
        RequestError: 400 when the bytes are not an image, 415 for an image format other than PNG,
            JPEG, BMP or TIFF, 413 for a frame over :data:`MAX_PIXELS`.
    """
    from PIL import Image, UnidentifiedImageError

    from padim_edge.images import ImageError, to_rgb

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in FORMATS:
                raise RequestError(
                    415, f"image format {image.format} is not accepted; send PNG, JPEG, BMP or TIFF"
                )
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise RequestError(
                    413, f"image of {width}x{height} pixels is over the service's {MAX_PIXELS} pixel limit"
                )
            image.load()
            return to_rgb(image, source="the uploaded image")
    except RequestError:
        raise
    except ImageError as exc:
        raise RequestError(400, str(exc)) from None
    except Image.DecompressionBombError as exc:
        raise RequestError(413, f"the image is too large to decode: {exc}") from None
    except UnidentifiedImageError:
        raise RequestError(
            400, f"the body is not an image ({len(data)} bytes that are not PNG, JPEG, BMP or TIFF)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(400, f"the image cannot be decoded (truncated or corrupt): {exc}") from None
