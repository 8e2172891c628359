"""What a policy sees of the robot and predicts, and how its prediction becomes the robot's joint targets.

Two action spaces:

- "joint": the recorded action row (joint targets [rad], then the gripper command 0 open .. 1 closed) from
  the joint positions. It is what the episodes store, for every robot.
- "ee-delta" (arms): the end-effector motion the operator commanded. The training target of step t is the
  pose that the recorded joint targets of step t + horizon put the end effector at (forward kinematics),
  relative to the end-effector pose measured at step t: position change [m] and rotation vector [rad], both
  in the robot base frame, then the gripper command of step t. The policy sees the end-effector pose
  (position, quaternion wxyz with w >= 0) and the remaining joints (a gripper's fingers). At run time the
  predicted pose is the target of every step (a receding horizon: the next step predicts it again), turned
  into joint targets by the same differential IK as a teleoperation device (kinematics.arm_ik, from the
  previous command, within the joint position and speed limits), as a device's target pose is.

Learning the end-effector motion instead of joint targets spares the policy the arm's inverse kinematics, and
a target some steps ahead is larger than one step's noise and keeps the arm moving up to the goal instead of
stalling short of it (RESULTS.md: with the target's position given to the policy, so that only the action side
is measured).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.transform import Rotation

from teleop.errors import TeleopError, UnknownNameError

if TYPE_CHECKING:
    from kinematics.arm_ik import ArmIK
    from kinematics.robot_model import RobotModel

ACTION_SPACES = ("joint", "ee-delta")
DEFAULT_HORIZON = 6  # steps ahead of an ee-delta target (RESULTS.md: 3, 6 and 10 compared)


def default_action_space(robot: str) -> str:
    """ "ee-delta" for an arm of kinematics.robots, "joint" for a hand or a robot without a kinematic model."""
    from kinematics.robots import ROBOTS

    spec = ROBOTS.get(robot)
    return "ee-delta" if spec is not None and spec.has_gripper else "joint"


@dataclass
class ActionSpace:
    """One robot's action space (see the module docstring); build with make_action_space.

    Attributes:
        name: "joint" or "ee-delta".
        horizon: Steps ahead of an ee-delta target (1 for "joint").
        arm_joints: Joints the IK moves (the first ones of joint_pos); 0 for "joint".
    """

    name: str
    horizon: int = 1
    arm_joints: int = 0
    _model: RobotModel | None = field(default=None, repr=False)
    _ik: ArmIK | None = field(default=None, repr=False)
    _command: np.ndarray | None = field(default=None, repr=False)

    # ------------------------------------------------------------------------------------------ training
    def proprio(self, joint_pos: np.ndarray) -> np.ndarray:
        """What the policy sees of the robot, (N, P) float32, from joint positions (N, n)."""
        joint_pos = np.asarray(joint_pos, dtype=np.float64)
        if self.name == "joint":
            return joint_pos.astype(np.float32)
        poses = np.stack([_pose7(self._fk(q)) for q in joint_pos])
        return np.concatenate([poses, joint_pos[:, self.arm_joints :]], axis=1).astype(np.float32)

    def targets(self, joint_pos: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Training targets (N, D) float32 of one episode's steps from its joint positions (N, n) and
        recorded actions (N, A)."""
        action = np.asarray(action, dtype=np.float64)
        if self.name == "joint":
            return action.astype(np.float32)
        n = len(action)
        rows = []
        for t in range(n):
            now = self._fk(np.asarray(joint_pos[t], dtype=np.float64))
            ahead = self._fk(action[min(t + self.horizon, n - 1), : self.arm_joints])
            rows.append(np.concatenate([_relative(now, ahead), action[t, self.arm_joints :]]))
        return np.asarray(rows, dtype=np.float32)

    # ------------------------------------------------------------------------------------------ run time
    def reset(self, joint_pos: np.ndarray) -> None:
        """Start an episode from the measured joint positions (the first IK seed)."""
        self._command = np.asarray(joint_pos, dtype=np.float64)[: self.arm_joints].copy()

    def decode(self, prediction: np.ndarray, joint_pos: np.ndarray, dt: float) -> np.ndarray:
        """The action (joint targets, then the gripper command) for a prediction in this space, at measured
        joint positions (n,), for a control period dt [s]."""
        prediction = np.asarray(prediction, dtype=np.float64)
        if self.name == "joint":
            return prediction
        q = np.asarray(joint_pos, dtype=np.float64)
        command = self._command if self._command is not None else q[: self.arm_joints]  # no reset: start here
        T = self._fk(q)
        target = np.eye(4)
        target[:3, 3] = T[:3, 3] + prediction[:3]
        target[:3, :3] = Rotation.from_rotvec(prediction[3:6]).as_matrix() @ T[:3, :3]
        assert self._ik is not None  # built by make_action_space for ee-delta
        self._command = self._ik.solve(command, target, dt).q
        return np.concatenate([self._command, prediction[6:]])

    def _fk(self, q: np.ndarray) -> np.ndarray:
        assert self._model is not None  # built by make_action_space for ee-delta
        return self._model.fk(np.asarray(q, dtype=np.float64)[: self.arm_joints])


def make_action_space(name: str, robot: str, horizon: int = DEFAULT_HORIZON) -> ActionSpace:
    """The action space `name` of `robot`.

    Raises:
        UnknownNameError: No such space.
        TeleopError: "ee-delta" for a robot without an end effector to move (a hand), or horizon < 1.
    """
    if name not in ACTION_SPACES:
        raise UnknownNameError("action space", name, list(ACTION_SPACES))
    if name == "joint":
        return ActionSpace("joint")
    if horizon < 1:
        raise TeleopError(f"the ee-delta horizon must be at least 1 step, got {horizon}")
    from kinematics.arm_ik import ArmIKConfig
    from kinematics.robot_model import RobotModel
    from kinematics.robots import get_robot

    spec = get_robot(robot)
    if not spec.has_gripper:
        raise TeleopError(f"{robot} has no end effector to move: train it in the joint action space")
    model = RobotModel(spec)
    return ActionSpace("ee-delta", horizon, model.n, model, ArmIKConfig().build(model))


def _pose7(T: np.ndarray) -> np.ndarray:
    """(4, 4) pose -> position, quaternion wxyz with w >= 0."""
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    quat = np.array([w, x, y, z])
    return np.concatenate([T[:3, 3], quat if w >= 0 else -quat])


def _relative(T_now: np.ndarray, T_ahead: np.ndarray) -> np.ndarray:
    """Position change and rotation vector (base frame) from T_now to T_ahead, (6,)."""
    rotation = Rotation.from_matrix(T_ahead[:3, :3] @ T_now[:3, :3].T).as_rotvec()
    return np.concatenate([T_ahead[:3, 3] - T_now[:3, 3], rotation])
