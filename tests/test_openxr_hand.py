"""OpenXR's 26 hand joints -> the 21 MediaPipe keypoints: the index table, round trips, invariance, flags."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from devices.human_hand import HumanHand
from kinematics.hand_retarget import to_hand_frame
from kinematics.openxr_hand import MEDIAPIPE_FROM_XR, openxr_to_mediapipe
from teleop.errors import UnsafeInputError

# DESIGN.md: wrist 1->0; thumb 2,3,4,5 -> 1..4; index 7..10 -> 5..8; middle 12..15 -> 9..12;
# ring 17..20 -> 13..16; little 22..25 -> 17..20.
EXPECTED = [1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 17, 18, 19, 20, 22, 23, 24, 25]
DROPPED = (0, 6, 11, 16, 21)
MCP = (5, 9, 13, 17)  # MediaPipe MCPs of index, middle, ring, little

curls = st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5).map(np.array)
seeds = st.integers(0, 2**32 - 1)


def test_the_index_table_is_the_one_in_the_design() -> None:
    assert list(MEDIAPIPE_FROM_XR) == EXPECTED
    assert sorted(set(range(26)) - set(MEDIAPIPE_FROM_XR)) == list(DROPPED)
    # Through the function: joint j sits at x = j, so keypoint k lands at x = EXPECTED[k] - wrist.
    positions = np.zeros((26, 3))
    positions[:, 0] = np.arange(26)
    np.testing.assert_array_equal(openxr_to_mediapipe(positions)[:, 0], np.array(EXPECTED) - 1)


def _xr_hand(keypoints: np.ndarray, T_space_wrist: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """26 OpenXR poses (26, 4, 4) of a hand given by MediaPipe keypoints in its wrist frame.

    The palm and the metacarpal joints, which MediaPipe lacks, are made up: the palm halfway to the middle
    MCP, each metacarpal joint a third of the way from the wrist to its finger's MCP. Joint orientations
    other than the wrist's are random (the conversion must not use them).
    """
    p_wrist = np.zeros((26, 3))
    p_wrist[MEDIAPIPE_FROM_XR, :] = keypoints
    p_wrist[0] = 0.5 * keypoints[9]
    for xr, mp in zip((6, 11, 16, 21), MCP, strict=True):
        p_wrist[xr] = keypoints[mp] / 3.0
    T = np.tile(np.eye(4), (26, 1, 1))
    T[:, :3, :3] = Rotation.random(26, random_state=int(rng.integers(2**31))).as_matrix()
    T[1, :3, :3] = np.eye(3)  # the wrist joint's frame is the keypoints' wrist frame
    T[:, :3, 3] = p_wrist
    return np.einsum("ij,njk->nik", T_space_wrist, T)


def _random_pose(rng: np.random.Generator) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
    T[:3, 3] = rng.uniform(-2.0, 2.0, 3)
    return T


def _as_pose7(T: np.ndarray) -> np.ndarray:
    """(26, 4, 4) -> (26, 7): position, then quaternion (w, x, y, z)."""
    xyzw = Rotation.from_matrix(T[:, :3, :3]).as_quat()
    return np.hstack((T[:, :3, 3], xyzw[:, 3:], xyzw[:, :3]))


@settings(max_examples=50, deadline=None)
@given(curl=curls, seed=seeds)
def test_a_human_hand_round_trips_through_26_joints(curl: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    keypoints = HumanHand().keypoints(curl, rng.uniform(-0.1, 0.1, 5))
    T_space_wrist = _random_pose(rng)
    joints = _xr_hand(keypoints, T_space_wrist, rng)
    np.testing.assert_allclose(openxr_to_mediapipe(joints), keypoints, atol=1e-12)
    np.testing.assert_allclose(openxr_to_mediapipe(_as_pose7(joints)), keypoints, atol=1e-12)
    # Positions only: the wrist is at the origin, the axes stay those of the space.
    positions_only = openxr_to_mediapipe(joints[:, :3, 3])
    np.testing.assert_allclose(positions_only, keypoints @ T_space_wrist[:3, :3].T, atol=1e-12)
    np.testing.assert_allclose(to_hand_frame(positions_only), to_hand_frame(keypoints), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(curl=curls, seed=seeds)
def test_moving_the_whole_hand_changes_nothing(curl: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    joints = _xr_hand(HumanHand().keypoints(curl), _random_pose(rng), rng)
    moved = np.einsum("ij,njk->nik", _random_pose(rng), joints)
    np.testing.assert_allclose(openxr_to_mediapipe(moved), openxr_to_mediapipe(joints), atol=1e-12)
    np.testing.assert_allclose(openxr_to_mediapipe(_as_pose7(moved)), openxr_to_mediapipe(joints), atol=1e-12)


def test_validity_flags() -> None:
    rng = np.random.default_rng(0)
    joints = _xr_hand(HumanHand().keypoints(np.full(5, 0.3)), np.eye(4), rng)
    valid = np.ones(26, dtype=bool)
    expected = openxr_to_mediapipe(joints)
    np.testing.assert_array_equal(openxr_to_mediapipe(joints, valid), expected)
    valid[list(DROPPED)] = False  # joints MediaPipe does not use may be lost
    np.testing.assert_array_equal(openxr_to_mediapipe(joints, valid), expected)
    for needed in EXPECTED:
        valid = np.ones(26, dtype=bool)
        valid[needed] = False
        with pytest.raises(UnsafeInputError, match=rf"hand tracking lost.*\[{needed}\]"):
            openxr_to_mediapipe(joints, valid)
    for bad_flags in (np.ones(21, dtype=bool), np.ones(26), ["yes"] * 26):
        with pytest.raises(UnsafeInputError, match="validity"):
            openxr_to_mediapipe(joints, bad_flags)


def test_malformed_joints_raise() -> None:
    rng = np.random.default_rng(1)
    joints = _xr_hand(HumanHand().keypoints(np.full(5, 0.3)), np.eye(4), rng)
    nan = joints.copy()
    nan[7, 0, 3] = np.nan
    unnormalised = _as_pose7(joints)
    unnormalised[1, 3:] *= 3.0
    sheared = joints.copy()
    sheared[1, 0, 1] = 0.5
    for bad in (None, nan, joints[:21], np.zeros((26, 5)), unnormalised, sheared, np.full((26, 3), "x")):
        with pytest.raises(UnsafeInputError):
            openxr_to_mediapipe(bad)
