"""What a device returns (DeviceSample), and the check every sample passes at the device boundary.

`validate_sample` turns a backend's DeviceSample into one that keeps the contract documented on DeviceSample,
with plain types (float, bool, float64 arrays, dicts of float / bool), or raises MalformedSampleError naming
the field and what is wrong with it. Device.read() calls it on every sample, so a backend bug (an array where
a bool belongs, None for a time, a (3, 4) pose) is refused in one place: the session holds the robot as for a
stale sample, and only validated samples reach the controller, the trace and the episode file (whose device
arrays must keep the shapes and dtypes of their first row).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from teleop.errors import MalformedSampleError

POSE_SHAPE = (4, 4)
KEYPOINTS_SHAPE = (21, 3)
ROTATION_TOLERANCE = 1e-3
"""Largest |R^T R - I| entry, and |last row - [0, 0, 0, 1]|, of an accepted pose (float32 drivers stay well
below; the pose mapping refuses the same)."""
GRIPPER_TOLERANCE = 1e-6
"""A gripper command this far outside [0, 1] is rounding and is clipped; further out it is malformed."""
FUTURE_TOLERANCE_S = 0.01
"""A sample may be stamped this much after the device clock's reading taken just after it [s] (clock
granularity); a later stamp would never count as stale, so it is malformed."""

_NUMBER_KINDS = "iuf"  # integer, unsigned, float: no bool, complex, string or object


@dataclass(frozen=True)
class DeviceSample:
    """One reading of an operator device.

    Attributes:
        t: Monotonic time the sample was received [s].
        engaged: Deadman / clutch: True while the operator holds the grip; robot motion follows only then.
        T_world_device: Pose of the held device in its tracking frame, (4, 4), metres; None if the device
            gives no pose (a hand-only tracker, a gamepad).
        keypoints: 21 hand keypoints in MediaPipe order, in a wrist frame (wrist at the origin), (21, 3)
            metres; None if the device tracks no hand.
        gripper: Gripper command, 0 open .. 1 closed (trigger).
        axes: Named analogue axes in [-1, 1] (gamepad sticks, trackpad); finite (the mappings that read an
            axis check its range).
        buttons: Named buttons.
        device_time: The device's own timestamp where its SDK gives one [s], else None.
    """

    t: float
    engaged: bool = False
    T_world_device: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    gripper: float = 0.0
    axes: dict[str, float] = field(default_factory=dict)
    buttons: dict[str, bool] = field(default_factory=dict)
    device_time: float | None = None

    def to_record(self) -> dict[str, np.ndarray]:
        """Fixed-shape arrays for the episode file; missing parts are NaN so every step has the same layout."""
        pose = self.T_world_device if self.T_world_device is not None else np.full((4, 4), np.nan)
        keypoints = self.keypoints if self.keypoints is not None else np.full((21, 3), np.nan)
        return {
            "t": np.asarray(self.t, dtype=np.float64),
            "engaged": np.asarray(self.engaged, dtype=np.bool_),
            "T_world_device": np.asarray(pose, dtype=np.float64),
            "keypoints": np.asarray(keypoints, dtype=np.float64),
            "gripper": np.asarray(self.gripper, dtype=np.float64),
        }


def validate_sample(sample: object, now: float | None = None) -> DeviceSample:
    """The sample with every field checked and converted to its documented type.

    Args:
        sample: What a backend's _read() returned.
        now: The device clock just after the read [s]; with it, a sample stamped later than
            now + FUTURE_TOLERANCE_S is refused.
    Returns:
        A new DeviceSample: t, gripper and device_time as float, engaged as bool, T_world_device (4, 4) and
        keypoints (21, 3) as new float64 arrays (or None), axes as {str: float}, buttons as {str: bool}.
    Raises:
        MalformedSampleError: Not a DeviceSample, or a field of the wrong type or shape, non-finite, or out of
            range (gripper outside [0, 1], a pose that is not a rigid transform); the message names the field.
    """
    if not isinstance(sample, DeviceSample):
        raise MalformedSampleError(f"the device returned {type(sample).__name__}, not a DeviceSample")
    try:
        checked = DeviceSample(
            t=_finite_real(sample.t, "t"),
            engaged=_bool(sample.engaged, "engaged"),
            T_world_device=_pose(sample.T_world_device),
            keypoints=_optional_array(sample.keypoints, KEYPOINTS_SHAPE, "keypoints"),
            gripper=_gripper(sample.gripper),
            axes=_named(sample.axes, "axes", _finite_real),
            buttons=_named(sample.buttons, "buttons", _bool),
            device_time=None if sample.device_time is None else _finite_real(sample.device_time, "device_time"),
        )
    except MalformedSampleError:
        raise
    except Exception as exc:  # any failure while looking at a backend's objects means the sample is unusable
        raise MalformedSampleError(f"a field cannot be read ({type(exc).__name__}: {exc})") from exc
    if now is not None and checked.t > now + FUTURE_TOLERANCE_S:
        raise MalformedSampleError(f"t is {checked.t!r} s, {checked.t - now:.3g} s after the device clock: a "
                                   "sample must be stamped with the device's monotonic clock")
    return checked


def _finite_real(value: object, name: str) -> float:
    number = _real(value)
    if number is None:
        raise MalformedSampleError(f"{name} must be a real number, got {_describe(value)}")
    if not math.isfinite(number):
        raise MalformedSampleError(f"{name} must be finite, got {number}")
    return number


def _real(value: object) -> float | None:
    """A Python or NumPy real scalar (or a 0-d numeric array) as a float; None for anything else (bools too)."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in _NUMBER_KINDS:
        return float(value)
    return None


