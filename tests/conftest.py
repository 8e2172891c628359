"""Shared test helpers."""

from __future__ import annotations

import os

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


def record_scripted(folder, episodes: int, robot: str = "franka", task: str = "franka-reach", seed: int = 0):  # noqa: ANN001, ANN201
    """`episodes` scripted episodes of `task` into `folder` on a simulated clock (48-px cameras, fast); returns
    the RecordingSummary."""
    from teleop.recording import record_episodes
    from teleop.rig import RigConfig, build_rig
    from teleop.sim import SimConfig

    simulated = SimulatedClock()
    rig = build_rig(RigConfig(robot=robot, task=task, sim=SimConfig(image_size=(48, 48))), clock=simulated,
                    sleep=simulated.sleep)
    try:
        return record_episodes(rig, folder, episodes, seed, progress=lambda _: None)
    finally:
        rig.close()


@pytest.fixture(scope="session")
def app():  # noqa: ANN201
    """The process's QApplication, offscreen unless QT_QPA_PLATFORM says otherwise (one per process)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    widgets = pytest.importorskip("PyQt6.QtWidgets")
    return widgets.QApplication.instance() or widgets.QApplication([])
