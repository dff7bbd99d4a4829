"""padim-serve fixtures: model files to serve, and real server processes on free loopback ports."""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.serve.server import ServerProcess

#: What the serve tests need besides the core install; without it they skip (not fail).
NEEDED = ("starlette", "uvicorn", "tritonclient.http", "onnx")


def _absent() -> list[str]:
    out = []
    for name in NEEDED:
        try:
            found = importlib.util.find_spec(name) is not None
        except ImportError:
            found = False
        if not found:
            out.append(name)
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    absent = _absent()
    if absent:
        skip = pytest.mark.skipif(
            True,
            reason=f"padim-serve tests need {', '.join(absent)}: "
            "pip install 'padim-edge[serve]' 'tritonclient[http]'",
        )
        here = Path(__file__).parent
        for item in items:
            if here in Path(str(item.fspath)).parents:
                item.add_marker(skip)


#: The calibrated variant's threshold (between the small model's normal and noise-frame scores).
THRESHOLD = 20.0


@pytest.fixture(scope="session")
def serve_models(small_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model files for the service: ``small`` (the shared small model), ``calibrated`` (the same with a
    baked threshold) and ``other`` (one constant shifted: different scores, different SHA-256)."""
    import onnx
    from onnx import numpy_helper

    from padim_edge import metadata
    from padim_edge.calibration.decision import bake_threshold
    from padim_edge.onnx_files import save_model, set_props

    folder = tmp_path_factory.mktemp("serve_models")
    small = folder / "small.onnx"
    shutil.copy(small_onnx, small)
    proto = onnx.load(str(small_onnx))
    bake_threshold(proto, THRESHOLD)
    set_props(proto, metadata.encode_updates({"threshold": THRESHOLD}))
    save_model(proto, folder / "calibrated.onnx", check=False)
    proto = onnx.load(str(small_onnx))
    tensor = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * np.float32(1.5), tensor.name))
    save_model(proto, folder / "other.onnx", check=False)
    return {"small": small, "calibrated": folder / "calibrated.onnx", "other": folder / "other.onnx"}


@pytest.fixture(scope="session")
def reference():
    """In-process models (CPU EP), keyed by file, for the expected outputs."""
    from padim_edge.runtime import PadimModel

    cache: dict[Path, PadimModel] = {}

    def get(path: Path) -> PadimModel:
        if path not in cache:
            cache[path] = PadimModel(path, device="cpu")
        return cache[path]

    return get


@pytest.fixture()
def start_server(tmp_path: Path) -> Iterator:
    """``start_server(models, *options)`` -> a running :class:`ServerProcess`; every one is killed after."""
    started: list[ServerProcess] = []

    def start(models: list[str], *options: str) -> ServerProcess:
        server = ServerProcess(models, list(options), log=tmp_path / f"server{len(started)}.log")
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
