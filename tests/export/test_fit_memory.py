"""PaDiM's fit memory: the estimate, and the one-line refusal before the fit when memory is short."""

from __future__ import annotations

import numpy as np
import pytest

from padim_edge.export import fit as fit_module
from padim_edge.export.padim import fit_memory
from padim_edge.export.padim.fit_memory import FitMemoryError, check_fit_memory, fit_peak_bytes
from padim_edge.gaussian import GaussianStatistics, patch_chunk


def test_estimate_for_wr50_rd550() -> None:
    """3136 x 550: scatter 7.59 GB + float32 inverse 3.79 GB + 5 inversion temporaries of 27 patches."""
    square = 3136 * 550 * 550
    assert patch_chunk(550) == 27 and patch_chunk(100) == 512
    expected = 8 * square + 8 * 3136 * 550 + 4 * square + 5 * 8 * 27 * 550 * 550
    assert fit_peak_bytes(3136, 550) == expected
    assert 11.6e9 < expected < 11.8e9  # was 17.8 GB measured with 512-patch inversion chunks


def test_refusal_names_sizes_and_what_to_use() -> None:
    with pytest.raises(FitMemoryError) as info:
        check_fit_memory(3136, 550, available=8 * 10**9)
    assert str(info.value) == (
        "the PaDiM fit needs about 11.7 GB of memory (3136 patches x 550 dims: float64 covariances and "
        "their inverses), 8.0 GB is available: use --dims 451 or fewer, a smaller --crop or --backbone "
        "(r18, mnv2), or a machine with more memory (--head-precision shrinks the model file, not the fit)"
    )
    assert fit_peak_bytes(3136, 451) <= 8 * 10**9 < fit_peak_bytes(3136, 452)
    assert check_fit_memory(3136, 550, available=12 * 10**9) == fit_peak_bytes(3136, 550)


def test_available_bytes_reads_meminfo() -> None:
    available = fit_memory.available_bytes()
    assert available is None or available > 0


def test_fit_refuses_before_reading_an_image(small_export, train_dir, monkeypatch) -> None:
    """The fit stops at the check: no image is decoded, the model is left as it was."""
    monkeypatch.setattr(fit_memory, "available_bytes", lambda: 1000)
    decoded = []
    monkeypatch.setattr(fit_module, "frame_batches", lambda *a, **k: decoded.append(1) or iter(()))
    model = small_export.model
    before = model.mahalanobis.mean.clone()
    paths = sorted(train_dir.iterdir())
    with pytest.raises(
        FitMemoryError,
        match=r"^the PaDiM fit needs about \d+ MB of memory \(256 patches x 24 dims: .*, 0 MB is available",
    ):
        fit_module.fit(model, paths, device="cpu", progress=False)
    assert decoded == [] and model.mahalanobis.mean.equal(before)


def test_inversion_chunks_do_not_change_the_result() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6, 5, 4))
    small, default = GaussianStatistics(chunk=3), GaussianStatistics()
    small.update(x)
    default.update(x)
    for a, b in zip(small.finalize(), default.finalize(), strict=True):
        np.testing.assert_array_equal(a, b)
