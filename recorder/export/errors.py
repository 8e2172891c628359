"""Errors of the exporters; both are TeleopErrors whose one-line message says what to do."""

from __future__ import annotations

from teleop.errors import TeleopError


class ExportError(TeleopError):
    """An export that cannot be done as asked: the output exists, the episodes do not fit in one dataset, a camera
    they lack, no episode to export."""


class ExportOptionError(ExportError, ValueError):
    """An export option out of its range; the message names the option and a valid value."""
