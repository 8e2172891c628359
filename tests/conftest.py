"""Shared test helpers."""

from __future__ import annotations

import pytest


class SimulatedClock:
    """A monotonic clock that only moves when slept on: loops run as fast as the CPU allows, deterministically."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()
