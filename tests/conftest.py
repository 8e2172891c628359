"""Shared test helpers."""

from __future__ import annotations

import pytest

from teleop.clock import SimulatedClock

__all__ = ["SimulatedClock"]  # the tests import it from here


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()
