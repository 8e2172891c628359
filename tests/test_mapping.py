"""TeleopMapping: clutch re-anchoring, scaling, calibration, workspace clamp, unsafe input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from devices.base import DeviceSample
from kinematics.filters import EmaFilterConfig, OneEuroFilterConfig
from kinematics.mapping import MappingConfig, TeleopMapping
from teleop.errors import TeleopError, UnsafeInputError

T_EE = np.eye(4)
T_EE[:3, 3] = (0.5, 0.0, 0.4)
WIDE = {"workspace_lo": (-5.0, -5.0, -5.0), "workspace_hi": (5.0, 5.0, 5.0), "max_jump_m": 10.0}


def _pose(
    p: np.ndarray | tuple[float, ...], rotvec: np.ndarray | tuple[float, ...] = (0.0, 0.0, 0.0)
) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = p
    return T


def _sample(T: np.ndarray | None, engaged: bool, t: float = 0.0) -> DeviceSample:
    return DeviceSample(t=t, engaged=engaged, T_world_device=T)


def _mapping(**kwargs: object) -> TeleopMapping:
    return MappingConfig(**{**WIDE, **kwargs}).build()  # type: ignore[arg-type]


vec3 = st.tuples(*[st.floats(-0.3, 0.3)] * 3).map(np.array)


@settings(max_examples=60, deadline=None)
@given(start=vec3, move_engaged=vec3, move_released=vec3, move_again=vec3, rot=vec3)
def test_releasing_moving_and_regripping_never_moves_the_target(
    start: np.ndarray,
    move_engaged: np.ndarray,
    move_released: np.ndarray,
    move_again: np.ndarray,
    rot: np.ndarray,
) -> None:
    m = _mapping()
    m.update(_sample(_pose(start), False), T_EE)
    m.update(_sample(_pose(start), True), T_EE)
    held = m.update(_sample(_pose(start + move_engaged, rot), True), T_EE)
    np.testing.assert_allclose(held[:3, 3], T_EE[:3, 3] + move_engaged, atol=1e-12)
    # Release, move the device far, grip again: the target must not move at any of these samples.
    moved = start + move_engaged + move_released
    for engaged in (False, False, True):
        np.testing.assert_allclose(m.update(_sample(_pose(moved, -rot), engaged), T_EE), held, atol=1e-12)
    # Motion after re-gripping is relative to the new anchor.
    after = m.update(_sample(_pose(moved + move_again, -rot), True), T_EE)
    np.testing.assert_allclose(after[:3, 3], held[:3, 3] + move_again, atol=1e-12)


def test_first_engage_anchors_on_the_measured_pose_and_released_holds() -> None:
    m = _mapping()
    np.testing.assert_allclose(m.update(_sample(None, False), T_EE), T_EE)
    T_other = _pose((0.3, 0.1, 0.2))
    np.testing.assert_allclose(m.update(_sample(None, False), T_other), T_EE)  # holds, does not chase


@settings(max_examples=40, deadline=None)
@given(move=vec3, scale=st.floats(0.1, 3.0), yaw=st.floats(-np.pi, np.pi))
def test_translation_is_scaled_and_calibrated(move: np.ndarray, scale: float, yaw: float) -> None:
    R_base_device = Rotation.from_rotvec((0.0, 0.0, yaw)).as_matrix()
    m = _mapping(pos_scale=scale, R_base_device=tuple(map(tuple, R_base_device)))
    m.update(_sample(_pose((0.1, 0.2, 0.3)), True), T_EE)
    T = m.update(_sample(_pose(np.array((0.1, 0.2, 0.3)) + move), True), T_EE)
    np.testing.assert_allclose(T[:3, 3], T_EE[:3, 3] + scale * R_base_device @ move, atol=1e-12)
    np.testing.assert_allclose(T[:3, :3], T_EE[:3, :3], atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(rot=vec3, rot_scale=st.floats(0.0, 1.0), yaw=st.floats(-np.pi, np.pi))
def test_rotation_is_conjugated_into_the_base_and_scaled(
    rot: np.ndarray, rot_scale: float, yaw: float
) -> None:
    R_base_device = Rotation.from_rotvec((0.0, 0.0, yaw)).as_matrix()
    m = _mapping(rot_scale=rot_scale, R_base_device=tuple(map(tuple, R_base_device)))
    T_ee = _pose((0.5, 0.0, 0.4), (np.pi, 0.0, 0.0))
    R_dev0 = Rotation.from_rotvec((0.2, -0.1, 0.3)).as_matrix()
    T_dev0 = _pose((0.0, 0.0, 0.0))
    T_dev0[:3, :3] = R_dev0
    m.update(_sample(T_dev0, True), T_ee)
    T_dev1 = T_dev0.copy()
    T_dev1[:3, :3] = Rotation.from_rotvec(rot).as_matrix() @ R_dev0  # rotate by `rot` in the device frame
    T = m.update(_sample(T_dev1, True), T_ee)
    expected = Rotation.from_rotvec(rot_scale * (R_base_device @ rot)).as_matrix() @ T_ee[:3, :3]
    np.testing.assert_allclose(T[:3, :3], expected, atol=1e-9)
    np.testing.assert_allclose(T[:3, 3], T_ee[:3, 3], atol=1e-12)


def test_target_is_clamped_to_the_workspace_box_and_comes_back() -> None:
    m = MappingConfig(workspace_lo=(0.2, -0.3, 0.1), workspace_hi=(0.7, 0.3, 0.6), max_jump_m=10.0).build()
    m.update(_sample(_pose((0, 0, 0)), True), T_EE)
    T = m.update(_sample(_pose((5.0, -5.0, 0.1)), True), T_EE)
    np.testing.assert_allclose(T[:3, 3], (0.7, -0.3, 0.5))
    T = m.update(_sample(_pose((0.1, 0.0, 0.0)), True), T_EE)
    np.testing.assert_allclose(T[:3, 3], (0.6, 0.0, 0.4))


def test_filter_moves_a_fraction_alpha_toward_the_raw_target() -> None:
    m = _mapping(filter_alpha=0.25)
    m.update(_sample(_pose((0, 0, 0)), True), T_EE)
    T = m.update(_sample(_pose((0.2, 0, 0)), True), T_EE)
    np.testing.assert_allclose(T[:3, 3], T_EE[:3, 3] + (0.05, 0, 0), atol=1e-12)
    T = m.update(_sample(_pose((0.2, 0, 0)), True), T_EE)
    np.testing.assert_allclose(T[:3, 3], T_EE[:3, 3] + (0.05 + 0.75 * 0.05, 0, 0), atol=1e-12)


@pytest.mark.parametrize("bad", ["nan", "inf", "shape", "missing", "not_rotation"])
def test_unsafe_device_pose_raises_and_the_last_safe_target_is_held(bad: str) -> None:
    m = _mapping()
    m.update(_sample(_pose((0, 0, 0)), True), T_EE)
    safe = m.update(_sample(_pose((0.05, 0.02, 0)), True), T_EE)
    T_bad: np.ndarray | None = _pose((0.06, 0.02, 0))
    if bad == "nan":
        T_bad[0, 3] = np.nan  # type: ignore[index]
    elif bad == "inf":
        T_bad[1, 1] = np.inf  # type: ignore[index]
    elif bad == "shape":
        T_bad = T_bad[:3]  # type: ignore[index]
    elif bad == "missing":
        T_bad = None
    else:
        T_bad[:3, :3] *= 1.5  # type: ignore[index]
    with pytest.raises(UnsafeInputError):
        m.update(_sample(T_bad, True), T_EE)
    np.testing.assert_array_equal(m.target, safe)
    # The next valid sample re-anchors: still no jump, even though the device moved meanwhile.
    np.testing.assert_allclose(m.update(_sample(_pose((0.3, 0.3, 0.3)), True), T_EE), safe, atol=1e-12)


def test_a_single_sample_jump_is_rejected_and_not_followed() -> None:
    m = _mapping(max_jump_m=0.05)
    m.update(_sample(_pose((0, 0, 0)), True), T_EE)
    safe = m.update(_sample(_pose((0.03, 0, 0)), True), T_EE)
    with pytest.raises(UnsafeInputError, match="max_jump_m"):
        m.update(_sample(_pose((0.5, 0, 0)), True), T_EE)
    np.testing.assert_array_equal(m.target, safe)
    np.testing.assert_allclose(m.update(_sample(_pose((0.5, 0, 0)), True), T_EE), safe, atol=1e-12)
    T = m.update(_sample(_pose((0.52, 0, 0)), True), T_EE)
    np.testing.assert_allclose(T[:3, 3], safe[:3, 3] + (0.02, 0, 0), atol=1e-12)


def test_reset_sets_the_held_target() -> None:
    m = _mapping()
    T_new = _pose((0.4, 0.1, 0.3), (0.1, 0.2, 0.3))
    m.reset(T_new)
    np.testing.assert_allclose(m.update(_sample(_pose((1, 1, 1)), True), T_EE), T_new, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filter_alpha": 0.0},
        {"filter_alpha": 1.5},
        {"pos_scale": 0.0},
        {"rot_scale": -1.0},
        {"workspace_lo": (1.0, 0.0, 0.0), "workspace_hi": (0.5, 1.0, 1.0)},
        {"R_base_device": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, -1.0))},
        {"max_jump_m": 0.0},
    ],
)
def test_config_is_validated_at_build(kwargs: dict[str, object]) -> None:
    with pytest.raises(TeleopError):
        MappingConfig(**kwargs).build()  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ filters
def _still_noisy_device(m: TeleopMapping, n: int, seed: int = 0) -> np.ndarray:
    """Targets (n, 3) for a device held still with 1 mm of tracking jitter, sampled at 100 Hz."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        T = _pose(rng.normal(0.0, 0.001, 3))
        out.append(m.update(_sample(T, True, t=10.0 + k / 100.0), T_EE)[:3, 3])
    return np.array(out)


