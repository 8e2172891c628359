"""The control loop: read the device, map, command the robot, hand the recorder a step, on a fixed-rate clock."""

from __future__ import annotations

import dataclasses
import gc
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy.spatial.transform import Rotation

from devices.base import Clock, Device, DeviceSample
from recorder.cameras import DEAD, STALLED, CameraSource
from recorder.step import CameraFrame, CameraInfo, Step
from recorder.sync import FrameSynchronizer, FrameUsage, SyncStats
from teleop.controllers import Controller
from teleop.errors import DeviceError, DeviceNotConnectedError, MalformedSampleError, TeleopError, UnsafeInputError
from teleop.robot import Robot
from teleop.tasks import Task


class StepSink(Protocol):
    def append(self, step: Step) -> None: ...


class ActionSource(Protocol):
    """What drives the robot instead of a device: a trained policy (teleop.train.runner.PolicyRunner)."""

    @property
    def cameras(self) -> tuple[str, ...]: ...

    def reset(self, proprio: np.ndarray) -> None:
        """A new episode starts at these joint positions."""
        ...

    def act(self, rgb: Mapping[str, np.ndarray], proprio: np.ndarray) -> np.ndarray:
        """The raw action (joint targets, then the gripper command) for the cameras' frames (name -> frame)
        and the joint positions; UnsafeInputError when it has none to give."""
        ...


SUCCESS_HOLD_S = 1.0  # [s] an episode ends once success has held this long (franka-reach: 80-83 % against 33-70 %
# with 0.5 s; RESULTS.md)

@dataclass(frozen=True)
class SessionConfig:
    """Loop settings.

    Attributes:
        rate_hz: Control rate [Hz].
        max_duration_s: Episode length cap [s]; None uses the task's.
        stop_on_success_s: End the episode once the task has succeeded for this long [s]; None runs until
            `should_stop` says so or the cap is reached. The default, SUCCESS_HOLD_S, leaves a demonstration a
            second of holding at the goal, which policies learn to stop from (RESULTS.md).
        camera_max_age_s: A camera frame older than this when a step uses it counts as stale [s].
        first_frame_timeout_s: How long an episode waits for the first frame of every extra camera [s].
        max_sample_age_s: A device sample received longer ago than this is stale: the robot holds as if the
            deadman were released, and the next fresh sample re-anchors [s].
    """

    rate_hz: float = 20.0
    max_duration_s: float | None = None
    stop_on_success_s: float | None = SUCCESS_HOLD_S
    camera_max_age_s: float = 0.1
    first_frame_timeout_s: float = 3.0
    max_sample_age_s: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.rate_hz <= 1000:
            raise TeleopError(f"rate_hz must be in (0, 1000], got {self.rate_hz}")
        if self.max_sample_age_s <= 0:
            raise TeleopError(f"max_sample_age_s must be positive, got {self.max_sample_age_s}")
        if self.camera_max_age_s <= 0 or self.first_frame_timeout_s <= 0:
            raise TeleopError(f"camera_max_age_s and first_frame_timeout_s must be positive, got "
                              f"{self.camera_max_age_s}, {self.first_frame_timeout_s}")


SLOW_FRACTION = 0.9  # an episode whose control rate fell below this share of the target is reported
REPEATED_FRACTION = 0.05  # ... and one where a camera gave no new frame on more than this share of the steps


