"""OpenXR controllers and tracked hands through pyopenxr (package `pyopenxr`, module `xr`, extra `vr`).

The session is headless (XR_MND_headless: no graphics binding, no frame loop), so nothing here waits for a
frame: each read() polls the runtime's events, syncs the actions and locates the controller's grip space (or
the 26 XR_EXT_hand_tracking joints) at the XrTime of the read, converted from the monotonic clock with
XR_KHR_convert_timespec_time (under XR_MND_headless xrWaitFrame's predictedDisplayTime is 0). The runtime must
offer both extensions (Monado does); the injected clock must count CLOCK_MONOTONIC seconds (time.monotonic
on Linux).

Session states: READY begins the session, STOPPING ends it, EXITING / LOSS_PENDING (and instance loss) leave it
stopped until disconnect() and connect(). Input counts only while the session is FOCUSED; pyopenxr raises
XR_SESSION_NOT_FOCUSED from xrSyncActions as an exception although it is a success code, so it is caught.
Whatever goes wrong while connected (no focus, controller off or untracked, hand lost, a runtime call failing)
read() returns a disengaged sample with no pose and the last gripper command, `status()` says why, and the
next read tries again: the session loop holds the robot instead of stopping.

Controller mode: one action set (grip pose, trigger, squeeze, menu, thumbstick / trackpad and its click) with
suggested bindings for the Vive, Touch, Index and KHR simple controllers of one hand. Squeeze >= 0.5 is the
deadman (`engaged`), the trigger is the gripper 0..1. The simple controller has no squeeze and no analogue
trigger: its select button is the deadman and the gripper stays at its last value. Which profile the runtime
really uses is `interaction_profile` (a runtime accepts every suggested binding).

Hand mode: the wrist pose is T_world_device, the joints become the 21 MediaPipe keypoints in the wrist frame
(`kinematics.openxr_hand.openxr_to_mediapipe`); engaged while the hand is tracked with every mapped joint valid.

Frames: T_world_device is in the STAGE reference space (floor-level, metres; +y up) when the runtime offers it,
else LOCAL; `reference_space` says which. device_time is the XrTime the poses were located at [s].
"""

from __future__ import annotations

import ctypes
import math
import time
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from devices.base import Clock, Device, DeviceSample
from devices.status import DeviceStatus, RateMeter

# The devices layer imports one kinematics module here: the 26 -> 21 joint mapping lives there by design.
from kinematics.openxr_hand import XR_JOINT_COUNT, XR_WRIST, openxr_to_mediapipe
from teleop.deps import require
from teleop.errors import DeviceError, UnknownNameError, UnsafeInputError

MODES: tuple[str, ...] = ("controller", "hand")
HANDS: tuple[str, ...] = ("right", "left")
BUTTONS: tuple[str, ...] = ("grip", "trigger", "menu", "thumbstick")
AXES: tuple[str, ...] = ("thumbstick_x", "thumbstick_y")
ENGAGE_SQUEEZE = 0.5  # squeeze value at which the deadman closes
TRIGGER_PRESSED = 0.5  # trigger value reported as the "trigger" button

# Action name -> component path under /user/hand/<hand>/ per interaction profile; a dict gives it per hand.
PROFILES: dict[str, dict[str, str | dict[str, str]]] = {
    "/interaction_profiles/htc/vive_controller": {
        "grip_pose": "input/grip/pose", "trigger": "input/trigger/value", "squeeze": "input/squeeze/click",
        "menu": "input/menu/click", "thumbstick": "input/trackpad", "thumbstick_click": "input/trackpad/click",
    },
    "/interaction_profiles/oculus/touch_controller": {
        "grip_pose": "input/grip/pose", "trigger": "input/trigger/value", "squeeze": "input/squeeze/value",
        "menu": {"left": "input/menu/click", "right": "input/b/click"},
        "thumbstick": "input/thumbstick", "thumbstick_click": "input/thumbstick/click",
    },
    "/interaction_profiles/valve/index_controller": {
        "grip_pose": "input/grip/pose", "trigger": "input/trigger/value", "squeeze": "input/squeeze/value",
        "menu": "input/b/click", "thumbstick": "input/thumbstick", "thumbstick_click": "input/thumbstick/click",
    },
    "/interaction_profiles/khr/simple_controller": {
        "grip_pose": "input/grip/pose", "squeeze": "input/select/click", "menu": "input/menu/click",
    },
}
_ACTION_TYPES: dict[str, str] = {
    "grip_pose": "POSE_INPUT", "trigger": "FLOAT_INPUT", "squeeze": "FLOAT_INPUT", "menu": "BOOLEAN_INPUT",
    "thumbstick": "VECTOR2F_INPUT", "thumbstick_click": "BOOLEAN_INPUT",
}
_OTHER_DEVICE = "or pick another device with --device"
_NO_RUNTIME = (
    "no OpenXR runtime: start SteamVR, Monado or the Oculus app and make it the active OpenXR runtime, "
    + _OTHER_DEVICE
)


