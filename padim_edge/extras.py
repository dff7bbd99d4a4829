"""Optional dependencies: which extra a command needs, and one clear line when it is missing.

The core install (numpy, click, Pillow, tqdm) runs every command's ``--help``; a command that needs more
checks its extras first and, when one is missing, says in one line what to install instead of
failing with a traceback deep inside an import.
"""

from __future__ import annotations

import importlib.util

#: extra -> (modules it provides, what to install). ``cpu``/``gpu`` both provide ``onnxruntime``.
EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "runtime": (("onnxruntime",), "pip install 'padim-edge[cpu]' (or 'padim-edge[gpu]' for CUDA / TensorRT)"),
    "export": (("torch", "torchvision", "onnx", "onnxscript"), "pip install 'padim-edge[export]'"),
    "eval": (("sklearn", "scipy", "matplotlib"), "pip install 'padim-edge[eval]'"),
    "calibrate": (("onnx", "onnxconverter_common"), "pip install 'padim-edge[calibrate]'"),
    "check": (("onnx",), "pip install 'padim-edge[check]'"),
    "bench": (("psutil", "matplotlib"), "pip install 'padim-edge[bench]'"),
    "ray": (("ray", "pyarrow", "pandas"), "pip install 'padim-edge[ray]'"),
    "video": (("cv2",), "pip install 'padim-edge[video]'"),
}
#: How a module is called on PyPI, where that differs.
_PACKAGE = {
    "sklearn": "scikit-learn",
    "onnxconverter_common": "onnxconverter-common",
    "cv2": "opencv-python-headless",
}


class MissingExtraError(ImportError):
    """A command's optional dependencies are not installed."""


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    modules, _ = EXTRAS[extra]
    return [m for m in modules if not _importable(m)]


def _importable(module: str) -> bool:
    """Whether ``module`` can be found (without importing it; a dotted name imports its parents)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a missing parent package; a module without a spec
        return False


def require(command: str, *extras: str) -> None:
    """Check that ``command``'s extras are installed.

    Raises:
        MissingExtraError: One line naming the missing packages and the install command.
    """
    for extra in extras:
        absent = missing(extra)
        if absent:
            names = ", ".join(_PACKAGE.get(m, m) for m in absent)
            verb = "is" if len(absent) == 1 else "are"
            raise MissingExtraError(
                f"{command} needs {names}, which {verb} not installed: {EXTRAS[extra][1]}"
            )
