"""One variant's fidelity report and its verdict (``ok``, ``low fidelity``, ``not enough evidence``).

The figures come from :mod:`.measure`; the rules are described in :mod:`padim_edge.calibration.fidelity`
and their limits live in :mod:`padim_edge.calibration.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from padim_edge.calibration.fidelity.figures import rounded
from padim_edge.calibration.settings import (
    MAX_AUROC_DROP,
    MAX_FRAMES,
    MAX_MAP_ERROR,
    MAX_PIXEL_AUROC_DROP,
    MAX_PLAUSIBLE_DROP,
    MAX_SEPARATION,
    MAX_SKILL_LOSS,
    MAX_SYNTHETIC_AUROC_DROP,
    MAX_SYNTHETIC_PIXEL_AUROC_DROP,
    MIN_LOW_SEPARATION,
    MIN_REFERENCE_AUROC,
    MIN_SPEARMAN,
    MIN_VERDICT_FRAMES,
)

Pair = tuple[float, float]

OK = "ok"
LOW = "low fidelity"
UNSURE = "not enough evidence"
#: How to give the verdict more to go on.
MORE_EVIDENCE = (
    "pass --validate DIR with more held-out defect-free images (up to {most} are used), or check the "
    "variant on labelled images (--labeled ROOT, or padim-eval)"
)
#: The same when the report already used :data:`MAX_FRAMES` frames.
LABELLED_EVIDENCE = (
    "these {most} frames are as many as the report uses: check the variant on labelled images "
    "(--labeled ROOT, or padim-eval) before deploying it"
)


def drop(pair: Pair | None) -> float | None:
    """``reference - variant`` of a ``(reference, variant)`` pair (positive: the variant lost)."""
    return None if pair is None else pair[0] - pair[1]


@dataclass
class SyntheticFigures:
    """The synthetic-defect figures of one comparison (see :mod:`.stats`).

    Attributes:
        image: ``(reference, variant)`` image AUROC, ``None`` where undefined.
        pixel: ``(reference, variant)`` pixel AUROC, ``None`` where undefined.
        image_drop: 95 % interval of the image AUROC drop, ``None`` where undefined.
        pixel_drop: The same for the pixel AUROC.
        reference_low: Lower ends of the reference's own ``(image, pixel)`` AUROC intervals.
        separation: :func:`.stats.separation`.
    """

    image: Pair | None
    pixel: Pair | None
    image_drop: Pair | None = None
    pixel_drop: Pair | None = None
    reference_low: tuple[float | None, float | None] = (None, None)
    separation: float | None = None


@dataclass
class Fidelity:
    """One variant compared with its reference.

    Attributes:
        reference: The reference model: ``<file name> (<backbone> backbone / <head> head)``.
        source: Where the held-out frames came from (``SOURCE_*``).
        frames: Held-out frames compared.
        device: The onnxruntime provider the variant ran on.
        spearman: Rank correlation of the image scores (``None``: undefined, constant scores).
        map_error_median: Median per-frame relative L2 error of the anomaly maps.
        map_error_worst: Largest of them.
        score_ratio_median: Median of ``score_variant / score_reference``.
        synthetic_image_auroc: ``(reference, variant)`` image AUROC on the synthetic-defect set.
        synthetic_pixel_auroc: ``(reference, variant)`` pixel AUROC on it.
        synthetic_image_drop: 95 % bootstrap interval ``(low, high)`` of the image AUROC drop.
        synthetic_pixel_drop: The same for the pixel AUROC.
        synthetic_reference_low: Lower ends of the reference's own ``(image, pixel)`` AUROC intervals.
        separation: Map change over the reference's defect-to-normal gap (``None``: undefined).
        image_auroc: ``(reference, variant)`` image AUROC on ``--labeled``, else ``None``.
        pixel_auroc: ``(reference, variant)`` pixel AUROC on ``--labeled`` (with masks), else ``None``.
        nonfinite_frames: Frames whose variant score or map holds NaN / inf (left out of the figures).
        error: Why the variant could not be measured (it could not run on the device), else ``None``.
        notes: Caveats that do not make it low (e.g. AUROC not available).
    """

    reference: str
    source: str
    frames: int
    device: str = ""
    spearman: float | None = None
    map_error_median: float | None = None
    map_error_worst: float | None = None
    score_ratio_median: float | None = None
    synthetic_image_auroc: Pair | None = None
    synthetic_pixel_auroc: Pair | None = None
    synthetic_image_drop: Pair | None = None
    synthetic_pixel_drop: Pair | None = None
    synthetic_reference_low: tuple[float | None, float | None] = (None, None)
    separation: float | None = None
    image_auroc: Pair | None = None
    pixel_auroc: Pair | None = None
    nonfinite_frames: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Fidelity:
        """The report back from its :meth:`record` (e.g. to judge stored figures against today's limits)."""

        def pair(key: str) -> Pair | None:
            values = record.get(key)
            return None if not values or None in values else (float(values[0]), float(values[1]))

        return cls(
            reference=record.get("reference", ""),
            source=record.get("source", ""),
            frames=int(record.get("frames", 0)),
            device=record.get("device", ""),
            spearman=record.get("spearman"),
            map_error_median=record.get("map_error_median"),
            map_error_worst=record.get("map_error_worst"),
            score_ratio_median=record.get("score_ratio_median"),
            synthetic_image_auroc=pair("synthetic_image_auroc"),
            synthetic_pixel_auroc=pair("synthetic_pixel_auroc"),
            synthetic_image_drop=pair("synthetic_image_drop"),
            synthetic_pixel_drop=pair("synthetic_pixel_drop"),
            synthetic_reference_low=tuple(record.get("synthetic_reference_low") or (None, None)),
            separation=record.get("separation"),
            image_auroc=pair("image_auroc"),
            pixel_auroc=pair("pixel_auroc"),
            nonfinite_frames=int(record.get("nonfinite_frames", 0)),
            error=record.get("error"),
        )

    def take(self, synthetic: SyntheticFigures) -> None:
        """Store the synthetic-defect figures of :func:`synthetic_figures`."""
        self.synthetic_image_auroc, self.synthetic_pixel_auroc = synthetic.image, synthetic.pixel
        self.synthetic_image_drop, self.synthetic_pixel_drop = synthetic.image_drop, synthetic.pixel_drop
        self.synthetic_reference_low, self.separation = synthetic.reference_low, synthetic.separation

    def _how_to_decide(self) -> str:
        """How to give a ``not enough evidence`` verdict more to go on."""
        text = MORE_EVIDENCE if self.frames < MAX_FRAMES else LABELLED_EVIDENCE
        return text.format(most=MAX_FRAMES)

    def _synthetic_losses(self) -> list[str]:
        """The synthetic-defect AUROC drops beyond doubt, one phrase each."""
        found = []
        for name, pair, interval, limit in (
            ("synthetic-defect image AUROC", self.synthetic_image_auroc, self.synthetic_image_drop,
             MAX_SYNTHETIC_AUROC_DROP),
            ("synthetic-defect pixel AUROC", self.synthetic_pixel_auroc, self.synthetic_pixel_drop,
             MAX_SYNTHETIC_PIXEL_AUROC_DROP),
        ):  # fmt: skip
            if pair is not None and interval is not None and interval[0] > limit:
                found.append(
                    f"{name} {pair[0]:.4f} -> {pair[1]:.4f} (drop {pair[0] - pair[1]:.4f}, 95 % interval "
                    f"{interval[0]:.4f} to {interval[1]:.4f}, all of it above {limit})"
                )
        return found

    def _synthetic_checks(self) -> tuple[tuple[str, Pair | None, Pair | None, float | None], ...]:
        """``(name, (reference, variant) AUROC, drop interval, reference's interval low)`` per check."""
        return (
            ("image", self.synthetic_image_auroc, self.synthetic_image_drop, self.synthetic_reference_low[0]),
            ("pixel", self.synthetic_pixel_auroc, self.synthetic_pixel_drop, self.synthetic_reference_low[1]),
        )

    def _collapses(self) -> list[str]:
        """Synthetic drops beyond doubt past :data:`MAX_SKILL_LOSS` of the reference's skill above chance."""
        found = []
        for name, pair, interval, reference_low in self._synthetic_checks():
            if pair is None or interval is None or reference_low is None:
                continue
            skill = pair[0] - 0.5
            if reference_low > MIN_REFERENCE_AUROC and skill > 0 and interval[0] > MAX_SKILL_LOSS * skill:
                found.append(
                    f"synthetic-defect {name} AUROC {pair[0]:.4f} -> {pair[1]:.4f}: the variant lost at "
                    f"least {interval[0] / skill:.0%} of the input model's margin over chance (95 % interval "
                    f"of the drop {interval[0]:.4f} to {interval[1]:.4f}; past {MAX_SKILL_LOSS:.0%} is a "
                    "collapse)"
                )
        return found

    def _small_change(self) -> bool:
        """The maps moved less than :data:`MIN_LOW_SEPARATION` of the reference's defect-to-normal gap."""
        return self.separation is not None and self.separation < MIN_LOW_SEPARATION

    def _losses(self) -> list[str]:
        """The losses that make the verdict ``low fidelity``, one phrase each."""
        found = []
        if self.nonfinite_frames:
            found.append(f"NaN / inf scores or maps on {self.nonfinite_frames} of {self.frames} frames")
        collapses, synthetic = self._collapses(), self._synthetic_losses()
        if collapses:
            found += collapses
        elif len(synthetic) == 2 or not self._small_change():  # both beyond doubt: no map change excuses it
            found += synthetic
        for name, pair, limit in (
            ("image AUROC", self.image_auroc, MAX_AUROC_DROP),
            ("pixel AUROC", self.pixel_auroc, MAX_PIXEL_AUROC_DROP),
        ):
            lost = drop(pair)
            if pair is not None and lost is not None and lost > limit:
                found.append(f"{name} {pair[0]:.4f} -> {pair[1]:.4f} on --labeled (drop > {limit})")
        return found

    def _doubts(self) -> list[str]:
        """Why the synthetic checks cannot rule a loss out (empty: they do)."""
        if self.frames < MIN_VERDICT_FRAMES:
            return [f"{self.frames} frames, at least {MIN_VERDICT_FRAMES} needed for a verdict"]
        synthetic = self._synthetic_losses()
        if synthetic:  # beyond doubt on pasted defects, yet the maps moved little: real defects may not
            return [
                *synthetic,
                f"yet the maps moved only {self.separation:.2f} of the input model's gap between defect and "
                f"normal pixels (below {MIN_LOW_SEPARATION}), which real defects may not feel",
            ]
        doubts, powered = [], 0
        for name, pair, interval, reference_low in self._synthetic_checks():
            if pair is None or interval is None or reference_low is None:
                doubts.append(f"no synthetic-defect {name} AUROC interval")
            elif reference_low <= MIN_REFERENCE_AUROC:
                doubts.append(
                    f"the input model's own synthetic-defect {name} AUROC {pair[0]:.4f} is too close to "
                    f"chance (95 % interval from {reference_low:.4f}, at most {MIN_REFERENCE_AUROC}) to test "
                    "a loss"
                )
            elif interval[1] > MAX_PLAUSIBLE_DROP:
                powered += 1
                doubts.append(
                    f"synthetic-defect {name} AUROC {pair[0]:.4f} -> {pair[1]:.4f}: its drop may be "
                    f"anywhere from {interval[0]:.4f} to {interval[1]:.4f} (95 %), which does not rule out a "
                    f"loss past {MAX_PLAUSIBLE_DROP}"
                )
            else:
                powered += 1
        if powered and all("too close to chance" in d for d in doubts):
            return []  # the checks with power rule a loss out; the others say nothing either way
        return doubts

    @property
    def verdict(self) -> str | None:
        """``ok``, ``low fidelity`` or ``not enough evidence`` (``None``: the variant was not measured)."""
        if self.error is not None:
            return None
        losses = self._losses()
        if losses and (self.frames >= MIN_VERDICT_FRAMES or self.nonfinite_frames or self.image_auroc):
            return LOW
        if self.image_auroc is not None:
            return OK  # the labelled AUROC is the real check, and it held
        separation = self.separation
        if self.frames >= MIN_VERDICT_FRAMES and separation is not None and separation <= MAX_SEPARATION:
            return OK
        return UNSURE if self._doubts() else OK

    @property
    def problems(self) -> list[str]:
        """Why the verdict is not ``ok``, one phrase each (empty: ``ok`` or not measured)."""
        verdict = self.verdict
        if verdict == LOW:
            return self._losses()
        return self._doubts() if verdict == UNSURE else []

    @property
    def low(self) -> bool | None:
        """Whether the verdict is ``low fidelity`` (``None``: not measured, or not enough evidence)."""
        verdict = self.verdict
        return None if verdict in (None, UNSURE) else verdict == LOW

    def record(self) -> dict[str, Any]:
        """The JSON stored in the ``padim_edge.fidelity`` metadata key."""

        def pair(values: Pair | None) -> list[float | None] | None:
            return None if values is None else [rounded(v) for v in values]

        return {
            "reference": self.reference,
            "source": self.source,
            "frames": self.frames,
            "device": self.device,
            "synthetic_image_auroc": pair(self.synthetic_image_auroc),
            "synthetic_pixel_auroc": pair(self.synthetic_pixel_auroc),
            "synthetic_image_drop": pair(self.synthetic_image_drop),
            "synthetic_pixel_drop": pair(self.synthetic_pixel_drop),
            "synthetic_reference_low": [rounded(v) for v in self.synthetic_reference_low],
            "separation": rounded(self.separation),
            "spearman": rounded(self.spearman),
            "map_error_median": rounded(self.map_error_median),
            "map_error_worst": rounded(self.map_error_worst),
            "score_ratio_median": rounded(self.score_ratio_median),
            "image_auroc": pair(self.image_auroc),
            "pixel_auroc": pair(self.pixel_auroc),
            "nonfinite_frames": self.nonfinite_frames,
            "min_spearman": MIN_SPEARMAN,
            "max_map_error": MAX_MAP_ERROR,
            "max_synthetic_auroc_drop": MAX_SYNTHETIC_AUROC_DROP,
            "max_synthetic_pixel_auroc_drop": MAX_SYNTHETIC_PIXEL_AUROC_DROP,
            "max_auroc_drop": MAX_AUROC_DROP,
            "max_pixel_auroc_drop": MAX_PIXEL_AUROC_DROP,
            "max_plausible_drop": MAX_PLAUSIBLE_DROP,
            "max_separation": MAX_SEPARATION,
            "min_reference_auroc": MIN_REFERENCE_AUROC,
            "min_verdict_frames": MIN_VERDICT_FRAMES,
            "min_low_separation": MIN_LOW_SEPARATION,
            "max_skill_loss": rounded(MAX_SKILL_LOSS),
            "verdict": self.verdict,
            "reasons": self.problems,
            "low": self.low,
            "error": self.error,
        }

    def verdict_line(self) -> str | None:
        """The report's ``verdict`` line: ``ok``, ``low fidelity``, or why there is none and how to get it."""
        verdict = self.verdict
        if verdict == UNSURE:
            return f"{UNSURE}: {'; '.join(self.problems)}. For a verdict, {self._how_to_decide()}"
        return verdict

    def warnings(self, variant: str) -> list[str]:
        """``LOW FIDELITY`` / ``NO FIDELITY REPORT`` lines for the user, and the notes.

        ``not enough evidence`` is no warning (nothing was found wrong): :meth:`verdict_line` says it.
        """
        where = f"{variant} vs {self.reference} on {self.frames} frames ({self.source})"
        lines = list(self.notes)
        if self.error is not None:
            lines.append(f"NO FIDELITY REPORT: {where}: {self.error}")
        elif self.verdict == LOW:
            lines.append(
                f"LOW FIDELITY: {where}: {'; '.join(self.problems)}. This variant does not score like "
                "the model it was made from and may miss defects that one finds: check it on labelled "
                "images (--labeled ROOT, or padim-eval) before deploying it"
            )
        return lines
