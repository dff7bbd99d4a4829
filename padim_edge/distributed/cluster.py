"""Which Ray cluster ``--ray [ADDRESS]`` means, and connecting to it.

* ``--ray`` alone (``local``): a Ray instance started in this process for this run, on this machine.
* ``--ray auto``: the cluster already running on this machine (``ray start --head`` or a worker node
  of a cluster; also ``RAY_ADDRESS`` when set).
* ``--ray ray://host:10001``: a remote cluster through the Ray Client.
* ``--ray host:6379``: a cluster's GCS address, from a machine that is part of it.

:func:`parse_address` is pure Python (the CLIs call it without importing Ray); :func:`connect`
imports Ray. A process in which Ray is already initialised (a test fixture, a notebook) is reused.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

#: ``--ray`` given without a value.
LOCAL = "local"
AUTO = "auto"
_HOST_PORT = re.compile(r"^(ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):\d{1,5}$")

ADDRESS_HELP = (
    "'--ray' alone starts a Ray instance on this machine for this run; '--ray auto' joins the cluster "
    "running here ('ray start --head'); '--ray ray://HOST:10001' a remote one through the Ray Client; "
    "'--ray HOST:6379' a cluster's GCS address"
)


class ClusterError(RuntimeError):
    """The Ray cluster cannot be reached, or lacks what the job asks for."""


def is_address(text: str) -> bool:
    """Whether ``text`` is something ``--ray`` accepts (``local``, ``auto``, ``[ray://]host:port``)."""
    return text in (LOCAL, AUTO) or bool(_HOST_PORT.match(text))


def parse_address(value: str | None) -> str | None:
    """Check a ``--ray`` value; ``None`` (no ``--ray``) stays ``None``.

    Raises:
        ValueError: Not ``local``, ``auto``, ``ray://host:port`` or ``host:port`` (one line, with help).
    """
    if value is None:
        return None
    value = value.strip()
    if not is_address(value):
        raise ValueError(f"--ray {value!r} is not a cluster address: {ADDRESS_HELP}")
    return value


@dataclass(frozen=True)
class ClusterInfo:
    """What the connected cluster offers.

    Attributes:
        address: How it was reached (``local``, ``auto``, ...).
        nodes: Live nodes.
        cpus: CPUs in all.
        gpus: GPUs in all.
        started: Whether :func:`connect` started or joined it (and :func:`session` shuts it down).
    """

    address: str
    nodes: int
    cpus: float
    gpus: float
    started: bool

    def describe(self) -> str:
        """One line for the log."""
        where = "a local Ray instance" if self.address == LOCAL else f"the Ray cluster at {self.address}"
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{where}: {self.nodes} node(s), {self.cpus:g} CPU{gpus}"


def connect(address: str = LOCAL, *, num_cpus: int | None = None) -> ClusterInfo:
    """Connect to (or start) the cluster ``address`` names; reuse Ray if this process already has it.

    Args:
        address: ``local``, ``auto``, ``ray://host:port`` or ``host:port``.
        num_cpus: CPUs a ``local`` instance may use (default: all of this machine's).

    Raises:
        padim_edge.extras.MissingExtraError: Ray is not installed.
        ClusterError: The cluster cannot be reached (one line, with what to do).
    """
    from padim_edge.extras import require

    require("--ray", "ray")
    import ray

    address = parse_address(address) or LOCAL
    started = False
    if not ray.is_initialized():
        options: dict[str, object] = {"logging_level": logging.WARNING, "log_to_driver": True}
        try:
            if address == LOCAL:
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **options)
            elif address.startswith("ray://"):  # the Ray Client forwards options to the server's init
                ray.init(address=address)
            else:
                ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            hint = "start one with 'ray start --head' on this machine" if address == AUTO else ADDRESS_HELP
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ClusterError(
                f"cannot connect to the Ray cluster at {address}: {first[:300]} ({hint})"
            ) from exc
        started = True
    total = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    return ClusterInfo(
        address=address,
        nodes=nodes,
        cpus=float(total.get("CPU", 0)),
        gpus=float(total.get("GPU", 0)),
        started=started,
    )


@contextlib.contextmanager
def session(address: str = LOCAL, *, num_cpus: int | None = None) -> Iterator[ClusterInfo]:
    """:func:`connect` for the length of a block; shuts Ray down after it only if it connected here."""
    info = connect(address, num_cpus=num_cpus)
    try:
        yield info
    finally:
        if info.started:
            import ray

            ray.shutdown()
