"""HTC Vive / Valve Index controllers through SteamVR's OpenVR API (the `openvr` package, extra `vr`).

The app joins SteamVR as a non-rendering client (VRApplication_Other, or VRApplication_Background which never
starts SteamVR itself) and uses the legacy IVRSystem calls: every read() asks
IVRSystem::GetDeviceToAbsoluteTrackingPose for the poses predicted 0 s from now in the standing universe, so a
pose is never stale (nothing here waits for vsync: WaitGetPoses is for scene apps that render). Controller
buttons and axes come from IVRSystem::GetControllerState.

Frames: T_world_device is the controller in SteamVR's standing tracking space (metres; +y up, -z forward,
origin on the floor at the play-area centre), from the row-major 3x4 mDeviceToAbsoluteTracking.

Mapping: grip -> engaged (deadman; held, or toggled per press with hold_to_engage=False), trigger axis ->
gripper 0..1, application menu -> "menu", trackpad press / touch and its x, y. A pose that is not valid or not
Running_OK gives engaged False and no pose, buttons intact. A controller that switches off or loses its link
gives engaged False and the last gripper value (the robot keeps holding what it holds), and it is found again
by role or serial when it comes back. The samples carry no device_time: the legacy API gives no timestamp of
a pose, and a pose predicted 0 s ahead is the pose at the read time `t`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from devices.base import Clock, Device, DeviceSample
from devices.status import DeviceStatus, RateMeter
from teleop.deps import require
from teleop.errors import DeviceError, UnknownNameError

ROLES: tuple[str, ...] = ("right", "left")
BUTTONS: tuple[str, ...] = ("grip", "trigger", "menu", "trackpad", "trackpad_touch")
AXES: tuple[str, ...] = ("trackpad_x", "trackpad_y")
_AXIS_COUNT = 5  # VRControllerState_t.rAxis
_OTHER_DEVICE = "or pick another device with --device"

_NO_HEADSET = (
    "SteamVR found no headset: connect and power the headset, or for controllers without a headset set "
    '"requireHmd": false and "forcedDriver": "null" in steamvr.vrsettings'
)
_INIT_HELP: dict[str, str] = {
    "InitError_Init_PathRegistryNotFound": "SteamVR is not installed (no OpenVR path registry): install and start "
    "SteamVR and connect the controller",
    "InitError_Init_InstallationNotFound": "SteamVR's installation was not found: install SteamVR (or repair it "
    "from Steam) and start it",
    "InitError_Init_InstallationCorrupt": "SteamVR's installation is corrupt: verify or reinstall SteamVR",
    "InitError_Init_VRClientDLLNotFound": "SteamVR's client library is missing: verify or reinstall SteamVR",
    "InitError_Init_FileNotFound": "a SteamVR file is missing: verify or reinstall SteamVR",
    "InitError_Init_NoConfigPath": "SteamVR has no configuration folder: start SteamVR once from Steam",
    "InitError_Init_HmdNotFound": _NO_HEADSET,
    "InitError_Init_HmdNotFoundPresenceFailed": _NO_HEADSET,
    "InitError_Init_NoServerForBackgroundApp": "SteamVR is not running: start SteamVR and connect the controller",
    "InitError_Init_InterfaceNotFound": "SteamVR is older than the openvr package: update SteamVR",
    "InitError_Init_AnotherAppLaunching": "SteamVR is busy starting another app: wait for it and connect again",
    "InitError_Init_Retry": "SteamVR is still starting: wait for it and connect again",
    "InitError_Init_ShuttingDown": "SteamVR is shutting down: restart SteamVR and connect again",
    "InitError_Init_InitCanceledByUser": "the SteamVR start was cancelled: start SteamVR and connect again",
}


class ViveController(Device):
    """One SteamVR controller (Vive wand, Index, any OpenVR controller) as a 6-DoF pose with deadman and trigger.

    Construction touches nothing; connect() starts the OpenVR client and finds the controller.
    """

    name = "vive"

    def __init__(
        self,
        role: str = "right",
        serial: str | None = None,
        hold_to_engage: bool = True,
        background: bool = False,
        trigger_axis: int = 1,
        trackpad_axis: int = 0,
        clock: Clock = time.monotonic,
        openvr_module: Any = None,
    ) -> None:
        """Args:
            role: Which hand's controller, "right" or "left" (SteamVR's role assignment); ignored with `serial`.
            serial: The controller's serial number (Prop_SerialNumber_String, e.g. "LHR-1A2B3C4D"), to pick one
                controller whatever hand SteamVR assigns it to.
            hold_to_engage: True: engaged while the grip is held; False: each grip press toggles engagement.
            background: Join SteamVR as VRApplication_Background (fails if SteamVR is not running) instead of
                VRApplication_Other (which may start SteamVR).
            trigger_axis: Index of the trigger in VRControllerState_t.rAxis (1 on Vive wands and Index).
            trackpad_axis: Index of the trackpad in VRControllerState_t.rAxis (0 on Vive wands and Index).
            clock: Monotonic clock [s] stamping the samples.
            openvr_module: The `openvr` module or a stand-in; None imports `openvr` on connect().
        """
        super().__init__(clock)
        if role not in ROLES:
            raise UnknownNameError("controller role", role, ROLES)
        for label, axis in (("trigger_axis", trigger_axis), ("trackpad_axis", trackpad_axis)):
            if not 0 <= axis < _AXIS_COUNT:
                raise ValueError(f"{label} must be an rAxis index 0..{_AXIS_COUNT - 1}, got {axis}")
        self.role = role
        self.serial = serial
        self.hold_to_engage = hold_to_engage
        self.background = background
        self.trigger_axis = trigger_axis
        self.trackpad_axis = trackpad_axis
        self._openvr = openvr_module
        self._meter = RateMeter()
        self._index: int | None = None
        self._reason = ""
        self._gripper = 0.0
        self._toggled = False
        self._grip_was = False

    def status(self) -> DeviceStatus:
        """Controller present, tracked-pose rate, age of the newest tracked pose and, if unwell, why."""
        if not self.connected:
            return DeviceStatus(False, reason=f"{self.name} is not connected: call .connect() first")
        return self._meter.status(self.clock(), connected=self._index is not None, reason=self._reason)

    def _connect(self) -> None:
        vr = self._openvr if self._openvr is not None else require("openvr", "vr", "The Vive controller")
        app_type = vr.VRApplication_Background if self.background else vr.VRApplication_Other
        self._vr = vr
        self._system = _init_openvr(vr, app_type)
        self._poses = (vr.TrackedDevicePose_t * vr.k_unMaxTrackedDeviceCount)()
        self._reset_input()
        self._meter.reset()
        self._system.getDeviceToAbsoluteTrackingPose(vr.TrackingUniverseStanding, 0.0, self._poses)
        self._index = self._find()
        if self._index is None:
            inventory = self._inventory()
            vr.shutdown()
            raise DeviceError(
                f"SteamVR sees no {self._wanted()} (tracked devices: {inventory}): switch the controller on "
                f"and pair it in SteamVR, {_OTHER_DEVICE}"
            )

    def _disconnect(self) -> None:
        self._vr.shutdown()
        self._index = None

    def _read(self) -> DeviceSample:
        now = self.clock()
        vr = self._vr
        # Every read asks for fresh poses (predicted 0 s ahead): OpenVR poses go stale if nobody asks.
        self._system.getDeviceToAbsoluteTrackingPose(vr.TrackingUniverseStanding, 0.0, self._poses)
        index = self._current_index()
        if index is None:
            return self._lost(now, f"the {self._wanted()} is switched off or lost its link")
        ok, state = self._system.getControllerState(index)
        if not ok:
            return self._lost(now, f"SteamVR gives no state for the {self._wanted()}")
        buttons = self._buttons(state)
        self._gripper = float(np.clip(state.rAxis[self.trigger_axis].x, 0.0, 1.0))
        pad = state.rAxis[self.trackpad_axis]
        axes = {"trackpad_x": float(np.clip(pad.x, -1.0, 1.0)), "trackpad_y": float(np.clip(pad.y, -1.0, 1.0))}
        T_world_device = self._valid_pose(self._poses[index], state.unPacketNum)
        engaged = self._deadman(buttons["grip"], T_world_device is not None)
        if T_world_device is not None:
            self._meter.tick(now)
        return DeviceSample(t=now, engaged=engaged, T_world_device=T_world_device, gripper=self._gripper,
                            axes=axes, buttons=buttons)

    def _valid_pose(self, pose: Any, packet: int) -> np.ndarray | None:
        """T_world_device (4, 4) if the pose is valid and Running_OK, else None; sets the status reason."""
        vr = self._vr
        T = pose_matrix(pose.mDeviceToAbsoluteTracking)
        if not pose.bPoseIsValid or pose.eTrackingResult != vr.TrackingResult_Running_OK or not np.isfinite(T).all():
            why = _tracking_result_name(vr, pose) if np.isfinite(T).all() else "pose not finite"
            self._reason = (
                f"the {self._wanted()} is not tracked ({why}): bring it into view of the base stations; "
                "the robot holds until it is tracked"
            )
            return None
        self._reason = "" if packet else (
            "SteamVR sends this app no controller input yet (packet 0): close the SteamVR dashboard and other "
            "VR apps that hold input focus"
        )
        return T

    def _buttons(self, state: Any) -> dict[str, bool]:
        vr = self._vr
        pressed, touched = int(state.ulButtonPressed), int(state.ulButtonTouched)
        return {
            "grip": bool(pressed >> vr.k_EButton_Grip & 1),
            "trigger": bool(pressed >> vr.k_EButton_SteamVR_Trigger & 1),
            "menu": bool(pressed >> vr.k_EButton_ApplicationMenu & 1),
            "trackpad": bool(pressed >> vr.k_EButton_SteamVR_Touchpad & 1),
            "trackpad_touch": bool(touched >> vr.k_EButton_SteamVR_Touchpad & 1),
        }

    def _deadman(self, grip: bool, tracked: bool) -> bool:
        """Engagement from the grip; losing tracking disengages (and clears a toggle: re-grip to go on)."""
        if not tracked:
            self._toggled = False
            engaged = False
        elif self.hold_to_engage:
            engaged = grip
        else:
            if grip and not self._grip_was:
                self._toggled = not self._toggled
            engaged = self._toggled
        self._grip_was = grip
        return engaged

    def _lost(self, now: float, what: str) -> DeviceSample:
        """A disengaged sample while the controller is away; the gripper keeps its last command."""
        self._reason = f"{what}: switch it on and bring it into view; the robot holds until it returns"
        self._toggled = False
        self._grip_was = False
        return DeviceSample(t=now, engaged=False, gripper=self._gripper, axes=dict.fromkeys(AXES, 0.0),
                            buttons=dict.fromkeys(BUTTONS, False))

    def _current_index(self) -> int | None:
        """The controller's device index, looked up again when it went away or SteamVR handed the role over."""
        index = self._index
        if index is not None and self._poses[index].bDeviceIsConnected and self._still_ours(index):
            return index
        self._index = self._find()
        return self._index

    def _still_ours(self, index: int) -> bool:
        # A serial number never moves between connected slots; a role does when the hands are swapped.
        return self.serial is not None or self._matches(index)

    def _find(self) -> int | None:
        """Index of the connected controller with the wanted serial (or role), None if there is none.

        Only slots the last pose query reported connected are asked about, so a search costs little while the
        controller is away (it runs on every read then).
        """
        vr, system = self._vr, self._system
        for index, pose in enumerate(self._poses):
            if (pose.bDeviceIsConnected and system.getTrackedDeviceClass(index) == vr.TrackedDeviceClass_Controller
                    and self._matches(index)):
                return index
        return None

    def _matches(self, index: int) -> bool:
        if self.serial is not None:
            return self._serial_of(index) == self.serial
        wanted = self._vr.TrackedControllerRole_RightHand if self.role == "right" else \
            self._vr.TrackedControllerRole_LeftHand
        return self._system.getControllerRoleForTrackedDeviceIndex(index) == wanted

    def _serial_of(self, index: int) -> str | None:
        vr = self._vr
        try:
            return str(self._system.getStringTrackedDeviceProperty(index, vr.Prop_SerialNumber_String))
        except vr.error_code.TrackedPropertyError:
            return None

    def _inventory(self) -> str:
        """The tracked devices SteamVR knows, for error messages: 'headset LHR-1; controller LHR-2 (left)'."""
        vr, system = self._vr, self._system
        kinds = {
            vr.TrackedDeviceClass_HMD: "headset", vr.TrackedDeviceClass_Controller: "controller",
            vr.TrackedDeviceClass_GenericTracker: "tracker", vr.TrackedDeviceClass_TrackingReference: "base station",
        }
        roles = {vr.TrackedControllerRole_LeftHand: " (left)", vr.TrackedControllerRole_RightHand: " (right)"}
        found = []
        for index in range(vr.k_unMaxTrackedDeviceCount):
            kind = kinds.get(system.getTrackedDeviceClass(index))
            if kind is None:
                continue
            role = roles.get(system.getControllerRoleForTrackedDeviceIndex(index), "") if kind == "controller" else ""
            off = "" if system.isTrackedDeviceConnected(index) else ", off"
            found.append(f"{kind} {self._serial_of(index) or '?'}{role}{off}")
        return "; ".join(found) or "none"

    def _wanted(self) -> str:
        return f"controller {self.serial}" if self.serial is not None else f"{self.role} controller"

    def _reset_input(self) -> None:
        self._reason = ""
        self._gripper = 0.0
        self._toggled = False
        self._grip_was = False


