"""OpenXR hand joints (XR_EXT_hand_tracking, 26 joints) -> the 21 MediaPipe keypoints in a wrist frame.

OpenXR joint order: 0 palm, 1 wrist; thumb 2 metacarpal, 3 proximal, 4 distal, 5 tip; index 6 metacarpal,
7 proximal, 8 intermediate, 9 distal, 10 tip; middle 11-15, ring 16-20, little 21-25 likewise. MediaPipe
has no palm joint and no metacarpal joints of the long fingers, and its thumb starts at the CMC, which is
OpenXR's thumb metacarpal joint. The mapping (DESIGN.md): wrist 1 -> 0; thumb 2, 3, 4, 5 -> 1..4; index
7..10 -> 5..8; middle 12..15 -> 9..12; ring 17..20 -> 13..16; little 22..25 -> 17..20.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from kinematics.safety import as_finite_array
from teleop.errors import UnsafeInputError

XR_JOINT_COUNT = 26
XR_PALM, XR_WRIST = 0, 1
XR_METACARPALS = (6, 11, 16, 21)  # index, middle, ring, little: no MediaPipe counterpart
# MEDIAPIPE_FROM_XR[k] is the OpenXR joint giving MediaPipe keypoint k.
MEDIAPIPE_FROM_XR: tuple[int, ...] = (
    (XR_WRIST,)
    + (2, 3, 4, 5)  # thumb
    + (7, 8, 9, 10)  # index
    + (12, 13, 14, 15)  # middle
    + (17, 18, 19, 20)  # ring
    + (22, 23, 24, 25)  # little
)
_INDEX = np.array(MEDIAPIPE_FROM_XR)


def openxr_to_mediapipe(joints_xr: object, valid: object = None) -> np.ndarray:
    """The 21 MediaPipe keypoints (21, 3) [m] of an OpenXR hand, in the wrist frame.

    The wrist is at the origin. With orientations given, the axes are those of the OpenXR wrist joint;
    with positions only, the axes of the input space are kept.

    Args:
        joints_xr: The 26 joints as positions (26, 3) [m], poses (26, 7) as position [m] then quaternion
            (w, x, y, z), or homogeneous poses (26, 4, 4); all in one space (e.g. the XR stage space).
        valid: Optional (26,) bool, True where the runtime reports the joint pose valid (position and,
            when used, orientation); only the 21 mapped joints need to be valid.
    Raises:
        UnsafeInputError: wrong shape or dtype, NaN / inf, a wrist orientation that is no rotation, or a
            needed joint flagged invalid ("hand tracking lost").
    """
    _check_valid(valid)
    positions, R_space_wrist = _split(joints_xr)
    p = positions[_INDEX] - positions[XR_WRIST]
    return p if R_space_wrist is None else p @ R_space_wrist


# The OpenXR wrist's axes in the canonical hand frame (kinematics.hand_retarget.to_hand_frame): +X toward the
# little finger, +Y out of the back of the hand, +Z from the fingers toward the wrist (columns).
_R_HAND_XRWRIST = np.array(((0.0, 0.0, -1.0), (1.0, 0.0, 0.0), (0.0, -1.0, 0.0)))


def mediapipe_to_openxr(keypoints_hand: object, T_space_hand: object) -> np.ndarray:
    """The 26 OpenXR joint poses (26, 7) (position [m], quaternion w, x, y, z) of 21 keypoints, the inverse of
    openxr_to_mediapipe: a tracked hand replayed as an OpenXR runtime reports it (benchmarks, tests).

    The palm joint is put halfway between the wrist and the middle MCP, a long finger's metacarpal joint a
    fifth of the way from the wrist to its MCP. Every joint carries the wrist's orientation (OpenXR axes:
    +Y out of the back of the hand, +Z toward the wrist), the one openxr_to_mediapipe reads.

    Args:
        keypoints_hand: The 21 MediaPipe keypoints (21, 3) [m] in the canonical hand frame (to_hand_frame).
        T_space_hand: Pose (4, 4) of the canonical hand frame in the OpenXR space.
    Raises:
        UnsafeInputError: wrong shapes or non-finite values.
    """
    kp = as_finite_array(keypoints_hand, (21, 3), "hand keypoints")
    T = as_finite_array(T_space_hand, (4, 4), "hand pose")
    hand = np.empty((XR_JOINT_COUNT, 3))
    hand[_INDEX] = kp
    hand[XR_PALM] = 0.5 * (kp[0] + kp[9])
    for xr_joint, mcp in zip(XR_METACARPALS, (5, 9, 13, 17), strict=True):
        hand[xr_joint] = kp[0] + 0.2 * (kp[mcp] - kp[0])
    R_space_wrist = _rotation(T[:3, :3]) @ _R_HAND_XRWRIST
    x, y, z, w = Rotation.from_matrix(R_space_wrist).as_quat()
    poses = np.empty((XR_JOINT_COUNT, 7))
    poses[:, :3] = hand @ T[:3, :3].T + T[:3, 3]
    poses[:, 3:] = (w, x, y, z)
    return poses


def _split(joints_xr: object) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions (26, 3) and the wrist orientation R_space_wrist (3, 3), or None for positions only."""
    if joints_xr is None:
        raise UnsafeInputError("hand tracking lost: no OpenXR hand joints this frame; holding the hand")
    array = as_finite_array(joints_xr, None, "OpenXR hand joints")
    if array.shape == (XR_JOINT_COUNT, 3):
        return array, None
    if array.shape == (XR_JOINT_COUNT, 7):
        return array[:, :3], _quaternion_to_matrix(array[XR_WRIST, 3:])
    if array.shape == (XR_JOINT_COUNT, 4, 4):
        return array[:, :3, 3], _rotation(array[XR_WRIST, :3, :3])
    raise UnsafeInputError(f"OpenXR hand joints must have shape (26, 3), (26, 7) or (26, 4, 4), got {array.shape}")


def _check_valid(valid: object) -> None:
    if valid is None:
        return
    flags = np.asarray(valid)
    if flags.shape != (XR_JOINT_COUNT,) or flags.dtype != np.bool_:
        raise UnsafeInputError(
            f"OpenXR joint validity must be a (26,) bool array, got {flags.dtype} of shape {flags.shape}"
        )
    lost = [j for j in MEDIAPIPE_FROM_XR if not flags[j]]
    if lost:
        raise UnsafeInputError(
            f"hand tracking lost: OpenXR joints {lost} are not valid; holding the hand until it is tracked again"
        )


def _quaternion_to_matrix(q_wxyz: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(q_wxyz))
    if abs(norm - 1.0) > 1e-2:
        raise UnsafeInputError(f"OpenXR wrist quaternion must have unit norm, got {norm:.4f}")
    w, x, y, z = q_wxyz / norm
    return Rotation.from_quat((x, y, z, w)).as_matrix()


def _rotation(R: np.ndarray) -> np.ndarray:
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
        raise UnsafeInputError("OpenXR wrist pose has no proper rotation: check the hand-tracking driver")
    return R
