"""Shared test helpers."""

from __future__ import annotations

import pytest

from teleop.clock import SimulatedClock

__all__ = ["SimulatedClock"]  # the tests import it from here


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def one_torch_thread():  # noqa: ANN201
    """torch on one thread while the test runs: on two shared cores, two threads slow down badly beside busy
    neighbours. Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
