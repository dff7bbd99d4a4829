"""What a benchmark run is asked to do (:class:`BenchConfig`) and what it produced (:class:`BenchResult`).

Plain dataclasses with no heavy imports: the reports (:mod:`padim_edge.bench.report`) read results
without loading the runner, its workers or onnxruntime.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from padim_edge.bench.timing import TimingPolicy

VARIANTS = ("fused", "backbone", "eager")
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
#: Background CPU share (other processes) above which a measurement counts as contended.
CONTENDED = 0.10


@dataclass
class BenchConfig:
    """What to benchmark.

    Attributes:
        backbones: Backbones to build (random-init, fitted on synthetic frames) and benchmark.
        models: Existing fused model files to benchmark instead of (or besides) built ones.
        batch_sizes: Batch sweep (each configuration runs them ascending).
        threads: CPU thread settings: positive integers or ``"all"`` (every usable logical CPU).
        devices: ``cpu``, ``cuda``, ``tensorrt``; ``None``: every one this onnxruntime build has.
            Requested devices whose provider is missing are skipped with a note.
        policy: Warm-up and repetition policy per batch size.
        frame: Input frame ``(H, W)``; the graph resizes, so any size works.
        method: ``padim`` or ``patchcore`` (built models).
        coreset: PatchCore's coreset fraction of built models (``None``: 0.1).
        dims: Embedding dims (``None``: the method's setting for each backbone).
        resize: Square resize edge of built models.
        crop: Center-crop edge of built models.
        seed: Channel-subset seed.
        fit_frames: Synthetic frames the built models' heads are fitted on (PatchCore: sets the bank size).
        head_precisions: Head precisions of the built models: ``fp32`` is the export itself, others are
            rewritten from it (torch-free, :mod:`padim_edge.calibration.head`) and labelled
            ``R18-Rd100 int8-head``; they share the float32 model's backbone-alone and eager comparators.
        eager: Include the PyTorch eager rows.
        backbone: Include the backbone-alone rows.
        isolate: One fresh subprocess per configuration (per-model peak RSS).
        workdir: Where exported models go and are reused from (``None``: a temporary folder,
            deleted afterwards).
        wait_idle: Seconds to wait, before each configuration, for other processes to leave the CPU.
        retries: Times to measure again a configuration timed while other processes used more than
            :data:`CONTENDED` of the CPU (the least contended attempt is kept).
        progress: Progress lines on stderr.
    """

    backbones: list[str] = field(default_factory=lambda: ["r18"])
    models: list[Path] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    threads: list[str] = field(default_factory=lambda: ["1", "all"])
    devices: list[str] | None = None
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    frame: tuple[int, int] = (224, 224)
    method: str = "padim"
    coreset: float | None = None
    dims: int | None = None
    resize: int = 256
    crop: int = 224
    seed: int = 0
    fit_frames: int = 8
    head_precisions: list[str] = field(default_factory=lambda: ["fp32"])
    eager: bool = True
    backbone: bool = True
    isolate: bool = True
    workdir: Path | None = None
    wait_idle: float = 0.0
    retries: int = 0
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Settings as plain JSON values."""
        values = asdict(self)
        values["models"] = [str(m) for m in self.models]
        values["workdir"] = str(self.workdir) if self.workdir else None
        values["frame"] = list(self.frame)
        values["policy"] = self.policy.to_dict()
        return values


@dataclass
class BenchResult:
    """Rows of a benchmark with the machine and settings that produced them.

    Attributes:
        machine: :func:`padim_edge.bench.system.machine_info` at the start.
        runs: Settings of each run merged into this result.
        rows: One dict per (model, variant, engine, device, threads, batch size).
        notes: Skipped devices, failed batch sizes, caveats.
        seconds: Wall time of all runs.
        failures: Configurations that measured nothing (the model did not load, its first call failed,
            or its smallest batch size failed): ``model``, ``variant``, ``device``, ``threads_label``,
            ``error``. ``padim-bench`` exits 1 when there is one. A sweep that stops at a larger batch
            size (out of memory) is a note, not a failure.
    """

    machine: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: BenchResult) -> BenchResult:
        """This result followed by ``other``'s runs, rows, notes and failures (machine info of the first)."""
        return BenchResult(
            machine=self.machine,
            runs=self.runs + other.runs,
            rows=self.rows + other.rows,
            notes=self.notes + [n for n in other.notes if n not in self.notes],
            seconds=self.seconds + other.seconds,
            failures=self.failures + other.failures,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BenchResult:
        """Inverse of :meth:`to_dict` (extra keys such as derived tables are ignored)."""
        keys = ("machine", "runs", "rows", "notes", "seconds", "failures")
        return cls(**{k: values[k] for k in keys if k in values})