def pose_matrix(m34: Any) -> np.ndarray:
    """T (4, 4) float64 from an OpenVR HmdMatrix34_t (row-major 3x4 `.m`, metres)."""
    T = np.eye(4)
    T[:3, :] = np.asarray(m34.m, dtype=np.float64)
    return T


def _init_openvr(vr: Any, app_type: int) -> Any:
    """openvr.init(app_type) -> IVRSystem, with SteamVR's init errors as DeviceError saying what to do."""
    try:
        return vr.init(app_type)
    except vr.error_code.OpenVRError as exc:
        symbol = type(exc).__name__
        advice = _INIT_HELP.get(symbol)
        if advice is None:
            detail = str(exc) or "no detail"
            advice = f"SteamVR refused the connection ({symbol}: {detail}): restart SteamVR and connect again"
        raise DeviceError(f"{advice}, {_OTHER_DEVICE}") from exc


def _tracking_result_name(vr: Any, pose: Any) -> str:
    if not pose.bPoseIsValid:
        return "pose not valid"
    names = ("Uninitialized", "Calibrating_InProgress", "Calibrating_OutOfRange", "Running_OK", "Running_OutOfRange",
             "Fallback_RotationOnly")
    for name in names:
        if getattr(vr, f"TrackingResult_{name}", None) == pose.eTrackingResult:
            return name
    return str(pose.eTrackingResult)
