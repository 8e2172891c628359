"""Shared test helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from teleop.clock import SimulatedClock


def _shared_data() -> Path:
    """The shared data folder: $TELEOP_SHARED_DATA, else ../shared/data beside the repository, else
    /work/shared/data."""
    if os.environ.get("TELEOP_SHARED_DATA"):
        return Path(os.environ["TELEOP_SHARED_DATA"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


HAND_VIDEO = _shared_data() / "hands" / "human_hand_video.mp4"
"""A real right hand filmed for 621 frames at 30 fps: tests that need it skip without it."""

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


@pytest.fixture(scope="session")
def hand_landmarker_model(tmp_path_factory):  # noqa: ANN001, ANN201
    """MediaPipe's hand landmarker model built from the mediapipe 0.10 wheel's TFLite files (the installed
    mediapipe if it is a 0.10, else the wheel pip fetches from the package index), once per test session."""
    pytest.importorskip("mediapipe")
    from devices.hand_model import build_task_from_mediapipe_wheel
    from teleop.errors import DeviceError

    try:
        return build_task_from_mediapipe_wheel(tmp_path_factory.mktemp("model") / "hand_landmarker.task")
    except DeviceError as exc:
        pytest.skip(f"no mediapipe 0.10 wheel to build the model from (no package index here?): {exc}")


@pytest.fixture(scope="session")
def real_hand_samples(hand_landmarker_model):  # noqa: ANN001, ANN201
    """Every frame of the real hand video tracked by MediaPipe as the webcam-hands device tracks it."""
    if not HAND_VIDEO.is_file():
        pytest.skip(f"{HAND_VIDEO} is not here")
    pytest.importorskip("cv2")
    from devices.webcam_hands import track_video

    return track_video(HAND_VIDEO, hand_landmarker_model)
