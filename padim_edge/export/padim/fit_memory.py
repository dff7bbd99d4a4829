"""How much memory PaDiM's fit needs, and a refusal before the fit when the machine lacks it (no torch).

The fit keeps a float64 scatter matrix per patch (``8 P d^2`` bytes) while images stream through, then
inverts them into the float32 ``Sigma^-1`` (``4 P d^2`` more) a chunk of patches at a time
(:meth:`padim_edge.gaussian.GaussianStatistics.finalize`). WR50-Rd550 (3136 patches x 550 dims) needs
about 11.7 GB; with 512-patch inversion chunks it peaked at 17.8 GB, and a machine without the memory
found out minutes into the fit. :func:`check_fit_memory` compares the estimate with the memory the
system says is available before the first image is read, and names what to change.
"""

from __future__ import annotations

import os

from padim_edge.gaussian import FINALIZE_TEMPORARIES, patch_chunk

#: Extra float64 ``[chunk, d, d]`` temporaries of one update (outer products and their sum).
UPDATE_TEMPORARIES = 3
GB = 1e9


def _size(size: int) -> str:
    return f"{size / GB:.1f} GB" if size >= GB else f"{size / 1e6:.0f} MB"


class FitMemoryError(RuntimeError):
    """The machine has less memory available than the PaDiM fit needs (the message says what to use)."""


def fit_peak_bytes(patches: int, dims: int, *, batch_size: int = 16) -> int:
    """About the peak bytes PaDiM's fit adds: the larger of the accumulation and the inversion.

    Accumulation: the float64 mean and scatter, a batch's embedding (float32, and float64 patch-major)
    and :data:`UPDATE_TEMPORARIES` chunk temporaries. Inversion: the scatter, the float32 inverse and
    :data:`~padim_edge.gaussian.FINALIZE_TEMPORARIES` chunk temporaries. The backbone and the Python
    process itself are not counted (they are already loaded when the check runs).

    Args:
        patches: Patch positions ``P`` (the grid edge squared).
        dims: Embedding dims ``d``.
        batch_size: Images per forward pass.
    """
    square = patches * dims * dims
    temporary = 8 * patch_chunk(dims) * dims * dims
    accumulators = 8 * square + 8 * patches * dims
    accumulate = accumulators + 12 * batch_size * patches * dims + UPDATE_TEMPORARIES * temporary
    invert = accumulators + 4 * square + FINALIZE_TEMPORARIES * temporary
    return max(accumulate, invert)


def available_bytes() -> int | None:
    """Memory the system can give this process now: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else
    the free physical pages (``os.sysconf``), else ``None`` (unknown: no check)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def largest_dims(patches: int, available: int, *, batch_size: int = 16) -> int:
    """The most embedding dims whose fit fits in ``available`` bytes (0 if not even one does)."""
    lo, hi = 0, 1
    while fit_peak_bytes(patches, hi, batch_size=batch_size) <= available:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fit_peak_bytes(patches, mid, batch_size=batch_size) <= available else (lo, mid)
    return lo


def check_fit_memory(
    patches: int,
    dims: int,
    *,
    batch_size: int = 16,
    available: int | None = None,
    where: str = "memory",
) -> int:
    """Refuse a fit that would not fit in memory, before it starts.

    Args:
        patches: Patch positions.
        dims: Embedding dims.
        batch_size: Images per forward pass.
        available: Bytes available (default: :func:`available_bytes`; unknown means no check).
        where: What the bytes are of, for the message (``memory``, ``GPU memory``).

    Returns:
        The estimate, in bytes.

    Raises:
        FitMemoryError: The estimate is above ``available``; one line with both sizes and what to use.
    """
    needed = fit_peak_bytes(patches, dims, batch_size=batch_size)
    available = available_bytes() if available is None else available
    if available is None or needed <= available:
        return needed
    fits = largest_dims(patches, available, batch_size=batch_size)
    instead = f"--dims {fits} or fewer" if fits else "fewer --dims"
    raise FitMemoryError(
        f"the PaDiM fit needs about {_size(needed)} of {where} ({patches} patches x {dims} dims: "
        f"float64 covariances and their inverses), {_size(available)} is available: use {instead}, "
        "a smaller --crop or --backbone (r18, mnv2), or a machine with more memory "
        "(--head-precision shrinks the model file, not the fit)"
    )
