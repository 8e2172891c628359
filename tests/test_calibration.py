"""Calibration of R_base_device: gestures in a rotated tracking frame, degenerate gestures, the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from kinematics.calibration import (
    Calibration,
    PointForwardConfig,
    average_rotation,
    calibrate_point_forward,
    calibrate_still_pose,
    load_calibration,
    save_calibration,
)
from kinematics.mapping import MappingConfig
from teleop.errors import TeleopError

TRACKING_NOISE_M = 0.001
rotations = st.integers(0, 2**32 - 1).map(lambda seed: Rotation.random(random_state=seed).as_matrix())


def _angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(R_a @ R_b.T).magnitude()))


def _stroke(
    start_base: np.ndarray, move_base: np.ndarray, R_base_device: np.ndarray, rng: np.random.Generator, n: int = 40
) -> np.ndarray:
    """Positions (n, 3) in the tracking frame of a hand moving by move_base, with jitter and a slight wobble."""
    s = np.linspace(0.0, 1.0, n)[:, None]
    wobble = 0.005 * np.sin(np.pi * s) * rng.normal(size=3)  # a hand does not move on a ruler
    p_base = start_base + s * move_base + wobble
    p_world = p_base @ R_base_device  # R_device_base = R_base_device^T applied to each row
    return p_world + rng.normal(0.0, TRACKING_NOISE_M, p_world.shape)


@settings(max_examples=50, deadline=None)
@given(R_base_device=rotations, seed=st.integers(0, 10_000))
def test_point_forward_recovers_the_rotation_within_a_degree(R_base_device: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    forward = _stroke(np.array([0.3, 0.1, 1.2]), np.array([0.2, 0.0, 0.0]), R_base_device, rng)
    # A sloppy "up": 15 degrees off vertical, toward the operator.
    up = _stroke(np.array([0.5, 0.1, 1.2]), 0.2 * np.array([-np.sin(0.26), 0.0, np.cos(0.26)]), R_base_device, rng)
    calibration = calibrate_point_forward(forward, up)
    assert calibration.method == "point_forward"
    assert _angle_deg(calibration.R_base_device, R_base_device) < 1.0
    R = calibration.R_base_device
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_point_forward_takes_start_and_end_points_only() -> None:
    R_base_device = Rotation.from_euler("xyz", (90, 0, 30), degrees=True).as_matrix()
    forward = np.array([[0, 0, 0], [0.2, 0, 0]]) @ R_base_device
    up = np.array([[0.2, 0, 0], [0.2, 0, 0.2]]) @ R_base_device
    np.testing.assert_allclose(calibrate_point_forward(forward, up).R_base_device, R_base_device, atol=1e-12)


@pytest.mark.parametrize(
    ("forward_m", "up_m", "match"),
    [
        ((0.03, 0.0, 0.0), (0.0, 0.0, 0.2), "forward motion was 3.0 cm"),
        ((0.2, 0.0, 0.0), (0.0, 0.0, 0.01), "up motion"),
        ((0.2, 0.0, 0.0), (0.2, 0.0, 0.02), "deg apart"),  # "up" almost along forward
        ((0.2, 0.0, 0.0), (-0.2, 0.01, 0.0), "deg apart"),  # "up" back along forward
    ],
)
def test_degenerate_gestures_raise_with_a_clear_message(
    forward_m: tuple[float, ...], up_m: tuple[float, ...], match: str
) -> None:
    forward = np.array([(0.0, 0.0, 0.0), forward_m])
    up = np.array([(0.0, 0.0, 0.0), up_m])
    with pytest.raises(TeleopError, match=match):
        calibrate_point_forward(forward, up, PointForwardConfig())


def test_non_finite_or_malformed_gesture_raises() -> None:
    good = np.array([(0.0, 0.0, 0.0), (0.2, 0.0, 0.0)])
    with pytest.raises(TeleopError, match="NaN"):
        calibrate_point_forward(np.array([(0.0, 0.0, 0.0), (np.nan, 0.0, 0.0)]), good)
    with pytest.raises(TeleopError, match="shape"):
        calibrate_point_forward(np.zeros((1, 3)), good)


def _still_poses(
    R_world_device: np.ndarray, n: int, rng: np.random.Generator, jitter_rad: float = 0.003, jitter_m: float = 0.001
) -> np.ndarray:
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = (
        Rotation.from_rotvec(rng.normal(0.0, jitter_rad, (n, 3))) * Rotation.from_matrix(R_world_device)
    ).as_matrix()
    T[:, :3, 3] = np.array([0.2, 1.1, -0.4]) + rng.normal(0.0, jitter_m, (n, 3))
    return T


@settings(max_examples=50, deadline=None)
@given(R_base_device=rotations, R_base_held=rotations, seed=st.integers(0, 10_000))
def test_still_pose_recovers_the_rotation_within_a_degree(
    R_base_device: np.ndarray, R_base_held: np.ndarray, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    # The controller is held at R_base_held; the tracker sees R_world_device = R_device_base R_base_held.
    poses = _still_poses(R_base_device.T @ R_base_held, 60, rng)
    calibration = calibrate_still_pose(poses, R_base_held=R_base_held)
    assert calibration.method == "still_pose"
    assert _angle_deg(calibration.R_base_device, R_base_device) < 1.0
    aligned = calibrate_still_pose(_still_poses(R_base_device.T, 60, rng))  # held aligned with the base
    assert _angle_deg(aligned.R_base_device, R_base_device) < 1.0


def test_averaging_ignores_the_quaternion_sign() -> None:
    R = Rotation.from_rotvec([[0.0, 0.0, np.pi - 0.01], [0.0, 0.0, -np.pi + 0.01]])  # 0.02 rad apart across pi
    np.testing.assert_allclose(
        average_rotation(R.as_matrix()), Rotation.from_rotvec([0, 0, np.pi]).as_matrix(), atol=1e-9
    )


def test_still_pose_rejects_a_controller_that_moved() -> None:
    rng = np.random.default_rng(0)
    turned = _still_poses(np.eye(3), 30, rng)
    turned[15:, :3, :3] = Rotation.from_rotvec([0.0, 0.2, 0.0]).as_matrix() @ turned[15:, :3, :3]
    with pytest.raises(TeleopError, match="moved during calibration"):
        calibrate_still_pose(turned)
    shifted = _still_poses(np.eye(3), 30, rng)
    shifted[20:, :3, 3] += (0.05, 0.0, 0.0)
    with pytest.raises(TeleopError, match="moved during calibration"):
        calibrate_still_pose(shifted)


def test_still_pose_rejects_too_few_or_invalid_poses() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(TeleopError, match="hold still a little longer"):
        calibrate_still_pose(_still_poses(np.eye(3), 3, rng))
    bad = _still_poses(np.eye(3), 20, rng)
    bad[4, 0, 0] = np.nan
    with pytest.raises(TeleopError, match="NaN"):
        calibrate_still_pose(bad)
    bad = _still_poses(np.eye(3), 20, rng)
    bad[4, :3, :3] *= 2.0
    with pytest.raises(TeleopError, match="rotation"):
        calibrate_still_pose(bad)


def test_round_trip_through_the_file_and_into_a_mapping(tmp_path: Path) -> None:
    R = Rotation.from_euler("zyx", (120, -30, 75), degrees=True).as_matrix()
    calibration = Calibration(R, "still_pose", "2024-05-01T12:00:00+00:00")
    path = save_calibration(calibration, tmp_path / "calibration.json")
    document = json.loads(path.read_text())
    assert document["method"] == "still_pose" and document["created_utc"] == calibration.created_utc
    loaded = load_calibration(path)
    np.testing.assert_array_equal(loaded.R_base_device, R)
    assert (loaded.method, loaded.created_utc) == (calibration.method, calibration.created_utc)
    config = loaded.apply(MappingConfig())
    np.testing.assert_array_equal(np.array(config.R_base_device), R)
    config.build()  # a valid rotation for the mapping
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_loading_a_broken_file_raises_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TeleopError, match="does not exist"):
        load_calibration(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(TeleopError, match="cannot be read"):
        load_calibration(broken)
    broken.write_text(
        json.dumps(
            {
                "format": "teleop-calibration",
                "method": "still_pose",
                "R_base_device": [[1, 0, 0], [0, 1, 0], [0, 0, -1]],
            }
        )
    )
    with pytest.raises(TeleopError, match="rotation"):
        load_calibration(broken)
    broken.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(TeleopError, match="not a calibration file"):
        load_calibration(broken)
