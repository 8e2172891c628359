"""What a policy sees of the robot and predicts, and how its prediction becomes the robot's joint targets.

Two action spaces:

- "joint": the recorded action row (joint targets [rad], then the gripper command 0 open .. 1 closed) from
  the joint positions. It is what the episodes store, for every robot.
- "ee-delta" (arms, and an arm with a hand): the end-effector motion the operator commanded. The training
  target of step t is the pose that the recorded joint targets of step t + horizon put the end effector at
  (forward kinematics; an arm with a hand: the arm's flange), relative to the end-effector pose measured at
  step t: position change [m] and rotation vector [rad], both in the robot base frame, then the rest of the
  action row of step t (the gripper command, or the hand's joint targets). The policy sees the end-effector
  pose (position, quaternion wxyz with w >= 0) and the remaining joints (a gripper's fingers, the hand's). At
  run time the predicted pose is the target of every step (a receding horizon: the next step predicts it again),
  turned into joint targets by the same differential IK as a teleoperation device (kinematics.arm_ik, from the
  previous command, within the joint position and speed limits), as a device's target pose is.

With `chunk` C > 1 (ACT's action chunks, Zhao et al. 2023) the policy predicts the targets of steps t + horizon
.. t + horizon + C - 1, each relative to the pose at step t, and at run time the target of a step is the
weighted mean (ACT's temporal ensembling: weights exp(-0.01 i), i = 0 for the oldest) of every prediction made
for that step in the last C steps, turned into world poses when they were made: positions averaged, rotations
by their weighted mean. In the joint space a chunk is the recorded action rows of steps t .. t + C - 1, and a
step's action is the same weighted mean of the rows predicted for it (as ACT, whose chunks are joint targets).

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
DEFAULT_CHUNK = 10  # targets per prediction, in both spaces (RESULTS.md: 1, 5 and 10 compared; hands 57 -> 100 %)


def default_action_space(robot: str) -> str:
    """ "ee-delta" for an arm of kinematics.robots (with a gripper or a hand), "joint" for a hand or a robot
    without a kinematic model."""
    from kinematics.robots import ROBOTS

    spec = ROBOTS.get(robot)
    return "ee-delta" if spec is not None and (spec.has_gripper or spec.mount is not None) else "joint"


@dataclass
class ActionSpace:
    """One robot's action space (see the module docstring); build with make_action_space.

    Attributes:
        name: "joint" or "ee-delta".
        horizon: Steps ahead of an ee-delta target (1 for "joint").
        arm_joints: Joints the IK moves (the first ones of joint_pos); 0 for "joint".
        chunk: Targets predicted per step (1: none; see the module docstring).
        target: The end-effector pose (4, 4) in the base frame that the last `decode` aimed the IK at.
    """

    name: str
    horizon: int = 1
    arm_joints: int = 0
    chunk: int = 1
    target: np.ndarray | None = field(default=None, repr=False)
    _model: RobotModel | None = field(default=None, repr=False)
    _ik: ArmIK | None = field(default=None, repr=False)
    _command: np.ndarray | None = field(default=None, repr=False)
    _made: list[tuple[int, np.ndarray, Rotation]] = field(default_factory=list, repr=False)  # (step, pos, rot)
    _rows: list[tuple[int, np.ndarray]] = field(default_factory=list, repr=False)  # joint: (step, rows (C, A))
    _step: int = field(default=0, repr=False)

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
        n = len(action)
        if self.name == "joint":  # the rows of steps t .. t + chunk - 1, the last one repeated past the end
            ahead = np.minimum(np.arange(n)[:, None] + np.arange(self.chunk)[None, :], n - 1)
            return action[ahead].reshape(n, -1).astype(np.float32)
        rows = []
        for t in range(n):
            now = self._fk(np.asarray(joint_pos[t], dtype=np.float64))
            ahead = [self._fk(action[min(t + self.horizon + c, n - 1), : self.arm_joints]) for c in range(self.chunk)]
            rows.append(np.concatenate([*(_relative(now, T) for T in ahead), action[t, self.arm_joints :]]))
        return np.asarray(rows, dtype=np.float32)

    # ------------------------------------------------------------------------------------------ run time
    def reset(self, joint_pos: np.ndarray) -> None:
        """Start an episode from the measured joint positions (the first IK seed)."""
        self._command = np.asarray(joint_pos, dtype=np.float64)[: self.arm_joints].copy()
        self._made, self._rows, self._step = [], [], 0

    def decode(self, prediction: np.ndarray, joint_pos: np.ndarray, dt: float) -> np.ndarray:
        """The action (joint targets, then the gripper command) for a prediction in this space, at measured
        joint positions (n,), for a control period dt [s]."""
        prediction = np.asarray(prediction, dtype=np.float64)
        if self.name == "joint":
            if self.chunk == 1:
                return prediction
            self._rows.append((self._step, prediction.reshape(self.chunk, -1)))
            self._rows = [r for r in self._rows if self._step - r[0] < self.chunk]  # those with a row for this step
            weights = _ensemble_weights(len(self._rows))
            action = weights @ np.stack([rows[self._step - made] for made, rows in self._rows])
            self._step += 1
            return action
        q = np.asarray(joint_pos, dtype=np.float64)
        command = self._command if self._command is not None else q[: self.arm_joints]  # no reset: start here
        T = self._fk(q)
        deltas = prediction[: 6 * self.chunk].reshape(self.chunk, 6)
        now = Rotation.from_matrix(T[:3, :3])
        self._made.append((self._step, T[:3, 3] + deltas[:, :3], Rotation.from_rotvec(deltas[:, 3:]) * now))
        self._made = [m for m in self._made if self._step - m[0] < self.chunk]  # those with a target for this step
        target = np.eye(4)
        target[:3, 3], target[:3, :3] = self._ensembled()
        self._step += 1
        self.target = target
        assert self._ik is not None  # built by make_action_space for ee-delta
        self._command = self._ik.solve(command, target, dt).q
        return np.concatenate([self._command, prediction[6 * self.chunk :]])

    def _ensembled(self) -> tuple[np.ndarray, np.ndarray]:
        """This step's target position and rotation matrix: ACT's weighted mean over the predictions for it."""
        ages = [self._step - made for made, _, _ in self._made]  # index into each prediction's chunk
        weights = _ensemble_weights(len(ages))
        positions = np.stack([pos[a] for (_, pos, _), a in zip(self._made, ages, strict=True)])
        rotations = Rotation.concatenate([rot[a] for (_, _, rot), a in zip(self._made, ages, strict=True)])
        return weights @ positions, rotations.mean(weights).as_matrix()

    def _fk(self, q: np.ndarray) -> np.ndarray:
        assert self._model is not None  # built by make_action_space for ee-delta
        return self._model.fk(np.asarray(q, dtype=np.float64)[: self.arm_joints])


def make_action_space(name: str, robot: str, horizon: int = DEFAULT_HORIZON, chunk: int = 1) -> ActionSpace:
    """The action space `name` of `robot`.

    Raises:
        UnknownNameError: No such space.
        TeleopError: "ee-delta" for a robot without an end effector to move (a hand), horizon or chunk < 1.
    """
    if name not in ACTION_SPACES:
        raise UnknownNameError("action space", name, list(ACTION_SPACES))
    if chunk < 1:
        raise TeleopError(f"a chunk must hold at least 1 target, got {chunk}")
    if name == "joint":
        return ActionSpace("joint", chunk=chunk)
    if horizon < 1:
        raise TeleopError(f"the ee-delta horizon must be at least 1 step, got {horizon}")
    from kinematics.arm_ik import ArmIKConfig
    from kinematics.robot_model import RobotModel
    from kinematics.robots import arm_of, get_robot

    spec = get_robot(robot)
    if spec.mount is not None:  # an arm with a hand: the arm's flange moves, the hand's joints follow the rows
        spec = arm_of(spec)
    elif not spec.has_gripper:
        raise TeleopError(f"{robot} has no end effector to move: train it in the joint action space")
    model = RobotModel(spec)
    return ActionSpace("ee-delta", horizon, model.n, chunk, _model=model, _ik=ArmIKConfig().build(model))


def _ensemble_weights(count: int) -> np.ndarray:
    """ACT's temporal-ensembling weights of `count` predictions for one step, the oldest first: exp(-0.01 i),
    normalised."""
    weights = np.exp(-0.01 * np.arange(count))
    return weights / weights.sum()


def _pose7(T: np.ndarray) -> np.ndarray:
    """(4, 4) pose -> position, quaternion wxyz with w >= 0."""
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    quat = np.array([w, x, y, z])
    return np.concatenate([T[:3, 3], quat if w >= 0 else -quat])


def _relative(T_now: np.ndarray, T_ahead: np.ndarray) -> np.ndarray:
    """Position change and rotation vector (base frame) from T_now to T_ahead, (6,)."""
    rotation = Rotation.from_matrix(T_ahead[:3, :3] @ T_now[:3, :3].T).as_rotvec()
    return np.concatenate([T_ahead[:3, 3] - T_now[:3, 3], rotation])
