"""Differential IK for arms: one damped-least-squares step (or a few) per control tick.

Each tick moves the joints toward the end-effector target by at most `max_speed_fraction` of the URDF
velocity limit times dt, never past the position limits shrunk by a margin, with a posture task toward a
comfortable configuration in the nullspace of the pose task. A far target is reached over several ticks
instead of by one large jump; an unreachable one is approached as closely as the arm allows.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pinocchio as pin
from scipy.linalg.lapack import dposv as _dposv

from kinematics.robot_model import RobotModel
from teleop.errors import TeleopError, UnsafeInputError

_Box = tuple[np.ndarray, np.ndarray]  # (lower, upper), each shape (n,)


class JointTarget:
    """Result of one IK tick.

    Attributes:
        q: Joint position command in the spec's joint order, shape (n,) [rad].
        pos_err_m: Remaining end-effector position error at q [m].
        rot_err_rad: Remaining end-effector orientation error at q [rad].

    A solver may pass `errors` instead of the two errors: a callable returning (pos_err_m, rot_err_rad), called
    once, on the first access to either. A control loop that only sends q then pays no forward kinematics for
    a report it does not read (ArmIK: ~4 us on top of a ~20 us tick).
    """

    __slots__ = ("q", "_pos_err_m", "_rot_err_rad", "_errors")

    def __init__(
        self,
        q: np.ndarray,
        pos_err_m: float = math.nan,
        rot_err_rad: float = math.nan,
        *,
        errors: Callable[[], tuple[float, float]] | None = None,
    ) -> None:
        self.q = q
        self._pos_err_m, self._rot_err_rad, self._errors = pos_err_m, rot_err_rad, errors

    @property
    def pos_err_m(self) -> float:
        self._evaluate()
        return self._pos_err_m

    @property
    def rot_err_rad(self) -> float:
        self._evaluate()
        return self._rot_err_rad

    def _evaluate(self) -> None:
        errors = self._errors
        if errors is not None:
            self._pos_err_m, self._rot_err_rad = errors()
            self._errors = None

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as (q, pos_err_m, rot_err_rad)."""
        return iter((self.q, self.pos_err_m, self.rot_err_rad))

    def __repr__(self) -> str:
        return f"JointTarget(q={self.q!r}, pos_err_m={self.pos_err_m!r}, rot_err_rad={self.rot_err_rad!r})"


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
        iterations: Gauss-Newton iterations per tick, 1-3 (the first costs ~20 us, each further one ~25 us;
            one is usually enough since the speed limit, not the linearisation, bounds the progress per tick).
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


