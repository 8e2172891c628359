"""A simulated person holding a device: the operator of `teleop demo` and of the tests.

It never writes joint commands. It looks at the scene (a view callback: where the robot is, where it should
go), moves its hand toward the goal the way a person does (reaction time, bounded speed, tremor, slow drift,
hesitations, the occasional clutch release and re-grip) and emits what a real device would: a 6-DoF
controller pose with grip (deadman) and trigger, 21 hand keypoints, or both a tracked wrist pose and keypoints
(an arm with a hand). Everything downstream is the code real devices use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial.transform import Rotation

from devices.base import Clock, Device, DeviceSample
from devices.human_hand import TIP_KEYPOINTS, HumanHand


@dataclass(frozen=True)
class ArmView:
    """What the person sees of an arm task, in the robot base frame [m]."""

    ee_pos: np.ndarray
    goal_pos: np.ndarray
    close_gripper: bool


@dataclass(frozen=True)
class HandView:
    """What the person sees of a hand task: the robot fingertip to move and its goal, in the palm frame [m]."""

    finger: str  # "thumb", "index", "middle", "ring" or "little"
    tip_pos: np.ndarray
    goal_pos: np.ndarray


@dataclass(frozen=True)
class ArmHandView:
    """What the person sees of an arm + hand task: where to bring the wrist (`wrist`: the flange and its goal
    in the robot base frame) and which fingertip to put where (`fingers`: in the palm frame)."""

    wrist: ArmView
    fingers: HandView


@dataclass(frozen=True)
class OperatorStyle:
    """How the simulated person moves.

    Attributes:
        reaction_s: Delay before the person starts (grip closed after it) [s].
        gain: Hand velocity per metre of remaining error [1/s].
        max_speed: Hand speed cap [m/s].
        smoothing_s: Time constant of hand acceleration [s].
        tremor_m: White positional jitter, standard deviation [m].
        drift_m: Slow wandering (Ornstein-Uhlenbeck), stationary standard deviation [m].
        hesitation_rate: Pauses per second of motion [1/s]; each lasts 0.15-0.5 s.
        regrip_prob: Chance per episode of releasing the grip mid-way, moving the hand back, re-gripping.
        trigger_rate: Trigger travel per second [1/s].
        seed: Seed of all the randomness.
    """

    reaction_s: float = 0.4
    gain: float = 3.0
    max_speed: float = 0.35
    smoothing_s: float = 0.12
    tremor_m: float = 0.0004
    drift_m: float = 0.003
    hesitation_rate: float = 0.25
    regrip_prob: float = 0.3
    trigger_rate: float = 4.0
    seed: int = 0


class _Person:
    """The shared motor behaviour: timing, hesitations and noise, driven by the device clock."""

    def __init__(self, style: OperatorStyle) -> None:
        self.style = style
        self.rng = np.random.default_rng(style.seed)
        self.t0: float | None = None
        self.t_last = 0.0
        self.pause_until = -1.0
        self.drift = np.zeros(3)

    def tick(self, now: float) -> tuple[float, float]:
        """Elapsed time since the first tick and the step since the last one [s]."""
        if self.t0 is None:
            self.t0, self.t_last = now, now
        dt = max(0.0, now - self.t_last)
        self.t_last = now
        return now - self.t0, dt

    def hesitating(self, elapsed: float, dt: float) -> bool:
        if elapsed < self.pause_until:
            return True
        if self.rng.random() < self.style.hesitation_rate * dt:
            self.pause_until = elapsed + self.rng.uniform(0.15, 0.5)
            return True
        return False

    def noise(self, dt: float) -> np.ndarray:
        """Drift (OU process, correlation time 1 s) plus tremor, (3,) [m]."""
        s = self.style
        decay = np.exp(-dt)
        self.drift = decay * self.drift + s.drift_m * np.sqrt(1 - decay**2) * self.rng.standard_normal(3)
        return self.drift + s.tremor_m * self.rng.standard_normal(3)


class ScriptedArmOperator(Device):
    """A person holding a 6-DoF controller with a grip (deadman) button and a trigger (gripper).

    Args:
        view: Called each read; what the person sees now (robot base frame).
        R_base_device: The person's sense of how device motion maps to robot motion (3, 3): the same
            calibration the teleop mapping uses.
        pos_scale: Robot metres per device metre in that mapping.
        style: Motion style and seed.
        clock: Monotonic clock [s].
    """

    name = "scripted"

    def __init__(self, view: Callable[[], ArmView], R_base_device: np.ndarray | None = None,
                 pos_scale: float = 1.0, style: OperatorStyle | None = None,
                 clock: Clock = time.monotonic) -> None:
        super().__init__(clock)
        self.view = view
        self.R_base_device = np.eye(3) if R_base_device is None else np.asarray(R_base_device, float)
        self.pos_scale = pos_scale
        self.style = style or OperatorStyle()

    def _connect(self) -> None:
        self.person = _Person(self.style)
        rng = self.person.rng
        self.hand_pos = np.array([0.2, 0.0, 1.1]) + rng.uniform(-0.05, 0.05, 3)  # tracking space [m]
        self.hand_rot = Rotation.from_euler("xyz", rng.uniform(-0.1, 0.1, 3))
        self.velocity = np.zeros(3)
        self.trigger = 0.0
        self.regrip_at = rng.uniform(0.3, 0.7) if rng.random() < self.style.regrip_prob else None
        self.released_until: float | None = None
        self.start_error: float | None = None

    def _read(self) -> DeviceSample:
        now = self.clock()
        elapsed, dt = self.person.tick(now)
        view = self.view()
        error_base = np.asarray(view.goal_pos) - np.asarray(view.ee_pos)
        engaged = elapsed >= self.style.reaction_s and not self._releasing(elapsed, error_base)
        if engaged and not self.person.hesitating(elapsed, dt):
            desired = self.style.gain * self.R_base_device.T @ error_base / self.pos_scale
        elif self.released_until is not None and elapsed < self.released_until:
            desired = -0.15 * self.R_base_device.T @ error_base / max(np.linalg.norm(error_base), 1e-6)
        else:
            desired = np.zeros(3)
        speed = np.linalg.norm(desired)
        if speed > self.style.max_speed:
            desired *= self.style.max_speed / speed
        alpha = 1.0 - np.exp(-dt / self.style.smoothing_s)
        self.velocity += alpha * (desired - self.velocity)
        self.hand_pos = self.hand_pos + self.velocity * dt
        self.trigger = _approach(self.trigger, float(view.close_gripper), self.style.trigger_rate * dt)
        T = np.eye(4)
        jitter = Rotation.from_rotvec(0.002 * self.person.rng.standard_normal(3))
        T[:3, :3] = (jitter * self.hand_rot).as_matrix()
        T[:3, 3] = self.hand_pos + self.person.noise(dt)
        return DeviceSample(t=now, engaged=engaged, T_world_device=T, gripper=self.trigger,
                            buttons={"grip": engaged, "trigger": self.trigger > 0.5})

    def _releasing(self, elapsed: float, error_base: np.ndarray) -> bool:
        """One clutch release mid-way: let go, pull the hand back, grip again (like ratcheting a mouse)."""
        distance = float(np.linalg.norm(error_base))
        if self.start_error is None and elapsed >= self.style.reaction_s:
            self.start_error = distance
        if self.released_until is not None:
            return elapsed < self.released_until
        if self.regrip_at is not None and self.start_error and distance < (1 - self.regrip_at) * self.start_error:
            self.released_until = elapsed + self.person.rng.uniform(0.3, 0.6)
            return True
        return False


FINGER_INDEX = {"thumb": 0, "index": 1, "middle": 2, "ring": 3, "little": 4}


class ScriptedHandOperator(Device):
    """A person's right hand in front of a hand tracker, moving one fingertip onto a goal.

    Args:
        view: Called each read; robot fingertip and goal in the robot palm frame.
        palm_to_hand: The person's sense of how a point of the robot hand maps onto their own hand:
            robot palm frame [m] -> their wrist frame [m] (the retargeting's inverse).
        style: Motion style and seed (gain and speeds act on the fingertip).
        clock: Monotonic clock [s].
    """

    name = "scripted"

    def __init__(self, view: Callable[[], HandView], palm_to_hand: Callable[[np.ndarray], np.ndarray],
                 style: OperatorStyle | None = None, clock: Clock = time.monotonic) -> None:
        super().__init__(clock)
        self.view = view
        self.palm_to_hand = palm_to_hand
        self.style = style or OperatorStyle()
        self.hand = HumanHand()

    def _connect(self) -> None:
        self.person = _Person(self.style)
        self.curl = np.full(5, 0.15) + self.person.rng.uniform(0.0, 0.1, 5)
        self.aim: np.ndarray | None = None
        self.velocity = np.zeros(3)

    def _read(self) -> DeviceSample:
        now = self.clock()
        elapsed, dt = self.person.tick(now)
        view = self.view()
        finger = FINGER_INDEX[view.finger]
        error_hand = self.palm_to_hand(np.asarray(view.goal_pos)) - self.palm_to_hand(np.asarray(view.tip_pos))
        if self.aim is None:
            self.aim = self.hand.fingertip(finger, self.curl[finger], 0.0)
        moving = elapsed >= self.style.reaction_s and not self.person.hesitating(elapsed, dt)
        desired = self.style.gain * error_hand if moving else np.zeros(3)
        speed = np.linalg.norm(desired)
        max_speed = 0.3 * self.style.max_speed  # a fingertip moves slower than a hand
        if speed > max_speed:
            desired *= max_speed / speed
        alpha = 1.0 - np.exp(-dt / self.style.smoothing_s)
        self.velocity += alpha * (desired - self.velocity)
        self.aim = self.aim + self.velocity * dt
        pose = self.hand.place_fingertip(finger, self.aim + 0.3 * self.person.noise(dt), self.curl)
        self.curl = pose.curl
        # A fingertip is where it is: aiming further than the finger reaches only winds up the error.
        reached = pose.keypoints[TIP_KEYPOINTS[finger]]
        if np.linalg.norm(self.aim - reached) > 0.03:
            self.aim = reached + 0.03 * (self.aim - reached) / np.linalg.norm(self.aim - reached)
        keypoints = pose.keypoints + 0.001 * self.person.rng.standard_normal((21, 3))  # tracking jitter
        return DeviceSample(t=now, engaged=True, keypoints=keypoints, buttons={"tracked": True})


class ScriptedArmHandOperator(Device):
    """A person's tracked right hand driving an arm with a hand: they move the wrist toward where the hand
    should be, as ScriptedArmOperator moves a controller (no grip button: a tracked hand has none, so no
    clutch releases), and meanwhile move one fingertip onto its goal, as ScriptedHandOperator does. Samples
    carry the wrist pose, the 21 keypoints and `engaged` (after the reaction time), as a hand tracker's do.

    Args:
        view: Called each read; what the person sees now.
        R_base_device, pos_scale: The arm mapping the person expects (as ScriptedArmOperator).
        palm_to_hand: Robot palm frame -> their wrist frame (as ScriptedHandOperator).
        style: Motion style and seed.
        clock: Monotonic clock [s].
    """

    name = "scripted"

    def __init__(self, view: Callable[[], ArmHandView], R_base_device: np.ndarray | None = None,
                 pos_scale: float = 1.0, palm_to_hand: Callable[[np.ndarray], np.ndarray] | None = None,
                 style: OperatorStyle | None = None, clock: Clock = time.monotonic) -> None:
        super().__init__(clock)
        self.view = view
        self.style = replace(style or OperatorStyle(), regrip_prob=0.0)
        self._now: ArmHandView | None = None
        self.wrist = ScriptedArmOperator(self._wrist_view, R_base_device, pos_scale, self.style, clock)
        fingers_style = replace(self.style, seed=self.style.seed + 7919)
        self.fingers = ScriptedHandOperator(self._fingers_view, palm_to_hand or (lambda p: p), fingers_style, clock)

    def _wrist_view(self) -> ArmView:
        assert self._now is not None
        return self._now.wrist

    def _fingers_view(self) -> HandView:
        assert self._now is not None
        return self._now.fingers

    def _connect(self) -> None:
        self.wrist.connect()
        self.fingers.connect()

    def _disconnect(self) -> None:
        self.wrist.disconnect()
        self.fingers.disconnect()

    def _read(self) -> DeviceSample:
        self._now = self.view()
        wrist, fingers = self.wrist.read(), self.fingers.read()
        return DeviceSample(t=wrist.t, engaged=wrist.engaged, T_world_device=wrist.T_world_device,
                            keypoints=fingers.keypoints, buttons={"tracked": True})


def _approach(value: float, target: float, step: float) -> float:
    return value + float(np.clip(target - value, -step, step))
