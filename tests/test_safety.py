"""The safety layer: whatever goes in, every joint target that leaves is finite, within the position limits
and within one velocity step of the previous one, and the gripper command is in [0, 1]."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from devices.base import DeviceSample
from devices.human_hand import HumanHand
from kinematics.hand_retarget import HandRetargetConfig
from kinematics.robot_model import load_model
from kinematics.robots import get_robot
from kinematics.safety import JointSafety, JointSafetyConfig, as_finite_array, safe_gripper, validate_period
from teleop.controllers import ArmController, Controller, HandController
from teleop.errors import TeleopError, UnsafeInputError

TOL = 1e-12
HAND = HumanHand()


# ------------------------------------------------------------------------------------- malformed values
def _malformed(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> object:
    """A value that must never reach a robot, in place of an array of `shape`."""
    value = rng.normal(size=shape)
    if kind == "nan":
        value[tuple(rng.integers(0, s) for s in shape)] = np.nan
    elif kind == "inf":
        value[tuple(rng.integers(0, s) for s in shape)] = -np.inf if rng.random() < 0.5 else np.inf
    elif kind == "shape":
        bad_shapes = [(), (1,), (shape[0] + 1,), (shape[0] - 1,), (2, 2), (*shape, 1), (0,)]
        return rng.normal(size=bad_shapes[rng.integers(len(bad_shapes))])
    elif kind == "none":
        return None
    elif kind == "string":
        return np.full(shape, "0.1") if rng.random() < 0.5 else "pose"
    elif kind == "object":
        obj = value.astype(object)
        obj.flat[0] = None
        return obj
    elif kind == "ragged":
        return [[0.0, 1.0], [2.0]]
    elif kind == "complex":
        return value + 1j
    elif kind == "bool":
        return value > 0
    return value


MALFORMED = ("nan", "inf", "shape", "none", "string", "object", "ragged", "complex", "bool")
GOOD_DT = (0.005, 0.01, 0.02, 0.05, 0.1)
BAD_DT = (0.0, -0.05, float("nan"), float("inf"), None, "0.05", np.array([0.05, 0.05]))
BAD_GRIPPER = (np.nan, np.inf, -np.inf, None, "1.0", 1e308, np.array(0.7), np.array([0.5]))

# A sequence is a byte string, two bytes a step, which Hypothesis draws and shrinks cheaply (drawing
# tuples of floats costs ~5 ms an example here, too much for 10^4 examples); a seed draws the magnitudes.
sequences = st.binary(min_size=2, max_size=16)


def _steps(sequence: bytes) -> list[tuple[int, int]]:
    return [(sequence[i], sequence[i + 1]) for i in range(0, len(sequence) - 1, 2)]


def _dt(choice: int, rng: np.random.Generator) -> object:
    """Mostly a valid control period; one choice in four a malformed one."""
    choice %= 8
    if choice < len(GOOD_DT):
        return GOOD_DT[choice]
    return GOOD_DT[rng.integers(len(GOOD_DT))] if choice == 5 else BAD_DT[rng.integers(len(BAD_DT))]


def _gripper(choice: int, rng: np.random.Generator) -> object:
    choice %= 16
    return rng.uniform(-0.5, 1.5) if choice < 8 else BAD_GRIPPER[choice - 8]


def _valid_dt(dt: object) -> bool:
    return isinstance(dt, float) and bool(np.isfinite(dt)) and dt > 0


# ------------------------------------------------------------------------------------ JointSafety alone
SAFETY = JointSafetyConfig(limit_margin_rad=0.01, velocity_fraction=0.5)


def _assert_safe(safety: JointSafety, q: np.ndarray, previous: np.ndarray, dt: float | None) -> None:
    assert q.shape == (safety.n,) and np.isfinite(q).all()
    assert (q >= safety.lower - TOL).all() and (q <= safety.upper + TOL).all()
    if dt is None:  # an invalid period: the target is held
        np.testing.assert_array_equal(q, previous)
    else:
        assert (np.abs(q - previous) <= safety.speed * dt + TOL).all()


DIRECT_KINDS = ("near", "near", "far", "huge", *MALFORMED)


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), sequence=sequences)
def test_joint_safety_check_only_returns_safe_targets(seed: int, sequence: bytes) -> None:
    model = load_model("franka")
    safety = SAFETY.build(model)
    rng = np.random.default_rng(seed)
    safety.reset(rng.uniform(safety.lower, safety.upper))
    for kind_choice, dt_choice in _steps(sequence):
        kind, dt = DIRECT_KINDS[kind_choice % len(DIRECT_KINDS)], _dt(dt_choice, rng)
        previous = safety.last_safe
        if kind in ("near", "far", "huge"):
            spread = {"near": 0.01, "far": 3.0, "huge": 1e300}[kind] * rng.uniform(0.01, 1.0)
            q_target: object = previous + rng.normal(0.0, spread, safety.n)
        else:
            q_target = _malformed(kind, (safety.n,), rng)
        valid = _valid_dt(dt) and kind in ("near", "far", "huge")
        if valid:
            q = safety.check(q_target, dt)
            requested = np.asarray(q_target)
            inside = (requested >= safety.lower) & (requested <= safety.upper)
            within = np.abs(requested - previous) <= safety.speed * dt
            if (inside & within).all():
                np.testing.assert_array_equal(q, requested)  # a safe target passes unchanged
        else:
            with pytest.raises(UnsafeInputError):
                safety.check(q_target, dt)
            q = safety.last_safe
        _assert_safe(safety, q, previous, dt if valid else None)  # type: ignore[arg-type]


def test_a_reset_outside_the_limits_moves_back_inside_at_the_velocity_limit() -> None:
    model = load_model("franka")
    safety = JointSafetyConfig().build(model)
    q0 = safety.upper + 0.3
    safety.reset(q0)
    q1 = safety.check(q0 + 1.0, 0.01)  # pushed further out: held
    np.testing.assert_array_equal(q1, q0)
    q2 = safety.check(safety.lower, 0.01)  # pulled in: one velocity step
    np.testing.assert_allclose(q2, q0 - safety.speed * 0.01)
    for _ in range(1000):
        q = safety.check(safety.lower, 0.01)
    np.testing.assert_array_equal(q, safety.lower)


def test_safety_config_is_validated() -> None:
    model = load_model("allegro")
    for config in (
        JointSafetyConfig(limit_margin_rad=-0.1),
        JointSafetyConfig(limit_margin_rad=float("nan")),
        JointSafetyConfig(limit_margin_rad=1.0),  # more than half of a joint range
        JointSafetyConfig(velocity_fraction=0.0),
        JointSafetyConfig(velocity_fraction=1.5),
        JointSafetyConfig(velocity_fraction=float("nan")),
    ):
        with pytest.raises(TeleopError, match="JointSafetyConfig"):
            config.build(model)
    config = JointSafetyConfig(limit_margin_rad=0.02, velocity_fraction=0.25)
    safety = config.build(model)
    np.testing.assert_allclose(safety.lower, model.lower + 0.02)
    np.testing.assert_allclose(safety.speed, 0.25 * model.velocity_limit)
    assert config == JointSafetyConfig(limit_margin_rad=0.02, velocity_fraction=0.25)  # build did not mutate it


def test_helpers_reject_what_is_not_a_number() -> None:
    for bad in (None, "1.0", ["a", "b"], [[1.0], [2.0, 3.0]], np.array([1 + 1j]), np.array([True]), [None, 1.0]):
        with pytest.raises(UnsafeInputError):
            as_finite_array(bad, None, "x")
    np.testing.assert_array_equal(as_finite_array([1, 2], (2,), "x"), [1.0, 2.0])
    for bad_dt in BAD_DT:
        with pytest.raises(UnsafeInputError, match="dt"):
            validate_period(bad_dt)
    commands = (0.2, -1.0, 7.0, np.nan, np.inf, None, "1", np.float32(0.5), np.array(0.25), np.array([0.3]))
    expected = (0.2, 0.0, 1.0, 0.4, 0.4, 0.4, 0.4, 0.5, 0.25, 0.4)
    assert tuple(safe_gripper(g, 0.4) for g in commands) == expected


# ---------------------------------------------------------------------------------------- controllers
@dataclass
class _Rig:
    """A controller driven without a simulator, with the measured state it was reset to."""

    controller: Controller
    T_base_ee: np.ndarray


@cache
def _controller(robot: str) -> _Rig:
    spec = get_robot(robot)
    if spec.kind == "arm":
        controller: Controller = ArmController(spec)
    else:  # two solver iterations: the safety properties do not depend on the solver's accuracy
        controller = HandController(spec, HandRetargetConfig(iterations=2))
    return _Rig(controller, np.eye(4))


def _reset(rig: _Rig, rng: np.random.Generator) -> None:
    safety = rig.controller.safety
    q0 = rng.uniform(safety.lower, safety.upper)
    rig.T_base_ee = rig.controller.model.fk(q0)
    rig.controller.reset(q0, rig.T_base_ee)


def _arm_pose(kind: str, p_device: np.ndarray, rng: np.random.Generator, scale: float) -> object:
    """A device pose of the given kind; p_device is the operator's hand, moved in place for valid kinds."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rng.normal(0.0, 0.3, 3)).as_matrix()
    if kind == "valid":
        p_device += rng.normal(0.0, 0.02 * scale, 3)
    elif kind == "jump":
        p_device += rng.normal(0.0, 10.0**scale, 3)
    elif kind == "huge":
        T[:3, 3] = rng.choice([-1.0, 1.0], 3) * 10.0 ** rng.uniform(100, 308, 3)
        return T
    elif kind == "not_rotation":
        T[:3, :3] = [T[:3, :3] * (1.0 + scale), T[:3, :3] @ np.diag([1.0, 1.0, -1.0]), rng.normal(size=(3, 3))][
            int(rng.integers(3))
        ]
    elif kind == "bottom_row":
        T[3] = (0.0, 0.0, 1.0, 1.0)
    elif kind in MALFORMED:
        return _malformed(kind, (4, 4), rng)
    T[:3, 3] = p_device
    return T


