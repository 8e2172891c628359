"""Real robots behind the robot contract (teleop.robot), with the safety real hardware needs.

A `RealRobot` drives one `Driver`: the few calls of a vendor SDK (teleop.xarm wraps UFACTORY's). Every joint
target on its way to the driver passes, after the controller's own limits (kinematics.safety):
- a soft start: for `soft_start_s` after connecting, and again after each hold, joints move at most at
  `soft_start_fraction` of the speed limit, so the robot creeps to the first target instead of jumping to it;
- per-joint speed and acceleration limits (a fraction of the URDF's velocity limits, `max_accel`), slowing down in
  time to stop at the target rather than overshooting it;
- a workspace box: an arm target whose end effector would leave it is not sent (the robot holds, the status says
  where the target was);
- a watchdog thread: once commands have started, a gap longer than `watchdog_s` (a hung loop, a dead process
  upstream) holds the robot;
- an emergency stop (`emergency_stop()`, from the operator's key), latched until `release()`.
The robot never moves before the first command, and the controller's first commands are the measured position
until the operator engages. A fault the driver reports ends the episode with a RobotError that says what to do,
and the robot holds; `close()` holds it before disconnecting.

A robot that does not answer is a RobotError within `connect_timeout_s`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from devices.base import Clock
from kinematics.robot_model import load_model
from kinematics.robots import RobotSpec
from recorder.step import CameraFrame, CameraInfo
from teleop.assets import sim_gripper_joints
from teleop.errors import RobotError, TeleopError, UnknownNameError
from teleop.robot import RobotStatus

WATCHDOG_POLL_S = 0.02  # how often the watchdog looks [s]
FRESH_READ_S = 0.02  # [s] joints read this recently give the end-effector pose without asking the robot again
MAX_STEP_DT = 0.1  # [s]: a longer gap between commands is limited as if it were this long (no jump after a pause)


@dataclass(frozen=True)
class HardwareLimits:
    """The safety of a real robot (module docstring).

    Attributes:
        speed_fraction: Joint speed limit as a fraction of the URDF's velocity limits.
        max_accel: Joint acceleration limit [rad/s^2]: one for every joint, or one per joint.
        soft_start_s: How long the soft start lasts after connecting and after each hold [s].
        soft_start_fraction: Speed limit during the soft start, as a fraction of `speed_fraction`'s.
        workspace_min, workspace_max: Box the end effector of an arm must stay in, robot base frame [m].
        watchdog_s: Gap between commands after which the robot holds [s].
        connect_timeout_s: How long a robot may take to answer [s].
    """

    speed_fraction: float = 0.5
    max_accel: float | tuple[float, ...] = 6.0
    soft_start_s: float = 2.0
    soft_start_fraction: float = 0.1
    workspace_min: tuple[float, float, float] = (-0.85, -0.85, 0.02)
    workspace_max: tuple[float, float, float] = (0.85, 0.85, 1.1)
    watchdog_s: float = 0.3
    connect_timeout_s: float = 5.0


class Driver(Protocol):
    """A vendor SDK behind the calls RealRobot makes. Each call raises RobotError saying what to do.

    `read()` gives the driven joints' positions [rad] and velocities [rad/s], (n,) each, and the gripper's
    opening 0 closed .. 1 open (None for a robot without one). `send(q, gripper)` streams joint targets [rad]
    and a gripper command 0 open .. 1 closed (None: leave it). `hold()` stops motion where the robot is;
    `emergency_stop()` stops it the SDK's hardest way. `fault()` is "" or what is wrong (error codes and their
    meaning).
    """

    name: str  # what the messages call it, e.g. "xArm7 at 192.168.1.185"

    def connect(self) -> None: ...

    def read(self) -> tuple[np.ndarray, np.ndarray, float | None]: ...

    def send(self, q: np.ndarray, gripper: float | None) -> None: ...

    def hold(self) -> None: ...

    def emergency_stop(self) -> None: ...

    def fault(self) -> str: ...

    def close(self) -> None: ...


def connect_within(driver: Driver, timeout_s: float) -> None:
    """driver.connect(), or a RobotError when it fails or takes longer than `timeout_s` (an SDK may wait for
    a socket much longer than an operator should)."""
    failure: list[BaseException] = []
    gave_up = threading.Event()

    def attempt() -> None:
        try:
            driver.connect()
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)
            return
        if gave_up.is_set():  # it answered after all, too late: let go of it
            driver.close()

    thread = threading.Thread(target=attempt, name=f"connect {driver.name}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        gave_up.set()
        raise RobotError(f"{driver.name} did not answer within {timeout_s:g} s: check that it is powered on, "
                         "that the cable is in, and the address")
    if failure:
        exc = failure[0]
        if isinstance(exc, RobotError):
            raise exc
        raise RobotError(f"{driver.name}: cannot connect ({type(exc).__name__}: {exc}): check that it is powered "
                         "on, that the cable is in, and the address") from exc


class RealRobot:
    """A real robot: the contract (teleop.robot.Robot) over a connected Driver, with HardwareLimits."""

    def __init__(self, spec: RobotSpec, driver: Driver, limits: HardwareLimits = HardwareLimits(),
                 clock: Clock = time.monotonic) -> None:
        self.spec, self.driver, self.limits, self.clock = spec, driver, limits, clock
        self.gripper_joints = sim_gripper_joints(spec) if spec.has_gripper else ()
        self.joint_names = spec.joints + self.gripper_joints
        self.cameras: dict[str, object] = {}  # a real robot renders nothing: real cameras are recorded beside it
        self.model = load_model(spec)
        self._speed = self.model.velocity_limit * limits.speed_fraction
        self._accel = np.broadcast_to(np.asarray(limits.max_accel, dtype=float), self._speed.shape)
        self._box = (np.asarray(limits.workspace_min), np.asarray(limits.workspace_max))
        self._lock = threading.RLock()
        connect_within(driver, limits.connect_timeout_s)
        try:
            self._target = self.driver.read()[0]
        except BaseException:
            driver.close()
            raise
        self._velocity = np.zeros_like(self._target)
        self._read = (-np.inf, self._target)  # (time, driven joints) of the last joint_state()
        self._started = clock()  # of the soft start
        self._last_command: float | None = None  # None until commands start, and again after a hold
        self._message = ""
        self._stopped = False  # emergency stop, until release()
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name=f"watchdog {driver.name}", daemon=True)
        self._watchdog.start()

    # --- the contract ---------------------------------------------------------------------------------

    def camera_info(self, name: str) -> CameraInfo:
        raise UnknownNameError("camera of a real robot", name, [])

    def render(self, name: str) -> CameraFrame:
        raise UnknownNameError("camera of a real robot", name, [])

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        q, dq, opening = self.driver.read()
        self._read = (self.clock(), q)
        width = (1.0 if opening is None else opening) * self.spec.gripper_open
        fingers = np.full(len(self.gripper_joints), width)
        return np.concatenate([q, fingers]), np.concatenate([dq, np.zeros(len(fingers))])

    def ee_pose(self) -> np.ndarray:
        """From the joints joint_state() read in this tick (one request to the robot per tick, not two)."""
        t, q = self._read
        if self.clock() - t > FRESH_READ_S:
            q = self.driver.read()[0]
        return self.model.fk(q)

    def command(self, q_target: np.ndarray, gripper: float | None = None) -> None:
        """Limit the target (module docstring) and send it; nothing moves during an emergency stop."""
        with self._lock:
            if self._stopped:
                return
            now = self.clock()
            if self._last_command is None:  # first command, or the first after a hold: start softly from here
                self._target, self._velocity, self._started = self.driver.read()[0], np.zeros(len(self._target)), now
                dt = 1e-3
            else:
                dt = min(max(now - self._last_command, 1e-3), MAX_STEP_DT)
            target, velocity = self._limited(np.asarray(q_target, dtype=float), dt, now)
            self._last_command = now
            if target is None:
                return  # outside the workspace: the last target stands
            try:
                self.driver.send(target, gripper)
            except RobotError:
                self.hold()
                raise
            self._target, self._velocity = target, velocity
            self._message = "soft start" if now - self._started < self.limits.soft_start_s else ""

    def step(self, dt: float) -> None:
        """Time passes on its own for a real robot; a fault it reports holds it and ends the episode."""
        fault = self.driver.fault()
        if fault:
            self.hold()
            raise RobotError(f"{self.driver.name}: {fault}; the robot holds. Clear the fault on the robot (or with "
                             "its vendor's tool), then record again")

    def hold(self) -> None:
        """Stop where the robot is; the next command starts softly again."""
        with self._lock:
            self._last_command = None
            self.driver.hold()

    def emergency_stop(self) -> None:
        """Stop now, the SDK's hardest way; commands are ignored until release()."""
        with self._lock:
            self._stopped = True
            self._last_command = None
            self._message = "EMERGENCY STOP: commands are ignored; release it when the robot is safe"
        self.driver.emergency_stop()

    def release(self) -> None:
        """End an emergency stop; the next command starts softly from where the robot is."""
        with self._lock:
            self._stopped = False
            self._message = ""

    def status(self) -> RobotStatus:
        fault = self.driver.fault()
        if fault:
            return RobotStatus(False, f"{self.driver.name}: {fault}")
        return RobotStatus(not self._stopped, self._message)

    def close(self) -> None:
        """Hold the robot, stop the watchdog and disconnect."""
        self._closed.set()
        self._watchdog.join()
        try:
            self.driver.hold()
        finally:
            self.driver.close()

    # --- safety ---------------------------------------------------------------------------------------

    def _limited(self, q_target: np.ndarray, dt: float, now: float) -> tuple[np.ndarray | None, np.ndarray]:
        """The target after the speed, acceleration and workspace limits, and its velocity; None outside the box."""
        soft = now - self._started < self.limits.soft_start_s
        speed = self._speed * (self.limits.soft_start_fraction if soft else 1.0)
        remaining = q_target - self._target
        # no faster than what can still stop at the target in steps of dt under the acceleration limit: no overshoot
        brake = self._accel * dt
        cap = np.minimum(speed, brake * (np.sqrt(2.0 * np.abs(remaining) / (brake * dt) + 0.25) - 0.5))
        velocity = np.clip(remaining / dt, -cap, cap)
        velocity = self._velocity + np.clip(velocity - self._velocity, -brake, brake)
        target = self._target + velocity * dt
        if self.spec.kind == "arm":
            position = self.model.fk(target)[:3, 3]
            if np.any(position < self._box[0]) or np.any(position > self._box[1]):
                self._message = (f"target held: its end effector {np.round(position, 3).tolist()} m is outside the "
                                 f"workspace box {list(self.limits.workspace_min)}..{list(self.limits.workspace_max)}")
                self._velocity = np.zeros_like(self._velocity)
                return None, self._velocity
        return target, velocity

    def _watch(self) -> None:
        while not self._closed.wait(WATCHDOG_POLL_S):
            with self._lock:
                last = self._last_command
                if last is not None and self.clock() - last > self.limits.watchdog_s:
                    self._message = (f"held: no command for over {self.limits.watchdog_s:g} s; it moves again, "
                                     "softly, with the next one")
                    self.hold()



