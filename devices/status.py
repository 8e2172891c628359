"""Device health: is it there, how fast do samples come, how old is the newest one, and if not, why."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple


class DeviceStatus(NamedTuple):
    """Health of a device now.

    Attributes:
        connected: The device is reachable and delivering (SDK up, controller switched on and found).
        sample_rate_hz: Good samples per second, measured over the meter's window [Hz]; 0.0 with fewer than two.
        last_sample_age_s: Time since the newest good sample [s]; None if there has been none.
        reason: Why the device is not connected or not tracking, and what to do; "" when all is well.
    """

    connected: bool
    sample_rate_hz: float = 0.0
    last_sample_age_s: float | None = None
    reason: str = ""


class RateMeter:
    """Sample rate over a sliding time window, and the age of the newest sample.

    Times come from the caller (the device clock), so the meter is deterministic under a fake clock.
    """

    def __init__(self, window_s: float = 1.0) -> None:
        """Args:
            window_s: Length of the window the rate is measured over [s]; > 0.
        """
        if not window_s > 0:
            raise ValueError(f"RateMeter window must be positive, got {window_s} s")
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, t: float) -> None:
        """Count one sample received at monotonic time t [s]."""
        self._times.append(t)
        self._drop_before(t - self.window_s)

    def reset(self) -> None:
        """Forget every sample (after a reconnect)."""
        self._times.clear()

    @property
    def last_t(self) -> float | None:
        """Time of the newest sample [s], None if none."""
        return self._times[-1] if self._times else None

    def rate_hz(self, now: float) -> float:
        """Samples per second among those of the last window_s before `now` [Hz]."""
        self._drop_before(now - self.window_s)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def age_s(self, now: float) -> float | None:
        """Time since the newest sample [s], None if none."""
        last = self.last_t
        return None if last is None else max(0.0, now - last)

    def status(self, now: float, connected: bool = True, reason: str = "") -> DeviceStatus:
        """A DeviceStatus with this meter's rate and age at time `now` [s]."""
        return DeviceStatus(connected, self.rate_hz(now), self.age_s(now), reason)

    def _drop_before(self, t_min: float) -> None:
        # The newest sample is kept whatever its age, so the age of the last sample stays known.
        while len(self._times) > 1 and self._times[0] < t_min:
            self._times.popleft()
