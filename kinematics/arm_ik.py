"""Differential IK for arms: one damped-least-squares step (or a few) per control tick.

Each tick moves the joints toward the end-effector target by at most `max_speed_fraction` of the URDF
velocity limit times dt, never past the position limits shrunk by a margin, with a posture task toward a
comfortable configuration in the nullspace of the pose task. A far target is reached over several ticks
instead of by one large jump; an unreachable one is approached as closely as the arm allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pinocchio as pin
from scipy.linalg.lapack import dposv as _dposv

from kinematics.robot_model import RobotModel
from teleop.errors import TeleopError, UnsafeInputError

_EYE6 = np.eye(6)
_Box = tuple[np.ndarray, np.ndarray]  # (lower, upper), each shape (n,)


class JointTarget(NamedTuple):
    """Result of one IK tick.

    Attributes:
        q: Joint position command in the spec's joint order, shape (n,) [rad].
        pos_err_m: Remaining end-effector position error at q [m].
        rot_err_rad: Remaining end-effector orientation error at q [rad].
    """

    q: np.ndarray
    pos_err_m: float
    rot_err_rad: float


@dataclass(frozen=True)
class ArmIKConfig:
    """Differential IK settings.

    Attributes:
        position_weight: Weight of the position error [1/m].
        orientation_weight: Weight of the orientation error [1/rad].
        damping: Smallest damping added to the weighted J J^T; 0.5 |weighted error|^2 is added on top
            (cautious steps far from the target and near singularities, exact convergence close to it).
        limit_margin_rad: Joints stay this far inside the URDF position limits [rad].
        max_speed_fraction: Fraction of the URDF velocity limit a joint may move at, in (0, 1].
        posture_weight: Gain of the nullspace pull toward `posture` per iteration, in [0, 1].
        posture: Comfortable configuration (n,) [rad]; None uses the spec's home.
        iterations: Gauss-Newton iterations per tick, 1-3 (each costs ~40 us; one is usually enough since
            the speed limit, not the linearisation, bounds the progress per tick).
        frame: End-effector frame; None uses the spec's ee_frame.
    """

    position_weight: float = 1.0
    orientation_weight: float = 0.5
    damping: float = 1e-5
    limit_margin_rad: float = 0.02
    max_speed_fraction: float = 0.8
    posture_weight: float = 0.05
    posture: tuple[float, ...] | None = None
    iterations: int = 1
    frame: str | None = None

    def build(self, model: RobotModel) -> ArmIK:
        """Validate against the model and return the per-tick solver."""
        _check(self.position_weight > 0 and self.orientation_weight >= 0, "weights must be >0 and >=0")
        _check(self.damping > 0, "damping must be > 0")
        _check(0 < self.max_speed_fraction <= 1, "max_speed_fraction must be in (0, 1]")
        _check(0 <= self.posture_weight <= 1, "posture_weight must be in [0, 1]")
        _check(1 <= self.iterations <= 3, "iterations must be 1, 2 or 3")
        _check(self.limit_margin_rad >= 0, "limit_margin_rad must be >= 0")
        lower = model.lower + self.limit_margin_rad
        upper = model.upper - self.limit_margin_rad
        _check(bool(np.all(lower < upper)), "limit_margin_rad is larger than half a joint range")
        posture = model.home if self.posture is None else np.asarray(self.posture, dtype=float)
        _check(posture.shape == (model.n,), f"posture must have {model.n} values")
        return ArmIK(self, model, lower, upper, np.clip(posture, lower, upper))


class _Tick(NamedTuple):
    """What bounds one tick: the start q0 (n,), the largest joint step (n,) [rad], and the box [lo, hi]
    (n,) that is the speed box around q0 within the (possibly widened) position limits."""

    q0: np.ndarray
    step_max: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def speed_box(self) -> _Box:
        return self.q0 - self.step_max, self.q0 + self.step_max


class ArmIK:
    """Per-tick differential IK; build with ArmIKConfig.build(model). Stateless between ticks."""

    def __init__(
        self,
        config: ArmIKConfig,
        model: RobotModel,
        lower: np.ndarray,
        upper: np.ndarray,
        posture: np.ndarray,
    ) -> None:
        self.config = config
        self.model = model
        self.lower, self.upper, self.posture = lower, upper, posture
        self.frame_id = model.resolve_frame(config.frame)
        self._speed = model.velocity_limit * config.max_speed_fraction
        self._w = np.array([config.position_weight] * 3 + [config.orientation_weight] * 3)
        self._w_col = self._w[:, None]
        self._n = model.n

    def solve(self, q_current: np.ndarray, T_base_target: np.ndarray, dt: float) -> JointTarget:
        """One tick: the joint command that moves toward T_base_target within the limits.

        Args:
            q_current: Measured joint positions (n,) [rad].
            T_base_target: Target end-effector pose in the base frame (4, 4).
            dt: Control period [s]; bounds the joint step to speed * dt.
        Raises:
            UnsafeInputError: q, the target or dt is non-finite or has the wrong shape.
        """
        q0, T_target, dt = self._validate(q_current, T_base_target, dt)
        step_max = self._speed * dt
        # The box of this tick: the speed box around q0 within the position limits. A q0 already outside
        # the margins may stay where it is or move back inside, never further out.
        lo = np.minimum(np.maximum(self.lower, q0 - step_max), q0)
        hi = np.maximum(np.minimum(self.upper, q0 + step_max), q0)
        p_target, R_target = T_target[:3, 3], T_target[:3, :3]
        tick = _Tick(q0, step_max, lo, hi)
        q = q0
        for i in range(self.config.iterations):
            T, J = self.model.pose_and_jacobian(q, self.frame_id)
            q = self._step(tick, q, _pose_error(T, p_target, R_target), J, centred=i == 0)
        return JointTarget(q, *_error_norms(self.model.fk(q, self.frame_id).tolist(), T_target.tolist()))

    def _step(self, tick: _Tick, q: np.ndarray, err: np.ndarray, J: np.ndarray, centred: bool) -> np.ndarray:
        """q after one damped least-squares step within the tick's box, with a nullspace posture term.

        The step is scaled as a whole to respect the joint speeds (its direction is kept); a joint that
        would cross a position limit is stopped at the limit and the others are re-solved to make up for it.
        `centred` says q is q0, the centre of the speed box, where the scale has a shorter form.
        """
        Jw = J * self._w_col
        ew = err * self._w
        # Damping grows with the error (Sugihara's Levenberg-Marquardt rule): cautious far away, exact near.
        damping = self.config.damping + 0.5 * float(ew @ ew)
        posture = self.config.posture_weight * (self.posture - q)
        dq = _solve_weighted(Jw, ew, posture, damping)
        if centred:  # the room is step_max on both sides: the scale is 1 / max(|dq| / step_max), at most 1
            step = dq * (1.0 / max(1.0, *(np.abs(dq) / tick.step_max).tolist()))
        else:
            step = _scale_into(q, dq, tick.speed_box)
        q_next = q + step
        q_boxed = np.minimum(np.maximum(q_next, tick.lo), tick.hi)
        if q_boxed.tolist() == q_next.tolist():  # lists compare faster than arrays at this size
            return q_next
        step = self._step_at_limits(tick, q, dq, ew, Jw, posture, damping)
        return np.minimum(np.maximum(q + step, tick.lo), tick.hi)

    def _step_at_limits(
        self,
        tick: _Tick,
        q: np.ndarray,
        dq: np.ndarray,
        ew: np.ndarray,
        Jw: np.ndarray,
        posture: np.ndarray,
        damping: float,
    ) -> np.ndarray:
        """The step when dq, scaled into the speed box, would cross a position limit: the joints that would
        are stopped at the limit and the others re-solved (up to three rounds)."""
        # The margins, widened to include a q0 that is outside them.
        lower, upper = np.minimum(self.lower, tick.q0), np.maximum(self.upper, tick.q0)
        blocked = np.zeros(q.shape, dtype=bool)
        fixed = np.zeros(q.shape)
        for _ in range(3):
            step = _scale_into(q, dq, tick.speed_box)
            q_next = q + step
            newly = ((q_next > upper) | (q_next < lower)) & ~blocked
            if not newly.any():
                return step
            fixed[newly] = np.clip(q_next[newly], lower[newly], upper[newly]) - q[newly]
            ew = ew - Jw[:, newly] @ fixed[newly]
            blocked |= newly
            Jw[:, blocked] = 0.0
            posture[blocked] = 0.0
            dq = _solve_weighted(Jw, ew, posture, damping)
            dq[blocked] = fixed[blocked]
        return _scale_into(q, dq, tick.speed_box)

    def _validate(self, q: np.ndarray, T: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray, float]:
        n = self._n
        q = np.asarray(q, dtype=float)
        T = np.asarray(T, dtype=float)
        # q @ q is NaN or inf when any entry is (or when an entry beyond 1e154 overflows: as unsafe).
        if q.shape != (n,) or not math.isfinite(q @ q):
            raise UnsafeInputError(f"IK joint positions must be {n} finite values, got shape {q.shape}: {q}")
        if T.shape != (4, 4):
            raise UnsafeInputError(f"IK target must be a finite 4x4 pose, got shape {T.shape}")
        # Plain floats: faster than numpy calls at this size.
        (a, b, c, x), (d, e, f, y), (g, h, i, z), (r0, r1, r2, r3) = T.tolist()
        if not math.isfinite(a + b + c + d + e + f + g + h + i + x + y + z + r0 + r1 + r2 + r3):
            raise UnsafeInputError("IK target must be a finite 4x4 pose: it contains NaN or inf")
        if not _is_rotation(a, b, c, d, e, f, g, h, i):
            raise UnsafeInputError("IK target rotation is not a rotation matrix: orthonormalise it first")
        if not (math.isfinite(dt) and dt > 0):
            raise UnsafeInputError(f"IK dt must be a positive finite period [s], got {dt}")
        return q, T, float(dt)


def _solve_weighted(Jw: np.ndarray, ew: np.ndarray, posture: np.ndarray, damping: float) -> np.ndarray:
    """dq = J+ e + (I - J+ J) posture with the damped pseudo-inverse J+ = J^T (J J^T + damping I)^-1.

    Computed as posture + J^T (J J^T + damping I)^-1 (e - J posture): one Cholesky solve, one right side.
    """
    A = Jw @ Jw.T + damping * _EYE6
    rhs = ew - Jw @ posture
    _, x, info = _dposv(A, rhs)
    if info != 0:  # A is positive definite for any finite J; this guards against the impossible
        x = np.linalg.lstsq(A, rhs, rcond=None)[0]
    return Jw.T @ x + posture


def _is_rotation(
    a: float, b: float, c: float, d: float, e: float, f: float, g: float, h: float, i: float, tol: float = 1e-4
) -> bool:
    """The matrix of rows (a, b, c), (d, e, f), (g, h, i) has orthonormal columns (within tol) and
    determinant +1."""
    if (
        max(
            abs(a * a + d * d + g * g - 1.0),
            abs(b * b + e * e + h * h - 1.0),
            abs(c * c + f * f + i * i - 1.0),
            abs(a * b + d * e + g * h),
            abs(a * c + d * f + g * i),
            abs(b * c + e * f + h * i),
        )
        > tol
    ):
        return False
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g) > 0


def _pose_error(T: np.ndarray, p_target: np.ndarray, R_target: np.ndarray) -> np.ndarray:
    """6-D error (position [m], rotation vector [rad]) from T (4, 4) to the target, both in base axes."""
    err = np.empty(6)
    err[:3] = p_target - T[:3, 3]
    err[3:] = pin.log3(R_target @ T[:3, :3].T)
    return err


def _error_norms(T: list[list[float]], T_target: list[list[float]]) -> tuple[float, float]:
    """Position error [m] and rotation angle [rad] from pose T to T_target (rows of 4x4 matrices).

    The angle of M = R_target R^T is atan2(|vee(M - M^T)| / 2, (trace M - 1) / 2): accurate near 0 and pi.
    Plain floats: a few numpy calls would cost more at this size.
    """
    (a, b, c, x), (d, e, f, y), (g, h, i, z) = T[:3]
    (ta, tb, tc, tx), (td, te, tf, ty), (tg, th, ti, tz) = T_target[:3]
    # M_jk = row j of R_target . row k of R.
    m01, m10 = ta * d + tb * e + tc * f, td * a + te * b + tf * c
    m02, m20 = ta * g + tb * h + tc * i, tg * a + th * b + ti * c
    m12, m21 = td * g + te * h + tf * i, tg * d + th * e + ti * f
    trace = ta * a + tb * b + tc * c + td * d + te * e + tf * f + tg * g + th * h + ti * i
    angle = math.atan2(0.5 * math.hypot(m21 - m12, m02 - m20, m10 - m01), 0.5 * (trace - 1.0))
    return math.hypot(tx - x, ty - y, tz - z), angle


def _scale_into(q: np.ndarray, dq: np.ndarray, box: _Box) -> np.ndarray:
    """s*dq with the largest s in [0, 1] keeping q + s*dq in the box; the direction is kept.

    Joints already on a bound and pushed outward are dropped first, so they cannot stall the others.
    """
    room = np.where(dq > 0, box[1] - q, box[0] - q)
    stuck = room * dq <= 0.0
    dq = np.where(stuck, 0.0, dq)
    moving = ~stuck
    s = min(1.0, float((room[moving] / dq[moving]).min())) if moving.any() else 1.0
    return s * dq


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TeleopError(f"invalid ArmIKConfig: {message}")
