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
pinocchio Jacobians solve it, warm-started from the previous solution; a low-pass filter smooths the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.linalg.lapack import dposv as _dposv

from kinematics.robot_model import RobotModel
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
        pinch_weight: Weight of each thumb-to-finger vector when the human fingers are apart [1/m^2].
        pinch_weight_close: Weight of a thumb-to-finger vector when the human pinches [1/m^2].
        pinch_near_m: Human thumb-to-finger distance at or below which the pinch counts as closed [m].
        pinch_far_m: Human thumb-to-finger distance at or above which the pinch terms follow the scale [m].
        pinch_contact_m: Robot thumb-to-finger tip distance asked for when the human pinch is closed [m]
            (0.024 is two touching fingertip spheres of the Allegro).
        change_weight: Weight of the change from the previous solution [1/rad^2].
        rest_weight: Weight of a weak pull toward the flat hand (zero, inside the limits) [1/rad^2]; it
            settles joints the fingertips do not constrain (the Allegro's first joints of straight fingers).
        damping: Levenberg-Marquardt damping [1/rad^2].
        iterations: Maximum solver iterations per call.
        low_pass_alpha: Output filter, in (0, 1]: q_out = alpha q + (1 - alpha) q_out_previous; 1 disables it.
    """

    scale: float = 1.6
    wrist_palm_m: tuple[float, float, float] = (0.0, 0.0, -0.095)
    R_palm_hand: tuple[tuple[float, float, float], ...] = R_PALM_HAND_ALLEGRO
    tip_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    pinch_weight: float = 0.5
    pinch_weight_close: float = 10.0
    pinch_near_m: float = 0.015
    pinch_far_m: float = 0.03
    pinch_contact_m: float = 0.02
    change_weight: float = 5e-4
    rest_weight: float = 1e-5
    damping: float = 1e-6
    iterations: int = 6
    low_pass_alpha: float = 0.6

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
        _check(0 < self.low_pass_alpha <= 1, "low_pass_alpha must be in (0, 1]")
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
        self._q_raw = np.clip(model.home, self.lower, self.upper)
        self._q_out: np.ndarray | None = None

    def reset(self, q: np.ndarray | None = None) -> None:
        """Forget the history: warm start from q (16,) (default the home pose), no filter state."""
        q0 = self.model.home if q is None else np.asarray(q, dtype=float)
        if q0.shape != (self.model.n,) or not np.isfinite(q0).all():
            raise UnsafeInputError(f"reset q must be {self.model.n} finite values, got {q0!r}")
        self._q_raw = np.clip(q0, self.lower, self.upper)
        self._q_out = None

    def human_to_robot(self, p_hand: np.ndarray) -> np.ndarray:
        """Point(s) (3,) or (k, 3) [m]: canonical hand frame -> palm frame (scale, rotation, wrist)."""
        return self.wrist_palm + self.config.scale * (np.asarray(p_hand, dtype=float) @ self.R_palm_hand.T)

    def robot_to_human(self, p_palm: np.ndarray) -> np.ndarray:
        """Inverse of human_to_robot: point(s) (3,) or (k, 3) [m]: palm frame -> canonical hand frame."""
        return ((np.asarray(p_palm, dtype=float) - self.wrist_palm) @ self.R_palm_hand) / self.config.scale

    def retarget(self, keypoints: np.ndarray) -> np.ndarray:
        """Allegro joint positions (16,) [rad], spec order, for 21 keypoints (21, 3) [m] in any wrist frame.

        The first call after build / reset returns the solution unfiltered; later calls are low-passed.

        Raises:
            UnsafeInputError: keypoints non-finite, of the wrong shape, or degenerate (no palm plane);
                the retargeter's state is left unchanged.
        """
        p_hand = to_hand_frame(keypoints)
        tips_hand = p_hand[list(HUMAN_TIPS)]
        targets = self.human_to_robot(tips_hand)
        q = self._solve(targets, tips_hand)
        self._q_raw = q
        alpha = self.config.low_pass_alpha
        self._q_out = q.copy() if self._q_out is None else alpha * q + (1.0 - alpha) * self._q_out
        return self._q_out.copy()

    # ---------------------------------------------------------------------------------------- internals
    def _solve(self, targets: np.ndarray, tips_hand: np.ndarray) -> np.ndarray:
        """Bounded Levenberg-Marquardt from the previous solution; targets (4, 3) in the palm frame.

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
            step = self._bounded_step(q, H, g)
            q_new = np.clip(q + step, self.lower, self.upper)
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

    def _bounded_step(self, q: np.ndarray, H: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Newton step -H^-1 g with joints that sit on a limit and are pushed outward held still."""
        step = _spd_solve(H, -g)
        at_limit = ((q <= self.lower) & (step < 0)) | ((q >= self.upper) & (step > 0))
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


def _spd_solve(H: np.ndarray, b: np.ndarray) -> np.ndarray:
    _, x, info = _dposv(H, b)
    if info != 0:  # H is positive definite when change_weight + damping > 0; guards against the impossible
        x = np.linalg.lstsq(H, b, rcond=None)[0]
    return x


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TeleopError(f"invalid HandRetargetConfig: {message}")
