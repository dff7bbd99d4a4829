"""Finding and decoding image files (Pillow + numpy; no torch).

Every image becomes ``uint8 [H, W, 3]`` RGB, what the graph's ``images`` input expects:

* 8-bit grayscale, palette and RGB files as they are; RGBA composited over black;
* 16-bit files (grayscale ``I;16`` PNG/TIFF, and 16-bit RGB PNGs, which Pillow itself reads as 8-bit)
  by a fixed shift, ``value >> 8``: the same pixel value always gives the same 8-bit value, whatever
  else is in the image (scaling by the image's own maximum would let one bright pixel darken the rest);
* 32-bit integer and floating-point images are refused with a message: there is no scale that is
  right for every camera, so the caller converts them to 8 bits (e.g. ``np.clip(x * 255, 0, 255)``
  for floats in ``[0, 1]``) before they reach a model or a fit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


class ImageError(ValueError):
    """An image path could not be found or decoded."""


#: Bad files named in :class:`UnreadableImagesError`'s message before "and N more".
SHOWN_FAILURES = 10
#: What to do about them (the CLI flag and the API argument).
SKIP_HINT = (
    "Fix or remove them and run again, or pass --skip-unreadable (skip_unreadable=True) to fit without "
    "them (they are then listed in the model's metadata)"
)


class UnreadableImagesError(ImageError):
    """Training images could not be decoded: every one is listed, and the fit of the others is kept.

    Attributes:
        failures: ``(file, reason)`` of each bad file, in image order.
        total: Images the fit was given.
        partial: What was fitted from the readable images (the distributed fit's merged partial), or
            ``None``; a caller may install it instead of fitting again.
    """

    def __init__(self, failures: list[tuple[str, str]], total: int, *, partial: object = None) -> None:
        shown = "; ".join(r if f in r else f"{f}: {r}" for f, r in failures[:SHOWN_FAILURES])
        more = f"; and {len(failures) - SHOWN_FAILURES} more" if len(failures) > SHOWN_FAILURES else ""
        what = f"{len(failures)} of {total} training images could not be read"
        super().__init__(f"{what}: {shown}{more}. {SKIP_HINT}")
        self.failures, self.total, self.partial = list(failures), total, partial


def is_image(path: Path) -> bool:
    """Whether ``path`` has one of the supported image suffixes (case-insensitive)."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(folder: str | Path) -> list[Path]:
    """List the image files directly inside ``folder``, sorted by name.

    Raises:
        ImageError: The folder does not exist, is not a folder, or holds no image.
    """
    folder = Path(folder)
    if not folder.exists():
        raise ImageError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise ImageError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image(p))
    if not files:
        raise ImageError(
            f"no images in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, not in sub-folders)"
        )
    return files


def expand_paths(paths: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """Expand image files and folders into ``(name, file)`` pairs.

    A folder contributes every image below it (recursively), named by its path relative to the
    folder (``scratch/003.png``); a file is named by its file name. Names stay unique: a clash keeps
    the path as given.

    Raises:
        ImageError: A path does not exist, a file is not a supported image, or nothing was found.
    """
    out: list[tuple[str, Path]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image(p))
            if not found:
                raise ImageError(f"no images in {path} or its sub-folders")
            out.extend((p.relative_to(path).as_posix(), p) for p in found)
        elif path.is_file():
            if not is_image(path):
                raise ImageError(
                    f"not a supported image file: {path} (use {', '.join(sorted(IMAGE_SUFFIXES))})"
                )
            out.append((path.name, path))
        else:
            raise ImageError(f"no such file or folder: {path}")
    names = [name for name, _ in out]
    if len(set(names)) != len(names):
        out = [(str(file), file) for _, file in out]
    return out


SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})


def _is_sixteen_bit(image: Image.Image, array: np.ndarray) -> bool:
    """Pillow < 10 opened 16-bit grayscale PNGs as mode ``I``; those are 16-bit, other ``I`` files are not."""
    if image.mode in SIXTEEN_BIT_MODES:
        return True
    return (
        image.mode == "I"
        and image.format == "PNG"
        and (array.size == 0 or (array.min() >= 0 and array.max() <= 65535))
    )


