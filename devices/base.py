"""The device contract: connect / read / disconnect, and the sample every device returns."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from types import TracebackType

from devices.sample import DeviceSample, validate_sample
from devices.status import DeviceStatus, RateMeter
from teleop.errors import DeviceError, DeviceNotConnectedError, MalformedSampleError, TeleopError

Clock = Callable[[], float]

__all__ = ["Clock", "Device", "DeviceSample"]

READINESS_READS = 25  # reads of Device.readiness()


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
        """The newest sample, without blocking, checked against the DeviceSample contract.

        Raises:
            DeviceNotConnectedError: connect() was not called.
            MalformedSampleError: The backend returned a sample of the wrong types, shapes or values (see
                devices.sample.validate_sample); nothing of it is passed on.
            DeviceError: The backend's own failures (device lost, driver error).
        """
        if not self._connected:
            raise DeviceNotConnectedError(f"{self.name} is not connected: call .connect() first")
        raw = self._read()
        try:
            sample = validate_sample(raw, now=self.clock())
        except MalformedSampleError as exc:
            raise MalformedSampleError(f"{self.name} sent a malformed sample: {exc}; the robot holds until a valid "
                                       "one arrives (a bug in the device's backend or driver)") from exc
        self._read_meter.tick(sample.t)
        return sample

    def status(self) -> DeviceStatus:
        """Health now: connected, sample rate over the last second [Hz], age of the newest sample [s], and why not.

        The default measures read() itself; backends that know more (tracking lost, controller off) override it.
        """
        if not self._connected:
            return DeviceStatus(False, reason=f"{self.name} is not connected: call .connect() first")
        return self._read_meter.status(self.clock())

    def readiness(self, seconds: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> DeviceStatus:
        """Is the device ready to drive the robot? Connects, reads 25 times over `seconds`, reports status() and
        disconnects again. A device that cannot connect is not ready, with the reason from its error."""
        try:
            self.connect()
        except (TeleopError, OSError) as exc:
            return DeviceStatus(False, reason=str(exc))
        try:
            for _ in range(READINESS_READS):
                try:
                    self.read()
                except DeviceError:
                    pass  # status() says why
                sleep(seconds / READINESS_READS)
            return self.status()
        finally:
            self.disconnect()

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
