"""From a device sample to a robot command: the mapping + IK for arms, retargeting for hands.

Whatever goes wrong with the input (NaN, a lost hand, a released deadman), the controller answers with the
last safe command, so the robot holds still; `rejected` counts the samples it refused.

Every joint target passes through one JointSafety (position limits, velocity limits, finiteness) before it
leaves the controller, whatever the IK or the retargeter returned; the gripper command is clamped to [0, 1]
and a command that is not a finite number holds the previous one.
"""

from __future__ import annotations

import abc

import numpy as np

from devices.base import DeviceSample
from kinematics.arm_hand import ArmHandConfig
from kinematics.arm_ik import ArmIKConfig
from kinematics.calibration import Calibration
from kinematics.hand_retarget import HandRetargetConfig
from kinematics.mapping import MappingConfig
from kinematics.robot_model import RobotModel, load_model
from kinematics.robots import RobotSpec, arm_of
from kinematics.safety import JointSafetyConfig, as_finite_array, safe_gripper, validate_period
from kinematics.velocity_mapping import VelocityMapping, VelocityMappingConfig
from teleop.errors import TeleopError, UnsafeInputError


class Controller(abc.ABC):
    """Maps device samples to actions: joint targets [rad] (+ gripper 0 open .. 1 closed for arms)."""

    def __init__(self, spec: RobotSpec, safety: JointSafetyConfig | None = None) -> None:
        self.spec = spec
        self.model: RobotModel = load_model(spec)
        self.safety = (safety or JointSafetyConfig()).build(self.model)
        self.n = len(spec.joints)
        self.action = np.concatenate([self.safety.last_safe, [0.0] if spec.has_gripper else []])
        self.rejected = 0
        self.last_error = ""

    def reset(self, q: np.ndarray, T_base_ee: np.ndarray) -> None:
        """Start an episode from measured joints `q` (n,) and end-effector pose (4, 4): hold them.

        Raises:
            UnsafeInputError: q has fewer than n finite values.
        """
        self.safety.reset(np.asarray(q, dtype=float)[: self.n])
        self.action = np.concatenate([self.safety.last_safe, [0.0] if self.spec.has_gripper else []])

    def act(self, sample: DeviceSample, q: np.ndarray, T_base_ee: np.ndarray, dt: float) -> np.ndarray:
        """The action for this tick; on unsafe input, the last safe action (the robot holds still).

        Args:
            sample: The device sample of this tick.
            q: Measured joint positions (at least n) [rad].
            T_base_ee: Measured end-effector pose (4, 4) in the base frame.
            dt: Control period [s].
        Returns:
            Joint targets (n,) [rad] within the position and velocity limits, then (arms) the gripper
            command in [0, 1].
        """
        try:
            raw = self._act(sample, q, T_base_ee, validate_period(dt))
        except UnsafeInputError as exc:
            return self.refuse(str(exc))
        return self.limit(raw, dt)

    def limit(self, raw: np.ndarray, dt: float) -> np.ndarray:
        """Raw joint targets (n,) [rad], then (arms) the gripper command, from any source (the IK, a
        retargeter, a policy) through the same limits: the action within the position and velocity limits,
        or, on unsafe input (non-finite, wrong length), the last safe action."""
        try:
            dt = validate_period(dt)
            raw = np.asarray(raw, dtype=float)
            if raw.shape != self.action.shape:
                raise UnsafeInputError(f"an action has {raw.shape[0] if raw.ndim == 1 else raw.shape} values, "
                                       f"the robot takes {len(self.action)}")
            q_target = self.safety.check(raw[: self.n], dt)
        except UnsafeInputError as exc:
            return self.refuse(str(exc))
        action = q_target
        if self.spec.has_gripper:
            action = np.append(q_target, safe_gripper(raw[self.n], float(self.action[self.n])))
        self.action = action
        return action.copy()

    def refuse(self, why: str) -> np.ndarray:
        """Count a refused input and answer with the last safe action (the robot holds still)."""
        self.rejected += 1
        self.last_error = why
        return self.action.copy()

    @abc.abstractmethod
    def _act(self, sample: DeviceSample, q: np.ndarray, T_base_ee: np.ndarray, dt: float) -> np.ndarray:
        """The raw action (joint targets, then the gripper command for arms) before the safety check."""


