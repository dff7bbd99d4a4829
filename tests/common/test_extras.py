"""The one-line message of a missing extra: it names the packages, with the right verb."""

from __future__ import annotations

import pytest

from padim_edge import extras


def test_missing_extra_names_every_package_with_the_right_verb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extras, "_importable", lambda module: module not in {"sklearn", "scipy"})
    with pytest.raises(extras.MissingExtraError) as caught:
        extras.require("padim-eval", "eval")
    assert str(caught.value) == (
        "padim-eval needs scikit-learn, scipy, which are not installed: pip install 'padim-edge[eval]'"
    )
    monkeypatch.setattr(extras, "_importable", lambda module: module != "onnx")
    with pytest.raises(extras.MissingExtraError) as caught:
        extras.require("padim-check", "check")
    assert (
        str(caught.value) == "padim-check needs onnx, which is not installed: pip install 'padim-edge[check]'"
    )