class ArmIK:
    """Per-tick differential IK; build with ArmIKConfig.build(model). Stateless between ticks.

    Like its RobotModel, one instance is for one thread.
    """

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
        # The task weights W enter as the damping's shape W^-2 (see _solve_weighted). A zero orientation
        # weight leaves the three orientation rows out: a position-only task.
        self._rows = 6 if config.orientation_weight > 0 else 3
        w = np.array([config.position_weight] * 3 + [config.orientation_weight] * 3)[: self._rows]
        self._w2 = w * w
        self._damping_shape = np.diag(1.0 / self._w2)
        # Per-tick constants as arrays and lists: array * array and list comparisons are cheaper than
        # array * Python float and numpy comparisons at this size.
        self._posture_gain = np.full(model.n, config.posture_weight)
        self._lower_list, self._upper_list = lower.tolist(), upper.tolist()
        # dt, speed * dt as an array and as a list, of the last tick: dt rarely changes.
        self._step_max_of_dt: tuple[float, np.ndarray, list[float]] = (math.nan, self._speed, [])
        self._n, self._damping, self._iterations = model.n, config.damping, config.iterations

    def solve(self, q_current: np.ndarray, T_base_target: np.ndarray, dt: float) -> JointTarget:
        """One tick: the joint command that moves toward T_base_target within the limits.

        Args:
            q_current: Measured joint positions (n,) [rad].
            T_base_target: Target end-effector pose in the base frame (4, 4).
            dt: Control period [s]; bounds the joint step to speed * dt.
        Returns:
            The command; its errors are computed (one forward kinematics pass) when first read.
        Raises:
            UnsafeInputError: q, the target or dt is non-finite or has the wrong shape.
        """
        q0, T_target, rows, dt = self._validate(q_current, T_base_target, dt)
        last_dt, step_max, step_max_list = self._step_max_of_dt
        if dt != last_dt:
            step_max = self._speed * dt
            step_max_list = step_max.tolist()
            self._step_max_of_dt = (dt, step_max, step_max_list)
        p_target, R_target = T_target[:3, 3], T_target[:3, :3]
        q = q0
        for _ in range(self._iterations):
            T, J = self.model.pose_and_jacobian_of_id(q, self.frame_id)
            q = self._step(q0, step_max, step_max_list, q, _pose_error(T, p_target, R_target), J)
        q_reported = q.copy()  # the errors are of q as returned, even if the caller changes q in place
        return JointTarget(q, errors=lambda: self._errors_at(q_reported, rows))

    def _errors_at(self, q: np.ndarray, T_target: list[list[float]]) -> tuple[float, float]:
        """Position [m] and rotation [rad] errors at q from the target (rows of a 4x4 matrix)."""
        return _error_norms(self.model.fk(q, self.frame_id).tolist(), T_target)

    def _step(
        self,
        q0: np.ndarray,
        step_max: np.ndarray,
        step_max_list: list[float],
        q: np.ndarray,
        err: np.ndarray,
        J: np.ndarray,
    ) -> np.ndarray:
        """q after one damped least-squares step within the tick's box, with a nullspace posture term.

        The box of the tick is the speed box q0 +- step_max (n,) [rad] within the position limits. The step
        is scaled as a whole to respect the joint speeds (its direction is kept); a joint that would cross a
        position limit is stopped at the limit and the others are re-solved to make up for it.
        """
        if self._rows == 3:
            J, err = J[:3], err[:3]
        # Damping grows with the weighted error (Sugihara's Levenberg-Marquardt rule): cautious far away,
        # exact near.
        damping = self._damping + 0.5 * float(err.dot(err * self._w2))
        posture = (self.posture - q) * self._posture_gain
        dq = _solve_weighted(J, err, posture, damping * self._damping_shape)
        if q is q0:  # centred in the speed box: the scale is 1 / max(|dq| / step_max), at most 1
            worst = max(map(operator.truediv, map(abs, dq.tolist()), step_max_list))
            q_next = q + dq if worst <= 1.0 else q + dq * (1.0 / worst)
        else:
            q_next = q + _scale_into(q, dq, (q0 - step_max, q0 + step_max))
        # q_next is in the speed box by construction. Inside the margins too (nearly always), it is in the
        # tick's box below, whose bounds lie outside the margins only where q0 does.
        q_list = q_next.tolist()
        if all(map(operator.le, self._lower_list, q_list)) and all(map(operator.le, q_list, self._upper_list)):
            return q_next
        # The box of this tick: the speed box around q0 within the position limits. A q0 already outside
        # the margins may stay where it is or move back inside, never further out.
        lo = np.minimum(np.maximum(self.lower, q0 - step_max), q0)
        hi = np.maximum(np.minimum(self.upper, q0 + step_max), q0)
        if np.minimum(np.maximum(q_next, lo), hi).tolist() == q_list:  # lists compare faster than arrays
            return q_next
        step = self._step_at_limits(q0, step_max, q, dq, err, J, posture, damping)
        return np.minimum(np.maximum(q + step, lo), hi)

    def _step_at_limits(
        self,
        q0: np.ndarray,
        step_max: np.ndarray,
        q: np.ndarray,
        dq: np.ndarray,
        err: np.ndarray,
        J: np.ndarray,
        posture: np.ndarray,
        damping: float,
    ) -> np.ndarray:
        """The step when dq, scaled into the speed box, would cross a position limit: the joints that would
        are stopped at the limit and the others re-solved (up to three rounds). J and posture are changed."""
        speed_box = (q0 - step_max, q0 + step_max)
        # The margins, widened to include a q0 that is outside them.
        lower, upper = np.minimum(self.lower, q0), np.maximum(self.upper, q0)
        blocked = np.zeros(q.shape, dtype=bool)
        fixed = np.zeros(q.shape)
        for _ in range(3):
            step = _scale_into(q, dq, speed_box)
            q_next = q + step
            newly = ((q_next > upper) | (q_next < lower)) & ~blocked
            if not newly.any():
                return step
            fixed[newly] = np.clip(q_next[newly], lower[newly], upper[newly]) - q[newly]
            err = err - J[:, newly] @ fixed[newly]
            blocked |= newly
            J[:, blocked] = 0.0
            posture[blocked] = 0.0
            dq = _solve_weighted(J, err, posture, damping * self._damping_shape)
            dq[blocked] = fixed[blocked]
        return _scale_into(q, dq, speed_box)

    def _validate(
        self, q: np.ndarray, T: np.ndarray, dt: float
    ) -> tuple[np.ndarray, np.ndarray, list[list[float]], float]:
        """q (n,), T (4, 4) as float arrays, T's rows as lists, dt as a float; UnsafeInputError if invalid."""
        n = self._n
        q = np.asarray(q, dtype=float)
        T = np.asarray(T, dtype=float)
        # q . q is NaN or inf when any entry is (or when an entry beyond 1e154 overflows: as unsafe).
        if q.shape != (n,) or not math.isfinite(q.dot(q)):
            raise UnsafeInputError(f"IK joint positions must be {n} finite values, got shape {q.shape}: {q}")
        if T.shape != (4, 4):
            raise UnsafeInputError(f"IK target must be a finite 4x4 pose, got shape {T.shape}")
        # Plain floats: faster than numpy calls at this size.
        rows = T.tolist()
        (a, b, c, x), (d, e, f, y), (g, h, i, z), (r0, r1, r2, r3) = rows
        if not math.isfinite(a + b + c + d + e + f + g + h + i + x + y + z + r0 + r1 + r2 + r3):
            raise UnsafeInputError("IK target must be a finite 4x4 pose: it contains NaN or inf")
        if not _is_rotation(a, b, c, d, e, f, g, h, i):
            raise UnsafeInputError("IK target rotation is not a rotation matrix: orthonormalise it first")
        if not (math.isfinite(dt) and dt > 0):
            raise UnsafeInputError(f"IK dt must be a positive finite period [s], got {dt}")
        return q, T, rows, float(dt)


