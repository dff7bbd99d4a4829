"""What a method gives the distributed fit: rebuild on a worker, fit a shard, install the merged result.

The driver builds the module once; workers get its ``state_dict`` through the object store (nobody
downloads weights twice, and every worker has the same weights and channel subset) and rebuild the
module from a small picklable *plan*. Each worker fits its shard of the images into a *partial*: any
picklable object with ``merge(other) -> self`` that merges associatively. The driver reduces the
partials in a tree and installs the root into its own module, then exports exactly as a local fit.

PaDiM's partial is :class:`padim_edge.gaussian.GaussianStatistics` (count, mean, scatter; Chan et al.),
exact up to float64 rounding. PatchCore's is :class:`CoresetPartial`: each shard streams its patch
features into its own coreset bank and hands on only its chunk coresets (at most ``oversample x
coreset`` of its vectors); merges concatenate them and the driver's final greedy pass selects the bank,
the same approximation as a local streaming fit whose chunks are the shards' (``docs/patchcore.md``).
A method joins by adding a row to :data:`PLANS`.

Imports torch (workers of the fit have it); the scoring side never imports this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from padim_edge.export.fit import accumulate, install
from padim_edge.export.padim.model import PadimModule
from padim_edge.export.patchcore import fit as patchcore_fit
from padim_edge.export.patchcore.bank import PartialCoreset
from padim_edge.export.patchcore.model import PatchCoreModule
from padim_edge.gaussian import GaussianStatistics
from padim_edge.images import ImageError, iter_batches

#: ``on_error`` of a shard fit: called with each file that cannot be decoded.
OnError = Callable[[Path, ImageError], None]


class Partial(Protocol):
    """One shard's partial fit: merges with another shard's, in any tree, to the one-pass result."""

    count: int

    def merge(self, other: Any) -> Any:
        """Fold ``other`` into this one, in place; returns ``self``."""
        ...


class ShardPlan(Protocol):
    """How a method's module is rebuilt on a worker, fits a shard, and receives the merged result."""

    method: str

    def build(self, state: dict[str, Any]) -> Any:
        """The driver's module, rebuilt from its ``state_dict`` (no download)."""
        ...

    def partial_fit(
        self, module: Any, paths: list[Path], *, batch_size: int, device: str, on_error: OnError
    ) -> Partial:
        """Fit ``paths`` into a partial; undecodable files go to ``on_error`` and are skipped."""
        ...

    def install(self, module: Any, partial: Partial) -> None:
        """Finalise the merged partial into ``module`` (the driver's), ready to export."""
        ...


@dataclass(frozen=True)
class PadimPlan:
    """PaDiM: the configuration that rebuilds the module, and the Gaussian statistics as the partial."""

    backbone: str
    dims: int
    resize: int
    crop: int
    seed: int
    indices: tuple[int, ...]
    method: str = "padim"
    reduction: str = "select"

    @classmethod
    def of(cls, model: PadimModule) -> PadimPlan:
        """The plan of a built (fitted or not) PaDiM module."""
        config = model.config
        return cls(
            backbone=config.spec.name,
            dims=config.dims,
            resize=config.resize,
            crop=config.crop,
            seed=config.seed,
            indices=() if model.indices is None else tuple(int(i) for i in model.indices),
            reduction=config.reduction,
        )

    def build(self, state: dict[str, Any]) -> PadimModule:
        """Rebuild with random-init weights (nothing fetched), then load the driver's weights."""
        from padim_edge.export.pipeline import build_module

        module, _ = build_module(
            self.backbone,
            dims=self.dims,
            resize=self.resize,
            crop=self.crop,
            seed=self.seed,
            random_init=True,
            reduction=self.reduction,
        )
        module.load_state_dict(state, strict=True)  # an orthogonal reduction's W comes with it
        if self.indices and tuple(int(i) for i in module.indices) != self.indices:
            raise RuntimeError(
                "the worker's channel subset differs from the driver's (different padim-edge?)"
            )
        return module.eval()

    def partial_fit(
        self, module: PadimModule, paths: list[Path], *, batch_size: int, device: str, on_error: OnError
    ) -> GaussianStatistics:
        frames = (
            [image for _, image in batch] for batch in iter_batches(paths, batch_size, on_error=on_error)
        )
        return accumulate(module, frames, device=device).to_numpy()

    def install(self, module: PadimModule, partial: GaussianStatistics) -> None:
        install(module, partial)


