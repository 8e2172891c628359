"""The robot contract: what the session, the recorder, evaluation and the window need of a robot, simulated or real.

`PybulletSim` (teleop.sim) implements it for the simulator and `RealRobot` (teleop.hardware) for real robots,
each through its vendor's SDK (teleop.xarm). The recorded joints, `joint_names`, are the driven joints
(`spec.joints`) followed by the gripper's finger joints, the same names whether the robot is simulated or real,
so an episode's layout does not depend on which.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from kinematics.robots import RobotSpec
from recorder.step import CameraFrame, CameraInfo


class RobotStatus(NamedTuple):
    """Health of a robot now.

    Attributes:
        ok: It takes commands.
        message: What is wrong and what to do when not ok; what it is doing otherwise ("" for nothing special).
    """

    ok: bool
    message: str = ""


@runtime_checkable
class Robot(Protocol):
    """A robot the control loop drives.

    `command` sends joint targets, `step(dt)` lets `dt` seconds pass (the simulator integrates its physics; a
    real robot moves on its own, so it only checks for faults), `hold` stops motion where the robot is.
    `cameras` are the views the robot renders itself (the simulator's); a real robot has none: real cameras are
    recorded beside it.
    """

    spec: RobotSpec
    joint_names: tuple[str, ...]

    @property
    def cameras(self) -> Collection[str]: ...

    def camera_info(self, name: str) -> CameraInfo: ...

    def render(self, name: str) -> CameraFrame: ...

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions [rad] or [m] and velocities of `joint_names`."""
        ...

    def ee_pose(self) -> np.ndarray:
        """End-effector pose in the robot base frame, (4, 4)."""
        ...

    def command(self, q_target: np.ndarray, gripper: float | None = None) -> None:
        """Targets of the driven joints (n,) [rad], and the gripper 0 open .. 1 closed (None: leave it)."""
        ...

    def step(self, dt: float) -> None: ...

    def hold(self) -> None: ...

    def status(self) -> RobotStatus: ...

    def close(self) -> None: ...
