"""Gamepad or keyboard axes -> end-effector velocity -> integrated end-effector target.

Rate control, as with a PlayStation controller or a keyboard: the axes of a sample command a linear and an
angular velocity of the end-effector target, which is integrated over the time between samples. Each axis
first passes a deadzone (radial for the two axes of a stick, rescaled so the output grows from 0 at the
deadzone edge) and an optional expo curve; the velocity is then scaled by the current speed level. Buttons
toggle the gripper (on the rising edge), hold the target still while pressed, and step the speed level.

Default map (`VelocityMappingConfig()` == `VelocityMappingConfig.dualshock()`), DualShock 4 / DualSense.
Axis conventions expected from the gamepad device: sticks x +1 right, y +1 pushed forward (away from the
operator); d-pad x +1 right, y +1 up. The operator stands behind the robot, looking along base +x:

    left stick  y  -> vx  (forward = +x)          right stick y -> vz  (forward = +z, up)
    left stick  x  -> -vy (right = -y)            right stick x -> -wz (right = yaw clockwise from above)
    d-pad       x  -> wx  (right = +roll)         d-pad       y -> wy  (up = +pitch)
    cross  -> gripper toggle   circle -> hold   r1 -> faster   l1 -> slower

The keyboard map is `VelocityMappingConfig.keyboard()` (axes named after the motion; see devices.keyboard).

Frames: the velocity is expressed in the base frame ("base") or in the current target frame ("ee"); the
target is T_base_target. While the hold button is pressed, or `DeviceSample.engaged` is False, the target
holds still. Unsafe input (a non-finite time, a mapped axis that is NaN, inf or outside [-1, 1] beyond a
small tolerance) raises UnsafeInputError from `update`, and the last safe target is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pinocchio as pin

from devices.base import DeviceSample
from teleop.errors import TeleopError, UnsafeInputError

FRAMES = ("base", "ee")
COMMANDS = ("vx", "vy", "vz", "wx", "wy", "wz")


class _AxisRef(NamedTuple):
    """One velocity command's source: an axis name and a sign; name "" leaves the command at 0."""

    name: str
    sign: float