def test_a_one_euro_filter_removes_target_jitter_of_a_still_device() -> None:
    raw = _still_noisy_device(_mapping(), 500)
    filtered = _still_noisy_device(_mapping(filter=OneEuroFilterConfig(min_cutoff_hz=0.3, beta=10.0)), 500)
    assert filtered[100:].std(axis=0).max() < raw[100:].std(axis=0).min() / 5


@pytest.mark.parametrize("config", [OneEuroFilterConfig(), EmaFilterConfig(alpha=0.3)])
def test_a_filtered_target_never_jumps_at_regrip(config: OneEuroFilterConfig | EmaFilterConfig) -> None:
    m = _mapping(filter=config)
    t = 0.0
    for k in range(30):  # engaged: move 0.1 m along x and turn
        t += 0.01
        held = m.update(_sample(_pose((0.004 * k, 0.0, 0.0), (0.0, 0.0, 0.01 * k)), True, t), T_EE)
    for engaged, p in ((False, (0.5, 0.5, 0.5)), (True, (0.3, -0.2, 0.1))):  # release, move, grip again
        t += 0.01
        np.testing.assert_allclose(m.update(_sample(_pose(p), engaged, t), T_EE), held, atol=1e-12)
    t += 0.01
    after = m.update(_sample(_pose((0.31, -0.2, 0.1)), True, t), T_EE)
    assert 0.0 < after[0, 3] - held[0, 3] <= 0.01 + 1e-12  # follows the new motion, filtered


def test_a_sample_time_going_back_is_unsafe_with_a_filter() -> None:
    m = _mapping(filter=OneEuroFilterConfig())
    m.update(_sample(_pose((0, 0, 0)), True, t=1.0), T_EE)
    safe = m.update(_sample(_pose((0.01, 0, 0)), True, t=1.01), T_EE)
    with pytest.raises(UnsafeInputError, match="back"):
        m.update(_sample(_pose((0.02, 0, 0)), True, t=0.5), T_EE)
    np.testing.assert_array_equal(m.target, safe)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filter": OneEuroFilterConfig(), "filter_alpha": 0.5},
        {"filter": OneEuroFilterConfig(min_cutoff_hz=0.0)},
        {"filter": OneEuroFilterConfig(beta=-1.0)},
        {"filter": EmaFilterConfig(alpha=0.0)},
    ],
)
def test_filter_settings_are_validated_at_build(kwargs: dict[str, object]) -> None:
    with pytest.raises(TeleopError):
        MappingConfig(**kwargs).build()  # type: ignore[arg-type]
