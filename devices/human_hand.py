"""A parametric human right hand: 21 MediaPipe keypoints from five finger curls and spreads.

Used by the simulated operator to produce hand-tracking samples. Everything is in the canonical hand frame:
origin at the wrist (keypoint 0), x toward the middle-finger MCP (keypoint 9), z the palm normal pointing
out of the palm (the side the fingers curl toward), y = z x x (toward the little finger on a right hand).
This is the frame that `kinematics.hand_retarget.hand_frame` estimates from keypoints, so keypoints made
here need no further transform. Metres and radians throughout.

Keypoint order (MediaPipe): 0 wrist; thumb 1-4 (CMC, MCP, IP, tip); index 5-8; middle 9-12; ring 13-16;
little 17-20 (MCP, PIP, DIP, tip). Finger indices below: 0 thumb, 1 index, 2 middle, 3 ring, 4 little.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from teleop.errors import UnsafeInputError

FINGER_NAMES = ("thumb", "index", "middle", "ring", "little")
TIP_KEYPOINTS = (4, 8, 12, 16, 20)
SPREAD_LIMITS_RAD = ((-0.35, 0.6), (-0.3, 0.35), (-0.3, 0.3), (-0.3, 0.3), (-0.3, 0.45))

# Joint flexion at curl 1 [rad]: MCP and PIP of the long fingers (the DIP follows as 2/3 of the PIP), and
# the thumb's MCP and IP. A curl of 1 is a loose fist.
_MCP_FLEX, _PIP_FLEX, _DIP_PER_PIP = 1.4, 1.65, 2.0 / 3.0
_THUMB_MCP_FLEX, _THUMB_IP_FLEX = 0.55, 0.75
_Z = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class HandDimensions:
    """Bone geometry of a typical adult right hand [m], in the canonical hand frame.

    Attributes:
        mcp: Positions of the index, middle, ring and little MCP joints (4, 3); the middle MCP is on +x.
        phalanges: Proximal, middle and distal phalanx lengths of index, middle, ring, little (4, 3).
        finger_yaw: Rest direction of each long finger about the palm normal (4,) [rad], + toward little.
        thumb_cmc: Thumb CMC joint position (3,).
        thumb_bones: Thumb metacarpal, proximal and distal phalanx lengths (3,).
    """

    mcp: tuple[tuple[float, float, float], ...] = (
        (0.086, -0.024, 0.0),
        (0.088, 0.0, 0.0),
        (0.081, 0.019, 0.0),
        (0.073, 0.037, 0.0),
    )
    phalanges: tuple[tuple[float, float, float], ...] = (
        (0.039, 0.023, 0.020),
        (0.044, 0.027, 0.021),
        (0.041, 0.026, 0.021),
        (0.032, 0.019, 0.019),
    )
    finger_yaw: tuple[float, ...] = (-0.08, 0.0, 0.08, 0.17)
    thumb_cmc: tuple[float, float, float] = (0.024, -0.028, 0.008)
    thumb_bones: tuple[float, float, float] = (0.041, 0.032, 0.027)

    def scaled(self, factor: float) -> HandDimensions:
        """The same hand uniformly scaled (factor 1.1 is a hand 10% larger)."""
        return HandDimensions(
            mcp=tuple(tuple(v * factor for v in p) for p in self.mcp),  # type: ignore[misc]
            phalanges=tuple(tuple(v * factor for v in p) for p in self.phalanges),  # type: ignore[misc]
            finger_yaw=self.finger_yaw,
            thumb_cmc=tuple(v * factor for v in self.thumb_cmc),  # type: ignore[arg-type]
            thumb_bones=tuple(v * factor for v in self.thumb_bones),  # type: ignore[arg-type]
        )


class HandPose(NamedTuple):
    """Finger parameters and the keypoints they give.

    Attributes:
        curl: Per finger (thumb, index, middle, ring, little) flexion in [0, 1], shape (5,).
        spread: Per finger abduction [rad], shape (5,).
        keypoints: MediaPipe keypoints in the canonical hand frame, shape (21, 3) [m].
    """

    curl: np.ndarray
    spread: np.ndarray
    keypoints: np.ndarray


@dataclass
class HumanHand:
    """Forward model of a right hand plus a per-finger inverse (curl, spread) for a fingertip target.

    Spread is abduction about the palm normal, positive away from the middle finger's axis: the thumb and
    index move radially (-y), ring and little ulnarly (+y); the middle finger moves radially.
    """

    dims: HandDimensions = field(default_factory=HandDimensions)

    def keypoints(self, curl: np.ndarray, spread: np.ndarray | None = None) -> np.ndarray:
        """Keypoints (21, 3) [m], canonical hand frame, for curls (5,) in [0, 1] and spreads (5,) [rad]."""
        curl, spread = self._check(curl, spread)
        out = np.zeros((21, 3))
        out[1:5] = self._thumb(curl[0], spread[0])
        for finger in range(1, 5):
            start = 1 + 4 * finger
            out[start : start + 4] = self._long_finger(finger, curl[finger], spread[finger])
        return out

    def fingertip(self, finger: int, curl: float, spread: float = 0.0) -> np.ndarray:
        """Tip position (3,) [m] of one finger (0 thumb .. 4 little) for its curl and spread."""
        _check_finger(finger)
        if finger == 0:
            return self._thumb(float(curl), float(spread))[-1]
        return self._long_finger(finger, float(curl), float(spread))[-1]

    def solve_finger(
        self, finger: int, target: np.ndarray, curl: float = 0.5, spread: float = 0.0, iterations: int = 12
    ) -> tuple[float, float, float]:
        """(curl, spread, distance [m]) bringing the fingertip closest to `target` (3,), within bounds.

        Projected Gauss-Newton over the finger's two parameters, started at (curl, spread).
        """
        _check_finger(finger)
        target = np.asarray(target, dtype=float)
        if target.shape != (3,) or not np.isfinite(target).all():
            raise UnsafeInputError(f"fingertip target must be 3 finite values [m], got {target!r}")
        x = np.array([curl, spread], dtype=float)
        lo = np.array([0.0, SPREAD_LIMITS_RAD[finger][0]])
        hi = np.array([1.0, SPREAD_LIMITS_RAD[finger][1]])
        x = np.clip(x, lo, hi)
        for _ in range(iterations):
            tip = self.fingertip(finger, x[0], x[1])
            J = self._tip_jacobian(finger, x, tip)
            r = target - tip
            step = np.linalg.solve(J.T @ J + 1e-6 * np.eye(2), J.T @ r)
            x = np.clip(x + step, lo, hi)
        distance = float(np.linalg.norm(self.fingertip(finger, x[0], x[1]) - target))
        return float(x[0]), float(x[1]), distance

    def place_fingertip(
        self, finger: int, target: np.ndarray, curl: np.ndarray, spread: np.ndarray | None = None
    ) -> HandPose:
        """Hand pose with one finger's curl and spread changed to bring its tip nearest `target` (3,)."""
        _check_finger(finger)
        curl, spread = self._check(curl, spread)
        curl, spread = curl.copy(), spread.copy()
        curl[finger], spread[finger], _ = self.solve_finger(finger, target, curl[finger], spread[finger])
        return HandPose(curl, spread, self.keypoints(curl, spread))

    # ---------------------------------------------------------------------------------------- internals
    def _long_finger(self, finger: int, curl: float, spread: float) -> np.ndarray:
        """MCP, PIP, DIP, tip (4, 3) of finger 1..4."""
        k = finger - 1
        sign = -1.0 if finger <= 2 else 1.0  # index and middle spread radially (-y), ring and little ulnarly
        yaw = self.dims.finger_yaw[k] + sign * spread
        axis = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        theta_pip = curl * _PIP_FLEX
        angles = np.cumsum([curl * _MCP_FLEX, theta_pip, _DIP_PER_PIP * theta_pip])
        directions = np.cos(angles)[:, None] * axis + np.sin(angles)[:, None] * _Z
        bones = np.array(self.dims.phalanges[k])[:, None] * directions
        mcp = np.array(self.dims.mcp[k])
        return np.vstack((mcp, mcp + np.cumsum(bones, axis=0)))

    def _thumb(self, curl: float, spread: float) -> np.ndarray:
        """CMC, MCP, IP, tip (4, 3): the metacarpal swings from beside the palm to in front of it
        (opposition) while the MCP and IP flex toward the fingers."""
        d_open = _unit(np.array([0.62, -0.74, 0.26]))
        d_opposed = _unit(np.array([0.62, -0.18, 0.76]))
        meta = _rotate_z(_slerp(d_open, d_opposed, curl), -spread)
        # Bending direction: toward the pads of the index and middle fingers, orthogonal to the metacarpal.
        toward = np.array([0.45, 0.85, 0.25])
        bend = _unit(toward - (toward @ meta) * meta)
        angles = np.cumsum([curl * _THUMB_MCP_FLEX + 0.15, curl * _THUMB_IP_FLEX + 0.1])
        phal = np.cos(angles)[:, None] * meta + np.sin(angles)[:, None] * bend
        lengths = self.dims.thumb_bones
        cmc = np.array(self.dims.thumb_cmc)
        mcp = cmc + lengths[0] * meta
        ip = mcp + lengths[1] * phal[0]
        return np.vstack((cmc, mcp, ip, ip + lengths[2] * phal[1]))

    def _tip_jacobian(self, finger: int, x: np.ndarray, tip: np.ndarray, eps: float = 1e-6) -> np.ndarray:
        J = np.empty((3, 2))
        for i in range(2):
            x_eps = x.copy()
            x_eps[i] += eps
            J[:, i] = (self.fingertip(finger, x_eps[0], x_eps[1]) - tip) / eps
        return J

    @staticmethod
    def _check(curl: np.ndarray, spread: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        curl = np.asarray(curl, dtype=float)
        spread = np.zeros(5) if spread is None else np.asarray(spread, dtype=float)
        if curl.shape != (5,) or spread.shape != (5,):
            raise UnsafeInputError(
                f"curl and spread must have shape (5,), got {curl.shape} and {spread.shape}"
            )
        if not (np.isfinite(curl).all() and np.isfinite(spread).all()):
            raise UnsafeInputError("curl and spread must be finite")
        return np.clip(curl, 0.0, 1.0), spread


def _check_finger(finger: int) -> None:
    if finger not in range(5):
        raise UnsafeInputError(f"finger must be 0 (thumb) .. 4 (little), got {finger}")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between unit vectors a and b."""
    angle = np.arccos(np.clip(a @ b, -1.0, 1.0))
    if angle < 1e-9:
        return a
    return (np.sin((1.0 - t) * angle) * a + np.sin(t * angle) * b) / np.sin(angle)


def _rotate_z(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1], v[2]])
