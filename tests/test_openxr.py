"""OpenXRController against a scripted OpenXR runtime behind a pure-Python stand-in for pyopenxr's `xr` module.

The stand-in implements the pyopenxr functions, structs, enums and exceptions the device uses, with the runtime
rules that matter here: extensions must be offered, bindings must name paths the interaction profile has,
xrBeginSession needs READY and xrEndSession STOPPING, xrSyncActions reports XR_SESSION_NOT_FOCUSED as an
exception, inputs are inactive without focus. Tests at the end check the stand-in against the real pyopenxr
(names, keyword arguments, enum values) and run the ctypes parts on the real package's structs.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import inspect
import math
import os
import sys
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from devices.openxr import PROFILES, OpenXRController, joint_arrays, locate_hand_joints, pose_matrix, session_state
from devices.status import DeviceStatus
from kinematics.openxr_hand import MEDIAPIPE_FROM_XR, openxr_to_mediapipe
from teleop.errors import DeviceError, MissingDependencyError, UnknownNameError

# --- enums, exceptions and structs (values as in pyopenxr) ------------------------------------------------------


class StructureType(enum.IntEnum):
    EVENT_DATA_INSTANCE_LOSS_PENDING = 17
    EVENT_DATA_SESSION_STATE_CHANGED = 18
    EVENT_DATA_INTERACTION_PROFILE_CHANGED = 52


class SessionState(enum.IntEnum):
    UNKNOWN = 0
    IDLE = 1
    READY = 2
    SYNCHRONIZED = 3
    VISIBLE = 4
    FOCUSED = 5
    STOPPING = 6
    LOSS_PENDING = 7
    EXITING = 8


class ReferenceSpaceType(enum.IntEnum):
    VIEW = 1
    LOCAL = 2
    STAGE = 3


class ActionType(enum.IntEnum):
    BOOLEAN_INPUT = 1
    FLOAT_INPUT = 2
    VECTOR2F_INPUT = 3
    POSE_INPUT = 4


class FormFactor(enum.IntEnum):
    HEAD_MOUNTED_DISPLAY = 1


class ViewConfigurationType(enum.IntEnum):
    PRIMARY_MONO = 1


class HandEXT(enum.IntEnum):
    LEFT = 1
    RIGHT = 2


class HandJointSetEXT(enum.IntEnum):
    DEFAULT = 0


class SpaceLocationFlags(enum.IntFlag):
    NONE = 0
    ORIENTATION_VALID_BIT = 1
    POSITION_VALID_BIT = 2
    ORIENTATION_TRACKED_BIT = 4
    POSITION_TRACKED_BIT = 8


class Result(enum.IntEnum):
    SUCCESS = 0
    ERROR_RUNTIME_FAILURE = -2


ENUMS = (StructureType, SessionState, ReferenceSpaceType, ActionType, FormFactor, ViewConfigurationType, HandEXT,
         HandJointSetEXT, SpaceLocationFlags, Result)
VALID = SpaceLocationFlags.POSITION_VALID_BIT | SpaceLocationFlags.ORIENTATION_VALID_BIT
TRACKED = VALID | SpaceLocationFlags.POSITION_TRACKED_BIT | SpaceLocationFlags.ORIENTATION_TRACKED_BIT


class XrException(Exception):
    @staticmethod
    def is_exception() -> bool:
        return True


class Success(XrException):
    @staticmethod
    def is_exception() -> bool:
        return False


class EventUnavailable(XrException):
    pass


class SessionNotFocused(XrException):
    pass


def _error(name: str) -> type[XrException]:
    return type(name, (XrException,), {})


ERRORS = {name: _error(name) for name in (
    "RuntimeUnavailableError", "FormFactorUnavailableError", "FeatureUnsupportedError", "ExtensionNotPresentError",
    "PathUnsupportedError", "SessionNotReadyError", "SessionNotStoppingError", "SessionNotRunningError",
    "SessionLostError", "RuntimeFailureError", "ActionTypeMismatchError",
)}


class _EventBuffer(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("next", ctypes.c_void_p), ("varying", ctypes.c_uint8 * 4000)]


class _SessionStateChanged(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("next", ctypes.c_void_p), ("session", ctypes.c_void_p),
                ("state", ctypes.c_int), ("time", ctypes.c_int64)]


# xrLocateHandJointsEXT as the runtime exports it; py_object arguments carry the stand-in's records.
_PFN_LOCATE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.py_object, ctypes.py_object)

# struct name -> its keyword fields (each a parameter of the pyopenxr constructor of that name)
STRUCTS: dict[str, tuple[str, ...]] = {
    "ApplicationInfo": ("application_name", "application_version", "engine_name", "engine_version"),
    "InstanceCreateInfo": ("application_info", "enabled_extension_names"),
    "SystemGetInfo": ("form_factor",),
    "SessionCreateInfo": ("system_id", "next"),
    "ReferenceSpaceCreateInfo": ("reference_space_type", "pose_in_reference_space"),
    "Posef": ("orientation", "position"),
    "ActionSetCreateInfo": ("action_set_name", "localized_action_set_name", "priority"),
    "ActionCreateInfo": ("action_name", "action_type", "subaction_paths", "localized_action_name"),
    "ActionSuggestedBinding": ("action", "binding"),
    "InteractionProfileSuggestedBinding": ("interaction_profile", "suggested_bindings"),
    "SessionActionSetsAttachInfo": ("action_sets",),
    "ActionSpaceCreateInfo": ("action", "subaction_path", "pose_in_action_space"),
    "HandTrackerCreateInfoEXT": ("hand", "hand_joint_set"),
    "SessionBeginInfo": ("primary_view_configuration_type",),
    "ActionsSyncInfo": ("active_action_sets",),
    "ActiveActionSet": ("action_set", "subaction_path"),
    "ActionStateGetInfo": ("action", "subaction_path"),
    "HandJointsLocateInfoEXT": ("base_space", "time"),
    "HandJointLocationsEXT": ("is_active", "joint_locations"),
    "HandJointLocationEXT": ("location_flags", "pose", "radius"),
    "timespec": ("tv_sec", "tv_nsec"),
}

# Component paths each profile offers a hand (OpenXR 1.0 specification, 6.4); "x/y" pairs bind by their parent.
PROFILE_COMPONENTS: dict[str, dict[str, set[str]]] = {
    "/interaction_profiles/khr/simple_controller": {
        hand: {"input/select/click", "input/menu/click", "input/grip/pose", "input/aim/pose"}
        for hand in ("left", "right")
    },
    "/interaction_profiles/htc/vive_controller": {
        hand: {"input/system/click", "input/squeeze/click", "input/menu/click", "input/trigger/click",
               "input/trigger/value", "input/trackpad", "input/trackpad/click", "input/trackpad/touch",
               "input/grip/pose", "input/aim/pose"} for hand in ("left", "right")
    },
    "/interaction_profiles/oculus/touch_controller": {
        hand: {"input/squeeze/value", "input/trigger/value", "input/trigger/touch", "input/thumbstick",
               "input/thumbstick/click", "input/thumbstick/touch", "input/thumbrest/touch", "input/grip/pose",
               "input/aim/pose"} | extra
        for hand, extra in (
            ("left", {"input/x/click", "input/x/touch", "input/y/click", "input/y/touch", "input/menu/click"}),
            ("right", {"input/a/click", "input/a/touch", "input/b/click", "input/b/touch", "input/system/click"}),
        )
    },
    "/interaction_profiles/valve/index_controller": {
        hand: {"input/system/click", "input/system/touch", "input/a/click", "input/a/touch", "input/b/click",
               "input/b/touch", "input/squeeze/value", "input/squeeze/force", "input/trigger/click",
               "input/trigger/value", "input/trigger/touch", "input/thumbstick", "input/thumbstick/click",
               "input/thumbstick/touch", "input/trackpad", "input/trackpad/force", "input/trackpad/touch",
               "input/grip/pose", "input/aim/pose"} for hand in ("left", "right")
    },
}
MND_HEADLESS, TIMESPEC, HAND_TRACKING = "XR_MND_headless", "XR_KHR_convert_timespec_time", "XR_EXT_hand_tracking"
XR_EPOCH_NS = 7_000_000_000  # the runtime's clock is offset from CLOCK_MONOTONIC


def api(function: Callable[..., Any]) -> Callable[..., Any]:
    """Marks a stand-in xr function and logs each call (name, positional count, keywords) for the API check."""
    @functools.wraps(function)
    def logged(self: FakeXr, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((function.__name__, len(args), tuple(kwargs)))
        return function(self, *args, **kwargs)
    logged.is_api = True  # type: ignore[attr-defined]
    return logged


def vec(**values: float) -> SimpleNamespace:
    return SimpleNamespace(**values)


def xr_pose(position: Any, quat_xyzw: Any) -> SimpleNamespace:
    x, y, z, w = (float(v) for v in quat_xyzw)
    return SimpleNamespace(orientation=vec(x=x, y=y, z=z, w=w),
                           position=vec(x=float(position[0]), y=float(position[1]), z=float(position[2])))


class FakeXr:
    """The `xr` module of pyopenxr as OpenXRController uses it, over a scripted runtime with one user."""

    XrException, EventUnavailable, SessionNotFocused = XrException, EventUnavailable, SessionNotFocused
    StructureType, SessionState, ReferenceSpaceType, ActionType = StructureType, SessionState, ReferenceSpaceType, \
        ActionType
    FormFactor, ViewConfigurationType, HandEXT, HandJointSetEXT = FormFactor, ViewConfigurationType, HandEXT, \
        HandJointSetEXT
    SpaceLocationFlags, Result = SpaceLocationFlags, Result
    EventDataSessionStateChanged = _SessionStateChanged
    PFN_xrLocateHandJointsEXT = _PFN_LOCATE
    NULL_PATH = 0
    MND_HEADLESS_EXTENSION_NAME = MND_HEADLESS
    KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME = TIMESPEC
    EXT_HAND_TRACKING_EXTENSION_NAME = HAND_TRACKING

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, tuple[str, ...]]] = []
        self.struct_kwargs: dict[str, set[str]] = defaultdict(set)
        for name, error in ERRORS.items():
            setattr(self, name, error)
        for name, fields in STRUCTS.items():
            setattr(self, name, self._struct(name, fields))
        # The runtime's world, set by the tests.
        self.runtime_available = True
        self.headset = True
        self.hand_tracking = True
        self.extensions = {MND_HEADLESS, TIMESPEC, HAND_TRACKING}
        self.reference_spaces = [ReferenceSpaceType.VIEW, ReferenceSpaceType.LOCAL, ReferenceSpaceType.STAGE]
        self.auto_focus = True
        self.profile: str | None = "/interaction_profiles/valve/index_controller"
        self.controller_on = True
        self.inputs: dict[str, Any] = {}  # component path under /user/hand/<hand>/ -> value
        self.grip_flags = TRACKED
        self.grip = xr_pose((0.1, 1.2, -0.3), (0.0, 0.0, 0.0, 1.0))
        self.hand_active = True
        self.joint_flags = np.full(26, int(VALID))
        rng = np.random.default_rng(0)
        self.joint_positions = rng.uniform(-0.1, 0.1, (26, 3)) + [0.2, 1.1, -0.3]
        self.joint_quats = Rotation.random(26, random_state=1).as_quat()  # x, y, z, w
        # What the device did.
        self.enabled: list[str] = []
        self.state = SessionState.UNKNOWN
        self.events: deque[tuple[int, int | None]] = deque()  # (StructureType, SessionState or None)
        self.paths: dict[str, int] = {}
        self.actions: dict[int, SimpleNamespace] = {}
        self.bindings: dict[str, dict[str, str]] = {}  # profile -> action name -> path
        self.attached = False
        self.begun = self.ended = 0
        self.running = False
        self.located_at: list[int] = []
        self.joint_array_sizes: list[int] = []
        self.destroyed: list[str] = []
        self.tracker_hand: HandEXT | None = None
        self.space_type: ReferenceSpaceType | None = None
        self._handles = 0
        self._locate = _PFN_LOCATE(self._locate_hand_joints)

    # the scripted world ----------------------------------------------------------------------------------------

    def push_state(self, *states: int) -> None:
        self.events.extend((StructureType.EVENT_DATA_SESSION_STATE_CHANGED, s) for s in states)

    def switch_profile(self, profile: str | None) -> None:
        self.profile = profile
        self.events.append((StructureType.EVENT_DATA_INTERACTION_PROFILE_CHANGED, None))

    def joints_xr(self) -> np.ndarray:
        """The joints as openxr_to_mediapipe takes them: (26, 7) position, quaternion w, x, y, z."""
        return np.hstack([self.joint_positions, self.joint_quats[:, [3, 0, 1, 2]]])

    # helpers ---------------------------------------------------------------------------------------------------

    def _struct(self, name: str, fields: tuple[str, ...]) -> type:
        log = self.struct_kwargs

        def __init__(record: Any, **kwargs: Any) -> None:  # noqa: N807
            unknown = set(kwargs) - set(fields)
            if unknown:
                raise TypeError(f"{name}() got unexpected keyword arguments {sorted(unknown)}")
            log[name].update(kwargs)
            for field_name in fields:
                setattr(record, field_name, kwargs.get(field_name))

        return type(name, (), {"__init__": __init__})

    def _handle(self, kind: str, **info: Any) -> SimpleNamespace:
        self._handles += 1
        return SimpleNamespace(kind=kind, id=self._handles, **info)

    def _path_string(self, path: int) -> str:
        return next(text for text, value in self.paths.items() if value == path)

    def _require_running(self) -> None:
        if not self.running:  # between xrBeginSession and xrEndSession, whatever the state
            raise ERRORS["SessionNotRunningError"]()

    def _action_input(self, get_info: Any) -> tuple[bool, Any]:
        """(is_active, value) of an action: its binding in the live profile, read from `inputs`."""
        action = self.actions[get_info.action.id]
        assert get_info.subaction_path in action.subaction_paths
        bound = self.bindings.get(self.profile or "", {}).get(action.name)
        if self.state != SessionState.FOCUSED or not self.controller_on or bound is None:
            return False, None
        return True, self.inputs.get(bound.split("/", 4)[-1])

    def _locate_hand_joints(self, tracker: Any, locate_info: Any, locations: Any) -> int:
        self.joint_array_sizes.append(len(locations.joint_locations))
        self.located_at.append(int(locate_info.time.value))
        locations.is_active = int(self.hand_active)
        for j, joint in enumerate(locations.joint_locations):
            joint.location_flags = int(self.joint_flags[j])
            joint.pose = xr_pose(self.joint_positions[j], self.joint_quats[j])
        return int(Result.SUCCESS)

    # pyopenxr functions ----------------------------------------------------------------------------------------

    @api
    def enumerate_instance_extension_properties(self, layer_name: str | None = None) -> list[Any]:
        if not self.runtime_available:
            raise ERRORS["RuntimeUnavailableError"]("The loader was unable to find or load a runtime.")
        return [SimpleNamespace(extension_name=name.encode()) for name in sorted(self.extensions)]

    @api
    def create_instance(self, create_info: Any = None) -> Any:
        if not self.runtime_available:
            raise ERRORS["RuntimeUnavailableError"]()
        if set(create_info.enabled_extension_names) - self.extensions:
            raise ERRORS["ExtensionNotPresentError"]()
        self.enabled = list(create_info.enabled_extension_names)
        return self._handle("instance")

    @api
    def get_system(self, instance: Any, get_info: Any = None) -> int:
        if not self.headset:
            raise ERRORS["FormFactorUnavailableError"]()
        assert get_info.form_factor == FormFactor.HEAD_MOUNTED_DISPLAY
        return 1

    @api
    def create_session(self, instance: Any, create_info: Any = None) -> Any:
        assert create_info.system_id == 1 and create_info.next is None  # headless: no graphics binding
        assert MND_HEADLESS in self.enabled
        self.push_state(SessionState.IDLE, SessionState.READY)
        return self._handle("session")

    @api
    def enumerate_reference_spaces(self, session: Any) -> list[int]:
        return [int(kind) for kind in self.reference_spaces]

    @api
    def create_reference_space(self, session: Any, create_info: Any = None) -> Any:
        assert create_info.reference_space_type in self.reference_spaces
        self.space_type = create_info.reference_space_type
        return self._handle("reference space")

    @api
    def string_to_path(self, instance: Any, path_string: str) -> int:
        return self.paths.setdefault(path_string, len(self.paths) + 1)

    @api
    def path_to_string(self, instance: Any, path: int) -> str:
        return self._path_string(path)

    @api
    def create_action_set(self, instance: Any, create_info: Any = None) -> Any:
        assert create_info.action_set_name.islower()
        return self._handle("action set")

    @api
    def create_action(self, action_set: Any, create_info: Any = None) -> Any:
        name = create_info.action_name
        assert name.replace("_", "").isalnum() and name.islower()
        handle = self._handle("action")
        self.actions[handle.id] = SimpleNamespace(name=name, type=create_info.action_type,
                                                  subaction_paths=list(create_info.subaction_paths))
        return handle

    @api
    def suggest_interaction_profile_bindings(self, instance: Any, suggested_bindings: Any) -> None:
        profile = self._path_string(suggested_bindings.interaction_profile)
        bound: dict[str, str] = {}
        for binding in suggested_bindings.suggested_bindings:
            action = self.actions[binding.action.id]
            path = self._path_string(binding.binding)
            _, user, hand_word, hand, component = path.split("/", 4)
            offered = PROFILE_COMPONENTS[profile][hand]
            if (user, hand_word) != ("user", "hand") or component not in offered:
                raise ERRORS["PathUnsupportedError"](f"{path} is not a path of {profile}")
            if (action.type == ActionType.POSE_INPUT) != component.endswith("/pose"):
                raise ERRORS["ActionTypeMismatchError"](path)
            if action.type == ActionType.VECTOR2F_INPUT and component.count("/") != 1:
                raise ERRORS["ActionTypeMismatchError"](path)
            bound[action.name] = path
        self.bindings[profile] = bound

    @api
    def attach_session_action_sets(self, session: Any, attach_info: Any) -> None:
        assert len(attach_info.action_sets) == 1
        self.attached = True

    @api
    def create_action_space(self, session: Any, create_info: Any = None) -> Any:
        assert self.actions[create_info.action.id].type == ActionType.POSE_INPUT
        return self._handle("grip space", action=create_info.action, subaction_path=create_info.subaction_path)

    @api
    def create_hand_tracker_ext(self, session: Any, create_info: Any = None) -> Any:
        assert HAND_TRACKING in self.enabled
        if not self.hand_tracking:
            raise ERRORS["FeatureUnsupportedError"]("The requested feature is not supported.")
        self.tracker_hand = create_info.hand
        return self._handle("hand tracker")

    @api
    def poll_event(self, instance: Any) -> Any:
        if not self.events:
            raise EventUnavailable()
        kind, state = self.events.popleft()
        buffer = _EventBuffer(type=int(kind))
        if state is not None:
            self.state = SessionState(state)
            event = ctypes.cast(ctypes.byref(buffer), ctypes.POINTER(_SessionStateChanged)).contents
            event.state = int(state)
        return buffer

    @api
    def begin_session(self, session: Any, begin_info: Any) -> None:
        if self.state != SessionState.READY:
            raise ERRORS["SessionNotReadyError"]()
        assert begin_info.primary_view_configuration_type == ViewConfigurationType.PRIMARY_MONO
        self.begun += 1
        self.running = True
        if self.auto_focus:
            self.push_state(SessionState.SYNCHRONIZED, SessionState.VISIBLE, SessionState.FOCUSED)

    @api
    def end_session(self, session: Any) -> None:
        if self.state != SessionState.STOPPING:
            raise ERRORS["SessionNotStoppingError"]()
        self.ended += 1
        self.running = False
        self.push_state(SessionState.IDLE)

    @api
    def convert_timespec_time_to_time_khr(self, instance: Any, timespec_time: Any) -> ctypes.c_int64:
        assert TIMESPEC in self.enabled
        assert isinstance(timespec_time.tv_sec, int) and 0 <= timespec_time.tv_nsec < 1_000_000_000
        return ctypes.c_int64(timespec_time.tv_sec * 1_000_000_000 + timespec_time.tv_nsec + XR_EPOCH_NS)

    @api
    def sync_actions(self, session: Any, sync_info: Any) -> None:
        self._require_running()
        assert self.attached and len(sync_info.active_action_sets) == 1
        if self.state != SessionState.FOCUSED:
            raise SessionNotFocused()

    @api
    def get_action_state_pose(self, session: Any, get_info: Any) -> Any:
        active, _ = self._action_input(get_info)
        return SimpleNamespace(is_active=int(active))

    @api
    def get_action_state_float(self, session: Any, get_info: Any) -> Any:
        active, value = self._action_input(get_info)
        return SimpleNamespace(is_active=int(active), current_state=float(value or 0.0) if active else 0.0)

    @api
    def get_action_state_boolean(self, session: Any, get_info: Any) -> Any:
        active, value = self._action_input(get_info)
        return SimpleNamespace(is_active=int(active), current_state=int(bool(value)) if active else 0)

    @api
    def get_action_state_vector2f(self, session: Any, get_info: Any) -> Any:
        active, value = self._action_input(get_info)
        x, y = value if active and value is not None else (0.0, 0.0)
        return SimpleNamespace(is_active=int(active), current_state=vec(x=x, y=y))

    @api
    def locate_space(self, space: Any, base_space: Any, time: Any) -> Any:
        assert space.kind == "grip space" and base_space.kind == "reference space"
        self.located_at.append(int(time.value))
        active, _ = self._action_input(space)
        if not active:
            return SimpleNamespace(location_flags=SpaceLocationFlags.NONE, pose=xr_pose((0, 0, 0), (0, 0, 0, 0)))
        return SimpleNamespace(location_flags=self.grip_flags, pose=self.grip)

    @api
    def get_current_interaction_profile(self, session: Any, top_level_user_path: int) -> Any:
        path = self.paths.setdefault(self.profile, len(self.paths) + 1) if self.profile else 0
        return SimpleNamespace(interaction_profile=path)

    @api
    def get_instance_proc_addr(self, instance: Any, name: str) -> Any:
        assert name == "xrLocateHandJointsEXT" and HAND_TRACKING in self.enabled
        return self._locate

    @api
    def check_result(self, xr_result: int, message: str | None = None) -> Exception:
        return Success() if xr_result == Result.SUCCESS else ERRORS["RuntimeFailureError"]()

    @api
    def destroy_hand_tracker_ext(self, hand_tracker: Any) -> None:
        self.destroyed.append(hand_tracker.kind)

    @api
    def destroy_space(self, space: Any) -> None:
        self.destroyed.append(space.kind)

    @api
    def destroy_session(self, session: Any) -> None:
        self.destroyed.append(session.kind)

    @api
    def destroy_action_set(self, action_set: Any) -> None:
        self.destroyed.append(action_set.kind)

    @api
    def destroy_instance(self, instance: Any) -> None:
        self.destroyed.append(instance.kind)


# --- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture
def xr() -> FakeXr:
    return FakeXr()


@pytest.fixture
def controller(xr: FakeXr, clock: Any) -> OpenXRController:
    device = OpenXRController(hand="right", clock=clock, xr_module=xr)
    device.connect()
    return device


@pytest.fixture
def hand(xr: FakeXr, clock: Any) -> OpenXRController:
    device = OpenXRController(hand="right", mode="hand", clock=clock, xr_module=xr)
    device.connect()
    return device


def quat_about(axis: str, angle: float) -> np.ndarray:
    return Rotation.from_euler(axis, angle).as_quat()


# --- controller mode --------------------------------------------------------------------------------------------


def test_suggested_bindings_cover_the_four_profiles_with_paths_they_have(xr: FakeXr,
                                                                         controller: OpenXRController) -> None:
    assert set(xr.bindings) == set(PROFILES) == set(PROFILE_COMPONENTS)
    for profile, bound in xr.bindings.items():
        assert bound["grip_pose"] == "/user/hand/right/input/grip/pose", profile
        assert "squeeze" in bound, profile  # every profile has a deadman
    assert xr.bindings["/interaction_profiles/oculus/touch_controller"]["menu"] == "/user/hand/right/input/b/click"
    assert "trigger" not in xr.bindings["/interaction_profiles/khr/simple_controller"]
    assert xr.enabled == [MND_HEADLESS, TIMESPEC] and xr.space_type == ReferenceSpaceType.STAGE
    assert controller.reference_space == "STAGE"


def test_left_hand_touch_binds_the_menu_button(xr: FakeXr, clock: Any) -> None:
    with OpenXRController(hand="left", clock=clock, xr_module=xr):
        pass
    assert xr.bindings["/interaction_profiles/oculus/touch_controller"]["menu"] == "/user/hand/left/input/menu/click"
    assert all(path.startswith("/user/hand/left/") for bound in xr.bindings.values() for path in bound.values())


def test_grip_pose_becomes_T_world_device(xr: FakeXr, controller: OpenXRController, clock: Any) -> None:
    quat = quat_about("z", np.pi / 2)
    xr.grip = xr_pose((0.1, 1.2, -0.3), quat)
    xr.inputs = {"input/squeeze/value": 1.0}
    sample = controller.read()
    expected = np.eye(4)
    expected[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    expected[:3, 3] = [0.1, 1.2, -0.3]
    assert sample.engaged and sample.T_world_device is not None
    np.testing.assert_allclose(sample.T_world_device, expected, atol=1e-12)
    assert sample.t == clock()


@pytest.mark.parametrize("seed", range(5))
def test_pose_matrix_matches_the_quaternion(seed: int) -> None:
    rng = np.random.default_rng(seed)
    quat, position = Rotation.random(random_state=seed).as_quat(), rng.uniform(-2, 2, 3)
    T = pose_matrix(xr_pose(position, quat))
    np.testing.assert_allclose(T[:3, :3], Rotation.from_quat(quat).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], position)
    np.testing.assert_array_equal(T[3], [0, 0, 0, 1])


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_squeeze_engages_and_trigger_drives_the_gripper_on_every_profile(xr: FakeXr, controller: OpenXRController,
                                                                         profile: str) -> None:
    xr.switch_profile(profile)
    bound = {name: path.split("/", 4)[-1] for name, path in xr.bindings[profile].items()}
    xr.inputs = {bound["squeeze"]: 0.2}
    if "trigger" in bound:
        xr.inputs[bound["trigger"]] = 0.3
    sample = controller.read()
    assert controller.interaction_profile == profile
    assert not sample.engaged and sample.T_world_device is not None  # squeeze below the deadman threshold
    xr.inputs = {bound["squeeze"]: 1.0, bound["menu"]: True}
    if "trigger" in bound:
        xr.inputs[bound["trigger"]] = 0.8
        xr.inputs[bound["thumbstick"]] = (0.25, -0.5)
        xr.inputs[bound["thumbstick_click"]] = True
    sample = controller.read()
    assert sample.engaged and sample.buttons["grip"] and sample.buttons["menu"]
    if "trigger" in bound:
        assert sample.gripper == pytest.approx(0.8) and sample.buttons["trigger"] and sample.buttons["thumbstick"]
        assert sample.axes == pytest.approx({"thumbstick_x": 0.25, "thumbstick_y": -0.5})
    else:  # the simple controller has no trigger: the gripper keeps its command
        assert sample.gripper == 0.0 and sample.axes == {"thumbstick_x": 0.0, "thumbstick_y": 0.0}


def test_untracked_controller_disengages_without_a_pose(xr: FakeXr, controller: OpenXRController) -> None:
    xr.inputs = {"input/squeeze/value": 1.0, "input/trigger/value": 0.6}
    assert controller.read().engaged
    xr.grip_flags = VALID  # the runtime only dead-reckons it
    sample = controller.read()
    assert not sample.engaged and sample.T_world_device is None and sample.buttons["grip"]
    assert sample.gripper == pytest.approx(0.6)
    assert controller.status().connected and "not tracked" in controller.status().reason


def test_controller_switched_off_holds_then_comes_back(xr: FakeXr, controller: OpenXRController) -> None:
    xr.inputs = {"input/squeeze/value": 1.0, "input/trigger/value": 0.7}
    assert controller.read().engaged
    xr.controller_on = False
    sample = controller.read()
    assert not sample.engaged and sample.T_world_device is None and sample.gripper == pytest.approx(0.7)
    status = controller.status()
    assert not status.connected and "no right controller is active" in status.reason
    xr.controller_on = True
    assert controller.read().engaged and controller.status().connected


def test_session_state_transitions(xr: FakeXr, controller: OpenXRController) -> None:
    xr.inputs = {"input/squeeze/value": 1.0}
    assert xr.begun == 0 and "state IDLE" in controller.status().reason
    sample = controller.read()  # IDLE, READY -> xrBeginSession; the runtime then focuses the session
    assert xr.begun == 1 and sample.engaged
    xr.push_state(SessionState.VISIBLE, SessionState.SYNCHRONIZED, SessionState.STOPPING)
    sample = controller.read()
    assert xr.ended == 1 and not sample.engaged and sample.T_world_device is None  # STOPPING -> xrEndSession
    assert "not running (state IDLE)" in controller.status().reason
    xr.push_state(SessionState.READY)
    assert controller.read().engaged and xr.begun == 2
    xr.push_state(SessionState.STOPPING, SessionState.IDLE, SessionState.EXITING)
    for _ in range(2):
        sample = controller.read()
        assert not sample.engaged
    status = controller.status()
    assert not status.connected and "ended the session (state EXITING)" in status.reason


def test_not_focused_arrives_as_an_exception_and_disengages(xr: FakeXr, controller: OpenXRController) -> None:
    xr.auto_focus = False
    xr.inputs = {"input/squeeze/value": 1.0}
    controller.read()  # READY -> begin
    xr.push_state(SessionState.SYNCHRONIZED, SessionState.VISIBLE)
    sample = controller.read()
    assert not sample.engaged and sample.T_world_device is None
    assert "not focused (state VISIBLE)" in controller.status().reason and controller.status().connected
    xr.push_state(SessionState.FOCUSED)
    assert controller.read().engaged


def test_loss_pending_and_instance_loss_hold_until_reconnected(xr: FakeXr, controller: OpenXRController) -> None:
    xr.inputs = {"input/squeeze/value": 1.0}
    assert controller.read().engaged
    xr.events.append((StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING, None))
    assert not controller.read().engaged
    assert "shutting down" in controller.status().reason
    controller.disconnect()
    controller.connect()
    assert controller.read().engaged


def test_a_failing_runtime_call_holds_instead_of_raising(xr: FakeXr, controller: OpenXRController,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    xr.inputs = {"input/squeeze/value": 1.0}
    assert controller.read().engaged

    def lost(*args: Any) -> None:
        raise ERRORS["SessionLostError"]("The session was lost.")

    monkeypatch.setattr(xr, "sync_actions", lost)
    sample = controller.read()
    assert not sample.engaged and "SessionLostError" in controller.status().reason


def test_poses_are_located_at_the_clock_time_through_timespec(xr: FakeXr, controller: OpenXRController,
                                                              clock: Any) -> None:
    clock.t = 1234.5678
    sample = controller.read()
    expected_ns = 1234 * 1_000_000_000 + 567_800_000 + XR_EPOCH_NS
    assert abs(xr.located_at[-1] - expected_ns) <= 1
    assert sample.device_time == pytest.approx(expected_ns * 1e-9)
    clock.sleep(0.011)
    controller.read()
    assert xr.located_at[-1] - expected_ns == pytest.approx(11_000_000, abs=1)


def test_local_space_when_the_runtime_has_no_stage(xr: FakeXr, clock: Any) -> None:
    xr.reference_spaces = [ReferenceSpaceType.VIEW, ReferenceSpaceType.LOCAL]
    with OpenXRController(clock=clock, xr_module=xr) as device:
        assert device.reference_space == "LOCAL"  # type: ignore[attr-defined]
    assert xr.space_type == ReferenceSpaceType.LOCAL


def test_status_measures_the_rate_of_tracked_samples(xr: FakeXr, clock: Any) -> None:
    device = OpenXRController(clock=clock, xr_module=xr)
    assert device.status() == DeviceStatus(False, reason="openxr is not connected: call .connect() first")
    device.connect()
    for _ in range(10):
        device.read()
        clock.sleep(1 / 90)
    status = device.status()
    assert status.connected and status.reason == ""
    assert status.sample_rate_hz == pytest.approx(90.0)
    assert status.last_sample_age_s == pytest.approx(1 / 90)


def test_disconnect_destroys_every_handle(xr: FakeXr, controller: OpenXRController) -> None:
    controller.read()
    controller.disconnect()
    assert xr.destroyed == ["grip space", "reference space", "session", "action set", "instance"]


# --- hand mode --------------------------------------------------------------------------------------------------


def test_hand_joints_become_the_21_keypoints_and_the_wrist_pose(xr: FakeXr, hand: OpenXRController) -> None:
    sample = hand.read()
    assert sample.engaged and sample.buttons == {"tracked": True}
    assert xr.joint_array_sizes == [26]  # the 26-joint array reached the runtime
    assert xr.enabled == [MND_HEADLESS, TIMESPEC, HAND_TRACKING] and xr.tracker_hand == HandEXT.RIGHT
    assert sample.keypoints is not None and sample.keypoints.shape == (21, 3)
    np.testing.assert_allclose(sample.keypoints, openxr_to_mediapipe(xr.joints_xr(), np.ones(26, bool)), atol=1e-12)
    assert sample.T_world_device is not None
    np.testing.assert_allclose(sample.T_world_device[:3, 3], xr.joint_positions[1])
    np.testing.assert_allclose(sample.T_world_device[:3, :3], Rotation.from_quat(xr.joint_quats[1]).as_matrix(),
                               atol=1e-12)
    # keypoints are in the wrist frame: mapping them back through the wrist pose gives the joint positions
    world = sample.keypoints @ sample.T_world_device[:3, :3].T + sample.T_world_device[:3, 3]
    np.testing.assert_allclose(world, xr.joint_positions[list(MEDIAPIPE_FROM_XR)], atol=1e-12)


def test_unused_joints_may_be_invalid(xr: FakeXr, hand: OpenXRController) -> None:
    for joint in (0, 6, 11, 16, 21):  # palm and metacarpals: no MediaPipe keypoint
        xr.joint_flags[joint] = 0
        xr.joint_positions[joint] = np.nan
    assert hand.read().engaged


@pytest.mark.parametrize("lost", ["fingertip", "wrist", "inactive"])
def test_lost_hand_tracking_disengages_and_the_session_holds(xr: FakeXr, hand: OpenXRController, lost: str) -> None:
    assert hand.read().engaged
    if lost == "fingertip":
        xr.joint_flags[10] = 0  # index tip
    elif lost == "wrist":
        xr.joint_flags[1] = int(SpaceLocationFlags.POSITION_VALID_BIT)
    else:
        xr.hand_active = False
    sample = hand.read()
    assert not sample.engaged and sample.keypoints is None and sample.T_world_device is None
    assert sample.buttons == {"tracked": False}
    status = hand.status()
    assert status.connected and ("tracking lost" in status.reason or "not tracked" in status.reason)
    xr.joint_flags[:] = int(VALID)
    xr.hand_active = True
    assert hand.read().engaged


def test_hand_outside_focus_is_reported_but_not_engaged(xr: FakeXr, hand: OpenXRController) -> None:
    xr.auto_focus = False
    hand.read()
    xr.push_state(SessionState.SYNCHRONIZED, SessionState.VISIBLE)
    sample = hand.read()
    assert not sample.engaged and sample.keypoints is not None
    assert "not focused" in hand.status().reason


def test_hand_tracking_unsupported_or_missing_says_what_to_do(xr: FakeXr, clock: Any) -> None:
    xr.hand_tracking = False
    with pytest.raises(DeviceError, match="cannot track hands.*mode='controller'.*--device"):
        OpenXRController(mode="hand", clock=clock, xr_module=xr).connect()
    assert "instance" in xr.destroyed  # nothing leaks from the failed connect
    xr.extensions.discard(HAND_TRACKING)
    with pytest.raises(DeviceError, match="lacks XR_EXT_hand_tracking"):
        OpenXRController(mode="hand", clock=clock, xr_module=xr).connect()


# --- errors -----------------------------------------------------------------------------------------------------


def test_runtime_unavailable_gives_a_clear_message(xr: FakeXr, clock: Any) -> None:
    xr.runtime_available = False
    device = OpenXRController(clock=clock, xr_module=xr)
    with pytest.raises(DeviceError, match=r"no OpenXR runtime: start SteamVR, Monado .*--device") as info:
        device.connect()
    assert isinstance(info.value.__cause__, ERRORS["RuntimeUnavailableError"]) and not device.connected


def test_runtime_without_headless_or_headset(xr: FakeXr, clock: Any) -> None:
    xr.extensions.discard(MND_HEADLESS)
    with pytest.raises(DeviceError, match="lacks XR_MND_headless.*--device vive"):
        OpenXRController(clock=clock, xr_module=xr).connect()
    xr.extensions.add(MND_HEADLESS)
    xr.headset = False
    with pytest.raises(DeviceError, match="sees no headset"):
        OpenXRController(clock=clock, xr_module=xr).connect()


def test_bad_arguments_are_refused_before_any_runtime_call() -> None:
    with pytest.raises(UnknownNameError, match="choose one of left, right"):
        OpenXRController(hand="both")
    with pytest.raises(UnknownNameError, match="choose one of controller, hand"):
        OpenXRController(mode="eyes")


def test_missing_pyopenxr_names_the_vr_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xr", None)  # import xr -> ImportError
    device = OpenXRController()
    with pytest.raises(MissingDependencyError, match=r"'pyopenxr'.*pip install 'teleop\[vr\]'"):
        device.connect()


# --- the real pyopenxr ------------------------------------------------------------------------------------------


def _full_run(xr: FakeXr, clock: Any) -> None:
    """Every call the device makes, in both modes, for the API check."""
    xr.inputs = {"input/squeeze/value": 1.0, "input/trigger/value": 0.5, "input/thumbstick": (0.1, 0.2)}
    with OpenXRController(clock=clock, xr_module=xr) as device:
        device.read()
        xr.switch_profile("/interaction_profiles/htc/vive_controller")
        device.read()
        xr.push_state(SessionState.STOPPING)
        device.read()
    with OpenXRController(mode="hand", clock=clock, xr_module=xr) as device:
        device.read()


def test_standin_matches_the_real_pyopenxr_api(clock: Any) -> None:
    real = pytest.importorskip("xr")
    fake = FakeXr()
    _full_run(fake, clock)
    for name, count, keywords in fake.calls:
        signature = inspect.signature(getattr(real, name))
        signature.bind(*([None] * count), **dict.fromkeys(keywords))  # raises if the real one differs
    for name, kwargs in fake.struct_kwargs.items():
        parameters = inspect.signature(getattr(real, name).__init__).parameters if name != "timespec" else \
            {f[0] for f in real.timespec._fields_}
        assert set(kwargs) <= set(parameters), name
    for fake_enum in ENUMS:
        real_enum = getattr(real, fake_enum.__name__)
        for member in fake_enum:
            assert real_enum[member.name] == member.value, f"{fake_enum.__name__}.{member.name}"
    for name in [*ERRORS, "XrException", "EventUnavailable", "SessionNotFocused", "NULL_PATH",
                 "PFN_xrLocateHandJointsEXT", "EventDataSessionStateChanged", "MND_HEADLESS_EXTENSION_NAME",
                 "KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME", "EXT_HAND_TRACKING_EXTENSION_NAME"]:
        assert hasattr(real, name), name
    assert real.MND_HEADLESS_EXTENSION_NAME == MND_HEADLESS and real.EXT_HAND_TRACKING_EXTENSION_NAME == HAND_TRACKING
    assert real.KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME == TIMESPEC and real.NULL_PATH == 0
    assert issubclass(real.SessionNotFocused, real.XrException) and issubclass(real.EventUnavailable, real.XrException)
    assert real.exception.raise_on_qualified_success  # so XR_SESSION_NOT_FOCUSED does arrive as an exception


def test_hand_joints_raw_call_on_the_real_structs(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pytest.importorskip("xr")
    seen: list[int] = []

    def runtime_locate(tracker: Any, info: Any, locations: Any) -> int:
        joints = locations.contents
        seen.append(joints.joint_count)
        joints.is_active = 1
        for j in range(joints.joint_count):
            joint = joints.joint_locations[j]
            joint.location_flags = real.SpaceLocationFlags.POSITION_VALID_BIT | \
                real.SpaceLocationFlags.ORIENTATION_VALID_BIT
            joint.pose.position.x, joint.pose.position.y, joint.pose.position.z = 0.01 * j, 1.0, -0.5
            joint.pose.orientation.w = 1.0
        return 0

    callback = real.PFN_xrLocateHandJointsEXT(runtime_locate)
    monkeypatch.setattr(real, "get_instance_proc_addr",
                        lambda instance, name: ctypes.cast(callback, real.PFN_xrVoidFunction))
    info = real.HandJointsLocateInfoEXT(base_space=real.Space(), time=123)
    locations = locate_hand_joints(real, real.Instance(), real.HandTrackerEXT(), info)
    assert seen == [26] and locations.is_active
    poses, valid = joint_arrays(real, locations.joint_locations)
    assert valid.all()
    np.testing.assert_allclose(poses[:, 0], 0.01 * np.arange(26), atol=1e-6)
    np.testing.assert_allclose(poses[:, 3:], np.tile([1, 0, 0, 0], (26, 1)))
    keypoints = openxr_to_mediapipe(poses, valid)
    np.testing.assert_allclose(keypoints[:, 0], 0.01 * (np.array(MEDIAPIPE_FROM_XR) - 1), atol=1e-6)


def test_session_state_event_decodes_from_a_real_event_buffer() -> None:
    real = pytest.importorskip("xr")
    buffer = real.EventDataBuffer()
    event = ctypes.cast(ctypes.byref(buffer), ctypes.POINTER(real.EventDataSessionStateChanged)).contents
    event.type = real.StructureType.EVENT_DATA_SESSION_STATE_CHANGED
    event.state = real.SessionState.READY
    assert buffer.type == real.StructureType.EVENT_DATA_SESSION_STATE_CHANGED
    assert session_state(real, buffer) == real.SessionState.READY


def test_real_pose_struct_converts() -> None:
    real = pytest.importorskip("xr")
    x, y, z, w = quat_about("x", 0.3)
    pose = real.Posef(orientation=real.Quaternionf(x=x, y=y, z=z, w=w), position=real.Vector3f(x=1, y=2, z=3))
    T = pose_matrix(pose)
    np.testing.assert_allclose(T[:3, :3], Rotation.from_euler("x", 0.3).as_matrix(), atol=1e-6)
    np.testing.assert_allclose(T[:3, 3], [1, 2, 3])


def _active_runtime_configured() -> bool:
    config = [Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")), Path("/etc/xdg")]
    return "XR_RUNTIME_JSON" in os.environ or any((d / "openxr/1/active_runtime.json").exists() for d in config)


def test_real_pyopenxr_without_a_runtime_gives_a_clear_message(clock: Any) -> None:
    pytest.importorskip("xr")
    if _active_runtime_configured() or sys.platform != "linux":
        pytest.skip("an OpenXR runtime is configured here: this test needs a machine without one")
    with pytest.raises(DeviceError, match=r"no OpenXR runtime: start SteamVR, Monado"):
        OpenXRController(clock=clock).connect()


def test_rotation_norm_guard_rejects_a_zero_quaternion(xr: FakeXr, controller: OpenXRController) -> None:
    xr.grip = xr_pose((0, 0, 0), (0, 0, 0, 0))
    xr.inputs = {"input/squeeze/value": 1.0}
    sample = controller.read()
    assert sample.T_world_device is None and not sample.engaged and math.isfinite(sample.t)
