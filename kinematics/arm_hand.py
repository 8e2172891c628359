"""Arm + Allegro hand from one tracked human hand: the wrist pose drives the arm, the fingers the hand.

The wrist pose (`DeviceSample.T_world_device`) goes through a clutched TeleopMapping to an end-effector
target for the arm's flange (where the hand is mounted) and through differential IK to arm joints; the
21 keypoints (`DeviceSample.keypoints`) go through HandRetargeter to the 16 Allegro joints.

Clutch: while `engaged` is False the arm holds still but the fingers keep following the human hand. The
clutch exists to reposition the operator's arm (out of reach, out of the tracking volume) without moving
the robot arm, and the arm mapping is relative, so re-engaging resumes without a jump. The finger mapping
is absolute: frozen fingers would jump to the human's current finger pose on re-engaging, and a held
grasp would not follow the operator's hand while they reposition. So a grasp stays as the operator holds it.

Each part holds on its own unsafe input: a lost or NaN wrist pose holds the arm while the fingers follow;
NaN or missing keypoints hold the fingers while the arm follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from devices.base import DeviceSample
from kinematics.arm_ik import ArmIK, ArmIKConfig
from kinematics.hand_retarget import HandRetargetConfig, HandRetargeter
from kinematics.mapping import MappingConfig, TeleopMapping
from kinematics.robot_model import RobotModel, load_model
from kinematics.robots import get_robot
from teleop.errors import TeleopError, UnknownNameError, UnsafeInputError

FLANGE_FRAMES: dict[str, str] = {"franka": "panda_link8", "xarm7": "link_eef"}
"""Arm frame a hand is mounted at (the tool flange), the default IK frame."""

HAND = "allegro"


class ArmHandTarget(NamedTuple):
    """One tick's joint commands.

    Attributes:
        q_arm: Arm joint positions in the arm spec's order, shape (7,) [rad].
        q_hand: Allegro joint positions in the hand spec's order, shape (16,) [rad].
    """

    q_arm: np.ndarray
    q_hand: np.ndarray


@dataclass(frozen=True)
class ArmHandConfig:
    """Arm + hand retargeting settings.

    Attributes:
        arm: Arm robot name, one of FLANGE_FRAMES ("franka", "xarm7").
        mapping: Wrist-to-flange mapping (calibration, scaling, workspace box, clutch).
        ik: Arm IK; its `frame` None means the arm's flange (FLANGE_FRAMES), not the spec's ee_frame.
        retarget: Finger retargeting to the Allegro.
    """

    arm: str = "xarm7"
    mapping: MappingConfig = field(default_factory=MappingConfig)
    ik: ArmIKConfig = field(default_factory=ArmIKConfig)
    retarget: HandRetargetConfig = field(default_factory=HandRetargetConfig)

    def build(self) -> ArmHandRetargeter:
        """Load both models, validate and return the stateful retargeter (call reset before act)."""
        if self.arm not in FLANGE_FRAMES:
            raise UnknownNameError("arm for an arm + hand", self.arm, list(FLANGE_FRAMES))
        arm_model = load_model(get_robot(self.arm))
        hand_model = load_model(get_robot(HAND))
        ik = self.ik if self.ik.frame is not None else replace(self.ik, frame=FLANGE_FRAMES[self.arm])
        return ArmHandRetargeter(
            self, arm_model, ik.build(arm_model), self.mapping.build(), self.retarget.build(hand_model)
        )


class ArmHandRetargeter:
    """Per-tick wrist -> arm joints and fingers -> Allegro joints; build with ArmHandConfig.build().

    Attributes:
        rejected_arm: Samples whose wrist pose was refused (the arm held).
        rejected_hand: Samples whose keypoints were refused (the fingers held).
        last_error: Message of the last refusal, "" if none.
    """

    def __init__(
        self,
        config: ArmHandConfig,
        arm_model: RobotModel,
        ik: ArmIK,
        mapping: TeleopMapping,
        retargeter: HandRetargeter,
    ) -> None:
        self.config = config
        self.arm_model = arm_model
        self.ik = ik
        self.mapping = mapping
        self.retargeter = retargeter
        self.rejected_arm = 0
        self.rejected_hand = 0
        self.last_error = ""
        self._q_arm: np.ndarray | None = None
        self._q_hand = retargeter.model.home

    @property
    def ik_frame(self) -> str:
        """Name of the arm frame the IK places (the flange unless the config names another)."""
        return self.arm_model.model.frames[self.ik.frame_id].name

    def reset(self, q_arm: np.ndarray, T_base_ee: np.ndarray | None = None, q_hand: np.ndarray | None = None) -> None:
        """Start from measured joints: hold them (the fingers at q_hand, default the Allegro home).

        Args:
            q_arm: Measured arm joint positions, arm spec order (7,) [rad].
            T_base_ee: Measured pose (4, 4) of the IK frame (`ik_frame`); None computes it from q_arm.
            q_hand: Measured hand joint positions, hand spec order (16,) [rad]; None: the Allegro home.
        Raises:
            UnsafeInputError: q_arm or T_base_ee malformed or non-finite.
            TeleopError: T_base_ee more than 2 cm / 0.1 rad from FK(q_arm): a pose of another frame?
        """
        q = np.asarray(q_arm, dtype=float)
        if q.shape != (self.arm_model.n,) or not np.isfinite(q).all():
            raise UnsafeInputError(f"q_arm must be {self.arm_model.n} finite joint positions, got {q!r}")
        T_fk = self.arm_model.fk(q, self.ik.frame_id)
        if T_base_ee is not None:
            _check_consistent(np.asarray(T_base_ee, dtype=float), T_fk, self.ik_frame)
        self.mapping.reset(T_fk if T_base_ee is None else T_base_ee)
        self.retargeter.reset(q_hand)
        self._q_arm = q.copy()
        self._q_hand = self.retargeter.model.home if q_hand is None else np.asarray(q_hand, dtype=float).copy()

    def act(self, sample: DeviceSample, dt: float) -> ArmHandTarget:
        """Joint commands for this sample; a part whose input is unsafe holds its last command.

        Args:
            sample: Hand tracking sample: T_world_device the wrist pose, keypoints (21, 3), engaged the clutch.
            dt: Control period [s]; bounds the arm's joint step.
        Raises:
            TeleopError: called before reset().
        """
        if self._q_arm is None:
            raise TeleopError("ArmHandRetargeter.act() before reset(): call reset(q_arm) with the measured joints")
        try:
            self._q_arm = self._arm(self._q_arm, sample, dt)
        except UnsafeInputError as exc:
            self.rejected_arm += 1
            self.last_error = f"arm held: {exc}"
        try:
            self._q_hand = self._hand(sample, dt)
        except UnsafeInputError as exc:
            self.rejected_hand += 1
            self.last_error = f"hand held: {exc}"
        return ArmHandTarget(self._q_arm.copy(), self._q_hand.copy())

    # ---------------------------------------------------------------------------------------- internals
    def _arm(self, q_arm: np.ndarray, sample: DeviceSample, dt: float) -> np.ndarray:
        """Next arm command from the last one (smooth and within limits); unchanged while disengaged."""
        T_base_ee = self.arm_model.fk(q_arm, self.ik.frame_id)
        T_base_target = self.mapping.update(sample, T_base_ee)
        if not sample.engaged:
            return q_arm
        return self.ik.solve(q_arm, T_base_target, dt).q

    def _hand(self, sample: DeviceSample, dt: float) -> np.ndarray:
        """Allegro command from the keypoints; the last one while no hand is tracked."""
        if sample.keypoints is None:  # no hand in view: hold, as a paused tracker does
            return self._q_hand
        return self.retargeter.retarget(sample.keypoints, dt)


def _check_consistent(T_base_ee: np.ndarray, T_fk: np.ndarray, frame: str) -> None:
    if T_base_ee.shape != (4, 4) or not np.isfinite(T_base_ee).all():
        raise UnsafeInputError(f"T_base_ee must be a finite 4x4 pose, got shape {T_base_ee.shape}")
    distance = float(np.linalg.norm(T_base_ee[:3, 3] - T_fk[:3, 3]))
    cos_angle = (np.trace(T_base_ee[:3, :3].T @ T_fk[:3, :3]) - 1.0) / 2.0
    angle = float(np.arccos(np.clip(cos_angle, -1.0, 1.0)))
    if distance > 0.02 or angle > 0.1:
        raise TeleopError(
            f"T_base_ee is {distance:.3f} m / {angle:.2f} rad from the forward kinematics of q_arm at frame "
            f"{frame!r}: pass the pose of that frame, or None to compute it"
        )
