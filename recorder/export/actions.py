"""Action spaces of an exported dataset, computed from an episode's recorded arrays, and the [-1, 1] scaling
robomimic expects.

An episode's `action` row of step t is what was commanded at step t: joint targets (the columns named like
joints in `joint_names`) then, for arms, the gripper command (column "gripper", 0 open .. 1 closed). The
exported action of step t, (N, A') for N steps:

    "joint"  the recorded action row, unchanged: joint targets [rad] (or [m]) and the gripper command.
    "ee"     the end-effector pose observed at step t + 1, observation/ee_pose (position [m], quaternion wxyz,
             in the robot base frame), then the gripper command of step t: the pose the command led to. The
             last step, which has no next one, repeats its own pose. Only for robots with a gripper column (an
             arm); a hand's actions are finger joints.
    "delta"  the joint target minus the joint position measured at the same step [rad] (or [m]), per joint
             column; the gripper command stays absolute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recorder.export.errors import ExportError

ACTION_SPACES = {
    "joint": "joint targets as recorded, then the gripper command (0 open .. 1 closed)",
    "ee": "end-effector pose of the next step (position [m], quaternion wxyz, robot base frame), then the "
          "gripper command",
    "delta": "joint target minus the measured joint position of the same step, then the absolute gripper command",
}
GRIPPER = "gripper"
EE_NAMES = ("ee_x", "ee_y", "ee_z", "ee_qw", "ee_qx", "ee_qy", "ee_qz")


def has_gripper(action_names: Sequence[str]) -> bool:
    """Whether the last action column is a gripper command."""
    return bool(action_names) and action_names[-1] == GRIPPER


def action_names(space: str, recorded: Sequence[str]) -> tuple[str, ...]:
    """Names of the exported action columns."""
    gripper = (GRIPPER,) if has_gripper(recorded) else ()
    joints = tuple(recorded[:-1]) if gripper else tuple(recorded)
    if space == "joint":
        return tuple(recorded)
    if space == "ee":
        return EE_NAMES + gripper
    return tuple(f"delta_{name}" for name in joints) + gripper


def check_action_space(space: str, recorded: Sequence[str], joint_names: Sequence[str], robot: str) -> None:
    """Refuse an action space the episodes cannot give.

    Raises:
        ExportError: "ee" for a robot without a gripper column, or "delta" with an action column that is no
            recorded joint.
    """
    if space == "ee" and not has_gripper(recorded):
        raise ExportError(f"action space 'ee' needs an arm with a gripper, but the {robot} episodes command "
                          f"{len(recorded)} joints and no gripper: export with --action-space joint or delta")
    if space == "delta":
        joints = recorded[:-1] if has_gripper(recorded) else recorded
        missing = [name for name in joints if name not in joint_names]
        if missing:
            raise ExportError(f"action space 'delta' needs the measured position of every commanded joint, but "
                              f"{missing} are not among the recorded joints {list(joint_names)}: export with "
                              "--action-space joint")


def convert_actions(space: str, action: np.ndarray, joint_pos: np.ndarray, ee_pose: np.ndarray,
                    recorded: Sequence[str], joint_names: Sequence[str]) -> np.ndarray:
    """An episode's actions in `space`, (N, A') float64, from its recorded arrays.

    Args:
        action: Recorded actions, (N, A).
        joint_pos: Measured joint positions, (N, n), columns named by `joint_names`.
        ee_pose: Measured end-effector poses, (N, 7).
        recorded: Names of the action columns.
    """
    action = np.asarray(action, dtype=np.float64)
    if space == "joint":
        return action.copy()
    gripper = action[:, -1:] if has_gripper(recorded) else action[:, :0]
    if space == "ee":
        following = np.concatenate([ee_pose[1:], ee_pose[-1:]]) if len(ee_pose) else ee_pose
        return np.concatenate([np.asarray(following, np.float64), gripper], axis=1)
    if space == "delta":
        joints = list(recorded[:-1] if gripper.shape[1] else recorded)
        columns = [list(joint_names).index(name) for name in joints]
        targets = action[:, : len(joints)]
        return np.concatenate([targets - np.asarray(joint_pos, np.float64)[:, columns], gripper], axis=1)
    raise ValueError(f"unknown action space {space!r}")


@dataclass(frozen=True)
class ActionBounds:
    """Per-column minimum and maximum of the actions of a dataset, (A,) each; what maps them onto [-1, 1].

    normalised = 2 (a - low) / (high - low) - 1, per column, clipped to [-1, 1] against rounding; a column
    whose low equals its high (constant) maps to 0. The inverse: a = low + (normalised + 1) / 2 (high - low).
    """

    low: np.ndarray
    high: np.ndarray

    DESCRIPTION = ("per column: a_norm = 2 * (a - action_min) / (action_max - action_min) - 1, clipped to [-1, 1]; "
                   "action_min and action_max are the column's minimum and maximum over the exported episodes; "
                   "a constant column (action_max == action_min) is 0; inverse: "
                   "a = action_min + (a_norm + 1) / 2 * (action_max - action_min)")

    @classmethod
    def of(cls, actions: Sequence[np.ndarray]) -> ActionBounds:
        """The bounds of a list of (N_i, A) action arrays (at least one row in all)."""
        rows = [a for a in actions if len(a)]
        return cls(np.min([a.min(axis=0) for a in rows], axis=0), np.max([a.max(axis=0) for a in rows], axis=0))

    @property
    def _half_range(self) -> np.ndarray:
        return (self.high - self.low) / 2.0

    def normalise(self, action: np.ndarray) -> np.ndarray:
        """Actions (N, A) in [-1, 1]."""
        half = self._half_range
        varying = half > 0
        out = np.zeros(np.shape(action), dtype=np.float64)
        out[:, varying] = (action[:, varying] - self.low[varying]) / half[varying] - 1.0
        return np.clip(out, -1.0, 1.0)

    def denormalise(self, normalised: np.ndarray) -> np.ndarray:
        """The actions that `normalise` mapped to `normalised`, (N, A)."""
        return self.low + (np.asarray(normalised, np.float64) + 1.0) * self._half_range
