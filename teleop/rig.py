"""Putting a session together: simulator + task + controller + device, by name."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.base import Clock, Device
from devices.keyboard import KeyboardDevice
from devices.scripted import OperatorStyle, ScriptedArmOperator, ScriptedHandOperator
from kinematics.mapping import MappingConfig
from kinematics.robots import get_robot
from recorder.cameras import CameraSource
from teleop.controllers import ArmController, Controller, HandController, make_controller
from teleop.errors import TeleopError, UnknownNameError
from teleop.session import Session, SessionConfig
from teleop.sim import PybulletSim, SimConfig
from teleop.tasks import DEFAULT_TASK, Task, make_task


@dataclass(frozen=True)
class RigConfig:
    """Everything needed to build a session.

    Attributes:
        robot: "franka", "xarm7" or "allegro".
        task: Task name; None picks the robot's default task.
        device: Device backend name (see DEVICES).
        sim: Simulator settings.
        session: Loop settings.
        seed: Seed of the operator's randomness (episode seeds are passed to reset()).
    """

    robot: str = "franka"
    task: str | None = None
    device: str = "scripted"
    sim: SimConfig = field(default_factory=SimConfig)
    session: SessionConfig = field(default_factory=SessionConfig)
    seed: int = 0

    @property
    def task_name(self) -> str:
        return self.task or DEFAULT_TASK[get_robot(self.robot).name]


@dataclass
class Rig:
    config: RigConfig
    sim: PybulletSim
    task: Task
    controller: Controller
    device: Device
    session: Session

    def close(self) -> None:
        self.device.disconnect()
        self.sim.close()


def _scripted(task: Task, sim: PybulletSim, controller: Controller, seed: int, clock: Clock) -> Device:
    style = OperatorStyle(seed=seed)
    if isinstance(controller, ArmController) and isinstance(controller.mapping_config, MappingConfig):
        mapping = controller.mapping_config
        return ScriptedArmOperator(lambda: task.operator_view(sim),  # type: ignore[arg-type,return-value]
                                   mapping.R_base_device, mapping.pos_scale, style, clock)
    if isinstance(controller, HandController):
        return ScriptedHandOperator(lambda: task.operator_view(sim),  # type: ignore[arg-type,return-value]
                                    controller.retargeter.robot_to_human, style, clock)
    raise TeleopError(f"the scripted operator cannot drive a {type(controller).__name__}")


def _keyboard(task: Task, sim: PybulletSim, controller: Controller, seed: int, clock: Clock) -> Device:
    return KeyboardDevice(clock=clock)


DeviceFactory = Callable[[Task, PybulletSim, Controller, int, Clock], Device]
DEVICES: dict[str, DeviceFactory] = {"scripted": _scripted, "keyboard": _keyboard}


def build_rig(config: RigConfig, clock: Clock = time.monotonic, sleep: Callable[[float], None] | None = None,
              cameras: dict[str, CameraSource] | None = None) -> Rig:
    """Create the simulator with the task's scene, the controller, the device (not yet connected).

    `clock` and `sleep` drive the session and the device (inject a simulated clock to run faster than real time).
    `cameras` are real cameras recorded beside the simulator's (started by the caller).
    """
    spec = get_robot(config.robot)
    task = make_task(config.task_name)
    if task.robot != spec.name:
        valid = [name for name, robot in _task_robots().items() if robot == spec.name]
        raise UnknownNameError(f"task for robot {spec.name!r}", config.task_name, valid)
    if config.device not in DEVICES:
        raise UnknownNameError("device", config.device, list(DEVICES))
    sim = PybulletSim(spec, config.sim, base_pose=task.base_pose())
    task.build(sim)
    missing = set(config.sim.cameras or ()) - set(sim.cameras)
    if missing:
        sim.close()
        raise UnknownNameError(f"camera of task {task.name!r}", sorted(missing)[0], sim.offered_cameras)
    for camera in sim.cameras:  # the first render of a camera is slow (EGL set-up): not in an episode's tick
        sim.render(camera)
    controller = make_controller(spec, config.device)
    device = DEVICES[config.device](task, sim, controller, config.seed, clock)
    session = Session(sim, task, device, controller, config.session, clock=clock, sleep=sleep, cameras=cameras)
    return Rig(config, sim, task, controller, device, session)


def _task_robots() -> dict[str, str]:
    from teleop.tasks import TASKS

    return {name: cls.robot for name, cls in TASKS.items()}
