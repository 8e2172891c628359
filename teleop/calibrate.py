"""The calibration routine a user runs: measure R_base_device with a VR controller, save it to a file.

The routine is driven by the controller's own samples (grip presses and releases), so it needs no keyboard and
runs the same headless, in a terminal or on a replayed trace. The device is polled at ~100 Hz.

* "point": hold the grip, move the controller ~20 cm forward (the robot's +x, away from its base), release;
  then the same upward (+z). Each gesture is every tracked position from the press to the release; the
  direction is the principal axis of those positions (`kinematics.calibration.calibrate_point_forward`), a
  line fit that averages hand tremor over the whole motion where the start and end points alone would carry
  the full tremor of two samples (and the jolt of pressing and releasing the grip).
* "still": hold the controller still with its axes aligned with the robot base and keep the grip held ~2 s;
  the poses after a short settling time (pressing the grip jolts the controller) are averaged
  (`kinematics.calibration.calibrate_still_pose`).

The grip is the "grip" button where the device reports one (a Vive or OpenXR controller keeps reporting it
while tracking is lost, and in toggle mode), else `engaged`. Samples without a pose are skipped; too many of
them abort the routine with a message. A replayed trace that has ended counts as a released grip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.spatial.transform import Rotation

from devices.base import Clock, Device, DeviceSample
from kinematics.calibration import Calibration, calibrate_point_forward, calibrate_still_pose, save_calibration
from teleop.backends import BACKENDS, HAND, POSE, RATE, DeviceContext, get_backend, source_device
from teleop.errors import TeleopError, UnknownNameError
from teleop.quiet import native_output_silenced

METHODS = ("point", "still")
POLL_HZ = 100.0
Prompt = Callable[[str], None]


@dataclass(frozen=True)
class CalibrateConfig:
    """What `teleop calibrate` does.

    Attributes:
        device: Pose device backend: "vive", "openxr", or "replay" with a trace recorded from one.
        out: Calibration file to write (JSON, see kinematics.calibration.save_calibration).
        device_arg: The backend's option (left/right or a serial; the trace path for replay).
        method: "point" (two pointing gestures) or "still" (a still pose aligned with the base).
        timeout_s: How long to wait for each grip press [s].
    """

    device: str
    out: Path
    device_arg: str | None = None
    method: str = "point"
    timeout_s: float = 30.0


@dataclass(frozen=True)
class RoutineConfig:
    """Timing and tolerance of the routine.

    Attributes:
        poll_hz: Device polling rate [Hz].
        hold_s: How long the grip is held for the still pose, from the press [s].
        settle_s: Poses discarded after the press in the still pose (pressing jolts the controller) [s].
        max_lost_fraction: Largest accepted fraction of held samples without a pose (tracking lost).
    """

    poll_hz: float = POLL_HZ
    hold_s: float = 2.0
    settle_s: float = 0.3
    max_lost_fraction: float = 0.3


class _Grip(NamedTuple):
    """The tracked poses of one grip hold."""

    T_world_device: np.ndarray  # (k, 4, 4), tracking frame, in time order
    lost: int  # held samples without a pose
    duration_s: float  # from the press to the release (or to the end of collection) [s]


def calibrate(config: CalibrateConfig, prompt: Prompt = print, clock: Clock = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> Calibration:
    """Build and connect the device, run the routine, save the result to `config.out`.

    Raises:
        TeleopError: a device that gives no pose, a device that cannot connect, a timed-out or failed gesture.
    """
    _check_arguments(config.method, config.timeout_s)  # before an SDK is started only to be stopped
    device = make_pose_device(config.device, config.device_arg, clock)
    with native_output_silenced():  # SDK loaders print their own diagnostics; ours is the error raised
        device.connect()
    try:
        calibration = run_calibration(device, config.method, prompt, clock, sleep, config.timeout_s)
    finally:
        device.disconnect()
    save_calibration(calibration, config.out)
    return calibration


def make_pose_device(name: str, arg: str | None, clock: Clock = time.monotonic) -> Device:
    """The named device (not connected), built without a simulator.

    Raises:
        TeleopError: an unknown name, or a device that gives no controller pose (the message names those that do).
    """
    backend = get_backend(name)
    source = source_device(name, arg)  # for a replay: the device that recorded the trace
    if name == "scripted" or (source in BACKENDS and get_backend(source).commands in (RATE, HAND)):
        what = name if source == name else f"the trace {arg} (recorded from {source})"
        raise TeleopError(f"{what} gives no controller pose to calibrate: use {', '.join(pose_devices())}, or "
                          "--device replay --device-arg TRACE with a trace recorded from one")
    # The pose backends need only the clock and the argument: no task, simulator or controller.
    context = DeviceContext(task=None, sim=None, controller=None, seed=0, clock=clock, arg=arg)  # type: ignore[arg-type]
    return backend.make(context)


def pose_devices() -> tuple[str, ...]:
    """Names of the backends that give a controller pose."""
    return tuple(name for name, backend in BACKENDS.items() if backend.commands == POSE)


def run_calibration(device: Device, method: str = "point", prompt: Prompt = print, clock: Clock = time.monotonic,
                    sleep: Callable[[float], None] = time.sleep, timeout_s: float = 30.0,
                    config: RoutineConfig = RoutineConfig()) -> Calibration:
    """Guide the user through a calibration with a connected device and return R_base_device.

    Args:
        device: A connected device that gives T_world_device (tracking frame) and a grip.
        method: "point" (forward and up gestures) or "still" (a still pose aligned with the base).
        prompt: Shows an instruction to the user.
        clock: Monotonic clock [s].
        sleep: Sleeps the given seconds (paces polling).
        timeout_s: How long to wait for each grip press, and the longest accepted hold [s].
        config: Timing and tolerances.
    Raises:
        TeleopError: no grip press within timeout_s, a gesture too short or too sloppy, tracking lost too
            often, or the device stopped (a replayed trace ended); the message says what to do.
    """
    _check_arguments(method, timeout_s)
    poller = _Poller(device, clock, sleep, config.poll_hz)
    if method == "point":
        return _point(poller, prompt, timeout_s, config)
    return _still(poller, prompt, timeout_s, config)


def describe_calibration(calibration: Calibration) -> str:
    """R_base_device as a matrix and as roll, pitch, yaw (extrinsic x, y, z) in degrees, one line each."""
    R = calibration.R_base_device
    roll, pitch, yaw = Rotation.from_matrix(R).as_euler("xyz", degrees=True)
    rows = [" ".join(f"{v:+.4f}" for v in row) for row in R]
    return "\n".join(["R_base_device (rows; tracking frame -> robot base):", *(f"  [{r}]" for r in rows),
                      f"roll {roll:+.1f} deg, pitch {pitch:+.1f} deg, yaw {yaw:+.1f} deg "
                      f"(method {calibration.method})"])


# -------------------------------------------------------------------------------------------- routines
def _check_arguments(method: str, timeout_s: float) -> None:
    if method not in METHODS:
        raise UnknownNameError("calibration method", method, METHODS)
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise TeleopError(f"the timeout must be a positive number of seconds, got {timeout_s:g}")


def _point(poller: _Poller, prompt: Prompt, timeout_s: float, config: RoutineConfig) -> Calibration:
    motions = []
    for direction, axis in (("forward", "the robot's +x, away from its base"), ("up", "the robot's +z")):
        prompt(f"Hold the grip, move the controller about 20 cm {direction} ({axis}) in a straight "
               "line, then release the grip.")
        grip = _collect(poller, _press(poller, timeout_s, f"the {direction} motion"), timeout_s,
                        f"the {direction} motion")
        motions.append(_tracked(grip, f"the {direction} motion", prompt, config)[:, :3, 3])
        prompt(f"{direction} motion: {100 * float(np.linalg.norm(motions[-1][-1] - motions[-1][0])):.0f} cm "
               f"in {grip.duration_s:.1f} s")
    return calibrate_point_forward(motions[0], motions[1])


def _still(poller: _Poller, prompt: Prompt, timeout_s: float, config: RoutineConfig) -> Calibration:
    prompt(f"Hold the controller still with its axes aligned with the robot base (x forward, z up), then press "
           f"and hold the grip for {config.hold_s:g} s.")
    first = _press(poller, timeout_s, "the still pose")
    grip = _collect(poller, first, timeout_s, "the still pose", hold_s=config.hold_s, settle_s=config.settle_s)
    if grip.duration_s < config.hold_s:
        raise TeleopError(f"the grip was released after {grip.duration_s:.1f} s: hold it (and the controller "
                          f"still) for {config.hold_s:g} s, then calibrate again")
    prompt("Got it: release the grip.")
    return calibrate_still_pose(_tracked(grip, "the still pose", prompt, config))


# ---------------------------------------------------------------------------------------------- samples
class _Poller:
    """Reads the device at a fixed rate with the injected clock and sleep."""

    def __init__(self, device: Device, clock: Clock, sleep: Callable[[float], None], rate_hz: float) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise TeleopError(f"the polling rate must be a positive number of Hz, got {rate_hz}")
        self.device, self.clock, self.sleep = device, clock, sleep
        self.period = 1.0 / rate_hz
        self._due: float | None = None

    def read(self) -> tuple[DeviceSample, bool]:
        """The next sample, once its tick is due, and whether the grip is held in it."""
        now = self.clock()
        if self._due is not None and self._due > now:
            self.sleep(self._due - now)
        self._due = max(now, self._due or now) + self.period  # a late tick is not caught up in a burst
        sample = self.device.read()
        return sample, _held(self.device, sample)

    @property
    def finished(self) -> bool:
        """Whether the device will send no more samples (a replayed trace that has ended)."""
        return bool(getattr(self.device, "finished", False))


def _held(device: Device, sample: DeviceSample) -> bool:
    if getattr(device, "finished", False):  # a replay past its end repeats its last sample, disengaged
        return False
    return bool(sample.buttons.get("grip", sample.engaged))


def _press(poller: _Poller, timeout_s: float, what: str) -> DeviceSample:
    """The first sample with the grip held after one with it released (a grip held already must be released)."""
    t0 = poller.clock()
    released = False
    while True:
        sample, held = poller.read()
        if held and released:
            return sample
        released = released or not held
        if poller.finished:
            raise TeleopError(f"the device sends no more samples (the replayed trace ended) before a grip press "
                              f"for {what}: record a trace with the whole calibration gesture")
        if poller.clock() - t0 > timeout_s:
            raise TeleopError(f"no grip press within {timeout_s:g} s: for {what}, press and hold the controller's "
                              "grip (release it first if it was held); check that the controller is on and "
                              "tracked (teleop devices)")


def _collect(poller: _Poller, first: DeviceSample, timeout_s: float, what: str, hold_s: float | None = None,
             settle_s: float = 0.0) -> _Grip:
    """Poses from the press sample `first` until the release, or until hold_s after the press."""
    t0 = poller.clock()
    poses: list[np.ndarray] = []
    lost = 0
    sample, held, elapsed = first, True, 0.0
    while held and (hold_s is None or elapsed < hold_s):
        if elapsed >= settle_s:
            if sample.T_world_device is None:
                lost += 1
            else:
                poses.append(np.asarray(sample.T_world_device, dtype=float))
        if elapsed > timeout_s:
            raise TeleopError(f"the grip was held for more than {timeout_s:g} s during {what}: release it at "
                              "the end of the motion")
        sample, held = poller.read()
        elapsed = poller.clock() - t0
    return _Grip(np.array(poses).reshape(-1, 4, 4), lost, elapsed)


def _tracked(grip: _Grip, what: str, prompt: Prompt, config: RoutineConfig) -> np.ndarray:
    """The tracked poses (k, 4, 4) of a grip; says how many were skipped, refuses too many."""
    total = len(grip.T_world_device) + grip.lost
    if total == 0 or grip.lost > config.max_lost_fraction * total:
        raise TeleopError(f"the controller was not tracked in {grip.lost} of {total} samples during {what}: "
                          "keep it in view of the base stations or the headset, and calibrate again")
    if grip.lost:
        prompt(f"note: skipped {grip.lost} of {total} samples of {what} without a pose (tracking lost)")
    return grip.T_world_device
