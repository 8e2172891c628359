"""A `.partial` episode left by a recording that stopped, opened for repair (see recorder.repair)."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import numpy as np

P = TypeVar("P", bound="PartialEpisode")




class PartialEpisode(abc.ABC):
    """A `.partial` episode left by a recording that stopped, opened for repair (see recorder.repair).

    Attributes:
        path: The partial file or directory.
        flushed_steps: The row count stored with the last flush.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.flushed_steps = 0

    @abc.abstractmethod
    def array_names(self) -> list[str]:
        """Every array of the partial episode (step-aligned and frame arrays)."""

    @abc.abstractmethod
    def length(self, name: str) -> int:
        """Rows allocated in an array (the writer grows arrays by blocks, so this may exceed the steps)."""

    @abc.abstractmethod
    def chunk_rows(self, name: str) -> int:
        """Rows per chunk of an array."""

    @abc.abstractmethod
    def chunk_stored(self, name: str, index: int) -> bool:
        """True when chunk `index` (along axis 0) of an array was written."""

    @abc.abstractmethod
    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 of an array; may raise the backend's own errors for damaged chunks."""

    @abc.abstractmethod
    def finish(self, lengths: Mapping[str, int], attrs: Mapping[str, Any], target: Path) -> None:
        """Store the leading rows of every array (`lengths`: name -> rows) with the root attributes updated by
        `attrs` as episode `target`, atomically, and remove the partial episode once `target` is durable."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the storage; safe to call twice."""

    read_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, ValueError, RuntimeError, KeyError)

    def valid_rows(self, name: str, limit: int) -> int:
        """How many leading rows (at most `limit`) of an array were written and read back intact."""
        limit = min(limit, self.length(name))
        step = self.chunk_rows(name)
        for start in range(0, limit, step):
            if not self.chunk_stored(name, start // step):
                return start
            try:
                self.read(name, start, min(start + step, limit))
            except self.read_errors:
                return start
        return limit

    def __enter__(self: P) -> P:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