def to_rgb(image: Image.Image, *, source: str = "image") -> np.ndarray:
    """Convert a Pillow image to a ``uint8 [H, W, 3]`` RGB array (see the module docstring for the rules).

    Raises:
        ImageError: A 32-bit integer or floating-point image (``source`` names it in the message).
    """
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
        array = np.asarray(image)
        if not _is_sixteen_bit(image, array):
            raise ImageError(
                f"{source} is a 32-bit integer image (mode I): padim-edge will not guess its scale; convert "
                "it to 8 bits per channel first (16-bit images are converted with value >> 8)"
            )
        image = Image.fromarray((array.astype(np.uint32) >> 8).astype(np.uint8))
    elif image.mode == "F":
        raise ImageError(
            f"{source} is a floating-point image (mode F): padim-edge will not guess its scale; convert it "
            "to 8 bits first, e.g. np.clip(x * 255, 0, 255).astype(np.uint8) for values in [0, 1]"
        )
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy


#: Hex digits of a file fingerprint (48 bits: no accidental match among millions of files).
FINGERPRINT_DIGITS = 12


def fingerprint(path: str | Path) -> str:
    """A short content fingerprint of an image file: the first hex digits of its SHA-256.

    Identifies the same image under another name or folder (the threshold's images seen again by
    padim-eval) without storing paths in a model.

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:FINGERPRINT_DIGITS]


def load_image(path: str | Path) -> np.ndarray:
    """Decode one image file to ``uint8 [H, W, 3]`` RGB.

    Raises:
        ImageError: The file is missing, truncated, not an image, or a 32-bit / floating-point image.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image, source=str(path))
    except ImageError:
        raise
    except FileNotFoundError as exc:
        raise ImageError(f"image not found: {path}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot decode image {path}: {exc}") from exc


def read_file_list(list_file: str | Path) -> list[Path]:
    """The paths in a list file (``--files-from``): one per line, blank lines and ``#`` comments ignored.

    Each line is one path (leading and trailing spaces stripped; spaces inside are kept). A relative
    path is relative to the list file's folder, not to the working directory, so a list travels with
    the files it names. ``-`` reads standard input (relative paths: the working directory).

    Raises:
        ImageError: The list cannot be read or names nothing.
    """
    if str(list_file) == "-":
        import sys

        text, base = sys.stdin.read(), Path()
    else:
        list_file = Path(list_file)
        try:
            text = list_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ImageError(f"cannot read the file list {list_file}: {exc}") from exc
        base = list_file.parent
    lines = (line.strip() for line in text.splitlines())
    paths = [base / line for line in lines if line and not line.startswith("#")]
    if not paths:
        raise ImageError(f"the file list {list_file} names no path (only blank lines or # comments)")
    return paths


def iter_batches(
    paths: list[Path],
    batch_size: int,
    *,
    on_error: Callable[[Path, ImageError], None] | None = None,
) -> Iterator[list[tuple[Path, np.ndarray]]]:
    """Decode ``paths`` lazily in batches of ``(path, image)`` pairs; never holds more than a batch.

    Args:
        paths: Image files.
        batch_size: Files per batch.
        on_error: Called with each file that cannot be decoded, which is then skipped (a batch may come
            out smaller). Without it, the first bad file raises.

    Raises:
        ImageError: A file cannot be decoded and there is no ``on_error``.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    for start in range(0, len(paths), batch_size):
        batch = []
        for path in paths[start : start + batch_size]:
            try:
                batch.append((path, load_image(path)))
            except ImageError as exc:
                if on_error is None:
                    raise
                on_error(path, exc)
        if batch:
            yield batch


def resize_frame(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a ``uint8 [H, W, 3]`` frame to ``size`` = (H, W) (Pillow bilinear; unchanged if already so).

    For models built for one frame size (the TensorRT target), when the frames at hand (a dataset on
    disk) are not the camera's size.
    """
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    resized = Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.uint8)  # writable (torch.from_numpy warns otherwise)
