"""Arm IK with ikpy: a full pose solve per tick, made safe for the control loop by the same limits as ArmIK.

ikpy is pure Python (numpy, scipy and sympy), an alternative where pinocchio is not available, and a peer to
measure ArmIK against (benchmarks/kinematics.py). Each tick asks ikpy for the joints that reach the target
pose (position and full orientation, seeded with the measured joints, within the position limits shrunk by a
margin), then scales the step toward that solution, as a whole, so that no joint moves faster than
`max_speed_fraction` of its URDF velocity limit, and clips it to the position limits. ikpy's chain is built
from the same URDF as RobotModel, from the URDF root link to the spec's end-effector frame, with exactly the
spec's joints active; its forward kinematics and the errors it reports need no pinocchio.

ikpy is an optional extra (`pip install 'teleop[ikpy]'`), imported when a solver is built.
"""

from __future__ import annotations

import math
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kinematics.arm_ik import JointTarget
from kinematics.robots import RobotSpec, get_robot
from teleop.deps import require
from teleop.errors import TeleopError, UnknownNameError, UnsafeInputError

if TYPE_CHECKING:
    from kinematics.robot_model import RobotModel


@dataclass(frozen=True)
class IkpyIKConfig:
    """ikpy IK settings.

    Attributes:
        limit_margin_rad: Joints stay this far inside the URDF position limits [rad] (ikpy's bounds too).
        max_speed_fraction: Fraction of the URDF velocity limit a joint may move at per tick, in (0, 1].
        optimizer_budget: ikpy's budget of cost evaluations per solve; None leaves scipy's default.
        tol: ikpy's convergence tolerance; None leaves scipy's default.
        frame: End-effector frame (a URDF link); None uses the spec's ee_frame.
    """

    limit_margin_rad: float = 0.02
    max_speed_fraction: float = 0.8
    optimizer_budget: int | None = None
    tol: float | None = None
    frame: str | None = None

    def build(self, model_or_spec: RobotModel | RobotSpec | str) -> IkpyIK:
        """Parse the URDF into an ikpy chain and return the per-tick solver.

        Args:
            model_or_spec: A RobotModel, a RobotSpec or a robot name (only its spec is used).
        Raises:
            MissingDependencyError: ikpy is not installed.
            TeleopError: invalid settings, or the spec's joints are not all on the path to the frame.
        """
        _check(0 < self.max_speed_fraction <= 1, "max_speed_fraction must be in (0, 1]")
        _check(self.limit_margin_rad >= 0, "limit_margin_rad must be >= 0")
        _check(self.optimizer_budget is None or self.optimizer_budget >= 1, "optimizer_budget must be >= 1")
        _check(self.tol is None or self.tol > 0, "tol must be > 0")
        spec = _spec_of(model_or_spec)
        chain_module = require("ikpy.chain", extra="ikpy", purpose="the pure-Python IK solver", package="ikpy")
        frame = self.frame or spec.ee_frame
        chain = _build_chain(chain_module.Chain, spec, frame)
        limits = _urdf_joint_limits(spec.urdf_path, spec.joints)
        lower, upper = limits[:, 0] + self.limit_margin_rad, limits[:, 1] - self.limit_margin_rad
        _check(bool(np.all(lower < upper)), "limit_margin_rad is larger than half a joint range")
        active = [i for i, link in enumerate(chain.links) if link.name in spec.joints]
        for i, lo, hi in zip(active, lower, upper, strict=True):
            chain.links[i].bounds = (float(lo), float(hi))  # ikpy's optimiser then stays inside the margins
        return IkpyIK(self, spec, chain, lower, upper, limits[:, 2] * self.max_speed_fraction)


