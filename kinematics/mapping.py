"""Device pose -> end-effector target: calibration, clutch with re-anchoring, scaling, workspace box, filter.

While the operator holds the clutch (`DeviceSample.engaged`), the target follows the device's motion
relative to where the device and the target were when the clutch closed; on release the target holds
still; closing the clutch again re-anchors, so the target never jumps. Frames: `device` is the tracking
frame of the device (T_world_device in the sample), `base` the robot base.

Unsafe input (a non-finite or malformed pose, a single-sample jump larger than `max_jump_m`) raises
UnsafeInputError from `update`, and the mapping keeps its last safe target (`target` is unchanged). It
also drops the clutch, so that the next valid sample re-anchors instead of following the jump.

The target is clamped to the workspace box and then filtered (EMA or One Euro, on the sample times); the
filter restarts from the held target at every anchoring, so gripping never makes the target jump.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from devices.base import DeviceSample
from kinematics.filters import (
    EmaFilterConfig,
    OneEuroFilterConfig,
    PoseFilter,
    PoseFilterConfig,
    pose_filter_config,
)
from kinematics.safety import as_finite_array
from teleop.errors import TeleopError, UnsafeInputError

_EYE3 = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


class _Anchor(NamedTuple):
    """Device pose and target when the clutch closed."""

    T_world_device: np.ndarray
    T_base_target: np.ndarray


@dataclass(frozen=True)
class MappingConfig:
    """Device-to-robot mapping settings.

    Attributes:
        R_base_device: Calibration rotation (3x3, rows) from the device tracking frame to the robot base
            (measure it with kinematics.calibration).
        pos_scale: Robot translation per device translation (1 = one to one).
        rot_scale: Fraction of the device rotation followed (1 = all, 0 = orientation held).
        workspace_lo: Lower corner of the allowed target box in the base frame (3,) [m].
        workspace_hi: Upper corner of the allowed target box in the base frame (3,) [m].
        filter_alpha: Shorthand for `filter=EmaFilterConfig(alpha=filter_alpha)`: the weight of each new
            target, in (0, 1]; 1 (the default) adds no filter. Leave it at 1 when `filter` is set.
        max_jump_m: Largest device displacement between two samples accepted while engaged [m].
        filter: Filter of the target pose (EMA per sample, or One Euro on the sample times with speeds in
            m/s and rad/s); None for no filter.
    """

    R_base_device: tuple[tuple[float, float, float], ...] = _EYE3
    pos_scale: float = 1.0
    rot_scale: float = 1.0
    workspace_lo: tuple[float, float, float] = (0.15, -0.6, 0.02)
    workspace_hi: tuple[float, float, float] = (0.85, 0.6, 0.9)
    filter_alpha: float = 1.0
    max_jump_m: float = 0.1
    filter: EmaFilterConfig | OneEuroFilterConfig | PoseFilterConfig | None = None

    def build(self) -> TeleopMapping:
        """Validate and return the stateful mapping."""
        R = np.asarray(self.R_base_device, dtype=float)
        _check(R.shape == (3, 3) and bool(np.isfinite(R).all()), "R_base_device must be a finite 3x3 matrix")
        _check(
            np.allclose(R @ R.T, np.eye(3), atol=1e-6) and np.linalg.det(R) > 0,
            "R_base_device not a rotation",
        )
        _check(np.isfinite(self.pos_scale) and self.pos_scale > 0, "pos_scale must be > 0")
        _check(
            np.isfinite(self.rot_scale) and self.rot_scale >= 0,
            "rot_scale must be >= 0 (0 disables rotation)",
        )
        lo = np.asarray(self.workspace_lo, dtype=float)
        hi = np.asarray(self.workspace_hi, dtype=float)
        _check(
            lo.shape == hi.shape == (3,) and bool(np.all(lo < hi)), "workspace_lo must be below workspace_hi"
        )
        _check(0.0 < self.filter_alpha <= 1.0, f"filter_alpha must be in (0, 1], got {self.filter_alpha}")
        _check(self.max_jump_m > 0, "max_jump_m must be > 0")
        _check(
            self.filter is None or self.filter_alpha == 1.0,
            "set either filter or filter_alpha (the EMA shorthand), not both",
        )
        return TeleopMapping(self, R, lo, hi, self._pose_filter())

    def _pose_filter(self) -> PoseFilter | None:
        if self.filter is not None:
            return pose_filter_config(self.filter).build()
        if self.filter_alpha < 1.0:
            return PoseFilterConfig(EmaFilterConfig(alpha=self.filter_alpha)).build()
        return None


class TeleopMapping:
    """Clutched device-to-target mapping; build with MappingConfig.build()."""

    def __init__(
        self,
        config: MappingConfig,
        R_base_device: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        pose_filter: PoseFilter | None = None,
    ) -> None:
        self.config = config
        self.R_base_device = R_base_device
        self.workspace_lo, self.workspace_hi = lo, hi
        self.pose_filter = pose_filter
        self._target: np.ndarray | None = None  # last safe target, T_base_target (4, 4)
        self._engaged = False
        self._anchor: _Anchor | None = None
        self._last_device_pos: np.ndarray | None = None

    @property
    def target(self) -> np.ndarray | None:
        """The last safe target T_base_target (4, 4), or None before the first update / reset."""
        return None if self._target is None else self._target.copy()

    @property
    def engaged(self) -> bool:
        """Whether the target currently follows the device."""
        return self._engaged

    def reset(self, T_base_ee: np.ndarray) -> None:
        """Hold T_base_ee (4, 4) as the target and release the clutch (the next grip re-anchors)."""
        self._target = self._clamp(_validate_pose(T_base_ee, "T_base_ee"))
        self._engaged = False

    def update(self, sample: DeviceSample, T_base_ee: np.ndarray) -> np.ndarray:
        """The end-effector target T_base_target (4, 4) for this sample.

        Args:
            sample: Device sample; its T_world_device is used while `engaged`.
            T_base_ee: Measured end-effector pose (4, 4); the target starts there if none is held yet.
        Raises:
            UnsafeInputError: non-finite or malformed poses, a device jump above max_jump_m, or a sample
                time before the previous one (with a filter); the last safe target is kept and the clutch
                dropped (the next valid sample re-anchors).
        """
        held = self._target
        if held is None:
            held = self._target = self._clamp(_validate_pose(T_base_ee, "T_base_ee"))
        if not sample.engaged:
            self._engaged = False
            return held.copy()
        try:
            target = self._engaged_target(sample, held)
        except UnsafeInputError:
            self._engaged = False
            self._last_device_pos = None
            raise
        self._target = target
        return target.copy()

    # ---------------------------------------------------------------------------------------- internals
    def _engaged_target(self, sample: DeviceSample, held: np.ndarray) -> np.ndarray:
        T_world_device = _validate_pose(sample.T_world_device, "T_world_device")
        self._check_jump(T_world_device[:3, 3])
        if not self._engaged or self._anchor is None:
            # Anchor on the held target (not the measured pose) so that the target stays continuous.
            self._anchor = _Anchor(T_world_device, held)
            self._engaged = True
            if self.pose_filter is not None:
                self.pose_filter.reset()
        T = self._clamp(self._follow(self._anchor, T_world_device))
        if self.pose_filter is not None:
            # Filtering points of the box keeps them in the box (convex steps); clamp against round-off.
            T = self._clamp(self.pose_filter(T, sample.t))
        return T

    def _follow(self, anchor: _Anchor, T_world_device: np.ndarray) -> np.ndarray:
        """Target from the device motion since the anchor (unfiltered, unclamped)."""
        c, R_bd = self.config, self.R_base_device
        T = np.eye(4)
        delta_device = T_world_device[:3, 3] - anchor.T_world_device[:3, 3]
        T[:3, 3] = anchor.T_base_target[:3, 3] + c.pos_scale * (R_bd @ delta_device)
        R_anchor = anchor.T_base_target[:3, :3]
        if c.rot_scale > 0:
            # Device rotation since the anchor, in the tracking frame, conjugated into the base frame.
            R_rel_device = T_world_device[:3, :3] @ anchor.T_world_device[:3, :3].T
            rotvec = R_bd @ Rotation.from_matrix(R_rel_device).as_rotvec()
            T[:3, :3] = Rotation.from_rotvec(c.rot_scale * rotvec).as_matrix() @ R_anchor
        else:
            T[:3, :3] = R_anchor
        return T

    def _check_jump(self, p_device: np.ndarray) -> None:
        last = self._last_device_pos if self._engaged else None
        if last is not None:
            jump = float(np.linalg.norm(p_device - last))
            if jump > self.config.max_jump_m:
                raise UnsafeInputError(
                    f"device moved {jump:.3f} m in one sample (limit max_jump_m={self.config.max_jump_m} m): "
                    "tracking glitch? The target is held; grip again to re-anchor"
                )
        self._last_device_pos = p_device.copy()

    def _clamp(self, T: np.ndarray) -> np.ndarray:
        T = T.copy()
        T[:3, 3] = np.clip(T[:3, 3], self.workspace_lo, self.workspace_hi)
        return T


def _validate_pose(T: object, name: str) -> np.ndarray:
    if T is None:
        raise UnsafeInputError(f"{name} is missing: this mapping needs a device that tracks a pose")
    T = as_finite_array(T, (4, 4), name)
    R = T[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
        raise UnsafeInputError(f"{name} rotation is not a rotation matrix")
    if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0)):
        raise UnsafeInputError(f"{name} last row must be [0, 0, 0, 1]")
    return T


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TeleopError(f"invalid MappingConfig: {message}")