class ArmController(Controller):
    """Device -> end-effector target -> differential IK.

    The mapping is a pose mapping (6-DoF devices: clutch, scaling, workspace) or a velocity mapping (gamepad
    and keyboard axes integrated into the target; the gripper toggles in the mapping).
    """

    def __init__(self, spec: RobotSpec, mapping: MappingConfig | VelocityMappingConfig | None = None,
                 ik: ArmIKConfig | None = None, safety: JointSafetyConfig | None = None) -> None:
        super().__init__(spec, safety)
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
        q_seed = self.action[: self.n]  # the last command: smooth, and within limits
        target = self.ik.solve(q_seed, T_base_target, dt)
        gripper = self.mapping.gripper if isinstance(self.mapping, VelocityMapping) else sample.gripper
        return np.append(target.q, safe_gripper(gripper, float(self.action[-1])))


class HandController(Controller):
    """21 hand keypoints -> Allegro joint targets by retargeting."""

    def __init__(self, spec: RobotSpec, retarget: HandRetargetConfig | None = None,
                 safety: JointSafetyConfig | None = None) -> None:
        super().__init__(spec, safety)
        self.retargeter = (retarget or HandRetargetConfig()).build(self.model)

    def reset(self, q: np.ndarray, T_base_ee: np.ndarray) -> None:
        super().reset(q, T_base_ee)
        self.retargeter.reset(self.safety.last_safe)

    def _act(self, sample: DeviceSample, q: np.ndarray, T_base_ee: np.ndarray, dt: float) -> np.ndarray:
        if not sample.engaged:  # tracking paused or deadman released: hold
            return self.action.copy()
        if sample.keypoints is None:
            raise UnsafeInputError("no tracked hand in the sample: holding the hand still")
        keypoints = as_finite_array(sample.keypoints, (21, 3), "hand keypoints")
        try:
            q_target = self.retargeter.retarget(keypoints, dt)
        except UnsafeInputError:
            raise
        except Exception as exc:  # a solver failure on odd input must hold the hand, not stop the loop
            self.retargeter.reset(self.safety.last_safe)
            raise UnsafeInputError(
                f"hand retargeting failed on these keypoints ({type(exc).__name__}: {exc}): holding the hand; "
                "this is a solver bug, please report it with the recorded keypoints"
            ) from exc
        if not np.isfinite(q_target).all():
            # Finite but absurd keypoints (1e300) can overflow inside the solver: restart its warm start.
            self.retargeter.reset(self.safety.last_safe)
            raise UnsafeInputError("hand retargeting gave non-finite joints for these keypoints: holding the hand")
        return q_target


