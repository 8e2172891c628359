"""ArmHandRetargeter: the wrist drives the arm through the clutch, the fingers drive the Allegro."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from devices.base import DeviceSample
from devices.human_hand import HumanHand
from kinematics.arm_hand import FLANGE_FRAMES, ArmHandConfig, ArmHandRetargeter
from kinematics.robot_model import load_model
from teleop.errors import TeleopError, UnknownNameError

DT = 0.01
OPEN, FIST = np.full(5, 0.1), np.full(5, 0.8)
LONG_FINGER_FLEX = [1, 2, 3, 5, 6, 7, 9, 10, 11]  # Allegro index, middle, ring: the joints that curl
T_WRIST = np.eye(4)
T_WRIST[:3, 3] = (0.2, -0.1, 1.1)  # anywhere in the tracking frame: the arm mapping is relative


def _retargeter(arm: str = "xarm7") -> ArmHandRetargeter:
    r = ArmHandConfig(arm=arm).build()
    r.reset(load_model(arm).home)
    return r


def _sample(k: int, wrist_offset: tuple[float, float, float] = (0.0, 0.0, 0.0), curl: np.ndarray = OPEN,
            engaged: bool = True, T_wrist: np.ndarray | None = None) -> DeviceSample:
    T = T_WRIST.copy() if T_wrist is None else T_wrist
    T[:3, 3] += wrist_offset
    return DeviceSample(t=k * DT, engaged=engaged, T_world_device=T, keypoints=HumanHand().keypoints(curl))


def _flange(r: ArmHandRetargeter, q_arm: np.ndarray) -> np.ndarray:
    return r.arm_model.fk(q_arm, r.ik.frame_id)


@pytest.mark.parametrize("arm", sorted(FLANGE_FRAMES))
def test_moving_the_wrist_10_cm_moves_the_flange_10_cm(arm: str) -> None:
    r = _retargeter(arm)
    assert r.ik_frame == FLANGE_FRAMES[arm]
    T_start = _flange(r, load_model(arm).home)
    q_arm = load_model(arm).home
    for k in range(50):  # 10 cm along +x in 0.5 s
        q_arm, _ = r.act(_sample(k, (0.1 * k / 49, 0.0, 0.0)), DT)
    for k in range(50, 150):
        q_arm, _ = r.act(_sample(k, (0.1, 0.0, 0.0)), DT)
    T_end = _flange(r, q_arm)
    np.testing.assert_allclose(T_end[:3, 3] - T_start[:3, 3], (0.1, 0.0, 0.0), atol=0.005)
    assert Rotation.from_matrix(T_end[:3, :3] @ T_start[:3, :3].T).magnitude() < 0.02
    assert r.rejected_arm == 0 and r.rejected_hand == 0


def test_turning_the_wrist_turns_the_flange() -> None:
    r = _retargeter()
    T_start = _flange(r, load_model("xarm7").home)
    q_arm = load_model("xarm7").home
    for k in range(100):
        T = T_WRIST.copy()
        T[:3, :3] = Rotation.from_euler("z", 0.3 * min(k, 40) / 40).as_matrix()
        q_arm, _ = r.act(_sample(k, T_wrist=T), DT)
    R_rel = _flange(r, q_arm)[:3, :3] @ T_start[:3, :3].T
    np.testing.assert_allclose(Rotation.from_matrix(R_rel).as_rotvec(), (0.0, 0.0, 0.3), atol=0.01)


def test_curling_the_fingers_flexes_the_allegro() -> None:
    r = _retargeter()
    for k in range(20):
        _, q_open = r.act(_sample(k, curl=OPEN), DT)
    for k in range(20, 40):
        _, q_fist = r.act(_sample(k, curl=FIST), DT)
    assert q_open.shape == q_fist.shape == (16,)
    flex = q_fist[LONG_FINGER_FLEX] - q_open[LONG_FINGER_FLEX]
    assert flex.sum() > 2.0 and (flex > -0.05).all()


def test_released_clutch_holds_the_arm_while_the_fingers_keep_following() -> None:
    r = _retargeter()
    for k in range(30):
        q_held, q_hand_open = r.act(_sample(k, (0.05 * k / 29, 0.0, 0.0)), DT)
    for k in range(30, 60):  # released: the wrist wanders, the hand closes
        q_arm, q_hand = r.act(_sample(k, (0.05, 0.2, -0.1), curl=FIST, engaged=False), DT)
        np.testing.assert_array_equal(q_arm, q_held)
    assert (q_hand[LONG_FINGER_FLEX] - q_hand_open[LONG_FINGER_FLEX]).sum() > 2.0
    # Gripping again re-anchors where the wrist is now: the flange does not jump toward it.
    T_held = _flange(r, q_held)
    for k in range(60, 90):
        q_arm, _ = r.act(_sample(k, (0.05, 0.2, -0.1), curl=FIST), DT)
    np.testing.assert_allclose(_flange(r, q_arm)[:3, 3], T_held[:3, 3], atol=0.003)


def test_nan_wrist_pose_holds_the_arm_and_the_fingers_still_follow() -> None:
    r = _retargeter()
    for k in range(20):
        q_held, q_hand_open = r.act(_sample(k, (0.02 * k / 19, 0.0, 0.0)), DT)
    bad = np.full((4, 4), np.nan)
    for k in range(20, 40):
        q_arm, q_hand = r.act(_sample(k, curl=FIST, T_wrist=bad), DT)
        np.testing.assert_array_equal(q_arm, q_held)
    assert r.rejected_arm == 20 and r.rejected_hand == 0 and "arm held" in r.last_error
    assert (q_hand[LONG_FINGER_FLEX] - q_hand_open[LONG_FINGER_FLEX]).sum() > 2.0


def test_nan_or_missing_keypoints_hold_the_fingers_and_the_arm_still_follows() -> None:
    r = _retargeter()
    q_arm0 = load_model("xarm7").home
    for k in range(10):
        _, q_hand_held = r.act(_sample(k), DT)
    for k in range(10, 40):
        sample = _sample(k, (0.03 * (k - 10) / 29, 0.0, 0.0))
        keypoints = np.full((21, 3), np.nan) if k % 2 else None
        q_arm, q_hand = r.act(DeviceSample(sample.t, True, sample.T_world_device, keypoints), DT)
        np.testing.assert_array_equal(q_hand, q_hand_held)
    assert r.rejected_hand == 15 and r.rejected_arm == 0  # a missing hand holds without being an error
    assert _flange(r, q_arm)[0, 3] - _flange(r, q_arm0)[0, 3] > 0.02


def test_lifecycle_errors() -> None:
    with pytest.raises(UnknownNameError, match="franka, xarm7"):
        ArmHandConfig(arm="allegro").build()
    r = ArmHandConfig(arm="franka").build()
    with pytest.raises(TeleopError, match="reset"):
        r.act(_sample(0), DT)
    home = load_model("franka").home
    with pytest.raises(TeleopError, match="panda_link8"):
        r.reset(home, load_model("franka").fk(home))  # the gripper TCP, not the flange the hand is on
    r.reset(home, load_model("franka").fk(home, "panda_link8"))
    q_arm, q_hand = r.act(_sample(0), DT)
    np.testing.assert_allclose(q_arm, home, atol=1e-9)
    assert q_hand.shape == (16,)