def _solve_weighted(J: np.ndarray, err: np.ndarray, posture: np.ndarray, damping_matrix: np.ndarray) -> np.ndarray:
    """dq = J+ e + (I - J+ J) posture, J+ the damped pseudo-inverse of the weighted task.

    With task weights W (diagonal) and damping d, J+ = (W J)^T (W J J^T W + d I)^-1 W = J^T (J J^T + d W^-2)^-1:
    the weights only shape the damping, passed as damping_matrix d W^-2 (m, m). Computed as
    posture + J^T (J J^T + d W^-2)^-1 (e - J posture): one Cholesky solve, one right side, no weighted copy of J.
    """
    A = J.dot(J.T)  # .dot: cheaper than @ on arrays this small
    A += damping_matrix
    rhs = err - J.dot(posture)
    _, x, info = _dposv(A, rhs)
    if info != 0:  # A is positive definite for any finite J; this guards against the impossible
        x = np.linalg.lstsq(A, rhs, rcond=None)[0]
    return x.dot(J) + posture


def _is_rotation(
    a: float, b: float, c: float, d: float, e: float, f: float, g: float, h: float, i: float, tol: float = 1e-4
) -> bool:
    """The matrix of rows (a, b, c), (d, e, f), (g, h, i) has orthonormal columns (within tol) and
    determinant +1. (Chained comparisons: no calls, cheaper than max() of abs() here.)"""
    return (
        -tol <= a * a + d * d + g * g - 1.0 <= tol
        and -tol <= b * b + e * e + h * h - 1.0 <= tol
        and -tol <= c * c + f * f + i * i - 1.0 <= tol
        and -tol <= a * b + d * e + g * h <= tol
        and -tol <= a * c + d * f + g * i <= tol
        and -tol <= b * c + e * f + h * i <= tol
        and a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g) > 0
    )


def _pose_error(T: np.ndarray, p_target: np.ndarray, R_target: np.ndarray) -> np.ndarray:
    """6-D error (position [m], rotation vector [rad]) from T (4, 4) to the target, both in base axes."""
    err = np.empty(6)
    np.subtract(p_target, T[:3, 3], out=err[:3])
    err[3:] = pin.log3(R_target.dot(T[:3, :3].T))
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

    Joints already on a bound and pushed outward are dropped first, so they cannot stall the others; "on" is
    within 1e-12 [rad]: a joint that an earlier iteration scaled onto the bound may miss it by a rounding error
    to either side, and stalled every joint (s ~ 0) when it missed to the inside.
    """
    room = np.where(dq > 0, box[1] - q, box[0] - q)
    stuck = (room * dq <= 0.0) | (np.abs(room) <= 1e-12)
    dq = np.where(stuck, 0.0, dq)
    moving = ~stuck
    s = min(1.0, float((room[moving] / dq[moving]).min())) if moving.any() else 1.0
    return s * dq


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TeleopError(f"invalid ArmIKConfig: {message}")
