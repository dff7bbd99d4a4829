"""TensorRT EP options built from the model's metadata (no GPU: the dict the runtime would pass)."""

from __future__ import annotations

import ast
import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from padim_edge import metadata
from padim_edge.runtime import PadimModel
from padim_edge.runtime import model as model_mod
from padim_edge.runtime import providers as providers_mod
from padim_edge.runtime.modelfile import ModelFileError, read_metadata
from padim_edge.runtime.tensorrt import (
    DEFAULT_DYNAMIC_PROFILE,
    OPTION_SINCE,
    TrtProfile,
    parse_profile,
    tensorrt_options,
    version_tuple,
)
from tests.conftest import ROOT, TRT_SIZE

PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
#: Lazily imported modules that are not the predict path (``--ray``: padim_edge.distributed, Python >= 3.10).
NOT_RUNTIME = ("padim_edge.distributed",)


def _lazy_imports() -> set[str]:
    """``padim_edge.*`` modules the runtime's files import anywhere (function bodies included)."""
    names = set()
    runtime = ROOT / "padim_edge" / "runtime"
    for path in [*runtime.glob("*.py"), *runtime.glob("video/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] == "padim_edge" and not n.startswith(NOT_RUNTIME)}


@pytest.fixture(scope="module")
def runtime_closure() -> list[str]:
    """The runtime closure, as files: every ``padim_edge`` module in ``sys.modules`` of a fresh process
    that imported ``padim_edge.runtime.cli`` (padim-predict) and the modules it imports lazily."""
    modules = sorted({"padim_edge.runtime.cli", *_lazy_imports()})
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "assert 'torch' not in sys.modules and 'onnx' not in sys.modules, 'the runtime imported torch/onnx'\n"
        "for name, module in sorted(sys.modules.items()):\n"
        "    if name.split('.')[0] == 'padim_edge': print(module.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}
    )
    assert done.returncode == 0, done.stderr
    files = [Path(line).resolve().relative_to(ROOT).as_posix() for line in done.stdout.split()]
    assert "padim_edge/runtime/model.py" in files and "padim_edge/visualize.py" in files
    return files


def info(**values: object) -> metadata.ModelInfo:
    base = {"version": "0", "backbone": "r18", "dims": 8, "resize": 72, "crop": 64, "weights": "w"}
    return metadata.parse(metadata.encode({"train_images": 2, **base, **values}))


def test_precision_flags_follow_the_variant() -> None:
    cases = [
        ({}, False, False),
        ({"precision": "fp16"}, True, False),
        ({"precision": "int8", "quant_format": "qdq"}, False, True),
        ({"precision": "int8", "quant_format": "qoperator"}, False, False),  # QLinear ops run on the CPU EP
        ({"head_precision": "fp16"}, True, False),  # float32 backbone, float16 head MatMul
        ({"precision": "int8", "quant_format": "qdq", "head_precision": "fp16"}, True, True),
        ({"head_precision": "int8"}, False, False),  # integer head: the CPU EP runs it
    ]
    for values, fp16, int8 in cases:
        options = tensorrt_options(info(**values), ort_version="1.18.1")
        assert (options["trt_fp16_enable"], options["trt_int8_enable"]) == (fp16, int8), values
        assert not any("calibration_table" in k for k in options)  # QDQ: never a table


def test_caches_profiles_and_workspace(tmp_path: Path) -> None:
    fixed = info(target="tensorrt", input_size=[480, 640])
    options = tensorrt_options(fixed, cache=tmp_path, ort_version="1.18.1")
    assert options["trt_engine_cache_enable"] is True and options["trt_timing_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "engines")
    assert options["trt_timing_cache_path"] == str(tmp_path / "timing")
    assert options["trt_max_workspace_size"] == 1 << 30
    assert (options["trt_profile_min_shapes"], options["trt_profile_max_shapes"]) == (
        "images:1x480x640x3",
        "images:8x480x640x3",
    )
    batch = parse_profile("2x480x640:4x480x640:16x480x640")
    assert tensorrt_options(fixed, profile=batch, ort_version="1.18.1")["trt_profile_opt_shapes"] == (
        "images:4x480x640x3"
    )
    with pytest.raises(
        ValueError, match=r"built for 480x640 frames; a TensorRT profile for it may only change"
    ):
        tensorrt_options(fixed, profile=parse_profile("1x224x224"), ort_version="1.18.1")
    dynamic = tensorrt_options(info(), workspace_bytes=256 << 20, ort_version="1.18.1")
    assert dynamic["trt_profile_max_shapes"] == "images:8x1080x1920x3" == DEFAULT_DYNAMIC_PROFILE.shapes()[2]
    assert dynamic["trt_max_workspace_size"] == 256 << 20
    assert dynamic["trt_engine_cache_path"].endswith("padim-edge/tensorrt/engines")
    with pytest.raises(ValueError, match="at least 1 MiB"):
        tensorrt_options(info(), workspace_bytes=1000)


def test_option_names_are_gated_by_onnxruntime_version() -> None:
    new = tensorrt_options(info(), ort_version="1.18.1")
    old = tensorrt_options(info(), ort_version="1.16.3")
    assert set(new) == set(OPTION_SINCE)
    assert set(new) - set(old) == {"trt_timing_cache_path"}  # 1.16 rejects unknown names
    assert "trt_profile_min_shapes" not in tensorrt_options(info(), ort_version="1.14.1")
    assert version_tuple("1.18.0.dev20240101") == (1, 18) and version_tuple("1") == (1, 0)


def test_profile_parsing() -> None:
    assert parse_profile("1x64x64:1x480x640:8x1080x1920") == DEFAULT_DYNAMIC_PROFILE
    assert parse_profile("4x480x640") == TrtProfile((4, 480, 640), (4, 480, 640), (4, 480, 640))
    assert str(DEFAULT_DYNAMIC_PROFILE) == "1x64x64:1x480x640:8x1080x1920"
    for bad, message in [
        ("1x2", "expected NxHxW"),
        ("1x2x3:4x5x6", "expected MIN:OPT:MAX"),
        ("8x480x640:1x480x640:4x480x640", "batch: need 1 <= min <= opt <= max"),
        ("axbxc", "expected NxHxW"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_profile(bad)


def test_metadata_is_read_without_onnx(small_trt_onnx: Path, tmp_path: Path) -> None:
    expected = {p.key: p.value for p in onnx.load(str(small_trt_onnx)).metadata_props}
    assert read_metadata(small_trt_onnx) == expected
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelFileError):
        read_metadata(garbage)


def test_model_passes_its_options_to_the_tensorrt_provider(
    small_trt_onnx: Path, tmp_path: Path, monkeypatch
) -> None:
    """With the TensorRT EP "available", the session gets the options built from the file's metadata."""
    seen = {}
    trt = [providers_mod.TENSORRT, providers_mod.CPU]
    monkeypatch.setattr(providers_mod, "available", lambda: trt)

    def fake_open(path, *, device, threads, tensorrt, spin=True):
        seen.update(tensorrt or {})
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    monkeypatch.setattr(model_mod, "open_session", fake_open)
    model = PadimModel(
        small_trt_onnx, device="auto", trt_cache_dir=tmp_path / "cache", trt_workspace=512 << 20
    )
    size = f"{TRT_SIZE[0]}x{TRT_SIZE[1]}"
    assert seen["trt_profile_opt_shapes"] == f"images:1x{size}x3"
    assert seen["trt_max_workspace_size"] == 512 << 20
    assert (tmp_path / "cache" / "engines").is_dir()  # created before the session opens
    assert model.tensorrt_options == seen
    from padim_edge.runtime.cli import main

    result = CliRunner().invoke(
        main, [str(small_trt_onnx), str(tmp_path), "--trt-profile", "1x64x64", "--trt-cache", str(tmp_path)]
    )
    assert result.exit_code == 1 and f"built for {size} frames" in result.output


def test_pyproject_lints_the_runtime_closure_as_python38(runtime_closure: list[str]) -> None:
    """Every file of the closure is in ``[tool.ruff.per-file-target-version]`` as py38."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = [k for k, v in config["tool"]["ruff"]["per-file-target-version"].items() if v == "py38"]
    missing = [f for f in runtime_closure if not any(fnmatch.fnmatchcase(f, p) for p in patterns)]
    assert missing == [], f"add these to [tool.ruff.per-file-target-version] as py38: {missing}"


@pytest.mark.skipif(not PY38.is_file(), reason=f"no Python 3.8 interpreter at {PY38} (JetPack 5's Python)")
def test_runtime_closure_compiles_with_python38(runtime_closure: list[str], tmp_path: Path) -> None:
    for name in runtime_closure:
        assert (ROOT / name).is_file(), name
        shutil.copy(ROOT / name, tmp_path / name.replace("/", "__"))
    done = subprocess.run(
        [str(PY38), "-m", "py_compile", *[str(p) for p in sorted(tmp_path.glob("*.py"))]],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert sys.version_info >= (3, 9)  # the suite itself runs on the export side's Python