@dataclass(frozen=True)
class VelocityMappingConfig:
    """Axes-to-velocity mapping settings. Defaults: a DualShock 4 / DualSense (see the module docstring).

    Attributes:
        vx, vy, vz: Axis driving the linear velocity along x, y, z of `frame`; a leading "-" inverts it,
            "" leaves that direction unused.
        wx, wy, wz: Axis driving the angular velocity about x, y, z of `frame`, as above.
        deadzone: Deadzone of every axis not in `axis_deadzones`, in [0, 1).
        axis_deadzones: Per-axis deadzone overrides, (axis name, deadzone) pairs.
        stick_pairs: Axis pairs of one stick, (x name, y name); their deadzone is radial (the larger of the
            two axes' deadzones) and applies to the stick's deflection, so diagonals are not cut.
        expo: Response curve, in [0, 1]: out = (1 - expo) m + expo m^3 of the deflection m beyond the
            deadzone; 0 is linear, larger values give finer control near the centre.
        max_linear_speed_mps: Target speed at full deflection and the top speed level [m/s]; the linear
            velocity's norm never exceeds it (diagonals are not faster).
        max_angular_speed_radps: The same for the angular velocity [rad/s].
        speed_levels: Fractions of the maximum speeds, ascending, each in (0, 1]; the speed buttons step
            through them.
        initial_speed_level: Index into `speed_levels` after build and reset.
        frame: "base" (velocity in the robot base axes) or "ee" (in the end-effector target's axes).
        workspace_lo: Lower corner of the allowed target box in the base frame (3,) [m].
        workspace_hi: Upper corner of the allowed target box in the base frame (3,) [m].
        max_dt_s: Longest time step integrated at once [s]; a longer gap (a stalled reader) counts as this
            long, so the target never leaps.
        max_lead_m: Farthest the target may run ahead of the measured end effector [m] (no wind-up when
            the arm cannot follow, e.g. at a joint limit); math.inf disables the bound.
        max_lead_rad: The same for the orientation [rad].
        axis_tolerance: Mapped axes may exceed [-1, 1] by this much (calibration noise) and are clipped;
            beyond it the sample is refused.
        gripper_button: Button toggling the gripper on its rising edge; None: no gripper toggle.
        hold_button: Button holding the target still while pressed; None: no hold button.
        speed_up_button: Button stepping to the next faster speed level; None: none.
        speed_down_button: Button stepping to the next slower speed level; None: none.
    """

    vx: str = "left_y"
    vy: str = "-left_x"
    vz: str = "right_y"
    wx: str = "dpad_x"
    wy: str = "dpad_y"
    wz: str = "-right_x"
    deadzone: float = 0.1
    axis_deadzones: tuple[tuple[str, float], ...] = ()
    stick_pairs: tuple[tuple[str, str], ...] = (("left_x", "left_y"), ("right_x", "right_y"))
    expo: float = 0.0
    max_linear_speed_mps: float = 0.15
    max_angular_speed_radps: float = 0.8
    speed_levels: tuple[float, ...] = (0.25, 0.5, 1.0)
    initial_speed_level: int = 2
    frame: str = "base"
    workspace_lo: tuple[float, float, float] = (0.15, -0.6, 0.02)
    workspace_hi: tuple[float, float, float] = (0.85, 0.6, 0.9)
    max_dt_s: float = 0.1
    max_lead_m: float = 0.1
    max_lead_rad: float = 0.5
    axis_tolerance: float = 0.05
    gripper_button: str | None = "cross"
    hold_button: str | None = "circle"
    speed_up_button: str | None = "r1"
    speed_down_button: str | None = "l1"

    @classmethod
    def dualshock(cls) -> VelocityMappingConfig:
        """DualShock 4 layout (the defaults; map in the module docstring)."""
        return cls()

    @classmethod
    def dualsense(cls) -> VelocityMappingConfig:
        """DualSense (PS5) layout: the same names and map as the DualShock 4."""
        return cls.dualshock()

    @classmethod
    def keyboard(cls) -> VelocityMappingConfig:
        """devices.keyboard.KeyboardDevice: axes "forward", "left", "up", "roll", "pitch", "yaw" (keys w/s,
        a/d, r/f, l/j, i/k, q/e), gripper toggle on g, faster on "=" (equal), slower on "-" (minus), no hold
        button (releasing the keys stops the motion; space toggles engagement). Keys are exact: no deadzone.
        """
        return cls(
            vx="forward", vy="left", vz="up", wx="roll", wy="pitch", wz="yaw",
            deadzone=0.0, stick_pairs=(), gripper_button="g", hold_button=None,
            speed_up_button="equal", speed_down_button="minus",
        )

    def build(self) -> VelocityMapping:
        """Validate and return the stateful mapping."""
        refs = tuple(_parse_axis(getattr(self, name), name) for name in COMMANDS)
        _check(self.frame in FRAMES, f"frame must be one of {FRAMES}, got {self.frame!r}")
        deadzones = dict(self.axis_deadzones)
        _check(len(deadzones) == len(self.axis_deadzones), "axis_deadzones names an axis twice")
        for value in (self.deadzone, *deadzones.values()):
            _check(0.0 <= value < 1.0, f"deadzones must be in [0, 1), got {value}")
        _check_pairs(self.stick_pairs)
        _check(0.0 <= self.expo <= 1.0, f"expo must be in [0, 1], got {self.expo}")
        _check(_positive(self.max_linear_speed_mps), "max_linear_speed_mps must be > 0 and finite")
        _check(_positive(self.max_angular_speed_radps), "max_angular_speed_radps must be > 0 and finite")
        levels = self.speed_levels
        _check(len(levels) > 0 and all(0.0 < v <= 1.0 for v in levels), "speed_levels must be in (0, 1]")
        _check(list(levels) == sorted(levels), "speed_levels must be ascending")
        _check(0 <= self.initial_speed_level < len(levels), "initial_speed_level is not an index of speed_levels")
        lo = np.asarray(self.workspace_lo, dtype=float)
        hi = np.asarray(self.workspace_hi, dtype=float)
        _check(lo.shape == hi.shape == (3,) and bool(np.all(lo < hi)), "workspace_lo must be below workspace_hi")
        _check(_positive(self.max_dt_s), "max_dt_s must be > 0 and finite")
        _check(self.max_lead_m > 0 and self.max_lead_rad > 0, "max_lead_m and max_lead_rad must be > 0 (inf: off)")
        _check(0.0 <= self.axis_tolerance < 0.5, "axis_tolerance must be in [0, 0.5)")
        for button in (self.gripper_button, self.hold_button, self.speed_up_button, self.speed_down_button):
            _check(button is None or bool(button), "button names must be non-empty (None: no such button)")
        return VelocityMapping(self, refs, deadzones, lo, hi)


