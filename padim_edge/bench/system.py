"""The machine a benchmark runs on: CPU, memory, versions, providers, RSS and background load.

Nothing here imports torch: the onnxruntime workers import this module, and their RSS must be that
of a torch-free process.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

_MB = 1024 * 1024
#: Flags worth showing: they decide which kernels MLAS / oneDNN pick.
_ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)


def usable_cpus() -> int:
    """Logical CPUs this process may run on (affinity mask aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def resolve_threads(value: str | int) -> tuple[str, int]:
    """A ``--threads`` item -> (label, count): ``"all"`` is every usable logical CPU.

    Raises:
        ValueError: Not ``all`` nor a positive integer.
    """
    text = str(value).strip().lower()
    if text == "all":
        return "all", usable_cpus()
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"threads must be a positive integer or 'all', got {value!r}") from None
    if count < 1:
        raise ValueError(f"threads must be >= 1, got {count}")
    return str(count), count


def _cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (empty off Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    block = text.split("\n\n", 1)[0]
    out: dict[str, str] = {}
    for line in block.splitlines():
        key, _, value = line.partition(":")
        out.setdefault(key.strip(), value.strip())
    return out


def cpu_model() -> str:
    """CPU model name: /proc/cpuinfo, else ``lscpu``, else :func:`platform.processor`."""
    name = _cpuinfo().get("model name", "")
    if not name and shutil.which("lscpu"):
        try:
            text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
            name = next(
                (ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Model name")), ""
            )
        except (OSError, subprocess.SubprocessError):
            name = ""
    return name or platform.processor() or platform.machine() or "unknown CPU"


def gpus() -> list[str]:
    """GPU names and drivers from ``nvidia-smi`` (empty when there is none)."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return (
        [line.strip() for line in result.stdout.splitlines() if line.strip()]
        if result.returncode == 0
        else []
    )


def package_version(name: str) -> str | None:
    """Installed version of a distribution, without importing it (``None`` when absent)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def onnxruntime_info() -> tuple[str, list[str]]:
    """onnxruntime version and the providers this build offers."""
    import onnxruntime as ort

    return ort.__version__, list(ort.get_available_providers())


def machine_info() -> dict[str, Any]:
    """Everything a reader needs to place the numbers: CPU, cores, memory, OS, versions, providers."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    ort_version, providers = onnxruntime_info()
    memory = psutil.virtual_memory()
    cpu = cpu_model()
    family = info.get("cpu family")
    if family and cpu.strip() in {"AMD EPYC", "Intel Xeon", "Intel(R) Xeon(R)"}:
        # Cloud VMs often hide the exact part; family/model/stepping still identify the generation.
        cpu = f"{cpu} (family {family}, model {info.get('model', '?')}, stepping {info.get('stepping', '?')})"
    return {
        "cpu": cpu,
        "cpu_vendor": info.get("vendor_id"),
        "isa": [flag for flag in _ISA_FLAGS if flag in flags],
        "hypervisor": "hypervisor" in flags,
        "logical_cpus": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "usable_cpus": usable_cpus(),
        "memory_gb": round(memory.total / 1e9, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": package_version("numpy"),
        "onnxruntime": ort_version,
        "onnxruntime_package": next(
            (p for p in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-openvino") if package_version(p)),
            None,
        ),
        "providers": providers,
        "torch": package_version("torch"),
        "gpus": gpus(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    return psutil.Process().memory_info().rss / _MB


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (VmHWM; ``ru_maxrss`` where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / _MB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / _MB if sys.platform == "darwin" else peak * 1024 / _MB


def _cpu_ticks() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    hz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hz, total / hz


class BackgroundLoad:
    """Share of the machine's CPU time used by *other* processes over an interval.

    A shared machine (other jobs running tests) makes multi-threaded latencies noisy; each timed
    configuration records this so that a reader can tell a clean number from a contended one.
    ``None`` where /proc/stat is missing.

    Example:
        >>> load = BackgroundLoad()
        >>> ...  # timed work
        >>> load.fraction()  # 0.0 (idle) .. 1.0 (every CPU busy with others)
    """

    def __init__(self) -> None:
        self.start = _cpu_ticks()
        self.own = self._own_cpu()
        self.wall = time.perf_counter()

    @staticmethod
    def _own_cpu() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system

    def fraction(self) -> float | None:
        """Background share since construction, in [0, 1]."""
        end = _cpu_ticks()
        if self.start is None or end is None:
            return None
        busy = end[0] - self.start[0]
        total = end[1] - self.start[1]
        if total <= 0:
            return None
        others = busy - (self._own_cpu() - self.own)
        return float(min(1.0, max(0.0, others / total)))


def wait_for_idle(*, timeout: float, threshold: float = 0.2, sample: float = 1.0, log=None) -> float | None:
    """Wait until other processes use less than ``threshold`` of the CPU (or ``timeout`` passes).

    Args:
        timeout: Most seconds to wait (0: measure once and return).
        threshold: Background share counted as idle.
        sample: Seconds per measurement.
        log: Optional ``callable(str)`` for a progress line when waiting.

    Returns:
        The last background share measured (``None`` without /proc/stat).
    """
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        load = BackgroundLoad()
        time.sleep(sample)
        share = load.fraction()
        if share is None or share < threshold or time.monotonic() >= deadline:
            return share
        if log is not None and not warned:
            log(f"  waiting up to {timeout:.0f} s for other processes to leave the CPU ({share:.0%} busy)")
            warned = True
