"""ViveController against a stand-in for SteamVR at the openvr boundary (init, shutdown, IVRSystem calls).

Every behaviour test runs twice: once with a pure-Python `openvr` stand-in, once with the real `openvr` package's
structs and constants and only init / IVRSystem replaced (skipped where `openvr` is not installed).
"""

from __future__ import annotations

import ctypes
import inspect
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from devices.status import DeviceStatus
from devices.vive import AXES, BUTTONS, ViveController, pose_matrix
from teleop.errors import DeviceError, DeviceNotConnectedError, MissingDependencyError, UnknownNameError

# --- the stand-in ---------------------------------------------------------------------------------------------


class _Matrix34(ctypes.Structure):
    _fields_ = [("m", (ctypes.c_float * 4) * 3)]


class _Vector3(ctypes.Structure):
    _fields_ = [("v", ctypes.c_float * 3)]


class _Pose(ctypes.Structure):
    _fields_ = [
        ("mDeviceToAbsoluteTracking", _Matrix34), ("vVelocity", _Vector3), ("vAngularVelocity", _Vector3),
        ("eTrackingResult", ctypes.c_uint), ("bPoseIsValid", ctypes.c_ubyte), ("bDeviceIsConnected", ctypes.c_ubyte),
    ]


class _Axis(ctypes.Structure):
    _fields_ = [("x", ctypes.c_float), ("y", ctypes.c_float)]


class _ControllerState(ctypes.Structure):
    _pack_ = 4  # as openvr's header packs it on Linux
    _fields_ = [("unPacketNum", ctypes.c_uint), ("ulButtonPressed", ctypes.c_uint64),
                ("ulButtonTouched", ctypes.c_uint64), ("rAxis", _Axis * 5)]


class _OpenVRError(Exception):
    def __init__(self, error_value: int = 0, message: str = "") -> None:
        super().__init__(message)
        self.error_value = error_value


class _InitError(_OpenVRError):
    pass


class _TrackedPropertyError(_OpenVRError):
    pass


# The openvr names and values the device uses (as in openvr 2.x), plus the two structs the runtime fills.
OPENVR_CONSTANTS: dict[str, int] = {
    "VRApplication_Other": 0, "VRApplication_Background": 3, "TrackingUniverseStanding": 1,
    "k_unMaxTrackedDeviceCount": 64, "TrackedDeviceClass_Invalid": 0, "TrackedDeviceClass_HMD": 1,
    "TrackedDeviceClass_Controller": 2, "TrackedDeviceClass_GenericTracker": 3,
    "TrackedDeviceClass_TrackingReference": 4, "TrackedControllerRole_Invalid": 0,
    "TrackedControllerRole_LeftHand": 1, "TrackedControllerRole_RightHand": 2, "Prop_SerialNumber_String": 1002,
    "k_EButton_ApplicationMenu": 1, "k_EButton_Grip": 2, "k_EButton_SteamVR_Touchpad": 32,
    "k_EButton_SteamVR_Trigger": 33, "TrackingResult_Uninitialized": 1, "TrackingResult_Calibrating_InProgress": 100,
    "TrackingResult_Calibrating_OutOfRange": 101, "TrackingResult_Running_OK": 200,
    "TrackingResult_Running_OutOfRange": 201, "TrackingResult_Fallback_RotationOnly": 300,
}


@dataclass
class Tracked:
    """One device slot of the stand-in runtime."""

    device_class: int
    serial: str
    role: int = 0
    connected: bool = True
    valid: bool = True
    result: int = 200
    pose: np.ndarray = field(default_factory=lambda: np.hstack([np.eye(3), [[0.0], [1.0], [0.0]]]))
    pressed: int = 0
    touched: int = 0
    axes: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.0)] * 5)
    packet: int = 1


