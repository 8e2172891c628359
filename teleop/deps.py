"""Lazy imports of optional packages with an error that names the pip extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from teleop.errors import MissingDependencyError


def require(module: str, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import `module` or raise MissingDependencyError naming `pip install 'teleop[extra]'`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(package or module, extra, purpose) from exc
