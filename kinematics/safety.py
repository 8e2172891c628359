"""The last gate before the robot: every joint target leaving the kinematics layer goes through JointSafety.

`JointSafety.check(q_target, dt)` returns a target that is finite, inside the URDF position limits shrunk
by a margin, and within `velocity_limit * velocity_fraction * dt` of the previous safe target. Input that
cannot be made safe by clamping (NaN, inf, a wrong shape, strings, None, a bad period) raises
UnsafeInputError and leaves the previous safe target in place, so the caller can hold it.

The IK and the retargeter have their own, tighter limits; this layer does not replace them, it guarantees
the bounds whatever the solver upstream returns.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from teleop.errors import TeleopError, UnsafeInputError

if TYPE_CHECKING:
    from kinematics.robot_model import RobotModel

_NUMERIC_KINDS = "iuf"  # integer, unsigned, float; no bool, complex, string or object arrays


@dataclass(frozen=True)
class JointSafetyConfig:
    """Bounds every joint target must respect.

    Attributes:
        limit_margin_rad: Targets stay this far inside the URDF position limits [rad or m].
        velocity_fraction: Fraction of the URDF velocity limit a target may move per second, in (0, 1].
    """

    limit_margin_rad: float = 0.005
    velocity_fraction: float = 1.0

    def build(self, model: RobotModel) -> JointSafety:
        """Validate against the model's limits and return the stateful gate (reset to the model's home)."""
        _check(math.isfinite(self.limit_margin_rad) and self.limit_margin_rad >= 0, "limit_margin_rad must be >= 0")
        _check(
            0.0 < self.velocity_fraction <= 1.0, f"velocity_fraction must be in (0, 1], got {self.velocity_fraction}"
        )
        lower = model.lower + self.limit_margin_rad
        upper = model.upper - self.limit_margin_rad
        _check(bool(np.all(lower < upper)), "limit_margin_rad is larger than half a joint range")
        speed = model.velocity_limit * self.velocity_fraction
        _check(
            bool(np.all(np.isfinite(speed) & (speed > 0))),
            f"robot {model.name!r} has joints without a positive velocity limit in its URDF",
        )
        safety = JointSafety(self, lower, upper, speed)
        safety.reset(np.clip(model.home, lower, upper))
        return safety


class JointSafety:
    """Clamps joint targets into position and velocity bounds; build with JointSafetyConfig.build(model).

    A reset configuration outside the position bounds is allowed (a measured pose may sit on a limit): the
    targets then move back inside at the velocity limit and never further out.
    """

    def __init__(self, config: JointSafetyConfig, lower: np.ndarray, upper: np.ndarray, speed: np.ndarray) -> None:
        self.config = config
        self.lower, self.upper = lower, upper
        self.speed = speed  # largest joint speed [rad/s or m/s], shape (n,)
        self._last = np.clip(np.zeros_like(lower), lower, upper)
        self.clamped = 0  # number of checks whose target had to be changed

    @property
    def n(self) -> int:
        """Number of joints."""
        return self.lower.shape[0]

    @property
    def last_safe(self) -> np.ndarray:
        """The last target returned by check (or set by reset), shape (n,)."""
        return self._last.copy()

    def reset(self, q: object) -> None:
        """Start from joint positions q (n,): the next target must lie within one velocity step of them.

        Raises:
            UnsafeInputError: q is not n finite numbers; the previous state is kept.
        """
        self._last = as_finite_array(q, (self.n,), "reset joint positions")

    def check(self, q_target: object, dt: object) -> np.ndarray:
        """The safe joint target (n,) closest to q_target, and remember it as the last safe one.

        Args:
            q_target: Requested joint positions (n,) [rad or m].
            dt: Time since the previous target [s], > 0.
        Raises:
            UnsafeInputError: q_target or dt is malformed or non-finite; the last safe target is kept.
        """
        q = as_finite_array(q_target, (self.n,), "joint target")
        step = self.speed * validate_period(dt)
        prev = self._last
        # A previous target outside the bounds may stay or move back inside, never further out.
        lo = np.maximum(np.minimum(self.lower, prev), prev - step)
        hi = np.minimum(np.maximum(self.upper, prev), prev + step)
        safe = np.minimum(np.maximum(q, lo), hi)
        if not np.array_equal(safe, q):
            self.clamped += 1
        self._last = safe
        return safe.copy()


def safe_gripper(command: object, previous: float) -> float:
    """Gripper command clamped to [0, 1] (0 open .. 1 closed); anything not a finite real number (NaN, inf,
    None, a string) holds `previous`."""
    value = _real(command)
    if value is None or not math.isfinite(value):
        return previous
    return min(1.0, max(0.0, value))


def validate_period(dt: object) -> float:
    """dt as a float [s]; UnsafeInputError unless it is a positive finite real number (not a string)."""
    value = _real(dt)
    if value is None:
        raise UnsafeInputError(f"control period dt must be a number of seconds, got {dt!r}")
    if not (math.isfinite(value) and value > 0):
        raise UnsafeInputError(f"control period dt must be positive and finite [s], got {dt!r}")
    return value


def as_finite_array(value: object, shape: tuple[int, ...] | None, name: str) -> np.ndarray:
    """value as a new float64 array of `shape` (None: any shape) with only finite entries.

    Raises:
        UnsafeInputError: None, a ragged or non-numeric value (strings, objects, bools, complex), a wrong
            shape, or NaN / inf entries; the message names `name`.
    """
    if value is None:
        raise UnsafeInputError(f"{name} is missing: the device gave no data this tick")
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):
        raise UnsafeInputError(f"{name} is not an array of numbers: {type(value).__name__}") from None
    if raw.dtype.kind not in _NUMERIC_KINDS:
        raise UnsafeInputError(f"{name} must hold numbers, got dtype {raw.dtype}: check the device driver")
    if shape is not None and raw.shape != shape:
        raise UnsafeInputError(f"{name} must have shape {shape}, got {raw.shape}")
    array = raw.astype(np.float64)  # a copy: drivers may reuse their buffers
    if not np.isfinite(array).all():
        raise UnsafeInputError(f"{name} contains NaN or inf: tracking lost? The last safe target is held")
    return array


def _real(value: object) -> float | None:
    """A real number (a Python or NumPy scalar, or a 0-d numeric array) as a float, else None."""
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in _NUMERIC_KINDS:
        value = value.item()
    return float(value) if isinstance(value, numbers.Real) else None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TeleopError(f"invalid JointSafetyConfig: {message}")
