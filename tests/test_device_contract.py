"""One lifecycle contract, asserted identically against every device backend in teleop.backends.BACKENDS.

Each backend is built with its SDK faked at the narrowest boundary, reusing the stand-ins of its own test
module: a stand-in `openvr` and `xr` module put in sys.modules (the devices import them on connect()), real
evdev bytes through a FIFO parsed by `inputs`, a real OpenCV video with a stand-in MediaPipe landmarker, a
real trace file. Devices are built through the registry wherever it needs no simulated scene.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devices.base import Device, DeviceSample
from devices.status import DeviceStatus
from teleop.backends import BACKENDS, DeviceContext
from teleop.errors import DeviceNotConnectedError

READS = 200
CLOSE_TO_CLOCK_S = 5.0  # a camera sample is stamped when its frame arrived; the others when read


@dataclass
class Case:
    """A device under test and how to see its fake SDK.

    Attributes:
        device: The device, built but not connected.
        sdk_calls: How many calls the fake SDK has seen; None for a backend without an SDK.
        ready: True once the device has something to report after connect() (waited for, bounded).
        cleanup: Releases the fake's resources after the test.
        threads_before: The threads alive before the device was built.
    """

    device: Device
    sdk_calls: Callable[[], int] | None = None
    ready: Callable[[], bool] = lambda: True
    cleanup: Callable[[], None] = lambda: None
    threads_before: set[threading.Thread] = field(default_factory=set)


def _context(arg: str | None = None) -> DeviceContext:
    """What the registry passes to a backend that needs no scene."""
    return DeviceContext(task=None, sim=None, controller=None, seed=0, clock=time.monotonic,  # type: ignore[arg-type]
                         arg=arg)


def _scripted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    from devices.scripted import ArmView, ScriptedArmOperator

    view = ArmView(ee_pos=np.array([0.4, 0.0, 0.3]), goal_pos=np.array([0.5, 0.1, 0.2]), close_gripper=True)
    return Case(ScriptedArmOperator(lambda: view, clock=time.monotonic))


def _keyboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    return Case(BACKENDS["keyboard"].make(_context()))


def _vive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    fakes = importlib.import_module("tests.test_vive")
    vr = fakes.FakeOpenVR()
    vr.system.devices = {
        0: fakes.Tracked(vr.TrackedDeviceClass_HMD, "LHR-HMD"),
        1: fakes.Tracked(vr.TrackedDeviceClass_Controller, "LHR-RIGHT", role=vr.TrackedControllerRole_RightHand),
    }
    monkeypatch.setitem(sys.modules, "openvr", vr)
    return Case(BACKENDS["vive"].make(_context("right")), sdk_calls=lambda: len(vr.app_types) + vr.system.pose_calls)


def _openxr(backend: str) -> Callable[[Path, pytest.MonkeyPatch], Case]:
    def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
        xr = importlib.import_module("tests.test_openxr").FakeXr()
        monkeypatch.setitem(sys.modules, "xr", xr)
        return Case(BACKENDS[backend].make(_context("right")), sdk_calls=lambda: len(xr.calls))

    return make


def _gamepad(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    from devices.gamepad import Gamepad

    fakes = importlib.import_module("tests.test_gamepad")
    plug = fakes.Plug(tmp_path)
    writers: list[int] = []

    def open_pad() -> Any:  # the pad is plugged in when first looked for, on every connect()
        writers.append(plug.fifo())
        return plug()

    def cleanup() -> None:
        for fd in writers:
            os.close(fd)

    device = Gamepad(open_pad=open_pad, reopen_interval_s=0.02)
    return Case(device, sdk_calls=lambda: plug.opened, cleanup=cleanup)


class _Landmarker:
    """MediaPipe's HandLandmarker as WebcamHands uses it: one fixed result per frame."""

    def __init__(self, result: Any) -> None:
        self.result, self.frames, self.closed = result, 0, False

    def detect_for_video(self, image: Any, timestamp_ms: int) -> Any:
        self.frames += 1
        return self.result

    def close(self) -> None:
        self.closed = True


def _webcam_hands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    import cv2

    from devices import webcam_hands

    fakes = importlib.import_module("tests.test_webcam_hands")
    created: list[_Landmarker] = []

    def create_landmarker(model_path: Any, num_hands: int = 2, min_detection_confidence: float = 0.5) -> Any:
        created.append(_Landmarker(fakes._result(fakes._hand("Right", 0.9))))
        return created[-1]

    monkeypatch.setattr(webcam_hands, "create_landmarker", create_landmarker)
    monkeypatch.setattr(webcam_hands, "find_model", lambda model=None: tmp_path / "hand_landmarker.task")
    video = tmp_path / "hands.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for k in range(60):
        writer.write(np.full((48, 64, 3), 4 * k, dtype=np.uint8))
    writer.release()
    device = BACKENDS["webcam-hands"].make(_context(str(video)))
    return Case(device, sdk_calls=lambda: len(created), ready=lambda: bool(created) and created[-1].frames > 0)