class VelocityMapping:
    """Rate-controlled end-effector target; build with VelocityMappingConfig.build().

    Same interface as kinematics.mapping.TeleopMapping (`update`, `reset`, `target`, `engaged`), plus the
    toggled `gripper` command and the current `speed_scale`.
    """

    def __init__(
        self,
        config: VelocityMappingConfig,
        refs: tuple[_AxisRef, ...],
        deadzones: dict[str, float],
        lo: np.ndarray,
        hi: np.ndarray,
    ) -> None:
        self.config = config
        self.workspace_lo, self.workspace_hi = lo, hi
        self._refs = refs
        self._deadzones = deadzones
        paired = {name for pair in config.stick_pairs for name in pair}
        used = {ref.name for ref in refs if ref.name}
        self._pairs = tuple(pair for pair in config.stick_pairs if used & set(pair))
        self._singles = tuple(sorted(used - paired))
        self._target: np.ndarray | None = None  # last safe target, T_base_target (4, 4)
        self._following = False
        self._clear()

    # ----------------------------------------------------------------------------------------- properties
    @property
    def target(self) -> np.ndarray | None:
        """The last safe target T_base_target (4, 4), or None before the first update / reset."""
        return None if self._target is None else self._target.copy()

    @property
    def engaged(self) -> bool:
        """Whether the last update moved the target with the axes (engaged and not held)."""
        return self._following

    @property
    def gripper(self) -> float:
        """Gripper command: 0.0 open, 1.0 closed; toggled by the gripper button's rising edge."""
        return self._gripper

    @property
    def speed_scale(self) -> float:
        """Current speed level: fraction of the maximum speeds, in (0, 1]."""
        return self.config.speed_levels[self._level]

    # ------------------------------------------------------------------------------------------ per tick
    def reset(self, T_base_ee: np.ndarray) -> None:
        """Hold T_base_ee (4, 4) as the target; gripper open, initial speed level, no time or button history."""
        self._target = self._clamp(_validate_pose(T_base_ee, "T_base_ee"))
        self._clear()

    def update(self, sample: DeviceSample, T_base_ee: np.ndarray) -> np.ndarray:
        """The end-effector target T_base_target (4, 4) after integrating this sample's velocity command.

        Args:
            sample: Device sample; its `t`, `engaged`, `axes` and `buttons` are used.
            T_base_ee: Measured end-effector pose (4, 4); the target starts there if none is held yet and
                stays within max_lead_m / max_lead_rad of it.
        Raises:
            UnsafeInputError: a non-finite sample time, a mapped axis non-finite or outside [-1, 1] beyond
                axis_tolerance, or a malformed T_base_ee; the last safe target is kept.
        """
        held = self._target
        if held is None:
            held = self._target = self._clamp(_validate_pose(T_base_ee, "T_base_ee"))
        self._following = False
        dt = self._advance_clock(sample.t)
        axes = self._read_axes(sample.axes)
        hold = self._handle_buttons(sample)
        if not sample.engaged or hold or dt == 0.0:
            return held.copy()
        T = self._integrate(held, self._twist(axes), dt)
        if np.isfinite(self.config.max_lead_m) or np.isfinite(self.config.max_lead_rad):
            T = self._limit_lead(T, _validate_pose(T_base_ee, "T_base_ee"))
        self._target = self._clamp(T)
        self._following = True
        return self._target.copy()

    # ---------------------------------------------------------------------------------------- internals
    def _clear(self) -> None:
        self._t_last: float | None = None
        self._buttons_last: dict[str, bool] | None = None
        self._gripper = 0.0
        self._level = self.config.initial_speed_level
        self._following = False

    def _advance_clock(self, t: float) -> float:
        """Time step since the previous sample [s], in [0, max_dt_s]; 0 for the first one."""
        if not math.isfinite(t):
            raise UnsafeInputError(f"sample time must be finite, got {t}: the target is held")
        last, self._t_last = self._t_last, float(t)
        if last is None:
            return 0.0
        return min(max(0.0, t - last), self.config.max_dt_s)

    def _read_axes(self, raw: dict[str, float]) -> dict[str, float]:
        """Validated, deadzoned and curved values of the mapped axes; a missing axis reads 0 (a gamepad
        reports an axis only once it has moved)."""
        tol = self.config.axis_tolerance
        values: dict[str, float] = {}
        for name in (*self._singles, *(n for pair in self._pairs for n in pair)):
            value = float(raw.get(name, 0.0))
            if not (math.isfinite(value) and abs(value) <= 1.0 + tol):
                raise UnsafeInputError(f"axis {name!r} reads {value}, outside [-1, 1]: the target is held")
            values[name] = min(1.0, max(-1.0, value))
        expo = self.config.expo
        out = {name: shape_axis(values[name], self._deadzone(name), expo) for name in self._singles}
        for x_name, y_name in self._pairs:
            deadzone = max(self._deadzone(x_name), self._deadzone(y_name))
            out[x_name], out[y_name] = shape_stick(values[x_name], values[y_name], deadzone, expo)
        return out

    def _deadzone(self, name: str) -> float:
        return self._deadzones.get(name, self.config.deadzone)

    def _handle_buttons(self, sample: DeviceSample) -> bool:
        """Apply rising edges (speed always; gripper only while engaged); return whether hold is pressed."""
        c = self.config
        now = {name: bool(sample.buttons.get(name, False)) for name in _buttons(c)}
        last, self._buttons_last = self._buttons_last, now
        if last is None:  # first sample after reset: a button already down is not a press
            last = now

        def rose(name: str | None) -> bool:
            return name is not None and now[name] and not last[name]

        if rose(c.speed_up_button):
            self._level = min(self._level + 1, len(c.speed_levels) - 1)
        if rose(c.speed_down_button):
            self._level = max(self._level - 1, 0)
        if sample.engaged and rose(c.gripper_button):
            self._gripper = 1.0 - self._gripper
        return c.hold_button is not None and now[c.hold_button]

    def _twist(self, axes: dict[str, float]) -> np.ndarray:
        """Linear [m/s] and angular [rad/s] velocity (6,) in `frame` axes, norms within the speed limits."""
        command = np.array([ref.sign * axes[ref.name] if ref.name else 0.0 for ref in self._refs])
        scale = self.speed_scale
        linear = _cap_norm(command[:3], 1.0) * (scale * self.config.max_linear_speed_mps)
        angular = _cap_norm(command[3:], 1.0) * (scale * self.config.max_angular_speed_radps)
        return np.concatenate((linear, angular))

    def _integrate(self, T: np.ndarray, twist: np.ndarray, dt: float) -> np.ndarray:
        """T moved by twist * dt: in base axes (rotation about the target's origin) or in target axes."""
        out = T.copy()
        R = T[:3, :3]
        dR = pin.exp3(twist[3:] * dt)
        if self.config.frame == "ee":
            out[:3, 3] += R @ (twist[:3] * dt)
            out[:3, :3] = R @ dR
        else:
            out[:3, 3] += twist[:3] * dt
            out[:3, :3] = dR @ R
        return out

    def _limit_lead(self, T: np.ndarray, T_base_ee: np.ndarray) -> np.ndarray:
        """T pulled back to within max_lead_m / max_lead_rad of the measured end effector."""
        c = self.config
        out = T.copy()
        offset = T[:3, 3] - T_base_ee[:3, 3]
        out[:3, 3] = T_base_ee[:3, 3] + _cap_norm(offset, c.max_lead_m)
        rotvec = pin.log3(T[:3, :3] @ T_base_ee[:3, :3].T)
        angle = float(np.linalg.norm(rotvec))
        if angle > c.max_lead_rad:
            out[:3, :3] = pin.exp3(rotvec * (c.max_lead_rad / angle)) @ T_base_ee[:3, :3]
        return out

    def _clamp(self, T: np.ndarray) -> np.ndarray:
        T = T.copy()
        T[:3, 3] = np.clip(T[:3, 3], self.workspace_lo, self.workspace_hi)
        return T