class ArmHandController(Controller):
    """A tracked hand -> an arm with a hand at its flange (kinematics.arm_hand): the wrist pose drives the arm
    through the clutched mapping and the IK, the fingers drive the hand through the retargeting. Each part
    holds on its own unsafe input (a lost wrist pose holds the arm, lost keypoints the fingers)."""

    def __init__(self, spec: RobotSpec, config: ArmHandConfig | None = None,
                 safety: JointSafetyConfig | None = None) -> None:
        super().__init__(spec, safety)
        arm = arm_of(spec).name
        if config is not None and config.arm != arm:
            raise TeleopError(f"robot {spec.name!r} is the {arm} with a hand, not the {config.arm}")
        self.retargeter = (config or ArmHandConfig(arm=arm)).build()
        mount = spec.mount
        if mount is None or self.retargeter.ik_frame != mount.parent:
            raise TeleopError(f"robot {spec.name!r}: the IK places {self.retargeter.ik_frame!r}, which is not where "
                              "the hand is mounted")
        self.n_arm = self.retargeter.arm_model.n

    def reset(self, q: np.ndarray, T_base_ee: np.ndarray) -> None:
        super().reset(q, T_base_ee)
        q_safe = self.safety.last_safe
        self.retargeter.reset(q_safe[: self.n_arm], q_hand=q_safe[self.n_arm :])

    def _act(self, sample: DeviceSample, q: np.ndarray, T_base_ee: np.ndarray, dt: float) -> np.ndarray:
        r = self.retargeter
        refused = r.rejected_arm + r.rejected_hand
        target = r.act(sample, dt)
        if r.rejected_arm + r.rejected_hand > refused:  # a part held: count it as the other controllers do
            self.rejected += 1
            self.last_error = r.last_error
        return np.concatenate([target.q_arm, target.q_hand])


ARM_HAND_DEVICES = ("openxr-hands", "scripted")
"""Backends whose samples carry both a wrist pose and hand keypoints (an arm + hand robot needs both)."""

RATE_PRESETS = {"keyboard": VelocityMappingConfig.keyboard, "gamepad": VelocityMappingConfig.dualshock}
"""Devices that command end-effector velocity (axes) rather than a pose, with their mapping preset."""


def make_controller(spec: RobotSpec, device: str = "scripted", calibration: Calibration | None = None) -> Controller:
    """The controller for `spec` driven by samples of the named device backend.

    Args:
        spec: The robot.
        device: The backend whose samples drive it (for a replayed trace, the one that recorded it).
        calibration: R_base_device for the pose mapping of a 6-DoF device; None keeps the identity.
    Raises:
        TeleopError: The device cannot drive this robot (a hand tracker on an arm, a controller on a hand), or
            a calibration is given for a device or robot that is not driven by a controller pose.
    """
    from teleop.backends import BACKENDS, HAND, POSE, RATE

    backend = BACKENDS.get(device)  # a trace recorded by an unknown device: treat its samples as poses
    commands = backend.commands if backend else POSE
    if spec.kind == "arm-hand":
        if device not in ARM_HAND_DEVICES:
            raise TeleopError(f"the {spec.name} robot follows a tracked hand's wrist pose and fingers: drive it "
                              f"with {' or '.join(ARM_HAND_DEVICES)}; {device} gives "
                              + ("keypoints in the wrist's frame but no wrist pose" if commands == HAND
                                 else "no hand keypoints"))
        _refuse_calibration(calibration, f"the {spec.name} arm follows a tracked wrist")
        return ArmHandController(spec)
    if spec.kind != "arm":
        if commands == POSE or (commands == RATE and device != "keyboard"):  # the keyboard also curls fingers
            raise TeleopError(f"{device} gives no hand keypoints: drive the {spec.name} hand with a hand tracker "
                              "(webcam-hands, openxr-hands), the keyboard or the scripted operator")
        _refuse_calibration(calibration, f"the {spec.name} hand follows hand keypoints, not a controller pose")
        return HandController(spec)
    if commands == HAND:
        raise TeleopError(f"{device} tracks a hand: use it with the allegro robot, or drive the {spec.name} arm "
                          "with a controller (vive, openxr), a gamepad or the keyboard")
    preset = RATE_PRESETS.get(device)
    if preset is not None:
        _refuse_calibration(calibration, f"{device} commands end-effector velocity in the robot base frame")
        return ArmController(spec, mapping=preset())
    mapping = MappingConfig() if calibration is None else calibration.apply(MappingConfig())
    return ArmController(spec, mapping=mapping)


def _refuse_calibration(calibration: Calibration | None, why: str) -> None:
    if calibration is not None:
        raise TeleopError(f"a calibration rotates a VR controller's pose, but {why}: leave out the calibration "
                          "(--calibration), or use a controller (vive, openxr)")
