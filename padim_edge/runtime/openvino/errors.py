"""The OpenVINO backend's refusal of a model (Python 3.8 compatible)."""

from __future__ import annotations


class OpenVinoModelError(ValueError):
    """A model OpenVINO cannot read, or would compute differently (the message names the fix)."""