@dataclass
class CoresetPartial:
    """PatchCore's partial: the shards' chunk coresets, concatenated by :meth:`merge`.

    Attributes:
        vectors: Float32 coreset vectors ``[k, D]``, one array per shard (or merged group).
        seen: Patch vectors they stand for.
        chunks: Chunk coresets made so far.
        count: Images fitted.
    """

    vectors: list[np.ndarray]
    seen: int
    chunks: int
    count: int

    def merge(self, other: CoresetPartial) -> CoresetPartial:
        """Absorb ``other``'s vectors (no selection: the driver's final pass selects from all)."""
        self.vectors = [*self.vectors, *other.vectors]
        self.seen += other.seen
        self.chunks += other.chunks
        self.count += other.count
        return self


@dataclass(frozen=True)
class PatchCorePlan:
    """PatchCore: the configuration that rebuilds the module; per-shard coresets as the partial."""

    backbone: str
    dims: int
    resize: int
    crop: int
    seed: int
    coreset: float
    method: str = "patchcore"

    @classmethod
    def of(cls, model: PatchCoreModule) -> PatchCorePlan:
        """The plan of a built (fitted or not) PatchCore module."""
        config = model.config
        return cls(
            backbone=config.spec.name,
            dims=config.dims,
            resize=config.resize,
            crop=config.crop,
            seed=config.seed,
            coreset=config.coreset,
        )

    def build(self, state: dict[str, Any]) -> PatchCoreModule:
        """Rebuild with random-init weights (nothing fetched), then load the driver's weights."""
        from padim_edge.export.pipeline import build_module

        module, _ = build_module(
            self.backbone,
            method="patchcore",
            dims=self.dims,
            resize=self.resize,
            crop=self.crop,
            seed=self.seed,
            random_init=True,
            coreset=self.coreset,
        )
        module.load_state_dict(state, strict=True)
        if PatchCorePlan.of(module) != self:
            raise RuntimeError("the worker's PatchCore configuration differs from the driver's")
        return module.eval()

    def partial_fit(
        self, module: PatchCoreModule, paths: list[Path], *, batch_size: int, device: str, on_error: OnError
    ) -> CoresetPartial:
        bank = patchcore_fit.make_bank(module)
        images = 0

        def frames() -> Iterator[list[np.ndarray]]:  # streamed: one batch of images in memory
            nonlocal images
            for batch in iter_batches(paths, batch_size, on_error=on_error):
                images += len(batch)
                yield [image for _, image in batch]

        patchcore_fit.accumulate(module, frames(), bank, device=device)
        part = bank.partial(reduce=True)
        return CoresetPartial(vectors=[part.vectors], seen=part.seen, chunks=part.chunks, count=images)

    def install(self, module: PatchCoreModule, partial: CoresetPartial) -> None:
        bank = patchcore_fit.make_bank(module)
        for vectors in partial.vectors:
            bank.merge(PartialCoreset(vectors=vectors, seen=0, chunks=0))
        bank.seen, bank.chunks = partial.seen, partial.chunks
        patchcore_fit.install(module, bank)


#: method name (the module's ``method``) -> plan of a built module.
PLANS: dict[str, Callable[[Any], ShardPlan]] = {"padim": PadimPlan.of, "patchcore": PatchCorePlan.of}


def plan_for(model: Any) -> ShardPlan:
    """The shard plan of a built module.

    Raises:
        ValueError: The method has no distributed fit yet.
    """
    method = getattr(model, "method", None)
    if method not in PLANS:
        raise ValueError(
            f"the distributed fit does not support method {method!r} yet (has: {', '.join(PLANS)})"
        )
    return PLANS[method](model)


def state_of(model: Any) -> dict[str, Any]:
    """The module's ``state_dict`` on the CPU, what workers rebuild it from."""
    return {name: tensor.detach().to("cpu") for name, tensor in model.state_dict().items()}


def writable(partial: Any) -> Any:
    """``partial`` itself, or a copy when its arrays are read-only views (Ray's zero-copy numpy)."""
    arrays = [v for v in vars(partial).values() if isinstance(v, np.ndarray)]
    if all(a.flags.writeable for a in arrays):
        return partial
    copy = object.__new__(type(partial))
    copy.__dict__.update(
        {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(partial).items()}
    )
    return copy