class FakeSystem:
    """IVRSystem: exactly the calls ViveController makes, with the real binding's parameter names."""

    def __init__(self, vr: Any) -> None:
        self.vr = vr
        self.devices: dict[int, Tracked] = {}
        self.pose_calls = 0

    def getDeviceToAbsoluteTrackingPose(self, origin: int, predictedSecondsToPhotonsFromNow: float,
                                        trackedDevicePoseArray: Any) -> Any:
        assert origin == self.vr.TrackingUniverseStanding and predictedSecondsToPhotonsFromNow == 0
        self.pose_calls += 1
        for index in range(len(trackedDevicePoseArray)):
            pose = trackedDevicePoseArray[index]
            device = self.devices.get(index)
            ctypes.memset(ctypes.addressof(pose), 0, ctypes.sizeof(pose))
            if device is None or not device.connected:
                continue
            pose.bDeviceIsConnected = 1
            pose.bPoseIsValid = int(device.valid)
            pose.eTrackingResult = device.result
            for row in range(3):
                for col in range(4):
                    pose.mDeviceToAbsoluteTracking.m[row][col] = device.pose[row, col]
        return trackedDevicePoseArray

    def getTrackedDeviceClass(self, deviceIndex: int) -> int:
        device = self.devices.get(deviceIndex)
        return device.device_class if device else self.vr.TrackedDeviceClass_Invalid

    def isTrackedDeviceConnected(self, deviceIndex: int) -> bool:
        device = self.devices.get(deviceIndex)
        return bool(device and device.connected)

    def getControllerRoleForTrackedDeviceIndex(self, deviceIndex: int) -> int:
        device = self.devices.get(deviceIndex)
        return device.role if device and device.connected else self.vr.TrackedControllerRole_Invalid

    def getStringTrackedDeviceProperty(self, deviceIndex: int, prop: int) -> str:
        device = self.devices.get(deviceIndex)
        if device is None or prop != self.vr.Prop_SerialNumber_String:
            raise self.vr.error_code.TrackedPropertyError(5)
        return device.serial

    def getControllerState(self, controllerDeviceIndex: int) -> tuple[bool, Any]:
        state = self.vr.VRControllerState_t()
        device = self.devices.get(controllerDeviceIndex)
        if device is None or not device.connected:
            return False, state
        state.unPacketNum = device.packet
        state.ulButtonPressed = device.pressed
        state.ulButtonTouched = device.touched
        for k, (x, y) in enumerate(device.axes):
            state.rAxis[k].x, state.rAxis[k].y = x, y
        return True, state


class _Runtime:
    """init / shutdown of the stand-in, shared by both module flavours."""

    def _start(self) -> None:
        self.system = FakeSystem(self)
        self.init_error: Exception | None = None
        self.app_types: list[int] = []
        self.shutdowns = 0

    def init(self, applicationType: int, pStartupInfo: Any = None) -> FakeSystem:
        self.app_types.append(applicationType)
        if self.init_error is not None:
            raise self.init_error
        return self.system

    def shutdown(self) -> None:
        self.shutdowns += 1


class FakeOpenVR(_Runtime):
    """A pure-Python `openvr` module: the names the device uses, nothing else."""

    error_code = SimpleNamespace(OpenVRError=_OpenVRError, InitError=_InitError,
                                 TrackedPropertyError=_TrackedPropertyError)
    TrackedDevicePose_t = _Pose
    VRControllerState_t = _ControllerState

    def __init__(self) -> None:
        for name, value in OPENVR_CONSTANTS.items():
            setattr(self, name, value)
        self._start()

    def init_error_named(self, symbol: str) -> Exception:
        return type(symbol, (_InitError,), {})(110)