def _replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Case:
    from devices.trace import TraceRecorder

    path = tmp_path / "operator.trace.jsonl"
    pose = np.eye(4)
    pose[:3, 3] = (0.1, 1.2, -0.3)
    with TraceRecorder(path, device="vive") as recorder:
        for k in range(5):
            recorder.append(DeviceSample(t=50.0 + 0.05 * k, engaged=k > 0, T_world_device=pose,
                                         keypoints=np.zeros((21, 3)), gripper=0.2 * k))
    return Case(BACKENDS["replay"].make(_context(str(path))))


CASES: dict[str, Callable[[Path, pytest.MonkeyPatch], Case]] = {
    "scripted": _scripted,
    "keyboard": _keyboard,
    "vive": _vive,
    "openxr": _openxr("openxr"),
    "openxr-hands": _openxr("openxr-hands"),
    "gamepad": _gamepad,
    "webcam-hands": _webcam_hands,
    "replay": _replay,
}

REQUIRES: dict[str, tuple[str, ...]] = {"gamepad": ("inputs",), "webcam-hands": ("mediapipe", "cv2")}
"""Packages a case runs for real (the vive and openxr stand-ins replace their whole module)."""


def test_every_backend_has_a_contract_case() -> None:
    assert set(CASES) == set(BACKENDS)


@pytest.fixture(params=sorted(BACKENDS))
def case(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for module in REQUIRES.get(request.param, ()):
        pytest.importorskip(module, reason=f"the {request.param} backend needs {module}, which is not installed")
    before = set(threading.enumerate())
    built = CASES[request.param](tmp_path, monkeypatch)
    built.threads_before = before
    yield built
    built.device.disconnect()
    built.cleanup()


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread not in before]


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "the device never produced a sample"
        time.sleep(0.005)


def _check_sample(sample: DeviceSample, t_previous: float) -> float:
    """Asserts the sample's contract; returns its time."""
    assert isinstance(sample, DeviceSample)
    assert t_previous <= sample.t <= time.monotonic() and time.monotonic() - sample.t < CLOSE_TO_CLOCK_S
    # read() hands out plain types whatever the backend used (NumPy scalars, float32 arrays)
    assert type(sample.t) is float and type(sample.engaged) is bool and type(sample.gripper) is float
    assert all(type(v) is float for v in sample.axes.values()) and all(type(v) is bool for v in sample.buttons.values())
    if sample.T_world_device is not None:
        T = np.asarray(sample.T_world_device)
        assert T.shape == (4, 4) and np.isfinite(T).all()
        np.testing.assert_allclose(T[3], [0.0, 0.0, 0.0, 1.0])
        np.testing.assert_allclose(T[:3, :3].T @ T[:3, :3], np.eye(3), atol=1e-5)
        assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0, abs=1e-5)
    if sample.keypoints is not None:
        assert np.shape(sample.keypoints) == (21, 3) and np.isfinite(sample.keypoints).all()
    assert 0.0 <= sample.gripper <= 1.0
    return sample.t


def _check_connected_run(case: Case) -> None:
    _wait_for(case.ready)
    t = -np.inf
    for _ in range(READS):  # the fakes produce nothing new meanwhile: a blocking read would hang here
        t = _check_sample(case.device.read(), t)
    status = case.device.status()
    assert isinstance(status, DeviceStatus) and status.connected, status.reason


def test_the_device_lifecycle_contract(case: Case) -> None:
    device, before = case.device, case.threads_before
    assert _new_threads(before) == []  # building started no thread ...
    assert case.sdk_calls is None or case.sdk_calls() == 0  # ... and touched no SDK
    with pytest.raises(DeviceNotConnectedError):
        device.read()
    assert not device.status().connected

    device.connect()
    assert device.connected
    assert case.sdk_calls is None or case.sdk_calls() > 0  # the fake stands where the real SDK would be
    _check_connected_run(case)
    device.disconnect()
    assert _new_threads(before) == [] and not device.connected
    device.disconnect()  # a second disconnect is harmless
    with pytest.raises(DeviceNotConnectedError):
        device.read()

    with device as entered:  # the context manager connects and disconnects the same way
        assert entered is device and device.connected
        _check_connected_run(case)
    assert _new_threads(before) == [] and not device.connected
    with pytest.raises(DeviceNotConnectedError):
        device.read()


def test_readiness_connects_reads_reports_and_lets_go(case: Case) -> None:
    status = case.device.readiness(seconds=1.0)
    assert isinstance(status, DeviceStatus) and status.connected, status.reason
    assert not case.device.connected and _new_threads(case.threads_before) == []
