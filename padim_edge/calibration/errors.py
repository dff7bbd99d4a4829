"""The one error type of the calibration package (the CLI turns it into a plain message)."""

from __future__ import annotations


class CalibrationError(ValueError):
    """Bad input to a calibration: a file that is not a padim-edge model, too few images, bad flags."""