def _bool(value: object, name: str) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind == "b":
        return bool(value)
    raise MalformedSampleError(f"{name} must be a bool, got {_describe(value)}")


def _gripper(value: object) -> float:
    gripper = _finite_real(value, "gripper")
    if not -GRIPPER_TOLERANCE <= gripper <= 1.0 + GRIPPER_TOLERANCE:
        raise MalformedSampleError(f"gripper must be in [0, 1] (0 open .. 1 closed), got {gripper}")
    return min(1.0, max(0.0, gripper))


def _optional_array(value: object, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError, OverflowError):
        raise MalformedSampleError(f"{name} must be a {shape} array of numbers, got {_describe(value)}") from None
    if raw.dtype.kind not in _NUMBER_KINDS:
        raise MalformedSampleError(f"{name} must hold numbers, got dtype {raw.dtype}")
    if raw.shape != shape:
        raise MalformedSampleError(f"{name} must have shape {shape}, got {raw.shape}")
    array = raw.astype(np.float64)  # a copy: drivers may reuse their buffers
    if not np.isfinite(array).all():
        raise MalformedSampleError(f"{name} contains NaN or inf (a lost track is None, not NaN)")
    return array


def _pose(value: object) -> np.ndarray | None:
    T = _optional_array(value, POSE_SHAPE, "T_world_device")
    if T is None:
        return None
    R = T[:3, :3]
    if np.abs(T[3] - (0.0, 0.0, 0.0, 1.0)).max() > ROTATION_TOLERANCE:
        raise MalformedSampleError(f"T_world_device's last row must be [0, 0, 0, 1], got {T[3].tolist()}")
    if np.abs(R.T @ R - np.eye(3)).max() > ROTATION_TOLERANCE or np.linalg.det(R) <= 0:
        raise MalformedSampleError("T_world_device's rotation block is not a rotation matrix")
    return T


def _named(value: object, name: str, check: Any) -> dict:
    if not isinstance(value, Mapping):
        raise MalformedSampleError(f"{name} must be a dict of name -> value, got {_describe(value)}")
    checked = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise MalformedSampleError(f"{name} names must be strings, got {_describe(key)}")
        checked[key] = check(item, f"{name}[{key!r}]")
    return checked


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