class RealOpenVRWithFakeRuntime(_Runtime):
    """The real `openvr` module (structs, constants, error classes) with init / IVRSystem replaced."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._start()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def init_error_named(self, symbol: str) -> Exception:
        error_class = getattr(self._real.error_code, symbol, None)
        if error_class is None:  # a symbol this openvr version lacks: an InitError subclass of that name
            error_class = type(symbol, (self._real.error_code.InitError,), {})
        return error_class(110)


@pytest.fixture(params=["standin", "real-openvr"])
def vr(request: pytest.FixtureRequest) -> Any:
    if request.param == "standin":
        runtime: Any = FakeOpenVR()
    else:
        runtime = RealOpenVRWithFakeRuntime(pytest.importorskip("openvr"))
    # HMD, two base stations, left and right controllers: the usual room.
    runtime.system.devices = {
        0: Tracked(runtime.TrackedDeviceClass_HMD, "LHR-HMD"),
        1: Tracked(runtime.TrackedDeviceClass_TrackingReference, "LHB-1"),
        2: Tracked(runtime.TrackedDeviceClass_TrackingReference, "LHB-2"),
        3: Tracked(runtime.TrackedDeviceClass_Controller, "LHR-LEFT", role=runtime.TrackedControllerRole_LeftHand),
        4: Tracked(runtime.TrackedDeviceClass_Controller, "LHR-RIGHT", role=runtime.TrackedControllerRole_RightHand),
    }
    return runtime


def pose_3x4(rotvec: tuple[float, float, float], position: tuple[float, float, float]) -> np.ndarray:
    return np.hstack([Rotation.from_rotvec(rotvec).as_matrix(), np.asarray(position)[:, None]])


def bit(*buttons: int) -> int:
    return sum(1 << b for b in buttons)


@pytest.fixture
def right(vr: Any, clock: Any) -> ViveController:
    device = ViveController(clock=clock, openvr_module=vr)
    device.connect()
    return device


# --- tests -----------------------------------------------------------------------------------------------------


def test_pose_3x4_becomes_homogeneous_4x4(vr: Any) -> None:
    pose = vr.TrackedDevicePose_t()
    expected = pose_3x4((0.0, np.pi / 2, 0.0), (0.1, 1.2, -0.3))
    for row in range(3):
        for col in range(4):
            pose.mDeviceToAbsoluteTracking.m[row][col] = expected[row, col]
    T = pose_matrix(pose.mDeviceToAbsoluteTracking)
    assert T.shape == (4, 4) and T.dtype == np.float64
    np.testing.assert_allclose(T[:3], expected, atol=1e-6)  # float32 in the struct
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])


def test_reads_the_right_controller_among_hmd_base_stations_and_two_controllers(vr: Any, right: ViveController,
                                                                                clock: Any) -> None:
    vr.system.devices[4].pose = pose_3x4((0.1, 0.2, 0.3), (0.4, 1.1, -0.2))
    vr.system.devices[3].pose = pose_3x4((0.0, 0.0, 0.0), (-0.4, 1.0, 0.0))
    sample = right.read()
    assert sample.t == clock()
    assert sample.T_world_device is not None
    np.testing.assert_allclose(sample.T_world_device[:3], vr.system.devices[4].pose, atol=1e-6)
    assert vr.app_types == [vr.VRApplication_Other]


@pytest.mark.parametrize(("role", "serial", "index"), [
    ("left", None, 3), ("right", None, 4), ("right", "LHR-LEFT", 3), ("left", "LHR-RIGHT", 4),
])
def test_selection_by_role_or_serial(vr: Any, clock: Any, role: str, serial: str | None, index: int) -> None:
    for k, device in vr.system.devices.items():
        device.pose = pose_3x4((0, 0, 0), (float(k), 0.0, 0.0))  # x = slot index
    with ViveController(role=role, serial=serial, clock=clock, openvr_module=vr) as device:
        sample = device.read()
    assert sample.T_world_device is not None and sample.T_world_device[0, 3] == index


def test_no_matching_controller_lists_what_steamvr_sees_and_shuts_down(vr: Any, clock: Any) -> None:
    device = ViveController(serial="LHR-NOPE", clock=clock, openvr_module=vr)
    with pytest.raises(DeviceError) as info:
        device.connect()
    message = str(info.value)
    assert "controller LHR-NOPE" in message and "switch the controller on" in message and "--device" in message
    assert "headset LHR-HMD" in message and "base station LHB-1" in message and "controller LHR-LEFT (left)" in message
    assert vr.shutdowns == 1 and not device.connected


def test_buttons_trigger_trackpad_and_grip_deadman(vr: Any, right: ViveController) -> None:
    controller = vr.system.devices[4]
    controller.pressed = bit(vr.k_EButton_Grip, vr.k_EButton_ApplicationMenu)
    controller.touched = bit(vr.k_EButton_SteamVR_Touchpad)
    controller.axes = [(0.3, -0.4), (0.7, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0)]
    sample = right.read()
    assert sample.engaged
    assert sample.gripper == pytest.approx(0.7)
    assert sample.buttons == {"grip": True, "trigger": False, "menu": True, "trackpad": False, "trackpad_touch": True}
    assert sample.axes == pytest.approx({"trackpad_x": 0.3, "trackpad_y": -0.4})
    assert set(sample.buttons) == set(BUTTONS) and set(sample.axes) == set(AXES)
    controller.pressed = bit(vr.k_EButton_SteamVR_Trigger, vr.k_EButton_SteamVR_Touchpad)
    controller.axes = [(0.0, 0.0), (1.0, 0.0)] + [(0.0, 0.0)] * 3
    sample = right.read()
    assert not sample.engaged  # grip released: the robot stops following
    assert sample.gripper == 1.0 and sample.buttons["trigger"] and sample.buttons["trackpad"]


def test_toggle_deadman_flips_on_each_grip_press(vr: Any, clock: Any) -> None:
    controller = vr.system.devices[4]
    with ViveController(hold_to_engage=False, clock=clock, openvr_module=vr) as device:
        grips = [0, 1, 1, 0, 0, 1, 0]
        engaged = []
        for grip in grips:
            controller.pressed = bit(vr.k_EButton_Grip) if grip else 0
            engaged.append(device.read().engaged)
    assert engaged == [False, True, True, True, True, False, False]


@pytest.mark.parametrize("case", ["pose invalid", "out of range", "rotation only", "nan"])
def test_untracked_pose_disengages_without_a_pose_but_keeps_buttons(vr: Any, right: ViveController,
                                                                    case: str) -> None:
    controller = vr.system.devices[4]
    controller.pressed = bit(vr.k_EButton_Grip)
    controller.axes = [(0.0, 0.0), (0.6, 0.0)] + [(0.0, 0.0)] * 3
    assert right.read().engaged
    if case == "pose invalid":
        controller.valid = False
    elif case == "out of range":
        controller.result = vr.TrackingResult_Running_OutOfRange
    elif case == "rotation only":
        controller.result = vr.TrackingResult_Fallback_RotationOnly
    else:
        controller.pose = np.full((3, 4), np.nan)
    sample = right.read()
    assert not sample.engaged and sample.T_world_device is None
    assert sample.buttons["grip"] and sample.gripper == pytest.approx(0.6)
    status = right.status()
    assert status.connected and "not tracked" in status.reason and "base stations" in status.reason


def test_switched_off_controller_holds_then_is_found_again_in_a_new_slot(vr: Any, right: ViveController,
                                                                         clock: Any) -> None:
    controller = vr.system.devices[4]
    controller.pressed = bit(vr.k_EButton_Grip)
    controller.axes = [(0.0, 0.0), (0.8, 0.0)] + [(0.0, 0.0)] * 3
    assert right.read().engaged
    controller.connected = False
    clock.sleep(0.01)
    sample = right.read()
    assert not sample.engaged and sample.T_world_device is None
    assert sample.gripper == pytest.approx(0.8)  # the robot keeps its grasp while the controller is away
    assert sample.buttons == dict.fromkeys(BUTTONS, False)
    status = right.status()
    assert not status.connected and "switch it on" in status.reason
    # SteamVR gives the re-paired controller another slot; it still has the right-hand role.
    del vr.system.devices[4]
    vr.system.devices[7] = Tracked(
        vr.TrackedDeviceClass_Controller, "LHR-RIGHT", role=vr.TrackedControllerRole_RightHand,
        pose=pose_3x4((0, 0, 0), (0.5, 1.0, 0.0)), pressed=bit(vr.k_EButton_Grip),
    )
    sample = right.read()
    assert sample.engaged and sample.T_world_device is not None and sample.T_world_device[0, 3] == pytest.approx(0.5)
    assert right.status().connected and right.status().reason == ""


def test_swapped_hands_follow_the_role(vr: Any, right: ViveController) -> None:
    for k, device in vr.system.devices.items():
        device.pose = pose_3x4((0, 0, 0), (float(k), 0.0, 0.0))
    assert right.read().T_world_device[0, 3] == 4  # type: ignore[index]
    left_role, right_role = vr.TrackedControllerRole_LeftHand, vr.TrackedControllerRole_RightHand
    vr.system.devices[3].role, vr.system.devices[4].role = right_role, left_role
    assert right.read().T_world_device[0, 3] == 3  # type: ignore[index]


def test_every_read_asks_steamvr_for_fresh_poses(vr: Any, right: ViveController) -> None:
    calls_at_connect = vr.system.pose_calls
    positions = []
    for k in range(5):
        vr.system.devices[4].pose = pose_3x4((0, 0, 0), (0.01 * k, 1.0, 0.0))
        sample = right.read()
        assert sample.T_world_device is not None
        positions.append(sample.T_world_device[0, 3])
    assert vr.system.pose_calls == calls_at_connect + 5
    np.testing.assert_allclose(positions, [0.0, 0.01, 0.02, 0.03, 0.04], atol=1e-6)


@pytest.mark.parametrize(("symbol", "expected"), [
    ("InitError_Init_PathRegistryNotFound", "SteamVR is not installed"),
    ("InitError_Init_InstallationNotFound", "install SteamVR"),
    ("InitError_Init_NoServerForBackgroundApp", "SteamVR is not running: start SteamVR and connect the controller"),
    ("InitError_Init_HmdNotFound", '"requireHmd": false'),
    ("InitError_Init_InterfaceNotFound", "update SteamVR"),
    ("InitError_Init_SomethingNew", "SteamVR refused the connection (InitError_Init_SomethingNew"),
])
def test_init_errors_say_what_to_do(vr: Any, clock: Any, symbol: str, expected: str) -> None:
    vr.init_error = vr.init_error_named(symbol)
    device = ViveController(background=True, clock=clock, openvr_module=vr)
    with pytest.raises(DeviceError) as info:
        device.connect()
    assert expected in str(info.value) and "pick another device with --device" in str(info.value)
    assert isinstance(info.value.__cause__, vr.error_code.InitError)
    assert vr.app_types == [vr.VRApplication_Background] and not device.connected


def test_status_measures_the_tracked_pose_rate_and_age(vr: Any, clock: Any) -> None:
    device = ViveController(clock=clock, openvr_module=vr)
    assert device.status() == DeviceStatus(False, reason="vive is not connected: call .connect() first")
    device.connect()
    for _ in range(11):
        device.read()
        clock.sleep(0.004)  # 250 Hz
    status = device.status()
    assert status.connected and status.reason == ""
    assert status.sample_rate_hz == pytest.approx(250.0)
    assert status.last_sample_age_s == pytest.approx(0.004)


def test_status_rate_falls_to_zero_while_untracked_and_the_age_grows(vr: Any, right: ViveController,
                                                                      clock: Any) -> None:
    for _ in range(5):
        right.read()
        clock.sleep(0.01)
    vr.system.devices[4].valid = False
    for _ in range(200):  # 2 s without a tracked pose
        right.read()
        clock.sleep(0.01)
    status = right.status()
    assert status.connected and status.sample_rate_hz == 0.0
    assert status.last_sample_age_s == pytest.approx(2.01)
    vr.system.devices[4].valid = True
    for _ in range(3):
        right.read()
        clock.sleep(0.01)
    assert right.status().sample_rate_hz == pytest.approx(100.0)


def test_no_input_focus_is_reported(vr: Any, right: ViveController) -> None:
    vr.system.devices[4].packet = 0
    right.read()
    assert "close the SteamVR dashboard" in right.status().reason


def test_disconnect_shuts_openvr_down_and_reads_then_fail(vr: Any, right: ViveController) -> None:
    right.disconnect()
    right.disconnect()
    assert vr.shutdowns == 1
    with pytest.raises(DeviceNotConnectedError):
        right.read()


def test_bad_arguments_are_refused_before_any_sdk_call() -> None:
    with pytest.raises(UnknownNameError, match="choose one of left, right"):
        ViveController(role="middle")
    with pytest.raises(ValueError, match="trigger_axis"):
        ViveController(trigger_axis=5)


def test_missing_openvr_names_the_vr_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvr", None)  # import openvr -> ImportError
    device = ViveController()  # construction needs no package
    with pytest.raises(MissingDependencyError, match=r"pip install 'teleop\[vr\]'"):
        device.connect()


# --- the real package -----------------------------------------------------------------------------------------


def test_real_openvr_without_steamvr_gives_a_clear_message(clock: Any) -> None:
    openvr = pytest.importorskip("openvr")
    if openvr.isRuntimeInstalled():
        pytest.skip("SteamVR is installed here: this test needs a machine without it")
    with pytest.raises(DeviceError, match="SteamVR is not installed .*--device"):
        ViveController(clock=clock).connect()


def test_standin_matches_the_real_openvr_api() -> None:
    openvr = pytest.importorskip("openvr")
    for name, value in OPENVR_CONSTANTS.items():
        assert getattr(openvr, name) == value, name
    for name, _ in inspect.getmembers(FakeSystem, inspect.isfunction):
        if name.startswith("get") or name.startswith("is"):
            real = list(inspect.signature(getattr(openvr.IVRSystem, name)).parameters)
            assert list(inspect.signature(getattr(FakeSystem, name)).parameters) == real, name
    real_init = list(inspect.signature(openvr.init).parameters)
    assert list(inspect.signature(_Runtime.init).parameters)[1:] == real_init
    for fake, real in ((_Pose, openvr.TrackedDevicePose_t), (_ControllerState, openvr.VRControllerState_t),
                       (_Matrix34, openvr.HmdMatrix34_t)):
        assert [f[0] for f in fake._fields_] == [f[0] for f in real._fields_]
        assert ctypes.sizeof(fake) == ctypes.sizeof(real)
    for name in ("OpenVRError", "InitError", "TrackedPropertyError", "InitError_Init_PathRegistryNotFound",
                 "InitError_Init_NoServerForBackgroundApp", "InitError_Init_HmdNotFound"):
        assert hasattr(openvr.error_code, name), name