class IkpyIK:
    """Per-tick IK with ikpy; build with IkpyIKConfig.build(model_or_spec). Stateless between ticks."""

    def __init__(
        self,
        config: IkpyIKConfig,
        spec: RobotSpec,
        chain: Any,
        lower: np.ndarray,
        upper: np.ndarray,
        speed: np.ndarray,
    ) -> None:
        self.config = config
        self.spec = spec
        self.chain = chain
        self.lower, self.upper = lower, upper
        self.speed = speed  # allowed joint speeds (n,) [rad/s]
        self._active = np.array(chain.active_links_mask, dtype=bool)
        # Chain position of each spec joint, in the spec's command order.
        names = [link.name for link in chain.links]
        self._index = np.array([names.index(j) for j in spec.joints], dtype=np.intp)
        self._full = np.zeros(len(chain.links))
        self._options: dict[str, Any] = {"orientation_mode": "all"}
        if config.optimizer_budget is not None:
            self._options["optimizer_budget"] = config.optimizer_budget
        if config.tol is not None:
            self._options["tol"] = config.tol

    @property
    def n(self) -> int:
        """Number of driven joints."""
        return len(self.spec.joints)

    def fk(self, q: np.ndarray) -> np.ndarray:
        """T_base_ee (4, 4) from ikpy's chain for joints q (n,) [rad] in the spec's order."""
        return np.asarray(self.chain.forward_kinematics(self._to_full(np.asarray(q, dtype=float))), dtype=float)

    def solve(self, q_current: np.ndarray, T_base_target: np.ndarray, dt: float) -> JointTarget:
        """One tick: the joint command toward ikpy's solution for T_base_target, within the limits.

        Args:
            q_current: Measured joint positions (n,) [rad]; ikpy's seed.
            T_base_target: Target end-effector pose in the base frame (4, 4).
            dt: Control period [s]; bounds the joint step to speed * dt.
        Returns:
            The command; its errors are computed (one forward kinematics pass) when first read.
        Raises:
            UnsafeInputError: q, the target or dt is non-finite or has the wrong shape.
        """
        q0, T_target = self._validate(q_current, T_base_target, dt)
        # A q0 outside the margins may stay where it is or move back inside, never further out.
        lower, upper = np.minimum(self.lower, q0), np.maximum(self.upper, q0)
        seed = self._to_full(np.clip(q0, self.lower, self.upper))  # ikpy warns about seeds out of bounds
        full = self.chain.inverse_kinematics_frame(T_target, initial_position=seed, **self._options)
        q_ik = np.asarray(full, dtype=float)[self._index]
        q = np.clip(q0 + _scaled_step(q_ik - q0, self.speed * dt), lower, upper)
        # As ArmIK: the errors (one forward kinematics pass) are computed when first read, of q and the
        # target as they are now.
        q_reported, T_reported = q.copy(), T_target.copy()
        return JointTarget(q, errors=lambda: self._errors_at(q_reported, T_reported))

    def _errors_at(self, q: np.ndarray, T_target: np.ndarray) -> tuple[float, float]:
        """Position [m] and rotation [rad] errors at q from T_target (4, 4), with ikpy's forward kinematics."""
        T = self.fk(q)
        return float(np.linalg.norm(T_target[:3, 3] - T[:3, 3])), _angle(T_target[:3, :3], T[:3, :3])

    def _to_full(self, q: np.ndarray) -> np.ndarray:
        if q.shape != (self.n,):
            raise UnsafeInputError(f"joint vector of {self.spec.name} must have shape ({self.n},), got {q.shape}")
        full = self._full.copy()
        full[self._index] = q
        return full

    def _validate(self, q: np.ndarray, T: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(q, dtype=float)
        T = np.asarray(T, dtype=float)
        if q.shape != (self.n,) or not np.isfinite(q).all():
            raise UnsafeInputError(f"IK joint positions must be {self.n} finite values, got shape {q.shape}: {q}")
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise UnsafeInputError(f"IK target must be a finite 4x4 pose, got shape {T.shape}")
        R = T[:3, :3]
        if np.abs(R.T @ R - np.eye(3)).max() > 1e-4 or np.linalg.det(R) <= 0:
            raise UnsafeInputError("IK target rotation is not a rotation matrix: orthonormalise it first")
        if not (math.isfinite(dt) and dt > 0):
            raise UnsafeInputError(f"IK dt must be a positive finite period [s], got {dt}")
        return q, T


def _spec_of(model_or_spec: RobotModel | RobotSpec | str) -> RobotSpec:
    if isinstance(model_or_spec, str):
        return get_robot(model_or_spec)
    if isinstance(model_or_spec, RobotSpec):
        return model_or_spec
    return model_or_spec.spec


def _build_chain(chain_cls: Any, spec: RobotSpec, frame: str) -> Any:
    """ikpy Chain from the URDF root link to `frame`, with exactly the spec's joints active."""
    path = _path_to_link(spec.urdf_path, frame)
    joints = path[1::2]
    missing = [j for j in spec.joints if j not in joints]
    if missing:
        raise TeleopError(f"joints {missing} of robot {spec.name!r} are not between the URDF root and {frame!r}")
    # ikpy's links: an origin link, then one per URDF joint on the path.
    mask = [False] + [j in spec.joints for j in joints]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ikpy warns about fixed joints in the path, which are expected
        chain = chain_cls.from_urdf_file(
            str(spec.urdf_path), base_elements=path, active_links_mask=mask, name=spec.name
        )
        if len(chain.links) > len(mask):  # ikpy follows the first child past the end of base_elements
            chain = chain_cls(chain.links[: len(mask)], active_links_mask=mask, name=spec.name)
    return chain


def _path_to_link(urdf: Path, link: str) -> list[str]:
    """[root link, joint, link, ..., joint, link]: the URDF path from the root link to `link`."""
    root = ET.parse(urdf).getroot()
    links = [el.attrib["name"] for el in root.findall("link")]
    if link not in links:
        raise UnknownNameError("end-effector link", link, links)
    parent_joint = {j.find("child").attrib["link"]: j for j in root.findall("joint")}  # type: ignore[union-attr]
    path = [link]
    while path[0] in parent_joint:
        joint = parent_joint[path[0]]
        path[:0] = [joint.find("parent").attrib["link"], joint.attrib["name"]]  # type: ignore[union-attr]
    return path


def _urdf_joint_limits(urdf: Path, joints: tuple[str, ...]) -> np.ndarray:
    """(lower, upper, velocity) of each joint from the URDF's <limit>, shape (n, 3) [rad, rad/s]."""
    root = ET.parse(urdf).getroot()
    by_name = {j.attrib["name"]: j.find("limit") for j in root.findall("joint")}
    out = []
    for name in joints:
        limit = by_name.get(name)
        if limit is None or not {"lower", "upper", "velocity"} <= set(limit.attrib):
            raise TeleopError(f"joint {name!r} has no lower, upper and velocity limit in {urdf.name}")
        out.append([float(limit.attrib[k]) for k in ("lower", "upper", "velocity")])
    return np.array(out)


def _scaled_step(dq: np.ndarray, step_max: np.ndarray) -> np.ndarray:
    """dq scaled as a whole (direction kept) so that no |dq_i| exceeds step_max_i."""
    ratio = float(np.max(np.abs(dq) / step_max))
    return dq / ratio if ratio > 1.0 else dq


def _angle(R_target: np.ndarray, R: np.ndarray) -> float:
    """Angle of the rotation R_target R^T [rad], accurate near 0 and pi (atan2 of sine and cosine)."""
    M = R_target @ R.T
    sine = 0.5 * math.hypot(M[2, 1] - M[1, 2], M[0, 2] - M[2, 0], M[1, 0] - M[0, 1])
    cosine = 0.5 * (M[0, 0] + M[1, 1] + M[2, 2] - 1.0)
    return math.atan2(sine, cosine)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TeleopError(f"invalid IkpyIKConfig: {message}")
