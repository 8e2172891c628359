"""ArmIK: convergence on reachable targets, limits on every step, calm behaviour on unreachable targets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kinematics.arm_ik import ArmIK, ArmIKConfig, JointTarget, _solve_weighted
from kinematics.robot_model import load_model
from teleop.errors import TeleopError, UnsafeInputError

ARMS = ["franka", "xarm7"]
DT = 0.05


def _build(name: str, **kwargs: Any) -> ArmIK:
    return ArmIKConfig(**kwargs).build(load_model(name))


def _run(ik: ArmIK, q: np.ndarray, T_target: np.ndarray, ticks: int) -> tuple[list[np.ndarray], JointTarget]:
    """Feed each command back as the measured q; return all q visited (start included) and the last result."""
    qs = [q]
    result = JointTarget(q, np.inf, np.inf)
    for _ in range(ticks):
        result = ik.solve(qs[-1], T_target, DT)
        qs.append(result.q)
    return qs, result


def _assert_within_limits(ik: ArmIK, qs: list[np.ndarray]) -> None:
    steps = np.abs(np.diff(np.array(qs), axis=0))
    speed = ik.model.velocity_limit * ik.config.max_speed_fraction
    assert np.all(steps <= speed * DT + 1e-12)
    q_all = np.array(qs[1:])
    assert np.all(q_all >= ik.lower - 1e-12) and np.all(q_all <= ik.upper + 1e-12)


@pytest.mark.parametrize("name", ARMS)
def test_reachable_targets_converge_from_home_within_limits(name: str) -> None:
    ik = _build(name)
    model = ik.model
    rng = np.random.default_rng(2024)
    for _ in range(25):
        # Reachable: the pose of a configuration up to 1 rad per joint away from home, inside the margins.
        q_goal = np.clip(model.home + rng.uniform(-1.0, 1.0, model.n), ik.lower, ik.upper)
        T_goal = model.fk(q_goal)
        qs, result = _run(ik, model.home, T_goal, 200)
        assert result.pos_err_m < 1e-3, q_goal
        assert result.rot_err_rad < np.deg2rad(1.0), q_goal
        _assert_within_limits(ik, qs)


@pytest.mark.parametrize("name", ARMS)
def test_a_20cm_target_is_reached_within_a_few_dozen_ticks(name: str) -> None:
    ik = _build(name)
    T_goal = ik.model.fk(ik.model.home)
    T_goal[:3, 3] += [0.1, 0.15, -0.08]
    _, result = _run(ik, ik.model.home, T_goal, 30)
    assert result.pos_err_m < 1e-3 and result.rot_err_rad < np.deg2rad(1.0)


@pytest.mark.parametrize("name", ARMS)
def test_reported_error_is_the_error_at_the_returned_q(name: str) -> None:
    ik = _build(name)
    T_goal = ik.model.fk(ik.model.home)
    T_goal[:3, 3] += [0.05, 0.0, 0.1]
    result = ik.solve(ik.model.home, T_goal, DT)
    reached = ik.model.fk(result.q)
    assert result.pos_err_m == pytest.approx(np.linalg.norm(reached[:3, 3] - T_goal[:3, 3]), abs=1e-12)


def test_errors_are_of_the_returned_q_and_target_whenever_they_are_read() -> None:
    """The errors are computed on first read: later solves, and changes to q or T after solve, leave them."""
    ik = _build("xarm7")
    T_goal = ik.model.fk(ik.model.home)
    T_goal[:3, 3] += [0.05, -0.03, 0.1]
    T_goal[:3, :3] = Rotation.from_rotvec([0.1, -0.2, 0.05]).as_matrix() @ T_goal[:3, :3]
    result = ik.solve(ik.model.home, T_goal, DT)
    reached = ik.model.fk(result.q)
    expected_pos = np.linalg.norm(reached[:3, 3] - T_goal[:3, 3])
    expected_rot = np.linalg.norm(Rotation.from_matrix(T_goal[:3, :3] @ reached[:3, :3].T).as_rotvec())
    ik.solve(result.q, T_goal, DT)  # another tick in between: the model's scratch data is reused
    q_sent = result.q.copy()
    result.q[:] = 0.0  # the caller reuses the command buffer
    T_goal[:3, 3] = 0.0  # ... and the target buffer
    assert result.rot_err_rad == pytest.approx(expected_rot, abs=1e-12)
    assert result.pos_err_m == pytest.approx(expected_pos, abs=1e-12)
    q, pos, rot = JointTarget(q_sent, 1.0, 2.0)
    assert (pos, rot) == (1.0, 2.0) and q is q_sent


@pytest.mark.parametrize("orientation_weight", [0.5, 2.0])
def test_weights_only_shape_the_damping(orientation_weight: float) -> None:
    """The solve equals damped least squares on the weighted task: dq = J+ e + (I - J+ J) posture with
    J+ = (W J)^T (W J J^T W + d I)^-1 W."""
    rng = np.random.default_rng(3)
    J, err, posture = rng.normal(size=(6, 7)), rng.normal(size=6), rng.normal(size=7)
    w = np.array([1.0] * 3 + [orientation_weight] * 3)
    damping = 0.3
    Jw = w[:, None] * J
    J_pinv = Jw.T @ np.linalg.inv(Jw @ Jw.T + damping * np.eye(6)) @ np.diag(w)
    expected = J_pinv @ err + (np.eye(7) - J_pinv @ J) @ posture
    dq = _solve_weighted(J, err, posture, damping * np.diag(1.0 / w**2))
    np.testing.assert_allclose(dq, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ARMS)
def test_a_zero_orientation_weight_tracks_the_position_only(name: str) -> None:
    ik = _build(name, orientation_weight=0.0)
    T_goal = ik.model.fk(ik.model.home)
    T_goal[:3, 3] += [0.08, 0.05, -0.05]
    T_goal[:3, :3] = Rotation.from_rotvec([0.0, 1.0, 0.0]).as_matrix() @ T_goal[:3, :3]
    qs, result = _run(ik, ik.model.home, T_goal, 100)
    assert result.pos_err_m < 1e-4
    _assert_within_limits(ik, qs)


@pytest.mark.parametrize("name", ARMS)
def test_unreachable_targets_settle_without_nan_or_oscillation(name: str) -> None:
    ik = _build(name)
    rng = np.random.default_rng(5)
    for seed in range(6):
        T_goal = ik.model.fk(ik.model.home)
        direction = rng.normal(size=3)
        T_goal[:3, 3] += direction / np.linalg.norm(direction) * rng.uniform(1.0, 3.0)
        T_goal[:3, :3] = Rotation.random(random_state=seed).as_matrix()
        qs, result = _run(ik, ik.model.home, T_goal, 300)
        assert np.isfinite(np.array(qs)).all()
        _assert_within_limits(ik, qs)
        late_steps = np.abs(np.diff(np.array(qs[-50:]), axis=0)).max()
        assert late_steps < 1e-5, "the arm keeps moving at an unreachable target"
        assert result.pos_err_m > 0.1


@pytest.mark.parametrize("name", ARMS)
def test_a_start_outside_the_margins_moves_back_inside_without_jumping(name: str) -> None:
    ik = _build(name, limit_margin_rad=0.1)
    q_start = ik.model.home.copy()
    q_start[1] = ik.model.lower[1] + 0.01  # inside the URDF limits, outside the margin
    qs, _ = _run(ik, q_start, ik.model.fk(ik.model.home), 100)
    steps = np.abs(np.diff(np.array(qs), axis=0))
    assert np.all(steps <= ik.model.velocity_limit * ik.config.max_speed_fraction * DT + 1e-12)
    assert np.all(np.array(qs)[:, 1] >= q_start[1] - 1e-12)
    assert qs[-1][1] >= ik.lower[1] - 1e-12


@pytest.mark.parametrize(
    ("q_bad", "T_bad", "dt"),
    [
        ("nan", None, DT),
        (None, "nan", DT),
        (None, "inf", DT),
        ("short", None, DT),
        (None, "3x3", DT),
        (None, "skew", DT),
        (None, None, 0.0),
        (None, None, float("nan")),
    ],
)
def test_invalid_inputs_raise_unsafe_input(q_bad: str | None, T_bad: str | None, dt: float) -> None:
    ik = _build("franka")
    q = ik.model.home
    T = ik.model.fk(q)
    if q_bad == "nan":
        q = q.copy()
        q[3] = np.nan
    elif q_bad == "short":
        q = q[:6]
    if T_bad == "nan":
        T[0, 3] = np.nan
    elif T_bad == "inf":
        T[1, 1] = np.inf
    elif T_bad == "3x3":
        T = T[:3, :3]
    elif T_bad == "skew":
        T[:3, :3] *= 2.0
    with pytest.raises(UnsafeInputError):
        ik.solve(q, T, dt)


def test_config_is_validated_at_build() -> None:
    model = load_model("franka")
    with pytest.raises(TeleopError):
        ArmIKConfig(iterations=5).build(model)
    with pytest.raises(TeleopError):
        ArmIKConfig(max_speed_fraction=0.0).build(model)
    with pytest.raises(TeleopError):
        ArmIKConfig(posture=(0.0,) * 3).build(model)
