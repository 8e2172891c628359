"""Hand retargeting: 21 human hand keypoints -> 16 Allegro joint positions.

The keypoints are first expressed in a canonical hand frame estimated from the keypoints themselves, so
any wrist-origin (or world) frame works:

* origin at the wrist (keypoint 0);
* x from the wrist toward the middle-finger MCP (keypoint 9);
* z the palm normal, normal to the plane of wrist, index MCP (5) and little MCP (17), as
  (p5 - p0) x (p17 - p0): on a right hand it points out of the palm, the side the fingers curl toward;
* y = z x x, toward the little finger.

The Allegro palm frame (palm_link) has the fingers along +z, the index and thumb on +y, the ring on -y,
and the fingers curl toward +x (fingertip FK at the zero and home poses). Hence the fixed rotation
R_palm_hand maps hand x -> palm +z, hand y -> palm -y, hand z -> palm +x.

Objective (vector retargeting as in AnyTeleop / dex-retargeting, with DexPilot's pinch vectors): the
human wrist-to-fingertip vectors of index, middle, ring and thumb, scaled and rotated into the palm frame
and started at a virtual wrist below the palm, should equal the robot's fingertip positions; the
thumb-to-finger vectors get a larger weight, and a target length near contact, when the human pinches;
the change from the previous solution is penalised. A few bounded Levenberg-Marquardt iterations with
pinocchio Jacobians solve it, warm-started from the previous solution.

Real hand trackers are noisy and now and then jump (MediaPipe on a real hand video: fingertips move 2 mm a
frame at the median and up to 85 mm). The robot's fingers stay smooth and within their abilities:

* each solve may move joint i at most `max_speed_fraction` of its URDF velocity limit times the time step,
  as a bound of the solver, so the other joints make up for a bounded one;
* the change from the previous solution is penalised (`change_weight`): on a noisy stream this halves the
  joint jitter for a few tenths of a millimetre of fingertip error;
* a One Euro filter smooths the solved joints (hard while a finger is still, little while it moves), and
  the output is then held to the same speed bound;
* optionally a filter on the human fingertips before solving (`keypoint_filter`). On the real hand video
  it buys smoothness at the same price in error as the joint filter (BENCHMARKS.md), so it is off.

The pinch terms fade in continuously (a smoothstep of the human thumb-to-finger distance): apart, they are
absent; pinched, they ask for contact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.linalg.lapack import dposv as _dposv

from kinematics.filters import FilterConfig, OneEuroFilterConfig, VectorFilter
from kinematics.robot_model import RobotModel
from kinematics.safety import validate_period
from teleop.errors import TeleopError, UnsafeInputError

HUMAN_TIPS = (8, 12, 16, 4)  # MediaPipe tips of index, middle, ring, thumb: the order of fingertip_frames
WRIST, INDEX_MCP, MIDDLE_MCP, LITTLE_MCP = 0, 5, 9, 17
R_PALM_HAND_ALLEGRO = ((0.0, 0.0, 1.0), (0.0, -1.0, 0.0), (1.0, 0.0, 0.0))


def _tips_to_residuals() -> np.ndarray:
    """Unweighted residual rows (21, 12) from the stacked tips (index, middle, ring, thumb) x (x, y, z):
    the 4 tips, then index, middle and ring minus the thumb."""
    out = np.zeros((21, 12))
    out[:12] = np.eye(12)
    for finger in range(3):
        rows = slice(12 + 3 * finger, 15 + 3 * finger)
        out[rows, 3 * finger : 3 * finger + 3] = np.eye(3)
        out[rows, 9:12] = -np.eye(3)
    return out


_TIPS_TO_RESIDUALS = _tips_to_residuals()


class _Problem(NamedTuple):
    """One retargeting problem as a linear map of the stacked fingertips: the weighted residuals are
    A @ tips.ravel() - b, A (21, 12) and b (21,) (rows: 4 tips x 3, then 3 thumb-to-finger vectors x 3),
    palm frame; q_prev (16,) is the previous solution."""

    A: np.ndarray
    b: np.ndarray
    q_prev: np.ndarray


@dataclass(frozen=True)
class HandRetargetConfig:
    """Hand retargeting settings.

    Attributes:
        scale: Robot-to-human length ratio of wrist-to-fingertip vectors.
        wrist_palm_m: Virtual wrist in the palm frame (3,) [m]: on the side away from the fingers.
        R_palm_hand: Rotation (3x3, rows) from the canonical hand frame to the palm frame.
        tip_weights: Weights of the index, middle, ring and thumb tip terms [1/m^2].
        pinch_weight: Weight of each thumb-to-finger vector when the human fingers are apart [1/m^2]; 0:
            the tip terms alone place the fingers until the human pinches.
        pinch_weight_close: Weight of a thumb-to-finger vector when the human pinches [1/m^2].
        pinch_near_m: Human thumb-to-finger distance at or below which the pinch counts as closed [m].
        pinch_far_m: Human thumb-to-finger distance at or above which the pinch terms have pinch_weight and
            follow the scale [m].
        pinch_contact_m: Robot thumb-to-finger tip distance asked for when the human pinch is closed [m]
            (0.024 is two touching fingertip spheres of the Allegro).
        change_weight: Weight of the change from the previous solution [1/rad^2]; higher is smoother and
            lags more.
        rest_weight: Weight of a weak pull toward the flat hand (zero, inside the limits) [1/rad^2]; it
            settles joints the fingertips do not constrain (the Allegro's first joints of straight fingers).
        damping: Levenberg-Marquardt damping [1/rad^2].
        iterations: Maximum solver iterations per call.
        joint_filter: Filter of the solved joints [rad] (One Euro speeds in rad/s); None disables it. The
            output then moves each joint at most its speed bound per time step.
        keypoint_filter: Filter of the human fingertips in the hand frame [m] (speeds in m/s) before solving;
            None disables it.
        max_speed_fraction: Largest joint speed, as a fraction of the URDF velocity limits, in (0, 1]: a call
            moves joint i at most max_speed_fraction * velocity_limit[i] * dt.
        period_s: The time step [s] of a call that gives none (a camera's frame period).
    """

    scale: float = 1.6
    wrist_palm_m: tuple[float, float, float] = (0.0, 0.0, -0.095)
    R_palm_hand: tuple[tuple[float, float, float], ...] = R_PALM_HAND_ALLEGRO
    tip_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    pinch_weight: float = 0.0
    pinch_weight_close: float = 10.0
    pinch_near_m: float = 0.015
    pinch_far_m: float = 0.03
    pinch_contact_m: float = 0.02
    change_weight: float = 5e-3
    rest_weight: float = 1e-5
    damping: float = 1e-6
    iterations: int = 4
    joint_filter: FilterConfig | None = OneEuroFilterConfig(min_cutoff_hz=0.2, beta=0.3, d_cutoff_hz=2.0)
    keypoint_filter: FilterConfig | None = None
    max_speed_fraction: float = 1.0
    period_s: float = 1.0 / 30.0

    def build(self, model: RobotModel) -> HandRetargeter:
        """Validate against the model and return the stateful retargeter."""
        _check(len(model.spec.fingertip_frames) == 4, f"robot {model.name!r} has no 4 fingertip frames")
        _check(self.scale > 0 and np.isfinite(self.scale), "scale must be > 0")
        R = np.asarray(self.R_palm_hand, dtype=float)
        _check(R.shape == (3, 3) and np.allclose(R @ R.T, np.eye(3), atol=1e-6), "R_palm_hand not a rotation")
        _check(bool(np.linalg.det(R) > 0), "R_palm_hand must be a proper rotation (det +1)")
        _check(
            len(self.wrist_palm_m) == 3 and len(self.tip_weights) == 4, "wrist_palm_m (3,), tip_weights (4,)"
        )
        _check(min(self.tip_weights) >= 0 and self.pinch_weight >= 0, "weights must be >= 0")
        _check(
            min(self.pinch_weight_close, self.change_weight, self.rest_weight) >= 0, "weights must be >= 0"
        )
        _check(0 <= self.pinch_near_m < self.pinch_far_m, "need 0 <= pinch_near_m < pinch_far_m")
        _check(self.pinch_contact_m >= 0 and self.damping >= 0, "pinch_contact_m and damping must be >= 0")
        _check(self.change_weight + self.damping > 0, "change_weight + damping must be > 0")
        _check(self.iterations >= 1, "iterations must be >= 1")
        _check(0 < self.max_speed_fraction <= 1, "max_speed_fraction must be in (0, 1]")
        _check(np.isfinite(self.period_s) and self.period_s > 0, "period_s must be > 0")
        for filter_config in (self.keypoint_filter, self.joint_filter):
            if filter_config is not None:
                filter_config.validate()
        return HandRetargeter(self, model)


class HandRetargeter:
    """Stateful retargeter (warm start and filter); build with HandRetargetConfig.build(model)."""

    def __init__(self, config: HandRetargetConfig, model: RobotModel) -> None:
        self.config = config
        self.model = model
        self.R_palm_hand = np.asarray(config.R_palm_hand, dtype=float)
        self.wrist_palm = np.asarray(config.wrist_palm_m, dtype=float)
        self.lower, self.upper = model.lower, model.upper
        self._sqrt_tip_w_rows = np.repeat(np.sqrt(np.asarray(config.tip_weights, dtype=float)), 3)
        self._q_rest = np.clip(np.zeros(model.n), self.lower, self.upper)
        self._speed = model.velocity_limit * config.max_speed_fraction
        self._tips_filter = _build_filter(config.keypoint_filter)
        self._joint_filter = _build_filter(config.joint_filter)
        self._q_raw = self._q_out = np.clip(model.home, self.lower, self.upper)
        self._t = 0.0

    def reset(self, q: np.ndarray | None = None) -> None:
        """Forget the history: start from q (16,) (the hand's measured joints; default the home pose): the next
        call warm-starts there and moves at most one speed bound from it; the filters start afresh."""
        q0 = self.model.home if q is None else np.asarray(q, dtype=float)
        if q0.shape != (self.model.n,) or not np.isfinite(q0).all():
            raise UnsafeInputError(f"reset q must be {self.model.n} finite values, got {q0!r}")
        self._q_raw = self._q_out = np.clip(q0, self.lower, self.upper)
        self._t = 0.0
        for f in (self._tips_filter, self._joint_filter):
            if f is not None:
                f.reset()

    def human_to_robot(self, p_hand: np.ndarray) -> np.ndarray:
        """Point(s) (3,) or (k, 3) [m]: canonical hand frame -> palm frame (scale, rotation, wrist)."""
        return self.wrist_palm + self.config.scale * (np.asarray(p_hand, dtype=float) @ self.R_palm_hand.T)

    def robot_to_human(self, p_palm: np.ndarray) -> np.ndarray:
        """Inverse of human_to_robot: point(s) (3,) or (k, 3) [m]: palm frame -> canonical hand frame."""
        return ((np.asarray(p_palm, dtype=float) - self.wrist_palm) @ self.R_palm_hand) / self.config.scale

    def retarget(self, keypoints: np.ndarray, dt: float | None = None) -> np.ndarray:
        """Allegro joint positions (16,) [rad], spec order, for 21 keypoints (21, 3) [m] in any wrist frame.

        Each call moves each joint at most its speed bound times dt from the previous output (after build or
        reset, from the start pose).

        Args:
            keypoints: The 21 human hand keypoints, MediaPipe order [m].
            dt: Time since the previous call [s] (the control period); None takes the config's period_s.
        Raises:
            UnsafeInputError: keypoints non-finite, of the wrong shape, or degenerate (no palm plane), or dt
                not a positive number; the retargeter's state is left unchanged.
        """
        step_s = self.config.period_s if dt is None else validate_period(dt)
        tips_hand = to_hand_frame(keypoints)[list(HUMAN_TIPS)]
        t = self._t + step_s
        if self._tips_filter is not None:
            tips_hand = self._tips_filter(tips_hand, t)
        bound = self._speed * step_s
        lower = np.maximum(self.lower, self._q_raw - bound)
        upper = np.minimum(self.upper, self._q_raw + bound)
        q = self._solve(self.human_to_robot(tips_hand), tips_hand, lower, upper)
        self._q_raw, self._t = q, t
        if self._joint_filter is not None:
            q = self._joint_filter(q, t)
        self._q_out = np.clip(q, self._q_out - bound, self._q_out + bound)
        return self._q_out.copy()

    # ---------------------------------------------------------------------------------------- internals
    def _solve(self, targets: np.ndarray, tips_hand: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Levenberg-Marquardt from the previous solution within [lower, upper]; targets (4, 3) in the palm frame.

        A step is kept only if it lowers the cost; otherwise the damping grows and the step is retried.
        """
        c = self.config
        pinch_vectors, sqrt_pinch_w = self._pinch_targets(tips_hand, self._q_raw)
        row_w = np.concatenate((self._sqrt_tip_w_rows, np.repeat(sqrt_pinch_w.ravel(), 3)))
        b = row_w * np.concatenate((targets.ravel(), pinch_vectors.ravel()))
        problem = _Problem(_TIPS_TO_RESIDUALS * row_w[:, None], b, self._q_raw)
        q = self._q_raw
        cost, r, J = self._evaluate(problem, q)
        mu = -1.0
        for _ in range(c.iterations):
            H = J.T @ J
            g = J.T @ r + c.change_weight * (q - problem.q_prev) + c.rest_weight * (q - self._q_rest)
            if mu < 0:  # initial damping relative to the curvature (Nielsen)
                mu = max(1e-3 * float(H.diagonal().max()), c.damping)
            H.flat[:: H.shape[0] + 1] += c.change_weight + c.rest_weight + mu
            step = self._bounded_step(q, H, g, lower, upper)
            q_new = np.clip(q + step, lower, upper)
            cost_new, r_new, J_new = self._evaluate(problem, q_new)
            if cost_new < cost:
                q, cost, r, J = q_new, cost_new, r_new, J_new
                mu = max(mu / 3.0, c.damping)
                if np.abs(step).max() < 1e-5:
                    break
            else:
                mu *= 4.0
        return q

    def _evaluate(self, problem: _Problem, q: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Cost, weighted fingertip and pinch residuals (21,) and their Jacobian (21, 16) at q."""
        tips, jacs = self.model.fingertips_and_jacobians(q)
        r = problem.A @ tips.ravel() - problem.b
        J = problem.A @ jacs.reshape(12, -1)
        dq, dr = q - problem.q_prev, q - self._q_rest
        cost = float(r @ r + self.config.change_weight * (dq @ dq) + self.config.rest_weight * (dr @ dr))
        return cost, r, J

    def _bounded_step(
        self, q: np.ndarray, H: np.ndarray, g: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> np.ndarray:
        """Newton step -H^-1 g with joints that sit on a bound and are pushed outward held still."""
        step = _spd_solve(H, -g)
        at_limit = ((q <= lower) & (step < 0)) | ((q >= upper) & (step > 0))
        if at_limit.any():
            free = ~at_limit
            step = np.zeros_like(q)
            if free.any():  # every joint pinned against a limit: no step at all
                step[free] = _spd_solve(H[np.ix_(free, free)], -g[free])
        return step

    def _pinch_targets(self, tips_hand: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Robot thumb-to-finger target vectors (3, 3) in the palm frame, and sqrt weights (3, 1).

        Far apart, the target is the scaled human vector (consistent with the tip terms); at or below
        pinch_near_m it shrinks to pinch_contact_m and its weight grows to pinch_weight_close.
        """
        c = self.config
        human = tips_hand[:3] - tips_hand[3]
        distance = np.linalg.norm(human, axis=1)
        t = np.clip((distance - c.pinch_near_m) / (c.pinch_far_m - c.pinch_near_m), 0.0, 1.0)
        t = t * t * (3.0 - 2.0 * t)  # smoothstep: the terms fade in and out with no kink
        length = t * c.scale * distance + (1.0 - t) * c.pinch_contact_m
        direction = human @ self.R_palm_hand.T
        degenerate = distance < 1e-6
        if degenerate.any():  # the human tips coincide: keep the robot's current thumb-to-finger direction
            tips = self.model.fingertips(q)
            direction[degenerate] = (tips[:3] - tips[3])[degenerate]
        norms = np.maximum(np.linalg.norm(direction, axis=1), 1e-9)
        weight = t * c.pinch_weight + (1.0 - t) * c.pinch_weight_close
        return direction * (length / norms)[:, None], np.sqrt(weight)[:, None]


def to_hand_frame(keypoints: np.ndarray) -> np.ndarray:
    """Keypoints (21, 3) in any frame -> the canonical hand frame (see the module docstring).

    Raises:
        UnsafeInputError: wrong shape, non-finite values, or degenerate palm points.
    """
    kp = np.asarray(keypoints, dtype=float)
    if kp.shape != (21, 3):
        raise UnsafeInputError(f"hand keypoints must have shape (21, 3) in MediaPipe order, got {kp.shape}")
    if not np.isfinite(kp).all():
        raise UnsafeInputError("hand keypoints contain NaN or inf: the tracker lost the hand")
    p = kp - kp[WRIST]
    x = p[MIDDLE_MCP]
    z = _cross(p[INDEX_MCP], p[LITTLE_MCP])
    nx = float(np.sqrt(x @ x))
    if nx < 1e-4:
        raise UnsafeInputError("hand keypoints are degenerate: the middle-finger MCP is at the wrist")
    x = x / nx
    z = z - (z @ x) * x
    nz = float(np.sqrt(z @ z))
    if nz < 1e-8:
        raise UnsafeInputError("hand keypoints are degenerate: wrist, index and little MCP are collinear")
    z = z / nz
    R_in_hand = np.column_stack((x, _cross(z, x), z))  # columns: hand axes in the input frame
    return p @ R_in_hand


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b for 3-vectors (np.cross costs ~10x more on single vectors)."""
    (a0, a1, a2), (b0, b1, b2) = a.tolist(), b.tolist()
    return np.array((a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0))


def _build_filter(config: FilterConfig | None) -> VectorFilter | None:
    return None if config is None else config.build()


def _spd_solve(H: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, x, info = _dposv(H, b)
    if info != 0:  # H is positive definite when change_weight + damping > 0; guards against the impossible
        x = np.linalg.lstsq(H, b, rcond=None)[0]
    return x


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TeleopError(f"invalid HandRetargetConfig: {message}")
