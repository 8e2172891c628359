"""The device contract: connect / read / disconnect, and the sample every device returns."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from devices.status import DeviceStatus, RateMeter
from teleop.errors import DeviceNotConnectedError

Clock = Callable[[], float]


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
        axes: Named analogue axes in [-1, 1] (gamepad sticks, trackpad).
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


class Device(abc.ABC):
    """Base class of every device backend.

    Lifecycle: construct (cheap, touches no hardware) -> connect() -> read() ... -> disconnect().
    Also a context manager. read() never blocks: it returns the newest sample.
    """

    name: str = "device"

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._connected = False
        self._read_meter = RateMeter()

    @property
    def connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        """Open the device (start SDKs, reader threads)."""
        self._connect()
        self._read_meter.reset()
        self._connected = True

    def disconnect(self) -> None:
        """Close the device; safe to call twice."""
        if self._connected:
            self._disconnect()
        self._connected = False

    def read(self) -> DeviceSample:
        """The newest sample, without blocking."""
        if not self._connected:
            raise DeviceNotConnectedError(f"{self.name} is not connected: call .connect() first")
        sample = self._read()
        self._read_meter.tick(sample.t)
        return sample

    def status(self) -> DeviceStatus:
        """Health now: connected, sample rate over the last second [Hz], age of the newest sample [s], and why not.

        The default measures read() itself; backends that know more (tracking lost, controller off) override it.
        """
        if not self._connected:
            return DeviceStatus(False, reason=f"{self.name} is not connected: call .connect() first")
        return self._read_meter.status(self.clock())

    def __enter__(self) -> Device:
        self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()

    def _connect(self) -> None:  # noqa: B027 - optional hook
        pass

    def _disconnect(self) -> None:  # noqa: B027 - optional hook
        pass

    @abc.abstractmethod
    def _read(self) -> DeviceSample: ...