@dataclass
class EpisodeResult:
    """What one episode did. `late_ticks` counts ticks that started more than one period late.

    On each stale sample (`stale_samples`), device failure (`device_errors`) and malformed sample
    (`malformed_samples`: wrong types, shapes or values, refused by Device.read) the robot held still;
    `rejected_samples` counts valid samples the controller refused (a jump, an unreachable target).
    `camera_stats` says, per camera, which frames the steps used (see recorder.sync.SyncStats).
    """

    steps: int = 0
    duration_s: float = 0.0
    success: bool = False
    achieved_rate_hz: float = 0.0
    late_ticks: int = 0
    rejected_samples: int = 0
    held_ticks: int = 0
    stale_samples: int = 0
    device_errors: int = 0
    last_device_error: str = ""
    malformed_samples: int = 0
    last_malformed_sample: str = ""
    stopped_by: str = ""
    tick_ms: list[float] = field(default_factory=list, repr=False)
    camera_stats: dict[str, SyncStats] = field(default_factory=dict)

    @property
    def dead_cameras(self) -> list[str]:
        """Cameras whose source died during the episode (their last frame was reused from then on)."""
        return sorted(name for name, stats in self.camera_stats.items() if stats.state == DEAD)

    @property
    def camera_problems(self) -> list[str]:
        """'camera NAME dead: why' (or stalled) for each camera that gave out; its last frame was reused."""
        return [f"camera {name} {s.state}: {s.last_error or 'no new frame'}"
                for name, s in sorted(self.camera_stats.items()) if s.state in (DEAD, STALLED)]

    @property
    def device_problems(self) -> list[str]:
        """One line per kind of device sample the robot held still on (malformed, stale, failed reads)."""
        problems = []
        if self.malformed_samples:
            problems.append(f"{self.malformed_samples} malformed device samples refused "
                            f"(last: {self.last_malformed_sample})")
        if self.stale_samples:
            problems.append(f"{self.stale_samples} stale device samples")
        if self.device_errors:
            problems.append(f"{self.device_errors} failed device reads (last: {self.last_device_error})")
        return problems

    def timing_problems(self, target_hz: float, slow: float = SLOW_FRACTION, repeated: float = REPEATED_FRACTION
                        ) -> list[str]:
        """The control loop ran below `slow` x `target_hz`; a camera gave no new frame (a step reused the one
        before, or none had arrived) on more than `repeated` of the steps: one line each, empty when all kept up."""
        problems = []
        if self.steps > 1 and self.achieved_rate_hz < slow * target_hz:
            problems.append(f"control rate {self.achieved_rate_hz:.1f} Hz against a target of {target_hz:g} Hz "
                            f"({self.late_ticks} late ticks)")
        for name, stats in sorted(self.camera_stats.items()):
            short = stats.duplicates + stats.missing
            if self.steps and short > repeated * self.steps:
                problems.append(f"camera {name} gave no new frame on {short} of {self.steps} steps")
        return problems

    def attrs(self) -> dict[str, float | int | str]:
        """Counters stored with the episode; `camera_stats` is a JSON object, camera name -> SyncStats."""
        return {"achieved_rate_hz": self.achieved_rate_hz, "late_ticks": self.late_ticks,
                "rejected_samples": self.rejected_samples, "held_ticks": self.held_ticks,
                "stale_samples": self.stale_samples, "device_errors": self.device_errors,
                "last_device_error": self.last_device_error, "malformed_samples": self.malformed_samples,
                "last_malformed_sample": self.last_malformed_sample, "stopped_by": self.stopped_by,
                "tick_ms_p99": float(np.percentile(self.tick_ms, 99)) if self.tick_ms else 0.0,
                "camera_stats": json.dumps({name: s.as_dict() for name, s in sorted(self.camera_stats.items())})}


def ee_pose7(T: np.ndarray) -> np.ndarray:
    """(4, 4) pose -> (7,) position [m] + quaternion wxyz."""
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    return np.array([*T[:3, 3], w, x, y, z])


def precise_sleep(seconds: float, clock: Clock = time.monotonic) -> None:
    """Sleep, then spin the last millisecond (time.sleep alone overshoots by up to a scheduler tick).

    The spin yields the GIL on every turn (sleep(0)): a device or camera thread holding a fresh sample
    must be able to publish it before the tick, not after Python's 5 ms switch interval.
    """
    end = clock() + seconds
    if seconds > 0.002:
        time.sleep(seconds - 0.001)
    while clock() < end:
        time.sleep(0)