def _keypoints(kind: str, rng: np.random.Generator, scale: float) -> object:
    if kind == "valid":
        keypoints = HAND.keypoints(rng.uniform(0.0, 1.0, 5), rng.uniform(-0.2, 0.2, 5))
        return keypoints @ Rotation.random(random_state=int(rng.integers(2**31))).as_matrix().T + rng.normal(0, 1, 3)
    if kind == "noise":
        return rng.normal(0.0, 0.1 * scale, (21, 3))
    if kind == "huge":
        return HAND.keypoints(rng.uniform(0.0, 1.0, 5)) * 10.0 ** rng.uniform(100, 308)
    if kind == "degenerate":
        return np.tile(rng.normal(size=3), (21, 1))
    if kind == "jump":  # a real hand, but the tracker swapped it for a very different one
        return HAND.keypoints(rng.choice([0.0, 1.0], 5), rng.uniform(-0.5, 0.5, 5)) * rng.uniform(0.5, 2.0)
    return _malformed(kind, (21, 3), rng)


ARM_KINDS = ("valid",) * 6 + ("jump", "huge", "not_rotation", "bottom_row", *MALFORMED)
HAND_KINDS = ("valid",) * 6 + ("noise", "huge", "degenerate", "jump", *MALFORMED)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_controllers_only_ever_command_safe_actions() -> None:
    """10^4 random sequences of valid and malformed samples through ArmController / HandController.act."""
    stats: Counter[str] = Counter()

    @settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(robot=st.sampled_from(("franka", "xarm7", "allegro")), seed=st.integers(0, 2**32 - 1), sequence=sequences)
    def run(robot: str, seed: int, sequence: bytes) -> None:
        rig = _controller(robot)
        controller, spec = rig.controller, rig.controller.spec
        rng = np.random.default_rng(seed)
        _reset(rig, rng)
        n, safety = len(spec.joints), controller.safety
        p_device = rng.normal(0.0, 0.5, 3)
        previous = controller.action.copy()
        for kind_choice, choice in _steps(sequence):
            # One byte picks the kind of input, the other whether the clutch is held, dt and the gripper.
            engaged, dt, scale = bool(choice & 1), _dt(choice >> 1, rng), rng.uniform(0.0, 3.0)
            if spec.kind == "arm":
                kind = ARM_KINDS[kind_choice % len(ARM_KINDS)]
                pose: Any = _arm_pose(kind, p_device, rng, scale)
                gripper: Any = _gripper(choice >> 4, rng)
                sample = DeviceSample(t=0.0, engaged=engaged, T_world_device=pose, gripper=gripper)
            else:
                kind = HAND_KINDS[kind_choice % len(HAND_KINDS)]
                keypoints: Any = _keypoints(kind, rng, scale)
                sample = DeviceSample(t=0.0, engaged=engaged, keypoints=keypoints)
            rejected = controller.rejected
            action = controller.act(sample, previous[:n], rig.T_base_ee, dt)  # type: ignore[arg-type]
            # The properties, after every call.
            assert action.shape == (spec.action_dim,) and np.isfinite(action).all()
            q = action[:n]
            assert (q >= safety.lower - TOL).all() and (q <= safety.upper + TOL).all()
            if controller.rejected > rejected:
                np.testing.assert_array_equal(action, previous)  # refused: the last safe action, held
                stats["rejected"] += 1
            else:
                assert (np.abs(q - previous[:n]) <= safety.speed * dt + TOL).all()
            if spec.has_gripper:
                assert 0.0 <= action[n] <= 1.0
            step_rad = np.abs(q - previous[:n])
            stats[f"{spec.kind} {kind} {'moved' if step_rad.max() > 1e-6 else 'still'}"] += 1
            if _valid_dt(dt) and (step_rad >= (1.0 - 1e-9) * safety.speed * dt).any():  # type: ignore[operator]
                stats[f"{spec.kind} at velocity limit"] += 1
            previous = action.copy()

    run()
    # Not trivially satisfied: valid input does move the robots, the safety layer does act, input is refused.
    assert stats["arm valid moved"] > 1_000, stats
    assert stats["hand valid moved"] > 500, stats
    assert stats["hand at velocity limit"] > 200, stats  # the retargeter alone would have moved faster
    assert stats["rejected"] > 5_000, stats


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("robot", ["franka", "allegro"])
def test_after_garbage_valid_input_moves_the_robot_again(robot: str) -> None:
    spec = get_robot(robot)
    controller: Controller = ArmController(spec) if spec.kind == "arm" else HandController(spec)
    model = controller.model
    controller.reset(model.home, model.fk(model.home))
    garbage: list[DeviceSample] = [
        DeviceSample(t=0.0, engaged=True, T_world_device=np.full((4, 4), np.nan), gripper=np.nan),
        DeviceSample(t=0.0, engaged=True, keypoints=HAND.keypoints(np.full(5, 0.5)) * 1e300),
        DeviceSample(t=0.0, engaged=True, keypoints=np.full((21, 3), np.inf)),
    ]
    for sample in garbage:
        controller.act(sample, model.home, model.fk(model.home), 0.05)
    held = controller.action.copy()
    np.testing.assert_array_equal(held[: model.n], model.home)
    for k in range(10):
        if spec.kind == "arm":
            T = np.eye(4)
            T[:3, 3] = (0.01 * k, 0.0, 0.0)
            sample = DeviceSample(t=0.0, engaged=True, T_world_device=T, gripper=2.0)
        else:
            sample = DeviceSample(t=0.0, engaged=True, keypoints=HAND.keypoints(np.full(5, 0.9)))
        action = controller.act(sample, model.home, model.fk(model.home), 0.05)
    assert np.abs(action[: model.n] - held[: model.n]).max() > 0.05
    if spec.has_gripper:
        assert action[-1] == 1.0


def test_a_failing_hand_solver_holds_the_hand_and_restarts_from_the_last_safe_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller = HandController(get_robot("allegro"))
    model = controller.model
    controller.reset(model.home, np.eye(4))
    sample = DeviceSample(t=0.0, engaged=True, keypoints=HAND.keypoints(np.full(5, 0.4)))
    safe = controller.act(sample, model.home, np.eye(4), 0.05)
    restarted_from: list[np.ndarray] = []

    def broken(keypoints: np.ndarray, dt: float | None = None) -> np.ndarray:
        raise RuntimeError("LAPACK said no")

    monkeypatch.setattr(controller.retargeter, "retarget", broken)
    monkeypatch.setattr(controller.retargeter, "reset", lambda q=None: restarted_from.append(np.array(q)))
    np.testing.assert_array_equal(controller.act(sample, model.home, np.eye(4), 0.05), safe)
    assert controller.rejected == 1 and "LAPACK said no" in controller.last_error
    np.testing.assert_array_equal(restarted_from[0], safe)
