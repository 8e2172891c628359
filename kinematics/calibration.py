"""Calibration of R_base_device, the rotation from the device tracking frame to the robot base.

Two routines a user can run, each returning a `Calibration` for `MappingConfig.R_base_device`:

* `calibrate_point_forward`: holding the grip, move the controller about 20 cm forward (the robot's +x),
  then about 20 cm up (the robot's +z). The two displacement directions, measured in the tracking frame,
  are the base x and z axes; Gram-Schmidt keeps x exactly and makes a sloppy "up" orthogonal to it.
* `calibrate_still_pose`: hold the controller still with its axes aligned with the robot base (or at a
  known orientation in the base) while N poses are recorded; their rotations are averaged (eigenvector
  method) and the batch is refused if the controller moved.

`save_calibration` / `load_calibration` keep a result in a small JSON file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial.transform import Rotation

from teleop.errors import TeleopError

if TYPE_CHECKING:
    from kinematics.mapping import MappingConfig

FILE_FORMAT = "teleop-calibration"
FILE_VERSION = 1
METHODS = ("point_forward", "still_pose")


@dataclass(frozen=True, eq=False)
class Calibration:
    """A device-to-base calibration.

    Attributes:
        R_base_device: Rotation (3, 3) taking vectors in the device tracking frame to the robot base frame.
        method: How it was obtained: "point_forward" or "still_pose".
        created_utc: When it was made, ISO 8601 in UTC.
    """

    R_base_device: np.ndarray
    method: str
    created_utc: str

    def __post_init__(self) -> None:
        R = np.array(self.R_base_device, dtype=float)  # a private, read-only copy
        R.flags.writeable = False
        object.__setattr__(self, "R_base_device", R)

    def as_rows(self) -> tuple[tuple[float, float, float], ...]:
        """R_base_device as nested tuples, the form MappingConfig.R_base_device takes."""
        return tuple((float(r[0]), float(r[1]), float(r[2])) for r in self.R_base_device)

    def apply(self, config: MappingConfig) -> MappingConfig:
        """A copy of the mapping config with this R_base_device (the config itself is unchanged)."""
        return replace(config, R_base_device=self.as_rows())


@dataclass(frozen=True)
class PointForwardConfig:
    """Acceptance thresholds of the point-forward gesture.

    Attributes:
        min_length_m: Shortest accepted displacement of each motion [m].
        min_angle_deg: Smallest accepted angle between the forward and the up motion [deg]; nearer to
            parallel than this, the up direction is too uncertain.
    """

    min_length_m: float = 0.08
    min_angle_deg: float = 45.0


@dataclass(frozen=True)
class StillPoseConfig:
    """Acceptance thresholds of the still-pose average.

    Attributes:
        min_samples: Fewest poses in a batch.
        max_rotation_deg: Largest accepted angle of any pose from the average [deg].
        max_translation_m: Largest accepted distance of any position from the mean position [m].
    """

    min_samples: int = 10
    max_rotation_deg: float = 3.0
    max_translation_m: float = 0.02


def calibrate_point_forward(
    p_forward_device: np.ndarray, p_up_device: np.ndarray, config: PointForwardConfig = PointForwardConfig()
) -> Calibration:
    """R_base_device from a forward motion (robot +x) and an up motion (robot +z) of the controller.

    Args:
        p_forward_device: Controller positions (k, 3) [m] in the tracking frame during the forward motion,
            in time order (k >= 2); the start and end alone also work.
        p_up_device: Controller positions (m, 3) [m] during the up motion, in time order (m >= 2).
        config: Acceptance thresholds.
    Raises:
        TeleopError: a motion too short, the two motions too close to parallel, or non-finite positions;
            the message says how to repeat the gesture.
    """
    x = _motion_direction(p_forward_device, "forward", config.min_length_m)
    up = _motion_direction(p_up_device, "up", config.min_length_m)
    angle_deg = math.degrees(math.acos(min(1.0, abs(float(x @ up)))))
    if angle_deg < config.min_angle_deg:
        raise TeleopError(
            f"the forward and up motions are only {angle_deg:.0f} deg apart (at least {config.min_angle_deg:.0f} "
            "needed): move the controller straight forward, then straight up, and calibrate again"
        )
    z = up - (up @ x) * x
    z /= np.linalg.norm(z)
    y = np.cross(z, x)
    # Rows are the base axes in tracking coordinates, so R @ v_device gives base coordinates.
    return Calibration(np.vstack((x, y, z)), "point_forward", _now_utc())


def calibrate_still_pose(
    T_world_device: np.ndarray,
    R_base_held: np.ndarray | None = None,
    config: StillPoseConfig = StillPoseConfig(),
) -> Calibration:
    """R_base_device from poses of a controller held still at a known orientation in the robot base.

    Args:
        T_world_device: Controller poses (N, 4, 4) in the tracking frame.
        R_base_held: Orientation (3, 3) of the held controller in the base frame; None means its axes are
            aligned with the base axes.
        config: Acceptance thresholds.
    Raises:
        TeleopError: too few poses, non-finite or malformed poses, or a controller that moved more than
            the thresholds (the message says how much).
    """
    T = _poses(T_world_device, config.min_samples)
    R_world_device = average_rotation(T[:, :3, :3])
    _check_still(T, R_world_device, config)
    R_held = np.eye(3) if R_base_held is None else _rotation(R_base_held, "R_base_held")
    # v_base = R_base_held R_device_world v_world: the tracking frame seen from the base.
    return Calibration(R_held @ R_world_device.T, "still_pose", _now_utc())


def average_rotation(R: np.ndarray) -> np.ndarray:
    """Average (3, 3) of rotations R (N, 3, 3): the eigenvector of sum q q^T with the largest eigenvalue
    (Markley et al. 2007), insensitive to the sign ambiguity of quaternions."""
    q = Rotation.from_matrix(np.asarray(R, dtype=float)).as_quat()  # (N, 4), any sign
    _, vectors = np.linalg.eigh(q.T @ q)
    return Rotation.from_quat(vectors[:, -1]).as_matrix()


def save_calibration(calibration: Calibration, path: str | Path) -> Path:
    """Write the calibration as JSON to path (atomically: a partial file is never left behind)."""
    path = Path(path)
    document = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "method": calibration.method,
        "created_utc": calibration.created_utc,
        "R_base_device": [list(row) for row in calibration.as_rows()],
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration written by save_calibration.

    Raises:
        TeleopError: the file is missing, not JSON, not a calibration, or holds no proper rotation.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TeleopError(f"calibration file {path} does not exist: run a calibration first") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TeleopError(f"calibration file {path} cannot be read ({exc}): calibrate again") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise TeleopError(f'{path} is not a calibration file (no "format": "{FILE_FORMAT}")')
    if document.get("method") not in METHODS:
        raise TeleopError(f"calibration file {path}: method must be one of {', '.join(METHODS)}")
    try:
        R = np.array(document["R_base_device"], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise TeleopError(f"calibration file {path} has no 3x3 R_base_device: calibrate again") from None
    return Calibration(
        _rotation(R, f"R_base_device in {path}"), document["method"], str(document.get("created_utc", ""))
    )


# -------------------------------------------------------------------------------------------- internals
def _motion_direction(p: np.ndarray, name: str, min_length_m: float) -> np.ndarray:
    """Unit direction (3,) of a roughly straight motion: its principal axis, signed by start -> end."""
    p = _finite(p, f"{name} motion positions")
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 2:
        raise TeleopError(f"the {name} motion needs positions of shape (k >= 2, 3), got {p.shape}")
    net = p[-1] - p[0]
    length = float(np.linalg.norm(net))
    if length < min_length_m:
        raise TeleopError(
            f"the {name} motion was {100 * length:.1f} cm (at least {100 * min_length_m:.0f} cm needed): "
            f"hold the grip and move the controller about 20 cm {name}, then calibrate again"
        )
    centred = p - p.mean(axis=0)
    direction = np.linalg.svd(centred, full_matrices=False)[2][0] if p.shape[0] > 2 else net / length
    return direction if direction @ net > 0 else -direction


def _poses(T: np.ndarray, min_samples: int) -> np.ndarray:
    T = _finite(T, "controller poses")
    if T.ndim != 3 or T.shape[1:] != (4, 4):
        raise TeleopError(f"controller poses must have shape (N, 4, 4), got {T.shape}")
    if T.shape[0] < min_samples:
        raise TeleopError(f"only {T.shape[0]} poses recorded ({min_samples} needed): hold still a little longer")
    R = T[:, :3, :3]
    if np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max() > 1e-3 or (np.linalg.det(R) <= 0).any():
        raise TeleopError("some controller poses have no proper rotation: check the device driver")
    return T


def _check_still(T: np.ndarray, R_mean: np.ndarray, config: StillPoseConfig) -> None:
    angles = np.degrees(Rotation.from_matrix(T[:, :3, :3] @ R_mean.T).magnitude())
    offsets = np.linalg.norm(T[:, :3, 3] - T[:, :3, 3].mean(axis=0), axis=1)
    if angles.max() > config.max_rotation_deg or offsets.max() > config.max_translation_m:
        raise TeleopError(
            f"the controller moved during calibration (up to {angles.max():.1f} deg and {100 * offsets.max():.1f} "
            f"cm; limits {config.max_rotation_deg} deg, {100 * config.max_translation_m:.0f} cm): rest it "
            "against something aligned with the robot base and calibrate again"
        )


def _rotation(value: object, name: str) -> np.ndarray:
    R = _finite(value, name)
    if R.shape != (3, 3) or np.abs(R @ R.T - np.eye(3)).max() > 1e-6 or np.linalg.det(R) <= 0:
        raise TeleopError(f"{name} is not a proper 3x3 rotation matrix")
    return R


def _finite(x: object, name: str) -> np.ndarray:
    try:
        array = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise TeleopError(f"{name} must be an array of numbers") from None
    if not np.isfinite(array).all():
        raise TeleopError(f"{name} contain NaN or inf: the tracker lost the controller; calibrate again")
    return array


def _now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