def shape_axis(value: float, deadzone: float, expo: float = 0.0) -> float:
    """One axis in [-1, 1] through a deadzone (rescaled: 0 at its edge, 1 at full) and an expo curve."""
    magnitude = _rescale(abs(value), deadzone, expo)
    return math.copysign(magnitude, value) if magnitude > 0.0 else 0.0


def shape_stick(x: float, y: float, deadzone: float, expo: float = 0.0) -> tuple[float, float]:
    """A stick's (x, y) through a radial deadzone and an expo curve on its deflection; direction kept.

    The output deflection is 0 up to the deadzone, grows continuously from there and reaches 1 at full
    deflection (a deflection above 1, a square gate's corner, is capped at 1).
    """
    radius = math.hypot(x, y)
    magnitude = _rescale(radius, deadzone, expo)
    if magnitude == 0.0:
        return 0.0, 0.0
    return x * magnitude / radius, y * magnitude / radius


def _rescale(magnitude: float, deadzone: float, expo: float) -> float:
    m = (min(magnitude, 1.0) - deadzone) / (1.0 - deadzone)
    if m <= 0.0:
        return 0.0
    return (1.0 - expo) * m + expo * m**3


def _cap_norm(v: np.ndarray, limit: float) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v * (limit / norm) if norm > limit else v


def _buttons(config: VelocityMappingConfig) -> tuple[str, ...]:
    names = (config.gripper_button, config.hold_button, config.speed_up_button, config.speed_down_button)
    return tuple(name for name in names if name is not None)


def _parse_axis(spec: str, command: str) -> _AxisRef:
    name = spec[1:] if spec.startswith("-") else spec
    _check(spec == "" or (bool(name) and not name.startswith("-")), f"{command}={spec!r} is not an axis name")
    return _AxisRef(name, -1.0 if spec.startswith("-") else 1.0)


def _check_pairs(pairs: tuple[tuple[str, str], ...]) -> None:
    names = [name for pair in pairs for name in pair]
    _check(all(len(pair) == 2 for pair in pairs), "stick_pairs must hold (x name, y name) pairs")
    _check(len(names) == len(set(names)), "an axis appears twice in stick_pairs")


def _validate_pose(T: np.ndarray | None, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=float)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise UnsafeInputError(f"{name} must be a finite 4x4 pose, got shape {T.shape}")
    R = T[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
        raise UnsafeInputError(f"{name} rotation is not a rotation matrix")
    return T


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TeleopError(f"invalid VelocityMappingConfig: {message}")
