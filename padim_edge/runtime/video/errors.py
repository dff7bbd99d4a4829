"""The one error of a video run (its message is the one line the command prints)."""

from __future__ import annotations


class VideoError(RuntimeError):
    """The source cannot be opened, does not answer, or stopped; or the annotated video cannot be written."""
