"""Every device backend by name: how to build it for a session, what it commands, and whether it is here.

A backend commands a robot in one of three ways: a 6-DoF pose (VR controllers: pose mapping + IK), axes
(gamepad, keyboard: velocity mapping + IK) or hand keypoints (hand trackers: retargeting). `scripted` and
`replay` command whatever their source does.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from devices.base import Clock, Device
from devices.trace import ReplayDevice, read_trace
from teleop.errors import TeleopError, UnknownNameError
from teleop.quiet import native_output_silenced

if TYPE_CHECKING:
    from teleop.controllers import Controller
    from teleop.robot import Robot
    from teleop.tasks import Task

POSE, RATE, HAND, ANY = "pose", "rate", "hand", "any"


@dataclass(frozen=True)
class DeviceContext:
    """What a backend may need to build its device: the scene it will drive and the user's argument.

    Attributes:
        arg: The backend's one option from the command line (--device-arg): a trace path for replay, a camera
            index or video file for webcam-hands, "left"/"right" (or a serial) for VR controllers, a pad
            index for gamepad; None for the default.
    """

    task: Task
    sim: Robot
    controller: Controller
    seed: int
    clock: Clock
    arg: str | None = None


@dataclass(frozen=True)
class Probe:
    """Whether a backend's SDK is installed and a device is found now, and why not."""

    installed: bool
    found: bool
    reason: str = ""


@dataclass(frozen=True)
class DeviceBackend:
    """One backend: `make` builds the device (unconnected); `commands` is POSE, RATE, HAND or ANY; `option` says
    what its one option (DeviceContext.arg) is, None for a backend without one."""

    make: Callable[[DeviceContext], Device]
    commands: str
    description: str
    sdk: str | None = None
    extra: str | None = None
    probe_device: Callable[[], Device] | None = None
    option: str | None = None


def _scripted(ctx: DeviceContext) -> Device:
    from devices.scripted import OperatorStyle, ScriptedArmHandOperator, ScriptedArmOperator, ScriptedHandOperator
    from kinematics.mapping import MappingConfig
    from teleop.controllers import ArmController, ArmHandController, HandController

    style = OperatorStyle(seed=ctx.seed)
    task, sim, controller = ctx.task, ctx.sim, ctx.controller
    if isinstance(controller, ArmController) and isinstance(controller.mapping_config, MappingConfig):
        mapping = controller.mapping_config
        return ScriptedArmOperator(lambda: task.operator_view(sim),  # type: ignore[arg-type,return-value]
                                   np.asarray(mapping.R_base_device), mapping.pos_scale, style, ctx.clock)
    if isinstance(controller, ArmHandController):
        r = controller.retargeter
        return ScriptedArmHandOperator(lambda: task.operator_view(sim),  # type: ignore[arg-type,return-value]
                                       np.asarray(r.mapping.config.R_base_device), r.mapping.config.pos_scale,
                                       r.retargeter.robot_to_human, style, ctx.clock)
    if isinstance(controller, HandController):
        return ScriptedHandOperator(lambda: task.operator_view(sim),  # type: ignore[arg-type,return-value]
                                    controller.retargeter.robot_to_human, style, ctx.clock)
    raise TeleopError(f"the scripted operator cannot drive a {type(controller).__name__}")


def _keyboard(ctx: DeviceContext) -> Device:
    from devices.keyboard import KeyboardDevice

    return KeyboardDevice(clock=ctx.clock)


def _vive(ctx: DeviceContext) -> Device:
    from devices.vive import ViveController

    arg = ctx.arg or "right"
    if arg in ("left", "right"):
        return ViveController(role=arg, clock=ctx.clock)
    return ViveController(serial=arg, clock=ctx.clock)


def _openxr(mode: str) -> Callable[[DeviceContext], Device]:
    def make(ctx: DeviceContext) -> Device:
        from devices.openxr import OpenXRController

        return OpenXRController(hand=ctx.arg or "right", mode=mode, clock=ctx.clock)

    return make


def _gamepad(ctx: DeviceContext) -> Device:
    from devices.gamepad import Gamepad

    return Gamepad(index=int(ctx.arg or 0), clock=ctx.clock)


def _webcam_hands(ctx: DeviceContext) -> Device:
    from devices.webcam_hands import WebcamHands

    arg = ctx.arg
    source: int | str = 0 if arg is None else int(arg) if arg.isdigit() else arg
    return WebcamHands(source=source, clock=ctx.clock)


def _replay(ctx: DeviceContext) -> Device:
    if not ctx.arg:
        raise TeleopError("the replay device needs a trace file as its option (the device option in the app, "
                          "--device-arg TRACE.jsonl on the command line)")
    return ReplayDevice(ctx.arg, clock=ctx.clock)


BACKENDS: dict[str, DeviceBackend] = {
    "scripted": DeviceBackend(_scripted, ANY, "a simulated person (demos, tests)"),
    "keyboard": DeviceBackend(_keyboard, RATE, "keyboard: end-effector velocity, keys 1-5 curl fingers"),
    "vive": DeviceBackend(_vive, POSE, "HTC Vive controller through SteamVR (openvr)", "openvr", "vr",
                          lambda: _vive(_probe_context()), option="left, right (default) or a serial"),
    "openxr": DeviceBackend(_openxr("controller"), POSE, "any OpenXR controller (pyopenxr)", "xr", "vr",
                            lambda: _openxr("controller")(_probe_context()), option="left or right (default)"),
    "openxr-hands": DeviceBackend(_openxr("hand"), HAND, "OpenXR hand tracking, e.g. Quest 2 (pyopenxr)", "xr",
                                  "vr", lambda: _openxr("hand")(_probe_context()), option="left or right (default)"),
    "gamepad": DeviceBackend(_gamepad, RATE, "PlayStation DualShock 4 / DualSense or another pad (inputs)",
                             "inputs", "gamepad", lambda: _gamepad(_probe_context()), option="pad index (default 0)"),
    "webcam-hands": DeviceBackend(_webcam_hands, HAND, "a webcam watching your hand (MediaPipe)", "mediapipe",
                                  "hands", lambda: _webcam_hands(_probe_context()),
                                  option="camera index (default 0) or a video file"),
    "replay": DeviceBackend(_replay, ANY, "replay a recorded device trace (--device-arg TRACE)",
                            option="trace file (.jsonl)"),
}


def get_backend(name: str) -> DeviceBackend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise UnknownNameError("device", name, list(BACKENDS)) from None


def source_device(name: str, arg: str | None) -> str:
    """The backend whose samples the named device delivers: for a replayed trace, the one that recorded it."""
    get_backend(name)
    if name == "replay" and arg:
        return read_trace(Path(arg)).device
    return name


def probe(name: str) -> Probe:
    """Is the backend's SDK installed, and does a device answer now? Connects and disconnects once."""
    backend = get_backend(name)
    if backend.sdk is not None and importlib.util.find_spec(backend.sdk) is None:
        return Probe(False, False, f"not installed: pip install 'teleop[{backend.extra}]'")
    if backend.probe_device is None:
        return Probe(True, True, "always available" if name != "replay" else "needs a trace file")
    try:
        device = backend.probe_device()
        with native_output_silenced():  # SDK loaders print their own diagnostics; ours is the reason below
            device.connect()
            device.disconnect()
    except (TeleopError, OSError) as exc:
        return Probe(True, False, str(exc))
    return Probe(True, True)


def _probe_context() -> DeviceContext:
    import time

    return DeviceContext(task=None, sim=None, controller=None, seed=0, clock=time.monotonic)  # type: ignore[arg-type]