class DriverEntry(NamedTuple):
    """Where a robot's driver is: `module`.`cls`, its SDK's import name, the extra that installs it, the address."""

    module: str
    cls: str
    sdk: str
    extra: str
    address: str


DRIVERS = {
    "xarm7": DriverEntry("teleop.xarm", "XArmDriver", "xarm", "xarm",
                         "the controller's IP address, e.g. 192.168.1.185"),
    "franka": DriverEntry("teleop.franka", "FrankaDriver", "panda_py", "franka",
                          "the robot's FCI address, e.g. 172.16.0.2"),
    "allegro": DriverEntry("teleop.allegro", "AllegroCANDriver", "can", "allegro",
                           "a CAN channel at 1 Mbit/s: can0 (SocketCAN) or pcan:PCAN_USBBUS1"),
}


def connect_robot(robot: str, address: str, limits: HardwareLimits = HardwareLimits()) -> RealRobot:
    """The real `robot` at `address`, connected and holding still.

    Raises:
        TeleopError: a robot without a driver here (the message lists those with one).
        MissingDependencyError: its SDK is not installed (the message names the pip line).
        RobotError: it does not answer within `limits.connect_timeout_s`, or refuses to get ready.
    """
    import importlib

    from kinematics.robots import get_robot

    spec = get_robot(robot)
    if robot not in DRIVERS:
        raise TeleopError(f"no driver for a real {robot} yet; real robots: {', '.join(DRIVERS)} (teleop robots "
                          "lists them); the simulator runs without --real")
    entry = DRIVERS[robot]
    driver = getattr(importlib.import_module(entry.module), entry.cls)(address)
    return RealRobot(spec, driver, limits)