class OpenXRController(Device):
    """One hand's controller pose and buttons, or its tracked hand, from the active OpenXR runtime.

    Construction touches nothing; connect() creates the instance, session and actions (or hand tracker).
    """

    name = "openxr"

    def __init__(self, hand: str = "right", mode: str = "controller", clock: Clock = time.monotonic,
                 xr_module: Any = None) -> None:
        """Args:
            hand: "right" or "left".
            mode: "controller" (grip pose, squeeze deadman, trigger gripper) or "hand" (XR_EXT_hand_tracking
                joints as 21 keypoints, engaged while tracked).
            clock: Monotonic clock [s] (CLOCK_MONOTONIC) stamping the samples and timing the pose queries.
            xr_module: The `xr` module of pyopenxr or a stand-in; None imports `xr` on connect().
        """
        super().__init__(clock)
        if hand not in HANDS:
            raise UnknownNameError("hand", hand, HANDS)
        if mode not in MODES:
            raise UnknownNameError("OpenXR mode", mode, MODES)
        self.hand = hand
        self.mode = mode
        self._xr_module = xr_module
        self._xr: Any = None  # the module in use while connected
        self._meter = RateMeter()
        self._actions: dict[str, Any] = {}
        self._space_name: str | None = None
        self._profile: str | None = None
        self._clear()

    @property
    def interaction_profile(self) -> str | None:
        """The profile the runtime bound to this hand (e.g. "/interaction_profiles/valve/index_controller")."""
        return self._profile

    @property
    def reference_space(self) -> str | None:
        """"STAGE" or "LOCAL": the space T_world_device is in; None before connect()."""
        return self._space_name

    def status(self) -> DeviceStatus:
        """Session running with the device present, tracked-sample rate, age of the newest one, and why not."""
        if not self.connected:
            return DeviceStatus(False, reason=f"{self.name} is not connected: call .connect() first")
        return self._meter.status(self.clock(), connected=self._running and self._present, reason=self._reason)

    # Lifecycle ------------------------------------------------------------------------------------------------

    def _connect(self) -> None:
        xr = self._xr_module if self._xr_module is not None else require(
            "xr", "vr", "The OpenXR device", package="pyopenxr")
        self._xr = xr
        self._clear()
        self._meter.reset()
        try:
            self._open()
        except BaseException:
            self._close()
            raise

    def _disconnect(self) -> None:
        self._close()

    def _open(self) -> None:
        xr = self._xr
        try:
            self._instance = xr.create_instance(xr.InstanceCreateInfo(
                application_info=xr.ApplicationInfo(application_name="teleop", engine_name="teleop"),
                enabled_extension_names=self._extensions(),
            ))
            system = xr.get_system(self._instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
            self._session = xr.create_session(self._instance, xr.SessionCreateInfo(system_id=system))
            self._space = self._reference_space()
            self._hand_path = xr.string_to_path(self._instance, f"/user/hand/{self.hand}")
            if self.mode == "controller":
                self._create_actions()
            else:
                self._tracker = xr.create_hand_tracker_ext(self._session, xr.HandTrackerCreateInfoEXT(
                    hand=xr.HandEXT.RIGHT if self.hand == "right" else xr.HandEXT.LEFT,
                    hand_joint_set=xr.HandJointSetEXT.DEFAULT,
                ))
        except xr.RuntimeUnavailableError as exc:
            raise DeviceError(_NO_RUNTIME) from exc
        except xr.FormFactorUnavailableError as exc:
            raise DeviceError(
                f"the OpenXR runtime sees no headset: connect and power it, then connect again, {_OTHER_DEVICE}"
            ) from exc
        except xr.FeatureUnsupportedError as exc:
            raise DeviceError(
                f"the OpenXR runtime cannot track hands on this system ({exc}): use mode='controller', "
                f"{_OTHER_DEVICE}"
            ) from exc
        except xr.XrException as exc:
            raise DeviceError(f"OpenXR setup failed ({type(exc).__name__}: {exc}): restart the OpenXR runtime "
                              f"and connect again, {_OTHER_DEVICE}") from exc

    def _extensions(self) -> list[str]:
        """The instance extensions this mode needs; DeviceError naming those the runtime lacks."""
        xr = self._xr
        needed = [xr.MND_HEADLESS_EXTENSION_NAME, xr.KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME]
        if self.mode == "hand":
            needed.append(xr.EXT_HAND_TRACKING_EXTENSION_NAME)
        offered = {bytes(p.extension_name).decode() for p in xr.enumerate_instance_extension_properties()}
        missing = [name for name in needed if name not in offered]
        if missing:
            raise DeviceError(
                f"the OpenXR runtime lacks {', '.join(missing)}, which the {self.mode} mode needs (headless "
                f"session, clock conversion{', hand tracking' if self.mode == 'hand' else ''}): use a runtime that "
                f"offers them (Monado does; for SteamVR use --device vive), {_OTHER_DEVICE}"
            )
        return needed

    def _reference_space(self) -> Any:
        xr = self._xr
        offered = set(xr.enumerate_reference_spaces(self._session))
        kind = xr.ReferenceSpaceType.STAGE if xr.ReferenceSpaceType.STAGE in offered else xr.ReferenceSpaceType.LOCAL
        self._space_name = "STAGE" if kind == xr.ReferenceSpaceType.STAGE else "LOCAL"
        return xr.create_reference_space(self._session, xr.ReferenceSpaceCreateInfo(
            reference_space_type=kind, pose_in_reference_space=xr.Posef()))

    def _create_actions(self) -> None:
        """Action set, actions of this hand, suggested bindings for every profile, attached; the grip space."""
        xr, instance = self._xr, self._instance
        self._action_set = xr.create_action_set(instance, xr.ActionSetCreateInfo(
            action_set_name="teleop", localized_action_set_name="Teleoperation", priority=0))
        self._actions = {
            name: xr.create_action(self._action_set, xr.ActionCreateInfo(
                action_name=name, action_type=getattr(xr.ActionType, kind), subaction_paths=[self._hand_path],
                localized_action_name=name.replace("_", " ").capitalize()))
            for name, kind in _ACTION_TYPES.items()
        }
        for profile, components in PROFILES.items():
            bindings = [
                xr.ActionSuggestedBinding(action=self._actions[name], binding=xr.string_to_path(
                    instance, f"/user/hand/{self.hand}/{_component(path, self.hand)}"))
                for name, path in components.items()
            ]
            xr.suggest_interaction_profile_bindings(instance, xr.InteractionProfileSuggestedBinding(
                interaction_profile=xr.string_to_path(instance, profile), suggested_bindings=bindings))
        xr.attach_session_action_sets(self._session, xr.SessionActionSetsAttachInfo(action_sets=[self._action_set]))
        self._grip_space = xr.create_action_space(self._session, xr.ActionSpaceCreateInfo(
            action=self._actions["grip_pose"], subaction_path=self._hand_path, pose_in_action_space=xr.Posef()))

    def _close(self) -> None:
        """Destroy what exists, children first; errors of a runtime already gone do not stop the teardown."""
        xr = self._xr
        if xr is None:
            return
        steps = [
            (xr.destroy_hand_tracker_ext, self._tracker), (xr.destroy_space, self._grip_space),
            (xr.destroy_space, self._space), (xr.destroy_session, self._session),
            (xr.destroy_action_set, self._action_set), (xr.destroy_instance, self._instance),
        ]
        for destroy, handle in steps:
            if handle is not None:
                try:
                    destroy(handle)
                except xr.XrException:
                    pass  # the runtime already dropped it (instance lost); the rest must still be released
        self._clear()

    def _clear(self) -> None:
        self._instance = self._session = self._space = self._grip_space = None
        self._action_set = self._tracker = self._hand_path = None
        self._actions = {}
        self._space_name = None
        self._profile = None
        self._state_name = "IDLE"
        self._running = self._focused = self._present = False
        self._ended = ""  # why the session ended for good, "" while it may run
        self._reason = "waiting for the OpenXR runtime to start the session (state IDLE)"
        self._gripper = 0.0

    # Reading --------------------------------------------------------------------------------------------------

    def _read(self) -> DeviceSample:
        now = self.clock()
        try:
            self._poll_events()
            if self._running:
                xr_time = self._xr_time(now)
                if self.mode == "controller":
                    return self._read_controller(now, xr_time)
                return self._read_hand(now, xr_time)
        except self._xr.XrException as exc:  # a runtime failing mid-call must not crash the loop: hold, retry
            self._present = False
            return self._away(now, f"an OpenXR call failed ({type(exc).__name__}: {exc}); retrying each read, "
                                   "restart the OpenXR runtime if this persists; the robot holds")
        self._present = False
        return self._idle(now)

    def _read_controller(self, now: float, xr_time: Any) -> DeviceSample:
        xr = self._xr
        if not self._sync_actions():  # every input reads inactive until the session has focus
            self._present = True
            return self._away(now, self._unfocused())
        self._present = bool(xr.get_action_state_pose(self._session, self._get_info("grip_pose")).is_active)
        if not self._present:
            profile = self._profile or "none"
            return self._away(now, f"no {self.hand} controller is active (interaction profile: {profile}): switch "
                                   "it on and hold it in view")
        squeeze = float(self._float_state("squeeze").current_state)
        trigger_state = self._float_state("trigger")
        trigger = float(trigger_state.current_state)
        if trigger_state.is_active:  # unbound on the simple controller: the gripper keeps its command
            self._gripper = float(np.clip(trigger, 0.0, 1.0))
        stick = xr.get_action_state_vector2f(self._session, self._get_info("thumbstick")).current_state
        buttons = {"grip": squeeze >= ENGAGE_SQUEEZE, "trigger": trigger >= TRIGGER_PRESSED,
                   "menu": self._bool("menu"), "thumbstick": self._bool("thumbstick_click")}
        axes = {"thumbstick_x": float(np.clip(stick.x, -1, 1)), "thumbstick_y": float(np.clip(stick.y, -1, 1))}
        location = xr.locate_space(self._grip_space, self._space, xr_time)
        T_world_device = tracked_pose(xr, location.location_flags, location.pose)
        if T_world_device is None:
            self._reason = f"the {self.hand} controller is not tracked: bring it into view; the robot holds"
        else:
            self._reason = ""
            self._meter.tick(now)
        engaged = T_world_device is not None and buttons["grip"]
        return DeviceSample(t=now, engaged=engaged, T_world_device=T_world_device, gripper=self._gripper,
                            axes=axes, buttons=buttons, device_time=_seconds(xr_time))

    def _read_hand(self, now: float, xr_time: Any) -> DeviceSample:
        xr = self._xr
        self._present = True  # the tracker exists; whether the hand is seen is the tracking state below
        locations = locate_hand_joints(xr, self._instance, self._tracker,
                                       xr.HandJointsLocateInfoEXT(base_space=self._space, time=xr_time))
        if not locations.is_active:
            return self._away(now, f"the {self.hand} hand is not tracked: hold it in view of the headset")
        joints_xr, valid = joint_arrays(xr, locations.joint_locations)
        try:
            keypoints = openxr_to_mediapipe(joints_xr, valid)
            T_world_device = tracked_pose(xr, locations.joint_locations[XR_WRIST].location_flags,
                                          locations.joint_locations[XR_WRIST].pose, require_tracked=False)
            if T_world_device is None:
                raise UnsafeInputError("hand tracking lost: the wrist pose is not valid")
        except UnsafeInputError as exc:
            return self._away(now, f"{exc}; hold the {self.hand} hand in view of the headset")
        if not self._focused:
            self._reason = self._unfocused()
        else:
            self._reason = ""
            self._meter.tick(now)
        return DeviceSample(t=now, engaged=self._focused, T_world_device=T_world_device, keypoints=keypoints,
                            gripper=self._gripper, buttons={"tracked": True}, device_time=_seconds(xr_time))

    def _idle(self, now: float) -> DeviceSample:
        self._reason = self._ended or (
            f"the OpenXR session is not running (state {self._state_name}): start the runtime and put the headset "
            "on; the robot holds until it runs"
        )
        return self._empty(now)

    def _away(self, now: float, reason: str) -> DeviceSample:
        self._reason = reason
        return self._empty(now)

    def _empty(self, now: float) -> DeviceSample:
        """A disengaged sample with no pose; the gripper keeps its last command (nothing is dropped)."""
        if self.mode == "hand":
            return DeviceSample(t=now, gripper=self._gripper, buttons={"tracked": False})
        return DeviceSample(t=now, gripper=self._gripper, axes=dict.fromkeys(AXES, 0.0),
                            buttons=dict.fromkeys(BUTTONS, False))

    def _unfocused(self) -> str:
        return (f"the OpenXR session is not focused (state {self._state_name}): put the headset on and close the "
                "runtime's menus; the robot holds")

    # Runtime calls --------------------------------------------------------------------------------------------

    def _poll_events(self) -> None:
        """Drain the event queue, following session state changes and interaction profile changes."""
        xr = self._xr
        while self._instance is not None:
            try:
                buffer = xr.poll_event(self._instance)
            except xr.EventUnavailable:
                return
            kind = buffer.type
            if kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                self._on_state(session_state(xr, buffer))
            elif kind == xr.StructureType.EVENT_DATA_INTERACTION_PROFILE_CHANGED and self.mode == "controller":
                self._profile = self._current_profile()
            elif kind == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                self._end("the OpenXR runtime is shutting down")
                return

    def _on_state(self, state: Any) -> None:
        xr = self._xr
        self._state_name = state.name
        self._focused = state == xr.SessionState.FOCUSED
        if state == xr.SessionState.READY:
            xr.begin_session(self._session, xr.SessionBeginInfo(
                primary_view_configuration_type=xr.ViewConfigurationType.PRIMARY_MONO))
            self._running = True
        elif state == xr.SessionState.STOPPING:
            xr.end_session(self._session)
            self._running = False
        elif state in (xr.SessionState.EXITING, xr.SessionState.LOSS_PENDING):
            self._end(f"the OpenXR runtime ended the session (state {state.name})")

    def _end(self, why: str) -> None:
        self._running = self._focused = False
        self._ended = f"{why}: restart the runtime, then disconnect and connect the device; the robot holds"

    def _sync_actions(self) -> bool:
        """xrSyncActions; False when the session is not focused (pyopenxr raises that success code)."""
        xr = self._xr
        try:
            xr.sync_actions(self._session, xr.ActionsSyncInfo(active_action_sets=[
                xr.ActiveActionSet(action_set=self._action_set, subaction_path=xr.NULL_PATH)]))
        except xr.SessionNotFocused:
            return False
        return True

    def _xr_time(self, now: float) -> Any:
        """The XrTime of monotonic time `now` [s] (XR_KHR_convert_timespec_time)."""
        xr = self._xr
        seconds = math.floor(now)
        nanoseconds = min(int(round((now - seconds) * 1e9)), 999_999_999)
        return xr.convert_timespec_time_to_time_khr(self._instance, xr.timespec(tv_sec=seconds, tv_nsec=nanoseconds))

    def _current_profile(self) -> str | None:
        xr = self._xr
        path = xr.get_current_interaction_profile(self._session, self._hand_path).interaction_profile
        return xr.path_to_string(self._instance, path) if path != xr.NULL_PATH else None

    def _get_info(self, action: str) -> Any:
        return self._xr.ActionStateGetInfo(action=self._actions[action], subaction_path=self._hand_path)

    def _float_state(self, action: str) -> Any:
        return self._xr.get_action_state_float(self._session, self._get_info(action))

    def _bool(self, action: str) -> bool:
        return bool(self._xr.get_action_state_boolean(self._session, self._get_info(action)).current_state)


def pose_matrix(pose: Any) -> np.ndarray:
    """T (4, 4) from an XrPosef: position [m] and orientation quaternion (x, y, z, w), normalised."""
    q, p = pose.orientation, pose.position
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
    T[:3, 3] = (p.x, p.y, p.z)
    return T


def tracked_pose(xr: Any, flags: Any, pose: Any, require_tracked: bool = True) -> np.ndarray | None:
    """T (4, 4) of a located pose, or None unless its position and orientation are valid (and tracked).

    Args:
        xr: The pyopenxr module (for the flag bits).
        flags: XrSpaceLocationFlags of the location.
        pose: Its XrPosef.
        require_tracked: Also require the TRACKED bits (a controller the runtime only dead-reckons is not
            followed); hand joints are mostly inferred, so hands need only the VALID bits.
    """
    bits = xr.SpaceLocationFlags
    needed = bits.POSITION_VALID_BIT | bits.ORIENTATION_VALID_BIT
    if require_tracked:
        needed |= bits.POSITION_TRACKED_BIT | bits.ORIENTATION_TRACKED_BIT
    if int(flags) & int(needed) != int(needed):
        return None
    q = pose.orientation
    norm = math.sqrt(q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w)
    if not math.isfinite(norm) or abs(norm - 1.0) > 1e-2:
        return None
    T = pose_matrix(pose)
    return T if np.isfinite(T).all() else None


def joint_arrays(xr: Any, joints: Any) -> tuple[np.ndarray, np.ndarray]:
    """(26, 7) joint poses (position [m], quaternion w, x, y, z) and (26,) validity of XrHandJointLocationEXT[26].

    Joints that are not valid get the identity pose, so unused garbage (palm, metacarpals) never trips the
    finite-value checks; the validity flags tell the converter which mapped joints are missing.
    """
    bits = xr.SpaceLocationFlags
    needed = int(bits.POSITION_VALID_BIT | bits.ORIENTATION_VALID_BIT)
    poses = np.zeros((XR_JOINT_COUNT, 7))
    poses[:, 3] = 1.0
    valid = np.zeros(XR_JOINT_COUNT, dtype=bool)
    for j in range(XR_JOINT_COUNT):
        joint = joints[j]
        if int(joint.location_flags) & needed != needed:
            continue
        p, q = joint.pose.position, joint.pose.orientation
        poses[j] = (p.x, p.y, p.z, q.w, q.x, q.y, q.z)
        valid[j] = True
    return poses, valid


def session_state(xr: Any, buffer: Any) -> Any:
    """The new state (xr.SessionState) in a polled event buffer holding an XrEventDataSessionStateChanged."""
    event = ctypes.cast(ctypes.byref(buffer), ctypes.POINTER(xr.EventDataSessionStateChanged)).contents
    return xr.SessionState(event.state)


def locate_hand_joints(xr: Any, instance: Any, tracker: Any, locate_info: Any) -> Any:
    """xrLocateHandJointsEXT with room for the 26 joints -> XrHandJointLocationsEXT.

    pyopenxr's locate_hand_joints_ext passes an empty joint array, so the runtime returns no joints; this calls
    the extension function itself with a 26-joint array.
    """
    locations = xr.HandJointLocationsEXT(joint_locations=[xr.HandJointLocationEXT() for _ in range(XR_JOINT_COUNT)])
    function = ctypes.cast(xr.get_instance_proc_addr(instance, "xrLocateHandJointsEXT"), xr.PFN_xrLocateHandJointsEXT)
    result = xr.check_result(xr.Result(function(tracker, locate_info, locations)))
    if result.is_exception():
        raise result
    return locations


def _component(path: str | dict[str, str], hand: str) -> str:
    return path if isinstance(path, str) else path[hand]


def _seconds(xr_time: Any) -> float:
    """An XrTime (int64 nanoseconds, as a ctypes value or int) in seconds."""
    return float(getattr(xr_time, "value", xr_time)) * 1e-9
