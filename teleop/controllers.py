"""From a device sample to a robot command: the mapping + IK for arms, retargeting for hands.

Whatever goes wrong with the input (NaN, a lost hand, a released deadman), the controller answers with the
last safe command, so the robot holds still; `rejected` counts the samples it refused.
"""

from __future__ import annotations

import abc

import numpy as np

from devices.base import DeviceSample
from kinematics.arm_ik import ArmIKConfig
from kinematics.hand_retarget import HandRetargetConfig
from kinematics.mapping import MappingConfig
from kinematics.robot_model import RobotModel, load_model
from kinematics.robots import RobotSpec
from teleop.errors import UnsafeInputError


class Controller(abc.ABC):
    """Maps device samples to actions: joint targets [rad] (+ gripper 0 open .. 1 closed for arms)."""

    def __init__(self, spec: RobotSpec) -> None:
        self.spec = spec
        self.model: RobotModel = load_model(spec)
        self.action = np.zeros(spec.action_dim)
        self.rejected = 0
        self.last_error = ""

    def reset(self, q: np.ndarray, T_base_ee: np.ndarray) -> None:
        """Start an episode from measured joints `q` (n,) and end-effector pose (4, 4): hold them."""
        self.action = np.concatenate([q[: len(self.spec.joints)], [0.0] if self.spec.has_gripper else []])

    def act(self, sample: DeviceSample, q: np.ndarray, T_base_ee: np.ndarray, dt: float) -> np.ndarray:
        """The action for this tick; on unsafe input, the last safe action (the robot holds still)."""
        try:
            action = self._act(sample, q, T_base_ee, dt)
        except UnsafeInputError as exc:
            self.rejected += 1
            self.last_error = str(exc)
            return self.action.copy()
        self.action = action
        return action.copy()

    @abc.abstractmethod
    def _act(self, sample: DeviceSample, q: np.ndarray, T_base_ee: np.ndarray, dt: float) -> np.ndarray: ...


class ArmController(Controller):
    """Device pose -> (clutch, scaling, workspace) -> end-effector target -> differential IK."""

    def __init__(self, spec: RobotSpec, mapping: MappingConfig | None = None,
                 ik: ArmIKConfig | None = None) -> None:
        super().__init__(spec)
        self.mapping_config = mapping or MappingConfig()
        self.mapping = self.mapping_config.build()
        self.ik = (ik or ArmIKConfig()).build(self.model)

    def reset(self, q: np.ndarray, T_base_ee: np.ndarray) -> None:
        super().reset(q, T_base_ee)
        self.mapping.reset(T_base_ee)

    def _act(self, sample: DeviceSample, q: np.ndarray, T_base_ee: np.ndarray, dt: float) -> np.ndarray:
        T_base_target = self.mapping.update(sample, T_base_ee)
        if not sample.engaged:  # clutch released: the whole arm holds, not only the end effector
            return self.action.copy()
        q_seed = self.action[: len(self.spec.joints)]  # the last command: smooth, and within limits
        target = self.ik.solve(q_seed, T_base_target, dt)
        gripper = float(np.clip(sample.gripper, 0.0, 1.0)) if np.isfinite(sample.gripper) else self.action[-1]
        return np.append(target.q, gripper)


class HandController(Controller):
    """21 hand keypoints -> Allegro joint targets by retargeting."""

    def __init__(self, spec: RobotSpec, retarget: HandRetargetConfig | None = None) -> None:
        super().__init__(spec)
        self.retargeter = (retarget or HandRetargetConfig()).build(self.model)

    def reset(self, q: np.ndarray, T_base_ee: np.ndarray) -> None:
        super().reset(q, T_base_ee)
        self.retargeter.reset()

    def _act(self, sample: DeviceSample, q: np.ndarray, T_base_ee: np.ndarray, dt: float) -> np.ndarray:
        if not sample.engaged:  # tracking paused or deadman released: hold
            return self.action.copy()
        if sample.keypoints is None:
            raise UnsafeInputError("no tracked hand in the sample: holding the hand still")
        return self.retargeter.retarget(sample.keypoints)


def make_controller(spec: RobotSpec) -> Controller:
    return ArmController(spec) if spec.kind == "arm" else HandController(spec)
