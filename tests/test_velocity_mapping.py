"""VelocityMapping: deadzones, speed, hold, clutch, gripper edges, stalls, workspace, bad axes, frames, presets."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from devices.base import DeviceSample
from devices.keyboard import KeyboardDevice
from kinematics.velocity_mapping import VelocityMapping, VelocityMappingConfig, shape_axis, shape_stick
from teleop.errors import TeleopError, UnsafeInputError

T_EE = np.eye(4)
T_EE[:3, 3] = (0.5, 0.0, 0.4)
WIDE = {"workspace_lo": (-5.0, -5.0, -5.0), "workspace_hi": (5.0, 5.0, 5.0)}
RATE_HZ = 50.0


def _mapping(config: VelocityMappingConfig | None = None, **kwargs: Any) -> VelocityMapping:
    return replace(config or VelocityMappingConfig(), **{**WIDE, **kwargs}).build()


def _sample(t: float, axes: dict[str, float] | None = None, buttons: dict[str, bool] | None = None,
            engaged: bool = True) -> DeviceSample:
    return DeviceSample(t=t, engaged=engaged, axes=axes or {}, buttons=buttons or {})


def _run(m: VelocityMapping, axes: dict[str, float], seconds: float, t0: float = 0.0,
         buttons: dict[str, bool] | None = None, engaged: bool = True) -> tuple[np.ndarray, float]:
    """Feed `axes` at RATE_HZ for `seconds`, the arm tracking the target exactly; (last target, end time)."""
    T = m.target if m.target is not None else T_EE
    steps = round(seconds * RATE_HZ)
    for k in range(steps + 1):
        T = m.update(_sample(t0 + k / RATE_HZ, axes, buttons, engaged), T)
    return T, t0 + steps / RATE_HZ


def _moved(axes: dict[str, float], seconds: float = 1.0, **kwargs: Any) -> np.ndarray:
    m = _mapping(**kwargs)
    m.reset(T_EE)
    T, _ = _run(m, axes, seconds)
    return T[:3, 3] - T_EE[:3, 3]


# ------------------------------------------------------------------------------------------ deadzones
def test_inside_the_deadzone_nothing_moves() -> None:
    for axes in ({"left_y": 0.09}, {"left_x": -0.07, "left_y": 0.07}, {"right_y": -0.099}):
        np.testing.assert_allclose(_moved(axes), 0.0, atol=1e-15)


def test_just_outside_the_deadzone_moves_a_little_and_grows_continuously() -> None:
    speed = VelocityMappingConfig().max_linear_speed_mps
    small = _moved({"left_y": 0.1 + 1e-3})[0]
    assert 0.0 < small < 2e-3 * speed
    values = [shape_axis(v, 0.1) for v in np.linspace(0.0, 1.0, 1001)]
    assert max(np.abs(np.diff(values))) < 2e-3  # no step anywhere, including the edge
    assert values[-1] == 1.0


@settings(max_examples=200, deadline=None)
@given(angle=st.floats(-math.pi, math.pi), radius=st.floats(0.0, 1.0), deadzone=st.floats(0.0, 0.5),
       expo=st.floats(0.0, 1.0))
def test_radial_deadzone_keeps_direction_and_is_continuous(angle: float, radius: float, deadzone: float,
                                                             expo: float) -> None:
    x, y = radius * math.cos(angle), radius * math.sin(angle)
    radius = math.hypot(x, y)
    ox, oy = shape_stick(x, y, deadzone, expo)
    out = math.hypot(ox, oy)
    assert out <= 1.0 + 1e-12
    if radius <= deadzone:
        assert out == 0.0
    else:
        assert ox * y - oy * x == pytest.approx(0.0, abs=1e-12) and ox * x + oy * y >= 0.0
        assert out <= (radius - deadzone) / (1.0 - deadzone) + 1e-12  # expo only slows, never jumps
        eps = 1e-6
        nx, ny = shape_stick(x * (1 + eps), y * (1 + eps), deadzone, expo)
        assert abs(math.hypot(nx, ny) - out) < 1e-4


def test_expo_gives_finer_control_near_the_centre_and_full_speed_at_full_deflection() -> None:
    assert shape_axis(0.5, 0.0, expo=0.5) < shape_axis(0.5, 0.0)
    assert shape_axis(-1.0, 0.1, expo=0.7) == -1.0


# --------------------------------------------------------------------------------------------- speed
def test_full_stick_for_one_second_moves_the_maximum_speed() -> None:
    config = VelocityMappingConfig(max_linear_speed_mps=0.2, max_angular_speed_radps=0.6)
    moved = _moved({"left_y": 1.0}, max_linear_speed_mps=0.2)
    assert moved[0] == pytest.approx(0.2, rel=0.01)
    np.testing.assert_allclose(moved[1:], 0.0, atol=1e-12)
    m = _mapping(config)
    m.reset(T_EE)
    T, _ = _run(m, {"right_x": -1.0}, 1.0)  # right stick right is -wz: left is +yaw
    assert Rotation.from_matrix(T[:3, :3]).as_rotvec()[2] == pytest.approx(0.6, rel=0.01)


def test_diagonals_are_not_faster_than_the_maximum_speed() -> None:
    moved = _moved({"left_x": 1.0, "left_y": 1.0, "right_y": 1.0})
    assert np.linalg.norm(moved) == pytest.approx(VelocityMappingConfig().max_linear_speed_mps, rel=0.01)


def test_speed_buttons_step_through_the_levels_on_presses() -> None:
    m = _mapping(speed_levels=(0.25, 0.5, 1.0), initial_speed_level=2)
    m.reset(T_EE)
    t = 0.0
    m.update(_sample(t), T_EE)
    for button, expected in (("l1", 0.5), ("l1", 0.25), ("l1", 0.25), ("r1", 0.5)):
        for pressed in (True, True, False):  # held for two samples: one step
            t += 0.02
            m.update(_sample(t, buttons={button: pressed}), T_EE)
        assert m.speed_scale == expected
    T, _ = _run(m, {"left_y": 1.0}, 1.0, t0=t)
    assert T[0, 3] - T_EE[0, 3] == pytest.approx(0.5 * 0.15, rel=0.01)


# ----------------------------------------------------------------------------------- hold and clutch
def test_hold_button_freezes_the_target_and_releasing_it_resumes_without_a_leap() -> None:
    m = _mapping()
    m.reset(T_EE)
    T, t = _run(m, {"left_y": 1.0}, 0.5)
    frozen, t = _run(m, {"left_y": 1.0}, 1.0, t0=t + 0.02, buttons={"circle": True})
    np.testing.assert_array_equal(frozen, T)
    assert not m.engaged
    after = m.update(_sample(t + 0.02, {"left_y": 1.0}), frozen)
    assert after[0, 3] - frozen[0, 3] == pytest.approx(0.15 * 0.02, rel=1e-6)


def test_disengaged_freezes_the_target() -> None:
    m = _mapping()
    m.reset(T_EE)
    T, _ = _run(m, {"left_y": 1.0, "right_x": 1.0}, 1.0, engaged=False)
    np.testing.assert_array_equal(T, T_EE)
    assert not m.engaged


# ------------------------------------------------------------------------------------------- gripper
def test_gripper_toggles_on_the_rising_edge_only() -> None:
    m = _mapping()
    m.reset(T_EE)
    states = []
    presses = (False, True, True, True, False, False, True, False, True, True)
    for k, pressed in enumerate(presses):
        m.update(_sample(0.02 * k, buttons={"cross": pressed}), T_EE)
        states.append(m.gripper)
    assert states == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]


def test_gripper_ignores_presses_while_disengaged_or_held_at_reset() -> None:
    m = _mapping()
    m.reset(T_EE)
    m.update(_sample(0.0, buttons={"cross": True}), T_EE)  # down before the episode: not a press
    m.update(_sample(0.02, buttons={"cross": False}, engaged=False), T_EE)
    m.update(_sample(0.04, buttons={"cross": True}, engaged=False), T_EE)
    m.update(_sample(0.06, buttons={"cross": True}), T_EE)  # still the same press, now engaged
    assert m.gripper == 0.0
    m.update(_sample(0.08, buttons={"cross": True, "circle": True}), T_EE)
    m.update(_sample(0.10, buttons={"cross": False, "circle": True}), T_EE)
    m.update(_sample(0.12, buttons={"cross": True, "circle": True}), T_EE)  # hold freezes motion, not the gripper
    assert m.gripper == 1.0
    m.reset(T_EE)
    assert m.gripper == 0.0


# ----------------------------------------------------------------------------------- time and safety
def test_a_stall_integrates_at_most_max_dt() -> None:
    m = _mapping(max_dt_s=0.1)
    m.reset(T_EE)
    T = m.update(_sample(0.0, {"left_y": 1.0}), T_EE)
    np.testing.assert_array_equal(T, T_EE)  # no time has passed on the first sample
    T = m.update(_sample(5.0, {"left_y": 1.0}), T)
    assert T[0, 3] - T_EE[0, 3] == pytest.approx(0.15 * 0.1)
    T2 = m.update(_sample(4.0, {"left_y": 1.0}), T)  # time going backwards integrates nothing
    np.testing.assert_array_equal(T2, T)


def test_workspace_box_clamps_the_target() -> None:
    m = VelocityMappingConfig(workspace_hi=(0.55, 0.6, 0.9), max_lead_m=math.inf).build()
    m.reset(T_EE)
    T, _ = _run(m, {"left_y": 1.0}, 2.0)
    assert T[0, 3] == pytest.approx(0.55)


def test_the_target_does_not_wind_up_ahead_of_an_arm_that_cannot_follow() -> None:
    m = _mapping(max_lead_m=0.05, max_lead_rad=0.2)
    m.reset(T_EE)
    T = T_EE
    for k in range(200):
        T = m.update(_sample(0.02 * k, {"left_y": 1.0, "right_x": 1.0}), T_EE)  # the arm is stuck at T_EE
    assert np.linalg.norm(T[:3, 3] - T_EE[:3, 3]) == pytest.approx(0.05)
    assert Rotation.from_matrix(T[:3, :3]).magnitude() == pytest.approx(0.2)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1.2, -3.0])
def test_bad_axis_raises_and_holds_the_target(value: float) -> None:
    m = _mapping()
    m.reset(T_EE)
    T, t = _run(m, {"left_y": 1.0}, 0.2)
    with pytest.raises(UnsafeInputError, match="left_x"):
        m.update(_sample(t + 0.02, {"left_y": 1.0, "left_x": value}), T)
    np.testing.assert_array_equal(m.target, T)
    after = m.update(_sample(t + 0.04, {"left_y": 1.0}), T)  # the refused interval is not integrated later
    assert after[0, 3] - T[0, 3] == pytest.approx(0.15 * 0.02, rel=1e-6)


def test_axes_slightly_past_full_scale_are_clipped_and_unmapped_axes_ignored() -> None:
    moved = _moved({"left_y": 1.03, "l2": math.nan}, seconds=1.0)
    assert moved[0] == pytest.approx(0.15, rel=0.01)


def test_nan_time_raises_and_holds() -> None:
    m = _mapping()
    m.reset(T_EE)
    with pytest.raises(UnsafeInputError, match="time"):
        m.update(_sample(math.nan, {"left_y": 1.0}), T_EE)
    np.testing.assert_array_equal(m.target, T_EE)


# --------------------------------------------------------------------------------------------- frames
def test_ee_frame_commands_rotate_with_the_end_effector() -> None:
    T_turned = T_EE.copy()
    T_turned[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    for frame, expected in (("base", (1.0, 0.0, 0.0)), ("ee", (0.0, 1.0, 0.0))):
        m = _mapping(frame=frame)
        m.reset(T_turned)
        T, _ = _run(m, {"left_y": 1.0}, 1.0)
        direction = (T[:3, 3] - T_turned[:3, 3]) / 0.15
        np.testing.assert_allclose(direction, expected, atol=0.01)


def test_ee_frame_rotation_is_about_the_end_effector_axes() -> None:
    T_down = T_EE.copy()
    T_down[:3, :3] = Rotation.from_euler("x", 180, degrees=True).as_matrix()  # tool z points down
    m = _mapping(frame="ee")
    m.reset(T_down)
    T, _ = _run(m, {"right_x": -1.0}, 1.0)  # +wz in the tool frame
    R_rel = T_down[:3, :3].T @ T[:3, :3]
    np.testing.assert_allclose(Rotation.from_matrix(R_rel).as_rotvec(), (0.0, 0.0, 0.8), atol=0.01)


# -------------------------------------------------------------------------------------------- presets
DUALSHOCK_DIRECTIONS = [
    ({"left_y": 1.0}, (1, 0, 0), (0, 0, 0)),
    ({"left_x": 1.0}, (0, -1, 0), (0, 0, 0)),
    ({"right_y": 1.0}, (0, 0, 1), (0, 0, 0)),
    ({"right_x": 1.0}, (0, 0, 0), (0, 0, -1)),
    ({"dpad_x": 1.0}, (0, 0, 0), (1, 0, 0)),
    ({"dpad_y": 1.0}, (0, 0, 0), (0, 1, 0)),
]


@pytest.mark.parametrize("preset", [VelocityMappingConfig.dualshock, VelocityMappingConfig.dualsense])
@pytest.mark.parametrize(("axes", "linear", "angular"), DUALSHOCK_DIRECTIONS)
def test_gamepad_presets_map_sticks_to_the_documented_directions(
    preset: Any, axes: dict[str, float], linear: tuple[int, ...], angular: tuple[int, ...]
) -> None:
    m = _mapping(preset())
    m.reset(T_EE)
    T, _ = _run(m, axes, 0.2)
    _assert_direction(T, linear, angular)


def test_dualshock_buttons() -> None:
    c = VelocityMappingConfig.dualshock()
    assert (c.gripper_button, c.hold_button, c.speed_up_button, c.speed_down_button) == ("cross", "circle", "r1", "l1")


KEYBOARD_DIRECTIONS = [
    ("w", (1, 0, 0), (0, 0, 0)), ("s", (-1, 0, 0), (0, 0, 0)),
    ("a", (0, 1, 0), (0, 0, 0)), ("d", (0, -1, 0), (0, 0, 0)),
    ("r", (0, 0, 1), (0, 0, 0)), ("f", (0, 0, -1), (0, 0, 0)),
    ("l", (0, 0, 0), (1, 0, 0)), ("j", (0, 0, 0), (-1, 0, 0)),
    ("i", (0, 0, 0), (0, 1, 0)), ("k", (0, 0, 0), (0, -1, 0)),
    ("q", (0, 0, 0), (0, 0, 1)), ("e", (0, 0, 0), (0, 0, -1)),
]


@pytest.mark.parametrize(("key", "linear", "angular"), KEYBOARD_DIRECTIONS)
def test_keyboard_preset_maps_keys_to_the_documented_directions(
    clock: Any, key: str, linear: tuple[int, ...], angular: tuple[int, ...]
) -> None:
    device = KeyboardDevice(clock=clock)
    device.connect()
    m = _mapping(VelocityMappingConfig.keyboard())
    m.reset(T_EE)
    device.press("space")
    device.press(key)
    T = m.update(device.read(), T_EE)
    for _ in range(10):
        clock.sleep(0.02)
        T = m.update(device.read(), T)
    _assert_direction(T, linear, angular)


def test_keyboard_g_toggles_the_gripper_through_the_preset(clock: Any) -> None:
    device = KeyboardDevice(clock=clock)
    device.connect()
    m = _mapping(VelocityMappingConfig.keyboard())
    m.reset(T_EE)
    device.press("space")
    m.update(device.read(), T_EE)
    device.press("g")
    device.release("g")  # a tap between two reads still counts
    clock.sleep(0.02)
    m.update(device.read(), T_EE)
    assert m.gripper == 1.0
    clock.sleep(0.02)
    m.update(device.read(), T_EE)
    assert m.gripper == 1.0


def _assert_direction(T: np.ndarray, linear: tuple[int, ...], angular: tuple[int, ...]) -> None:
    dp = T[:3, 3] - T_EE[:3, 3]
    dr = Rotation.from_matrix(T[:3, :3] @ T_EE[:3, :3].T).as_rotvec()
    for moved, expected in ((dp, linear), (dr, angular)):
        if any(expected):
            assert np.linalg.norm(moved) > 0
            np.testing.assert_allclose(moved / np.linalg.norm(moved), expected, atol=1e-9)
        else:
            np.testing.assert_allclose(moved, 0.0, atol=1e-12)


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kwargs",
    [
        {"frame": "world"}, {"deadzone": 1.0}, {"axis_deadzones": (("left_x", -0.1),)}, {"expo": 1.5},
        {"max_linear_speed_mps": 0.0}, {"max_angular_speed_radps": math.nan}, {"speed_levels": (1.0, 0.5)},
        {"initial_speed_level": 3}, {"workspace_lo": (1.0, 0.0, 0.0)}, {"vx": "-"}, {"hold_button": ""},
        {"stick_pairs": (("a", "b"), ("b", "c"))}, {"max_dt_s": 0.0},
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TeleopError, match="VelocityMappingConfig"):
        VelocityMappingConfig(**kwargs).build()


def test_per_axis_deadzone_overrides_the_default() -> None:
    m = _mapping(axis_deadzones=(("dpad_x", 0.5),))
    m.reset(T_EE)
    T, _ = _run(m, {"dpad_x": 0.3}, 0.2)
    np.testing.assert_array_equal(T, T_EE)
    T, _ = _run(m, {"dpad_x": 0.6}, 0.2, t0=1.0)
    assert Rotation.from_matrix(T[:3, :3]).as_rotvec()[0] > 0
