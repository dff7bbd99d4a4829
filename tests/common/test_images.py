"""Image decoding: every supported file becomes uint8 [H, W, 3] RGB; bad files give clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from padim_edge.images import ImageError, expand_paths, list_images, load_image


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("L", ".png"), ("RGBA", ".png"), ("RGB", ".jpg"), ("P", ".bmp"), ("I;16", ".tif"), ("RGB", ".tiff")],
)
def test_modes_become_rgb(tmp_path: Path, mode: str, suffix: str) -> None:
    array = (np.arange(20 * 30).reshape(20, 30) % 256).astype(np.uint8)
    if mode == "I;16":
        image = Image.fromarray(array.astype(np.uint16) * 256)
    elif mode == "RGBA":
        image = Image.fromarray(np.stack([array] * 3 + [np.full_like(array, 255)], -1), "RGBA")
    else:
        image = Image.fromarray(array).convert(mode)
    path = tmp_path / f"x{suffix}"
    image.save(path)
    out = load_image(path)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8 and out.flags.writeable
    if mode in ("L", "RGBA", "I;16"):
        np.testing.assert_array_equal(out[..., 0], out[..., 2])
        assert abs(int(out[5, 7, 0]) - int(array[5, 7])) <= 1


def test_bad_files(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_text("not an image")
    with pytest.raises(ImageError, match=r"cannot decode image .*a\.png"):
        load_image(tmp_path / "a.png")
    with pytest.raises(ImageError, match="image not found"):
        load_image(tmp_path / "b.png")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ImageError, match="not a supported image file"):
        expand_paths([tmp_path / "notes.txt"])
    with pytest.raises(ImageError, match="no such file or folder"):
        expand_paths([tmp_path / "nope"])
    with pytest.raises(ImageError, match="not a folder"):
        list_images(tmp_path / "notes.txt")


def test_expand_paths_recurses_with_relative_names(tmp_path: Path) -> None:
    for sub in ("good", "crack"):
        (tmp_path / sub).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / sub / "000.png")
    names = [name for name, _ in expand_paths([tmp_path])]
    assert names == ["crack/000.png", "good/000.png"]


def test_sixteen_bit_is_a_fixed_shift_not_the_image_maximum(tmp_path: Path) -> None:
    """One bright pixel must not darken the rest (the old rule scaled by the image's own maximum)."""
    array = np.full((16, 16), 0x4000, dtype=np.uint16)  # 64 in 8 bits
    array[0, 0] = 0xFFFF
    Image.fromarray(array).save(tmp_path / "bright.png")
    Image.fromarray(np.full((16, 16), 0x4000, dtype=np.uint16)).save(tmp_path / "flat.tif")
    bright, flat = load_image(tmp_path / "bright.png"), load_image(tmp_path / "flat.tif")
    assert bright[0, 0, 0] == 255 and bright[5, 5, 0] == 64
    assert (flat == 64).all()


def test_float_and_int32_images_are_refused(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32)).save(tmp_path / "f.tif")
    Image.fromarray(np.full((8, 8), 100_000, dtype=np.int32)).save(tmp_path / "i.tif")
    with pytest.raises(ImageError, match=r"f\.tif is a floating-point image \(mode F\).*np\.clip"):
        load_image(tmp_path / "f.tif")
    with pytest.raises(ImageError, match=r"i\.tif is a 32-bit integer image \(mode I\)"):
        load_image(tmp_path / "i.tif")


def write_oversized_png(path: Path, edge: int = 20_000) -> Path:
    """A tiny file that declares an ``edge x edge`` image: Pillow refuses it as a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", edge, edge, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_a_decompression_bomb_is_an_image_error_naming_the_file(tmp_path: Path) -> None:
    """Pillow's guard raises its own exception type: it must not escape as a traceback (padim-predict)."""
    bomb = write_oversized_png(tmp_path / "huge.png")
    with pytest.raises(ImageError, match=r"cannot decode image .*huge\.png: .*exceeds limit"):
        load_image(bomb)
