"""One exception hierarchy for the whole app; every message says what happened and what to do.

This module is a leaf (it imports nothing of ours), so every layer may raise these errors.
"""

from __future__ import annotations


class TeleopError(Exception):
    """Base class of every error this app raises on purpose."""


class UnknownNameError(TeleopError, KeyError):
    """A robot, task, device or camera name that does not exist; the message lists the valid ones."""

    def __init__(self, kind: str, name: str, valid: list[str] | tuple[str, ...]) -> None:
        self.kind, self.name, self.valid = kind, name, list(valid)
        super().__init__(f"unknown {kind} {name!r}: choose one of {', '.join(sorted(self.valid))}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class MissingDependencyError(TeleopError, ImportError):
    """An optional package is not installed; the message names the pip extra that brings it."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the package {package!r}, which is not installed: "
            f"run  pip install 'teleop[{extra}]'"
        )


class DeviceError(TeleopError):
    """A device cannot be reached or misbehaves."""


class DeviceNotConnectedError(DeviceError):
    """read() or another call on a device that is not connected."""


class RobotError(TeleopError):
    """A real robot does not answer or faulted; the message names it, says what happened and what to do."""


class UnsafeInputError(TeleopError, ValueError):
    """Input that must not reach a robot (NaN, inf, wrong shape, far out of range); the last safe target is held."""


class EpisodeError(TeleopError):
    """An episode file that cannot be read or written; the message names the file and what is wrong."""


class MalformedSampleError(DeviceError):
    """A device returned a sample that breaks the DeviceSample contract (wrong type, shape or a non-finite value).

    The session treats it like a stale sample: the robot holds still and the episode counts it.
    """
