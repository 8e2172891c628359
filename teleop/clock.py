"""A simulated clock: time moves only when slept on, so a simulated loop runs as fast as the CPU allows,
deterministically (rollouts of a policy, benchmarks, tests)."""

from __future__ import annotations


class SimulatedClock:
    """A monotonic clock [s] that advances only by `sleep`; pass it as a rig's clock and its sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
