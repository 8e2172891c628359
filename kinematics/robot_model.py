"""Robot kinematics from the URDF with pinocchio: joint limits, forward kinematics and frame Jacobians.

All vectors of joint values are in the spec's command order (`RobotSpec.joints`), which may differ from
pinocchio's depth-first order (the Allegro hand: pinocchio orders index, thumb, middle, ring). Poses and
Jacobians are expressed in the URDF root frame ("base"; the palm for a hand).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pinocchio as pin

from kinematics.robots import RobotSpec, get_robot
from teleop.errors import TeleopError, UnknownNameError, UnsafeInputError

_LWA = pin.ReferenceFrame.LOCAL_WORLD_ALIGNED


class RobotModel:
    """Kinematic model of the joints a spec drives; every other joint is locked at 0.

    Build once (parses the URDF) and reuse. One instance holds one pinocchio `Data` scratch buffer, so it
    is not thread-safe: use one instance per thread.
    """

    def __init__(self, spec: RobotSpec) -> None:
        full = pin.buildModelFromUrdf(str(spec.urdf_path))
        self.spec = spec
        self.model = _reduce(full, spec)
        self.data = self.model.createData()
        # Column / entry of each spec joint in pinocchio's q and v vectors.
        self._idx_q = np.array([_joint_of(self.model, j).idx_q for j in spec.joints], dtype=np.intp)
        self._idx_v = np.array([_joint_of(self.model, j).idx_v for j in spec.joints], dtype=np.intp)
        self._ordered = bool(np.array_equal(self._idx_q, np.arange(len(spec.joints))))
        self._frame_ids: dict[str, int] = {f.name: i for i, f in enumerate(self.model.frames)}
        self.ee_frame_id = self.frame_id(spec.ee_frame)
        self.fingertip_frame_ids = tuple(self.frame_id(f) for f in spec.fingertip_frames)
        self._q_pin = np.zeros(self.model.nq)
        self._J6 = np.zeros((6, self.model.nv))

    # ----------------------------------------------------------------------------------------- properties
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def n(self) -> int:
        """Number of driven joints."""
        return len(self.spec.joints)

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.spec.joints

    @property
    def lower(self) -> np.ndarray:
        """Lower position limits from the URDF [rad or m], shape (n,)."""
        return self.model.lowerPositionLimit[self._idx_q].copy()

    @property
    def upper(self) -> np.ndarray:
        """Upper position limits from the URDF [rad or m], shape (n,)."""
        return self.model.upperPositionLimit[self._idx_q].copy()

    @property
    def velocity_limit(self) -> np.ndarray:
        """Velocity limits from the URDF [rad/s or m/s], shape (n,)."""
        return self.model.velocityLimit[self._idx_v].copy()

    @property
    def home(self) -> np.ndarray:
        """The spec's home configuration, shape (n,)."""
        return np.array(self.spec.home, dtype=float)

    @property
    def frame_names(self) -> tuple[str, ...]:
        return tuple(self._frame_ids)

    # ------------------------------------------------------------------------------------------- queries
    def frame_id(self, frame: str) -> int:
        """Pinocchio id of a URDF frame (link or joint name); UnknownNameError lists the valid ones."""
        try:
            return self._frame_ids[frame]
        except KeyError:
            raise UnknownNameError(f"frame of robot {self.spec.name}", frame, list(self._frame_ids)) from None

    def fk(self, q: np.ndarray, frame: str | int | None = None) -> np.ndarray:
        """T_base_frame (4, 4) of `frame` (name or id; default: the spec's ee_frame)."""
        fid = self.resolve_frame(frame)
        pin.forwardKinematics(self.model, self.data, self._to_pin(q))
        return pin.updateFramePlacement(self.model, self.data, fid).homogeneous

    def jacobian(self, q: np.ndarray, frame: str | int | None = None) -> np.ndarray:
        """Frame Jacobian, LOCAL_WORLD_ALIGNED (linear rows first, base axes), shape (6, n)."""
        return self.pose_and_jacobian(q, frame)[1]

    def pose_and_jacobian(
        self, q: np.ndarray, frame: str | int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """T_base_frame (4, 4) and its LOCAL_WORLD_ALIGNED Jacobian (6, n) from one kinematics pass."""
        return self.pose_and_jacobian_of_id(self._checked(q), self.resolve_frame(frame))

    def pose_and_jacobian_of_id(self, q: np.ndarray, frame_id: int) -> tuple[np.ndarray, np.ndarray]:
        """pose_and_jacobian for a solver's inner loop, without its checks and conversions.

        Args:
            q: Joint positions, a float array of shape (n,) that the caller has validated.
            frame_id: A frame id (from frame_id or resolve_frame).
        """
        model, data = self.model, self.data
        if not self._ordered:
            self._q_pin[self._idx_q] = q
            q = self._q_pin
        pin.computeJointJacobians(model, data, q)
        T = pin.updateFramePlacement(model, data, frame_id).homogeneous
        J = pin.getFrameJacobian(model, data, frame_id, _LWA)
        return T, J if self._ordered else J[:, self._idx_v]

    def frame_positions(self, q: np.ndarray, frames: tuple[str, ...] | list[str]) -> np.ndarray:
        """Positions of several frames in the base frame, shape (k, 3)."""
        ids = [self.frame_id(f) for f in frames]
        pin.forwardKinematics(self.model, self.data, self._to_pin(q))
        return np.array([pin.updateFramePlacement(self.model, self.data, i).translation for i in ids])

    def fingertips(self, q: np.ndarray) -> np.ndarray:
        """Hands: fingertip positions (index, middle, ring, thumb) in the palm frame, shape (4, 3)."""
        ids = self._require_fingertips()
        pin.forwardKinematics(self.model, self.data, self._to_pin(q))
        return np.array([pin.updateFramePlacement(self.model, self.data, i).translation for i in ids])

    def fingertips_and_jacobians(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hands: fingertip positions (4, 3) and their linear Jacobians (4, 3, n), palm frame."""
        ids = self._require_fingertips()
        pin.computeJointJacobians(self.model, self.data, self._to_pin(q))
        tips = np.empty((len(ids), 3))
        jacs = np.empty((len(ids), 3, self.n))
        for k, fid in enumerate(ids):
            tips[k] = pin.updateFramePlacement(self.model, self.data, fid).translation
            J = pin.getFrameJacobian(self.model, self.data, fid, _LWA)
            jacs[k] = J[:3] if self._ordered else J[:3, self._idx_v]
        return tips, jacs

    # ---------------------------------------------------------------------------------------- internals
    def _checked(self, q: np.ndarray) -> np.ndarray:
        """q as a float array of shape (n,), in the spec's order; UnsafeInputError for another shape."""
        q = np.asarray(q, dtype=float)
        if q.shape != (self.n,):
            raise UnsafeInputError(
                f"joint vector of {self.spec.name} must have shape ({self.n},), got {q.shape}"
            )
        return q

    def _to_pin(self, q: np.ndarray) -> np.ndarray:
        q = self._checked(q)
        if self._ordered:
            return q
        self._q_pin[self._idx_q] = q
        return self._q_pin

    def resolve_frame(self, frame: str | int | None) -> int:
        """Frame id from a name, an id, or None (the spec's ee_frame)."""
        if frame is None:
            return self.ee_frame_id
        if isinstance(frame, str):
            return self.frame_id(frame)
        return int(frame)

    def _require_fingertips(self) -> tuple[int, ...]:
        if not self.fingertip_frame_ids:
            raise TeleopError(f"robot {self.spec.name!r} has no fingertip frames: fingertips() is for hands")
        return self.fingertip_frame_ids


def _reduce(full: pin.Model, spec: RobotSpec) -> pin.Model:
    """The model with every joint outside spec.joints locked at 0."""
    names = list(full.names)[1:]
    for j in spec.joints:
        if j not in names:
            raise UnknownNameError(f"joint of robot {spec.name}", j, names)
        if full.joints[full.getJointId(j)].nq != 1:
            raise TeleopError(f"joint {j!r} of robot {spec.name!r} is not a 1-DoF joint: it cannot be driven")
    locked = [full.getJointId(n) for n in names if n not in spec.joints]
    if not locked:
        return full
    return pin.buildReducedModel(full, locked, np.zeros(full.nq))


def _joint_of(model: pin.Model, name: str) -> pin.JointModel:
    return model.joints[model.getJointId(name)]


@cache
def _load_cached(spec: RobotSpec) -> RobotModel:
    return RobotModel(spec)


def load_model(name_or_spec: str | RobotSpec) -> RobotModel:
    """A RobotModel by robot name or spec, built once per spec and shared (one per thread, see RobotModel)."""
    spec = get_robot(name_or_spec) if isinstance(name_or_spec, str) else name_or_spec
    return _load_cached(spec)
