"""What the session hands the recorder each control tick, and what an episode says about itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CameraFrame:
    """One camera image with the monotonic time it was captured [s].

    `seq` counts the frames the source produced (0, 1, ...), so a recorder can tell a dropped frame (a gap)
    from a duplicated one (the same seq on two steps); -1 when the source does not count.
    """

    rgb: np.ndarray  # (H, W, 3) uint8
    t: float
    seq: int = -1


@dataclass(frozen=True)
class CameraInfo:
    """Camera intrinsics and extrinsics, stored as episode attributes.

    Attributes:
        width, height: Image size [px].
        K: Pinhole intrinsics, (3, 3), in pixels.
        T_world_camera: Camera pose in the world frame, (4, 4), OpenCV convention (z forward, y down);
            for a camera that moves (wrist), the pose at the start of the episode.
        mount: Link the camera is fixed to ("world" for a static camera).
    """

    width: int
    height: int
    K: np.ndarray
    T_world_camera: np.ndarray
    mount: str = "world"


@dataclass(frozen=True)
class Step:
    """One control tick.

    Attributes:
        t: Monotonic time of the tick [s].
        joint_pos: Measured positions of every recorded joint (arm joints then gripper fingers), (n,),
            [rad] or [m].
        joint_vel: Measured velocities, (n,), [rad/s] or [m/s].
        ee_pose: End-effector pose in the robot base frame, (7,): position [m] then quaternion wxyz.
        action: Command sent this tick, (A,): joint targets [rad], then gripper 0 open .. 1 closed (arms).
        device: The raw device sample as fixed-shape arrays (DeviceSample.to_record()).
        frames: Camera name -> frame captured this tick.
        extras: Other per-step arrays of fixed shape (e.g. "object_pose" (7,)).
    """

    t: float
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    ee_pose: np.ndarray
    action: np.ndarray
    device: dict[str, np.ndarray] = field(default_factory=dict)
    frames: dict[str, CameraFrame] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeMeta:
    """Episode attributes known when recording starts. Success and counters are added when it ends.

    Attributes:
        robot, task: Names as on the command line.
        instruction: Natural-language instruction of the task.
        control_rate_hz: Nominal control rate [Hz].
        operator_device: Name of the device backend that drove the episode.
        joint_names: Names of the columns of joint_pos / joint_vel.
        action_names: Names of the columns of action.
        cameras: Camera name -> CameraInfo.
        start_time: Wall-clock start, seconds since the Unix epoch (for humans; steps use monotonic time).
        seed: Seed of the task's randomised initial conditions, None if not seeded.
        initial_state: JSON-serialisable state the simulator can be reset to (for replay).
    """

    robot: str
    task: str
    instruction: str
    control_rate_hz: float
    operator_device: str
    joint_names: tuple[str, ...]
    action_names: tuple[str, ...]
    cameras: dict[str, CameraInfo]
    start_time: float
    seed: int | None = None
    initial_state: dict[str, Any] = field(default_factory=dict)
