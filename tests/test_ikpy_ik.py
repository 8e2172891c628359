"""IkpyIK: ikpy's chain matches pinocchio's FK, reachable targets converge, limits hold, ikpy is optional."""

from __future__ import annotations

import sys
from functools import cache

import numpy as np
import pinocchio as pin
import pytest

from kinematics.arm_ik import JointTarget
from kinematics.ikpy_ik import IkpyIK, IkpyIKConfig
from kinematics.robot_model import load_model
from kinematics.robots import ROBOTS
from teleop.errors import MissingDependencyError, TeleopError, UnknownNameError, UnsafeInputError

pytest.importorskip("ikpy")

ARMS = ["franka", "xarm7"]
DT = 0.05


@cache
def _ik(name: str) -> IkpyIK:
    """One solver per arm for the whole module (building parses the URDF into sympy expressions)."""
    return IkpyIKConfig().build(load_model(name))


def _run(ik: IkpyIK, q: np.ndarray, T_target: np.ndarray, ticks: int) -> tuple[list[np.ndarray], JointTarget]:
    """Feed each command back as the measured q; return all q visited (start included) and the last result."""
    qs = [q]
    result = JointTarget(q, np.inf, np.inf)
    for _ in range(ticks):
        result = ik.solve(qs[-1], T_target, DT)
        qs.append(result.q)
        if result.pos_err_m < 1e-5 and result.rot_err_rad < 1e-4:
            break
    return qs, result


def _assert_within_limits(ik: IkpyIK, qs: list[np.ndarray]) -> None:
    steps = np.abs(np.diff(np.array(qs), axis=0))
    assert np.all(steps <= ik.speed * DT + 1e-12)
    q_all = np.array(qs[1:])
    assert np.all(q_all >= ik.lower - 1e-12) and np.all(q_all <= ik.upper + 1e-12)


@pytest.mark.parametrize("name", ARMS)
def test_chain_has_exactly_the_spec_joints_active_and_ends_at_the_ee_frame(name: str) -> None:
    ik = _ik(name)
    active = [link.name for link, on in zip(ik.chain.links, ik.chain.active_links_mask, strict=True) if on]
    assert tuple(active) == ROBOTS[name].joints
    np.testing.assert_allclose(ik.lower, load_model(name).lower + ik.config.limit_margin_rad)
    np.testing.assert_allclose(ik.speed, load_model(name).velocity_limit * ik.config.max_speed_fraction)


@pytest.mark.parametrize("name", ARMS)
def test_fk_agrees_with_the_robot_model(name: str) -> None:
    ik, model = _ik(name), load_model(name)
    rng = np.random.default_rng(3)
    for _ in range(25):
        q = rng.uniform(model.lower, model.upper)
        T_ikpy, T_pin = ik.fk(q), model.fk(q)
        assert np.linalg.norm(T_ikpy[:3, 3] - T_pin[:3, 3]) < 1e-6
        assert np.linalg.norm(pin.log3(T_ikpy[:3, :3] @ T_pin[:3, :3].T)) < 1e-6


@pytest.mark.parametrize("name", ARMS)
def test_reachable_targets_converge_from_home_within_limits(name: str) -> None:
    ik, model = _ik(name), load_model(name)
    rng = np.random.default_rng(2024)
    for _ in range(6):
        q_goal = np.clip(model.home + rng.uniform(-0.8, 0.8, model.n), ik.lower, ik.upper)
        T_goal = model.fk(q_goal)
        qs, result = _run(ik, model.home, T_goal, 120)
        assert result.pos_err_m < 1e-3 and result.rot_err_rad < np.deg2rad(1.0), q_goal
        _assert_within_limits(ik, qs)
        reached = model.fk(result.q)  # the reported error is the error at the returned q
        assert result.pos_err_m == pytest.approx(np.linalg.norm(reached[:3, 3] - T_goal[:3, 3]), abs=1e-9)


@pytest.mark.parametrize("name", ARMS)
def test_a_far_target_is_approached_at_the_speed_limit_and_never_outside_the_limits(name: str) -> None:
    ik, model = _ik(name), load_model(name)
    T_goal = model.fk(model.home)
    T_goal[:3, 3] += [1.5, -1.0, 0.8]  # out of reach: ikpy's answer is far away, the steps must stay small
    qs, result = _run(ik, model.home, T_goal, 15)
    assert np.isfinite(np.array(qs)).all() and result.pos_err_m > 0.5
    _assert_within_limits(ik, qs)
    assert np.abs(qs[1] - qs[0]).max() == pytest.approx((ik.speed * DT).max(), rel=0.5)


@pytest.mark.parametrize("name", ARMS)
def test_a_start_outside_the_margins_moves_back_inside_without_jumping(name: str) -> None:
    ik, model = _ik(name), load_model(name)
    q_start = model.home.copy()
    q_start[1] = model.lower[1] + 0.005  # inside the URDF limits, outside the 0.02 rad margin
    qs, _ = _run(ik, q_start, model.fk(model.home), 40)
    assert np.all(np.abs(np.diff(np.array(qs), axis=0)) <= ik.speed * DT + 1e-12)
    assert np.all(np.array(qs)[:, 1] >= q_start[1] - 1e-12)


@pytest.mark.parametrize("bad", ["nan q", "short q", "nan T", "3x3 T", "skew T", "zero dt"])
def test_invalid_inputs_raise_unsafe_input(bad: str) -> None:
    ik, model = _ik("franka"), load_model("franka")
    q, T, dt = model.home.copy(), model.fk(model.home), DT
    if bad == "nan q":
        q[2] = np.nan
    elif bad == "short q":
        q = q[:6]
    elif bad == "nan T":
        T[0, 3] = np.nan
    elif bad == "3x3 T":
        T = T[:3, :3]
    elif bad == "skew T":
        T[:3, :3] *= 2.0
    else:
        dt = 0.0
    with pytest.raises(UnsafeInputError):
        ik.solve(q, T, dt)


def test_build_accepts_a_name_a_spec_or_a_model_and_validates_the_config() -> None:
    config = IkpyIKConfig(optimizer_budget=50)
    for source in ("xarm7", ROBOTS["xarm7"]):
        assert config.build(source).spec is ROBOTS["xarm7"]
    with pytest.raises(TeleopError):
        IkpyIKConfig(max_speed_fraction=0.0).build("franka")
    with pytest.raises(TeleopError):
        IkpyIKConfig(limit_margin_rad=2.0).build("franka")
    with pytest.raises(UnknownNameError) as info:
        IkpyIKConfig(frame="panda_hand_tpc").build("franka")
    assert "panda_hand_tcp" in str(info.value)
    with pytest.raises(TeleopError, match="not between"):
        IkpyIKConfig(frame="panda_link3").build("franka")  # joints 4-7 are beyond this frame


def test_missing_ikpy_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ikpy", None)  # makes `import ikpy...` raise ImportError
    monkeypatch.setitem(sys.modules, "ikpy.chain", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'teleop\[ikpy\]'"):
        IkpyIKConfig().build("franka")
