"""One local Ray instance for the tests of this package (2 CPUs, no dashboard), shut down after them."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package")
def ray_cluster():
    """Ray started in this process; every padim_edge.distributed call in the tests reuses it."""
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

    from padim_edge.distributed.cluster import connect

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        yield connect("local")
    finally:
        ray.shutdown()
