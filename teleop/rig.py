"""Putting a session together: simulator (or a real robot) + task + controller + device, by name."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devices.base import Clock, Device
from kinematics.calibration import load_calibration
from kinematics.robots import get_robot
from recorder.cameras import CameraSource
from teleop.backends import DeviceContext, get_backend, source_device
from teleop.controllers import Controller, make_controller
from teleop.errors import TeleopError, UnknownNameError
from teleop.hardware import connect_robot
from teleop.robot import Robot
from teleop.session import Session, SessionConfig
from teleop.sim import PybulletSim, SimConfig
from teleop.tasks import DEFAULT_TASK, Task, make_task, real_task


@dataclass(frozen=True)
class RigConfig:
    """Everything needed to build a session.

    Attributes:
        robot: "franka", "xarm7" or "allegro".
        task: Task name; None picks the robot's default task.
        device: Device backend name (see teleop.backends.BACKENDS).
        sim: Simulator settings.
        session: Loop settings.
        seed: Seed of the operator's randomness (episode seeds are passed to reset()).
        device_arg: The device backend's one option (see teleop.backends.DeviceContext), None for its default.
        calibration: File with R_base_device for a VR controller's pose mapping (made by `teleop calibrate`);
            None keeps the identity. Only for devices that give a pose, driving an arm.
        real: Address of the real robot to drive (an IP for an arm), None for the simulator; see
            teleop.hardware.connect_robot.
    """

    robot: str = "franka"
    task: str | None = None
    device: str = "scripted"
    sim: SimConfig = field(default_factory=SimConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    seed: int = 0
    device_arg: str | None = None
    calibration: Path | None = None
    real: str | None = None

    @property
    def task_name(self) -> str:
        return self.task or DEFAULT_TASK[get_robot(self.robot).name]


@dataclass
class Rig:
    config: RigConfig
    sim: Robot  # the simulator, or a real robot (RigConfig.real)
    task: Task
    controller: Controller
    device: Device
    session: Session

    def close(self) -> None:
        self.device.disconnect()
        self.sim.close()


def build_rig(config: RigConfig, clock: Clock = time.monotonic, sleep: Callable[[float], None] | None = None,
              cameras: dict[str, CameraSource] | None = None) -> Rig:
    """Create the simulator with the task's scene, the controller, the device (not yet connected).

    `clock` and `sleep` drive the session and the device (inject a simulated clock to run faster than real time).
    `cameras` are real cameras recorded beside the simulator's (started by the caller).

    Raises:
        TeleopError: unknown names, a device that cannot drive the robot, a missing or corrupt calibration file,
            or a calibration for a device that gives no pose.
    """
    spec = get_robot(config.robot)
    task = make_task(config.task_name)
    if task.robot != spec.name:
        valid = [name for name, robot in _task_robots().items() if robot == spec.name]
        raise UnknownNameError(f"task for robot {spec.name!r}", config.task_name, valid)
    backend = get_backend(config.device)
    calibration = None if config.calibration is None else load_calibration(config.calibration)
    controller = make_controller(spec, source_device(config.device, config.device_arg), calibration)
    if config.real is not None:
        return _real_rig(config, controller, clock, sleep, cameras)
    sim = PybulletSim(spec, config.sim, base_pose=task.base_pose())
    try:
        task.build(sim)
        missing = set(config.sim.cameras or ()) - set(sim.cameras)
        if missing:
            raise UnknownNameError(f"camera of task {task.name!r}", sorted(missing)[0], sim.offered_cameras)
        for camera in sim.cameras:  # the first render of a camera is slow (EGL set-up): not in an episode's tick
            sim.render(camera)
        device = backend.make(DeviceContext(task, sim, controller, config.seed, clock, config.device_arg))
        session = Session(sim, task, device, controller, config.session, clock=clock, sleep=sleep, cameras=cameras)
    except BaseException:
        sim.close()
        raise
    return Rig(config, sim, task, controller, device, session)


def _real_rig(config: RigConfig, controller: Controller, clock: Clock, sleep: Callable[[float], None] | None,
              cameras: dict[str, CameraSource] | None) -> Rig:
    """The rig of a real robot at `config.real`: connected (a RobotError if it does not answer), holding still."""
    if config.device == "scripted":
        raise TeleopError("the scripted operator needs the simulator's scene: drive a real robot with a person's "
                          "device (vive, openxr, gamepad, keyboard) or replay a trace of one")
    task = real_task(config.task_name)
    robot = connect_robot(config.robot, config.real or "")
    try:
        device = get_backend(config.device).make(DeviceContext(task, robot, controller, config.seed, clock,
                                                               config.device_arg))
        session = Session(robot, task, device, controller, config.session, clock=clock, sleep=sleep, cameras=cameras)
    except BaseException:
        robot.close()
        raise
    return Rig(config, robot, task, controller, device, session)


def _task_robots() -> dict[str, str]:
    from teleop.tasks import TASKS

    return {name: cls.robot for name, cls in TASKS.items()}
