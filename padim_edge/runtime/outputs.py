"""What ``padim-predict`` writes: the JSON result files and the overlay PNGs (numpy + Pillow; no torch).

One home for the output format, used by the local command and by the Ray scorer alike:

* ``scores.json`` ``{key: score}``, ``labels.json`` ``{key: is_anomalous}`` (calibrated models only),
  ``failed.json`` ``{key: reason}`` and ``overlays.json`` ``{key: overlay file}``;
* one overlay per key, named from the key (``scratch/003.png`` -> ``scratch__003_overlay.png``), made
  unique per key and short enough for the file system (:func:`overlay_names`). Scores never depend on
  overlay names: they are keyed by the image's key.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from padim_edge import atomic
from padim_edge.naming import key_to_filename

#: Overlay file-name suffix: ``scratch/003.png`` -> ``scratch__003_overlay.png``.
OVERLAY_SUFFIX = "_overlay.png"
#: Longest file name (bytes) of the common file systems (ext4, XFS, btrfs, APFS, NTFS in UTF-16 units).
NAME_MAX = 255
#: What :func:`padim_edge.atomic.write_bytes` adds for its temporary name: ``.`` NAME ``.XXXXXXXX.tmp``.
TEMP_NAME_EXTRA = 14
#: Longest overlay file name written (bytes): its temporary name must fit too.
OVERLAY_NAME_MAX = NAME_MAX - TEMP_NAME_EXTRA
#: ``--overlays``: none, only images labelled anomalous (calibrated models), or every image.
OVERLAY_MODES = ("none", "anomalous", "all")
#: zlib level of overlay PNGs: on R18 overlays of 900x900 frames, level 1 writes files 23 % larger than
#: Pillow's default 6 in 40 % of its time (45.6 vs 37.0 KB, 5.0 vs 12.7 ms an overlay; measured:
#: benchmarks/results/predict_files.md at commit a5d9d66, the zlib level table).
PNG_COMPRESS_LEVEL = 1
#: The result files, in the order they are written.
RESULT_FILES = ("scores.json", "labels.json", "failed.json", "overlays.json")


def write_results(
    output: Path,
    rows: Sequence[tuple[str, float, bool | None]],
    failed: dict[str, str],
    *,
    labelled: bool,
    overlays: dict[str, str] | None = None,
) -> list[str]:
    """Write ``scores.json`` (and ``labels.json``, ``failed.json``, ``overlays.json`` where they apply).

    Args:
        output: The folder.
        rows: ``(key, score, is_anomalous)`` per scored image, in input order.
        failed: ``{key: reason}`` for the images that could not be read or scored.
        labelled: The model carries a threshold: write ``labels.json``.
        overlays: ``{key: overlay file name}`` of the overlays written (none: no ``overlays.json``).

    Returns:
        The names of the files written, in order.
    """
    written = ["scores.json"]
    atomic.write_json(output / "scores.json", {key: round(score, 6) for key, score, _ in rows})
    if labelled:
        atomic.write_json(output / "labels.json", {key: bool(flag) for key, _, flag in rows})
        written.append("labels.json")
    if failed:
        atomic.write_json(output / "failed.json", failed)
        written.append("failed.json")
    if overlays:
        atomic.write_json(output / "overlays.json", overlays)
        written.append("overlays.json")
    return written


def _digest(key: str, length: int) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:length]


def _fit(stem: str, tag: str, suffix: str, limit: int) -> str:
    """``stem-tag + suffix``, the stem cut (on a character boundary) so the name fits ``limit`` bytes."""
    room = limit - len(f"-{tag}{suffix}".encode())
    cut = stem.encode("utf-8")[: max(0, room)].decode("utf-8", errors="ignore")
    return f"{cut}-{tag}{suffix}"


def overlay_names(
    keys: Iterable[str], *, suffix: str = OVERLAY_SUFFIX, limit: int = OVERLAY_NAME_MAX
) -> dict[str, str]:
    """One overlay file name per key, unique and short enough to write.

    The name is the key without its extension, ``/`` replaced by ``__``, plus ``suffix``. Keys whose
    names would clash (``x.png`` and ``x.jpg``; ``a/b.png`` and ``a__b.png``; names that differ only in
    case, which clash on case-insensitive file systems) get ``-<8 hex digits of the key's SHA-256>``
    before the suffix; a name longer than ``limit`` bytes (with the atomic write's temporary name) is
    cut and gets ``-<12 hex digits>``.

    Returns:
        ``{key: file name}`` in the keys' order.
    """
    keys = list(dict.fromkeys(keys))
    stems = {key: key_to_filename(key, "") for key in keys}
    names: dict[str, str] = {}
    for key, stem in stems.items():
        name = stem + suffix
        names[key] = (
            name if len(name.encode("utf-8")) <= limit else _fit(stem, _digest(key, 12), suffix, limit)
        )
    for length in (8, 16, 64):
        groups: dict[str, list[str]] = {}
        for key, name in names.items():
            groups.setdefault(name.casefold(), []).append(key)
        clashes = [key for group in groups.values() if len(group) > 1 for key in group]
        if not clashes:
            break
        for key in clashes:
            names[key] = _fit(stems[key], _digest(key, length), suffix, limit)
    return names


class OverlayWriter:
    """Renders and writes one annotated overlay per image, on the model's fixed colour scale.

    Safe to call from several threads at once (the scoring pipeline's writer workers). A model without
    training scores in its metadata (exported before they were recorded) has no fixed scale: its
    overlays are kept (float16 maps) until :meth:`finish` and drawn on the run's own range.

    Args:
        output: The folder.
        info: The model's :class:`padim_edge.metadata.ModelInfo`.
        names: ``{key: file name}`` (:func:`overlay_names`).
        mode: ``all``, ``anomalous`` (images labelled anomalous only; needs a calibrated model) or
            ``none``.
        compress_level: zlib level of the PNGs (0-9).

    Raises:
        ValueError: An unknown ``mode``, or ``anomalous`` for a model without a threshold.
    """

    def __init__(
        self,
        output: Path,
        info,
        names: dict[str, str],
        *,
        mode: str = "all",
        compress_level: int = PNG_COMPRESS_LEVEL,
    ) -> None:
        from padim_edge.geometry import Geometry
        from padim_edge.visualize import colour_scale

        if mode not in OVERLAY_MODES:
            raise ValueError(f"overlay mode must be one of {', '.join(OVERLAY_MODES)}, got {mode!r}")
        self.labelled = info.threshold is not None
        if mode == "anomalous" and not self.labelled:
            raise ValueError(
                "--overlays anomalous needs a model calibrated with a threshold (padim-calibrate); this "
                "one labels no image: use --overlays all or none"
            )
        self.output = Path(output)
        self.names = names
        self.mode = mode
        self.compress_level = compress_level
        self.geometry = Geometry(info.resize, info.crop)
        self.scale = colour_scale(info)
        self.pending: list[tuple[str, np.ndarray, np.ndarray, float, bool | None]] = []
        self.written: dict[str, str] = {}
        self.note: str | None = None
        self._lock = threading.Lock()

    def wanted(self, is_anomalous: bool | None) -> bool:
        """Whether an image with this label gets an overlay."""
        return self.mode == "all" or (self.mode == "anomalous" and bool(is_anomalous))

    def add(
        self, key: str, image: np.ndarray, anomaly_map: np.ndarray, score: float, flag: bool | None
    ) -> str | None:
        """Render and write the overlay of one image (or keep it for :meth:`finish`); returns its name."""
        if not self.wanted(flag):
            return None
        view = self.geometry.image_view(image)
        if self.scale is None:
            with self._lock:
                self.pending.append((key, view, np.asarray(anomaly_map).astype(np.float16), score, flag))
            return self.names[key]
        self._write(key, view, anomaly_map, score, flag)
        return self.names[key]

    def finish(self) -> int:
        """Draw the kept overlays of a model without a fixed scale; returns the overlays written."""
        if self.pending:
            from padim_edge.visualize import ColourScale

            low = float(min(m.min() for _, _, m, _, _ in self.pending))
            high = max(s for _, _, _, s, _ in self.pending)
            self.scale = ColourScale(low, high, "this run's range (the model has no training scores)")
            self.note = f"overlay colours use {self.scale.source}; re-export it for a fixed scale"
            pending, self.pending = self.pending, []
            for item in pending:
                self._write(*item)
        return len(self.written)

    def _write(
        self, key: str, view: np.ndarray, anomaly_map: np.ndarray, score: float, flag: bool | None
    ) -> None:
        from padim_edge.visualize import annotated_overlay, save_png

        label = ("ANOMALOUS" if flag else "ok") if self.labelled else None
        picture = annotated_overlay(
            view, np.asarray(anomaly_map, np.float32), self.scale, score=score, label=label
        )
        save_png(picture, self.output / self.names[key], compress_level=self.compress_level)
        with self._lock:
            self.written[key] = self.names[key]

    def written_in_order(self, keys: Iterable[str]) -> dict[str, str]:
        """``{key: file name}`` of the overlays written, in the keys' order (for ``overlays.json``)."""
        return {key: self.written[key] for key in keys if key in self.written}