class Session:
    """Runs episodes of one task with one device and one robot.

    The loop keeps a fixed grid t0 + k * period on the injected monotonic clock; a tick that starts more than
    a period late is counted and the grid skips ahead (no burst of catch-up ticks).

    Each step carries a frame of every camera: the simulator's are rendered inside the tick (pybullet renders
    only on its own thread); extra `cameras` (started by the caller) capture on their own threads and a
    FrameSynchronizer gives each step the newest frame captured at or before the tick.
    """

    def __init__(self, sim: Robot, task: Task, device: Device, controller: Controller,
                 config: SessionConfig = SessionConfig(), clock: Clock = time.monotonic,
                 sleep: Callable[[float], None] | None = None,
                 cameras: Mapping[str, CameraSource] | None = None) -> None:
        self.sim, self.task, self.device, self.controller = sim, task, device, controller
        self.config = config
        self.clock = clock
        self.sleep = sleep or (lambda s: precise_sleep(s, clock))
        self.cameras = dict(cameras or {})
        shared = sorted(set(self.cameras) & set(sim.cameras))
        if shared:
            raise TeleopError(f"camera names {shared} are taken by the simulator's cameras: give the extra "
                              "cameras other names")
        self._sync = FrameSynchronizer({}, clock=clock)
        self._last_valid: DeviceSample | None = None  # the episode's newest sample that Device.read() validated

    def camera_infos(self) -> dict[str, CameraInfo]:
        """Camera name -> CameraInfo of every camera a step carries (simulator's, then extra ones)."""
        infos = {name: self.sim.camera_info(name) for name in self.sim.cameras}
        infos.update({name: camera.info() for name, camera in self.cameras.items()})
        return infos

    @property
    def period(self) -> float:
        return 1.0 / self.config.rate_hz

    def reset(self, seed: int) -> dict:
        """Randomise the task; the controller holds the robot where it is."""
        state = self.task.reset(self.sim, seed)
        q, _ = self.sim.joint_state()
        self.controller.reset(q, self.sim.ee_pose())
        return state

    def run_episode(self, sink: StepSink | None = None, should_stop: Callable[[], bool] | None = None,
                    on_step: Callable[[Step, EpisodeResult], None] | None = None,
                    policy: ActionSource | None = None) -> EpisodeResult:
        """Run from the current state until success (held), `should_stop()`, or the length cap.

        With `policy`, the policy drives the robot instead of the device: each tick renders the cameras first,
        hands the policy's camera frame and the joint positions to `policy.act`, and sends its action through
        the controller's limits (Controller.limit), as a device's would be; an action the policy cannot give
        (UnsafeInputError) or that is unsafe holds the robot and counts as a rejected sample. The step
        records the policy as an always-engaged device without a pose.

        Raises DeviceError before the first tick if an extra camera gives no frame within
        `first_frame_timeout_s`; a camera that dies later is reported in the result's camera_stats.
        """
        # Everything allocated so far (modules, models, the scene) is long-lived: move it out of the collector's
        # reach for the episode, so a full collection takes microseconds, not a 20-50 ms pause of every thread.
        gc.collect()
        gc.freeze()
        try:
            return self._run_episode(sink, should_stop, on_step, policy)
        finally:
            gc.unfreeze()  # what earlier episodes left behind stays collectable

    def _run_episode(self, sink: StepSink | None, should_stop: Callable[[], bool] | None,
                     on_step: Callable[[Step, EpisodeResult], None] | None,
                     policy: ActionSource | None) -> EpisodeResult:
        result = EpisodeResult()
        max_duration = self.config.max_duration_s or self.task.max_duration_s
        rejected_before = self.controller.rejected
        success_since: float | None = None
        self._last_valid = None
        self._sync = FrameSynchronizer(self.cameras, self.config.camera_max_age_s, self.clock, self.sleep)
        self._sync.wait_for_first_frames(self.config.first_frame_timeout_s)
        sim_usage = {name: FrameUsage() for name in self.sim.cameras}
        if policy is not None:
            policy.reset(self.sim.joint_state()[0])
        t0 = next_tick = last_tick = self.clock()
        while True:
            now = last_tick = self.clock()
            if now - next_tick > self.period:
                result.late_ticks += 1
                next_tick += self.period * int((now - next_tick) / self.period)
            sample = DeviceSample(t=now, engaged=True) if policy is not None else self._read_device(now, result)
            step = self._tick(now, sample, policy)
            result.tick_ms.append((self.clock() - now) * 1e3)
            result.steps += 1
            for name, usage in sim_usage.items():
                usage.record(step.frames[name])
            if not step.device["engaged"]:
                result.held_ticks += 1
            if sink is not None:
                sink.append(step)
            result.success = self.task.success(self.sim)
            success_since = (success_since or now) if result.success else None
            if on_step is not None:
                on_step(step, result)
            stop = self._stop_reason(now - t0, max_duration, success_since, now, should_stop)
            if stop:
                result.stopped_by = stop
                break
            next_tick += self.period
            self.sleep(max(0.0, next_tick - self.clock()))
        result.duration_s = self.clock() - t0
        ticking = last_tick - t0  # first to last tick start: the span the rate is about
        result.achieved_rate_hz = (result.steps - 1) / ticking if ticking > 0 else 0.0
        result.rejected_samples = self.controller.rejected - rejected_before
        result.camera_stats = {name: _sim_stats(usage) for name, usage in sim_usage.items()}
        result.camera_stats.update(self._sync.stats())
        return result

    def _read_device(self, now: float, result: EpisodeResult) -> DeviceSample:
        """The device's sample, or a disengaged one when the device fails or its sample is stale or malformed:
        the robot holds, the episode counts it, and the next good sample re-anchors (no jump).

        Only samples Device.read() validated are returned: for a malformed one, the episode's last valid sample
        (disengaged, with its own time) stands in, or an empty one before the first.
        """
        try:
            sample = self.device.read()
        except DeviceNotConnectedError:
            raise  # a programming error, not a hardware one: connect() first
        except MalformedSampleError as exc:
            result.malformed_samples += 1
            result.last_malformed_sample = str(exc)
            held = self._last_valid or DeviceSample(t=now)
            return dataclasses.replace(held, engaged=False)
        except DeviceError as exc:
            result.device_errors += 1
            result.last_device_error = str(exc)
            return DeviceSample(t=now, engaged=False)
        self._last_valid = sample
        if now - sample.t > self.config.max_sample_age_s:
            result.stale_samples += 1
            return dataclasses.replace(sample, engaged=False)
        return sample

    def _tick(self, now: float, sample: DeviceSample, policy: ActionSource | None = None) -> Step:
        """One control step: the state and every camera's frame, then the action (the controller's for the
        device sample, or the policy's through the controller's limits), recorded and applied."""
        q, dq = self.sim.joint_state()
        T_base_ee = self.sim.ee_pose()
        frames: dict[str, CameraFrame] = {name: self.sim.render(name) for name in self.sim.cameras}
        frames.update(self._sync.frames_for_tick(now))
        if policy is None:
            action = self.controller.act(sample, q, T_base_ee, self.period)
        else:
            try:
                seen = {name: frames[name].rgb for name in policy.cameras if name in frames}
                action = self.controller.limit(policy.act(seen, q), self.period)
            except UnsafeInputError as exc:
                action = self.controller.refuse(str(exc))
        step = Step(t=now, joint_pos=q, joint_vel=dq, ee_pose=ee_pose7(T_base_ee), action=action,
                    device=sample.to_record(), frames=frames, extras=self.task.extras(self.sim))
        apply_action(self.sim, action)
        self.sim.step(self.period)
        return step

    def _stop_reason(self, elapsed: float, max_duration: float, success_since: float | None, now: float,
                     should_stop: Callable[[], bool] | None) -> str:
        hold = self.config.stop_on_success_s
        if hold is not None and success_since is not None and now - success_since >= hold:
            return "success"
        if should_stop is not None and should_stop():
            return "operator"
        if elapsed >= max_duration - 0.5 * self.period:  # tolerate float drift of the tick grid
            return "time limit"
        return ""


def _sim_stats(usage: FrameUsage) -> SyncStats:
    stats = usage.stats
    stats.state = "sim"  # rendered inside the tick: one fresh frame per step by construction
    stats.timestamps = "tick"
    return stats


def apply_action(sim: Robot, action: np.ndarray) -> None:
    """Send an action (joint targets, then the gripper command for arms) to the robot."""
    n = len(sim.spec.joints)
    sim.command(action[:n], float(action[n]) if sim.spec.has_gripper else None)
