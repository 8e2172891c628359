"""Real robots behind the robot contract: the simulator and the xArm7 driver (its SDK faked at `XArmAPI`, the
narrowest call boundary) answer one contract test; the hardware safety (soft start, speed, acceleration,
workspace box, watchdog, emergency stop, faults, a robot that does not answer) and `teleop record --real`."""

from __future__ import annotations

import struct
import sys
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kinematics.robots import get_robot
from teleop.allegro import (
    FINGER_POSE,
    HAND_INFO,
    PWM_LIMIT,
    RAD_PER_COUNT,
    SET_PERIOD,
    SET_TORQUE,
    SYSTEM_OFF,
    SYSTEM_ON,
    frame_id,
)
from teleop.errors import RobotError, TeleopError
from teleop.hardware import HardwareLimits, RealRobot, connect_robot
from teleop.robot import Robot
from teleop.sim import PybulletSim
from teleop.tasks import DEFAULT_TASK, make_task
from teleop.xarm import GRIPPER_OPEN, XArmDriver

XARM = get_robot("xarm7")
ALLEGRO = get_robot("allegro")
FRANKA = get_robot("franka")
FAST = HardwareLimits(soft_start_s=0.0, watchdog_s=5.0, connect_timeout_s=2.0)  # contract checks: no soft start


class FakeXArmAPI:
    """Stands in for xarm.wrapper.XArmAPI: seven joints that move toward the last mode-6 target at the given speed
    (in real time), a gripper, latched errors, calls recorded. Class attributes make the next instance misbehave."""

    connect_delay_s = 0.0
    refuse = False
    instances: list[FakeXArmAPI] = []

    def __init__(self, port: str, is_radian: bool = False, do_not_open: bool = False, **kwargs: Any) -> None:
        time.sleep(self.connect_delay_s)
        if self.refuse:
            raise Exception("connect socket failed")  # what the SDK raises
        assert is_radian and not do_not_open
        self.port, self.connected = port, True
        self.mode, self.state, self.enabled = 0, 4, False
        self.has_error, self.error_code = False, 0
        self.q = np.array(XARM.home, dtype=float)
        self.target, self.speed, self.t = self.q.copy(), 0.0, time.monotonic()
        self.gripper = GRIPPER_OPEN
        self.sent: list[np.ndarray] = []
        self.emergency_stops = 0
        self.lock = threading.Lock()
        FakeXArmAPI.instances.append(self)

    def _advance(self) -> np.ndarray:
        now = time.monotonic()
        step = self.speed * (now - self.t)
        delta = np.clip(self.target - self.q, -step, step)
        self.q, self.t = self.q + delta, now
        return delta / max(now - self.t, 1e-3)

    def clean_warn(self) -> int:
        return 0

    def clean_error(self) -> int:
        self.has_error, self.error_code = False, 0
        return 0

    def motion_enable(self, enable: bool = True, servo_id: int | None = None) -> int:
        self.enabled = enable
        return 0

    def set_mode(self, mode: int = 0) -> int:
        self.mode = mode
        return 0

    def set_state(self, state: int = 0) -> int:
        self.state = state
        return 0

    def set_gripper_mode(self, mode: int) -> int:
        return 0

    def set_gripper_enable(self, enable: bool) -> int:
        return 0

    def get_joint_states(self, is_radian: bool | None = None, num: int = 3) -> tuple[int, list]:
        with self.lock:
            if not self.connected:
                return -1, "xArm is not connect"
            velocity = self._advance()
            return 0, [self.q.tolist(), velocity.tolist(), [0.0] * 7]

    def get_gripper_position(self) -> tuple[int, float]:
        return 0, self.gripper

    def set_servo_angle(self, servo_id: int | None = None, angle: list | None = None, speed: float | None = None,
                        mvacc: float | None = None, wait: bool = False, is_radian: bool | None = None,
                        **kwargs: Any) -> int:
        with self.lock:
            if self.has_error:
                return 1
            if self.mode != 6 or self.state != 0 or not self.enabled or wait:
                return 9
            self._advance()
            self.target, self.speed = np.asarray(angle, dtype=float), float(speed or 0.0)
            self.sent.append(self.target.copy())
            return 0

    def set_gripper_position(self, pos: float, wait: bool = False, **kwargs: Any) -> int:
        self.gripper = pos
        return 0

    def emergency_stop(self) -> None:
        with self.lock:
            self.emergency_stops += 1
            self._advance()
            self.target = self.q.copy()

    def disconnect(self) -> None:
        self.connected = False


@pytest.fixture
def fake_xarm(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeXArmAPI]]:
    """The fake SDK where `import xarm.wrapper` finds it."""
    wrapper = types.ModuleType("xarm.wrapper")
    wrapper.XArmAPI = FakeXArmAPI  # type: ignore[attr-defined]
    package = types.ModuleType("xarm")
    package.wrapper = wrapper  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "xarm", package)
    monkeypatch.setitem(sys.modules, "xarm.wrapper", wrapper)
    FakeXArmAPI.instances, FakeXArmAPI.connect_delay_s, FakeXArmAPI.refuse = [], 0.0, False
    yield FakeXArmAPI


class FakePanda:
    """Stands in for panda_py.Panda: seven joints that follow the running JointPosition controller's target (a
    first-order lag in real time), libfranka errors raised by raise_error(), calls recorded."""

    refuse = False
    instances: list[FakePanda] = []

    def __init__(self, hostname: str, name: str = "panda", realtime_config: object = None) -> None:
        if self.refuse:
            raise RuntimeError("libfranka: Connection timeout")
        self.q, self.t = np.array(FRANKA.home, dtype=float), time.monotonic()
        self.controller: FakeJointPosition | None = None
        self.error = ""
        self.stops = 0
        self.lock = threading.Lock()
        FakePanda.instances.append(self)

    def start_controller(self, controller: FakeJointPosition) -> None:
        controller.target = self.q.copy()
        self.controller = controller

    def stop_controller(self) -> None:
        self.controller = None
        self.stops += 1

    def get_state(self) -> types.SimpleNamespace:
        with self.lock:
            now = time.monotonic()
            if self.controller is not None:
                self.q = self.q + (self.controller.target - self.q) * min(1.0, (now - self.t) / 0.05)
            self.t = now
            return types.SimpleNamespace(q=self.q.tolist(), dq=[0.0] * 7)

    def raise_error(self) -> None:
        if self.error:
            raise RuntimeError(self.error)


class FakeJointPosition:
    def __init__(self, stiffness: object = None, damping: object = None, filter_coeff: float = 1.0) -> None:
        self.target = np.zeros(7)

    def set_control(self, position: np.ndarray, velocity: np.ndarray) -> None:
        assert position.shape == velocity.shape == (7,)
        self.target = np.asarray(position, dtype=float).copy()


class FakeGripper:
    def __init__(self, address: str) -> None:
        self.width, self.moves = 0.08, []

    def move(self, width: float, speed: float) -> bool:
        self.moves.append(width)
        self.width = width
        return True

    def read_once(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(width=self.width, max_width=0.08)


@pytest.fixture
def fake_panda(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakePanda]]:
    """The fake SDK where `import panda_py` finds it."""
    module = types.ModuleType("panda_py")
    module.Panda = FakePanda  # type: ignore[attr-defined]
    module.controllers = types.SimpleNamespace(JointPosition=FakeJointPosition)  # type: ignore[attr-defined]
    module.libfranka = types.SimpleNamespace(Gripper=FakeGripper)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "panda_py", module)
    FakePanda.instances, FakePanda.refuse = [], False
    yield FakePanda


class SimulatedAllegro:
    """An Allegro Hand V4 on python-can's virtual bus, speaking its CAN protocol (teleop.allegro's docstring):
    answers HAND_INFO, reports its joints every 3 ms after SET_PERIOD, and moves each joint at a speed
    proportional to its torque command (a geared finger), while SYSTEM_ON."""

    def __init__(self, channel: str, status: int = 0x01, speed_per_count: float = 0.02) -> None:
        import can

        self.bus = can.Bus(channel=channel, interface="virtual")
        self.status, self.k = status, speed_per_count
        self.q = np.array(ALLEGRO.home, dtype=float)
        self.pwm = np.zeros(16)
        self.on = False
        self.period_s = 0.0
        self.received: list[int] = []  # commands, in order
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._listen, daemon=True),
                        threading.Thread(target=self._report, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _reply(self, command: int, data: bytes) -> None:
        import can

        self.bus.send(can.Message(arbitration_id=frame_id(command), data=data, is_extended_id=False))

    def _listen(self) -> None:
        while not self.stop.is_set():
            message = self.bus.recv(0.01)
            if message is None:
                continue
            command = message.arbitration_id >> 2
            self.received.append(command)
            if command == HAND_INFO and message.is_remote_frame:
                self._reply(HAND_INFO, struct.pack("<2H3B", 0x0400, 0x0108, 0, 31, self.status))
            elif command == SET_PERIOD:
                self.period_s = struct.unpack("<3H", bytes(message.data))[0] / 1000.0
            elif command in (SYSTEM_ON, SYSTEM_OFF):
                self.on = command == SYSTEM_ON
            elif SET_TORQUE <= command < SET_TORQUE + 4:
                finger = command - SET_TORQUE
                self.pwm[4 * finger: 4 * finger + 4] = np.frombuffer(bytes(message.data), dtype="<i2")

    def _report(self) -> None:
        while not self.stop.is_set():
            if self.period_s <= 0:
                time.sleep(0.003)
                continue
            time.sleep(self.period_s)
            if self.on:
                self.q += self.k * self.pwm * self.period_s
            counts = np.round(self.q / RAD_PER_COUNT).astype("<i2")
            for finger in range(4):
                self._reply(FINGER_POSE + finger, counts[4 * finger: 4 * finger + 4].tobytes())

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()
        self.bus.shutdown()


@pytest.fixture
def allegro_hand(request: pytest.FixtureRequest) -> Iterator[tuple[str, SimulatedAllegro]]:
    channel = f"virtual:{request.node.name}"
    hand = SimulatedAllegro(channel.partition(":")[2])
    yield channel, hand
    hand.close()


def real_xarm(limits: HardwareLimits = FAST) -> RealRobot:
    return connect_robot("xarm7", "192.168.1.185", limits)


# --- one contract, the simulator and every real driver ---------------------------------------------------------


ADDRESSES = {"xarm7": "192.168.1.185", "franka": "172.16.0.2"}


@pytest.fixture(params=[f"{kind} {name}" for name in ("xarm7", "franka", "allegro") for kind in ("simulator", "real")])
def robot(request: pytest.FixtureRequest, fake_xarm: type[FakeXArmAPI], fake_panda: type[FakePanda],
          allegro_hand: tuple[str, SimulatedAllegro]) -> Iterator[Robot]:
    kind, name = request.param.split()
    spec = get_robot(name)
    if kind == "simulator":
        made: Robot = PybulletSim(spec, base_pose=make_task(DEFAULT_TASK[name]).base_pose())  # a hand in the air
        made.reset(np.array(spec.home))
    else:
        made = connect_robot(name, ADDRESSES.get(name, allegro_hand[0]), FAST)
    yield made
    made.close()


def test_the_robot_contract(robot: Robot) -> None:
    assert isinstance(robot, Robot)
    spec = robot.spec
    n = len(spec.joints)
    sim = PybulletSim(spec)
    try:
        assert robot.joint_names == sim.joint_names  # one episode layout, simulated or real
    finally:
        sim.close()
    q, dq = robot.joint_state()
    assert q.shape == dq.shape == (len(robot.joint_names),) and np.all(np.isfinite(q))
    np.testing.assert_allclose(q[:n], spec.home, atol=0.01)
    T = robot.ee_pose()
    assert T.shape == (4, 4) and np.allclose(T[:3, :3].T @ T[:3, :3], np.eye(3), atol=1e-6)
    assert robot.status().ok
    goal = np.array(spec.home) + 0.1 * np.resize([1.0, -1.0, 0.5], n)
    deadline = time.monotonic() + 5.0
    while np.abs(robot.joint_state()[0][:n] - goal).max() > 0.02:  # a stream of targets, as the loop sends them
        assert time.monotonic() < deadline, robot.joint_state()[0][:n] - goal
        robot.command(goal, 0.0 if spec.has_gripper else None)
        robot.step(0.05)
        if isinstance(robot, RealRobot):
            time.sleep(0.05)
    if spec.kind == "arm":
        assert np.linalg.norm(robot.ee_pose()[:3, 3] - T[:3, 3]) > 0.02
    robot.hold()
    held = robot.joint_state()[0][:n]
    robot.step(0.3)
    if isinstance(robot, RealRobot):
        time.sleep(0.3)
    assert np.abs(robot.joint_state()[0][:n] - held).max() < 0.03  # hold stops it where it is
    assert not robot.cameras or all(robot.render(name).rgb.ndim == 3 for name in robot.cameras)


# --- hardware safety -------------------------------------------------------------------------------------------


def test_the_soft_start_creeps_to_the_first_target(fake_xarm: type[FakeXArmAPI]) -> None:
    robot = real_xarm(HardwareLimits(soft_start_s=10.0, watchdog_s=5.0))
    try:
        far = np.array(XARM.home) + 1.0
        robot.command(far)
        time.sleep(0.1)
        robot.command(far)
        [api] = fake_xarm.instances
        step = np.abs(api.sent[-1] - np.array(XARM.home)).max()
        soft = (robot.model.velocity_limit * 0.5 * 0.1).max()  # speed_fraction 0.5, soft start 10 %
        assert 0 < step <= soft * 0.11 + 1e-9
        assert "soft start" in robot.status().message
    finally:
        robot.close()


def test_speed_and_acceleration_are_limited_per_joint(fake_xarm: type[FakeXArmAPI]) -> None:
    clock = [100.0]
    accel = np.array([2.0] * 6 + [1.0])  # per joint
    limits = HardwareLimits(soft_start_s=0.0, watchdog_s=5.0, max_accel=tuple(accel))
    robot = RealRobot(XARM, XArmDriver("192.168.1.185", sdk=sys.modules["xarm.wrapper"]), limits,
                      clock=lambda: clock[0])
    try:
        [api] = fake_xarm.instances
        robot.command(np.array(XARM.home))
        for _ in range(80):
            clock[0] += 0.05
            robot.command(np.array(XARM.home) + 2.0)  # far away: only the limits decide
        sent = np.array(api.sent)
        velocity = np.diff(sent, axis=0) / 0.05
        speed = robot.model.velocity_limit * limits.speed_fraction
        assert np.all(np.abs(velocity) <= speed + 1e-6)
        assert np.all(np.abs(np.diff(velocity, axis=0)) <= accel * 0.05 + 1e-6)  # acceleration, joint by joint
        assert np.all(np.abs(velocity[0]) <= accel * 0.05 + 1e-6)  # from rest
        assert np.all(sent <= np.array(XARM.home) + 2.0 + 1e-3)  # it slows down in time: no overshoot
        np.testing.assert_allclose(sent[-1], np.array(XARM.home) + 2.0, atol=0.01)  # and gets there
    finally:
        robot.close()


def test_a_target_outside_the_workspace_box_is_not_sent(fake_xarm: type[FakeXArmAPI]) -> None:
    robot = real_xarm(HardwareLimits(soft_start_s=0.0, watchdog_s=5.0, workspace_max=(0.85, 0.85, 0.3)))
    try:
        [api] = fake_xarm.instances
        before = len(api.sent)
        robot.command(np.array(XARM.home))  # home's end effector is higher than 0.3 m
        assert len(api.sent) == before
        assert "outside the workspace box" in robot.status().message
    finally:
        robot.close()


def test_the_watchdog_holds_the_robot_when_commands_stop(fake_xarm: type[FakeXArmAPI]) -> None:
    robot = real_xarm(HardwareLimits(soft_start_s=0.0, watchdog_s=0.2))
    try:
        [api] = fake_xarm.instances
        goal = np.array(XARM.home) + 0.5
        for _ in range(5):
            robot.command(goal)
            time.sleep(0.03)
        moving = len(api.sent)
        time.sleep(0.5)  # the loop has gone quiet
        assert len(api.sent) == moving + 1  # one more: the hold, to where the arm was
        assert np.abs(api.sent[-1] - api.q).max() < 0.05 and np.abs(api.target - goal).max() > 0.1
        assert "no command for over 0.2 s" in robot.status().message
        time.sleep(0.3)
        assert len(api.sent) == moving + 1  # held once, not again and again
    finally:
        robot.close()


def test_the_emergency_stop_latches_until_released(fake_xarm: type[FakeXArmAPI]) -> None:
    robot = real_xarm()
    try:
        [api] = fake_xarm.instances
        robot.emergency_stop()
        sent = len(api.sent)
        robot.command(np.array(XARM.home) + 0.2)
        assert api.emergency_stops == 1 and len(api.sent) == sent
        assert not robot.status().ok and "EMERGENCY STOP" in robot.status().message
        robot.release()
        robot.command(np.array(XARM.home) + 0.2)
        assert len(api.sent) == sent + 1 and robot.status().ok
    finally:
        robot.close()


def test_a_controller_fault_holds_and_ends_the_episode_with_what_to_do(fake_xarm: type[FakeXArmAPI]) -> None:
    robot = real_xarm()
    try:
        [api] = fake_xarm.instances
        api.has_error, api.error_code = True, 22
        with pytest.raises(RobotError, match=r"xArm7 at 192.168.1.185: controller error 22 \(self-collision\); "
                                             "the robot holds. Clear the fault"):
            robot.step(0.05)
        assert not robot.status().ok and "self-collision" in robot.status().message
        with pytest.raises(RobotError, match=r"set_servo_angle returned 1 \(an error on the controller"):
            robot.command(np.array(XARM.home))
    finally:
        robot.close()
    assert not api.connected  # closed cleanly after the fault


def test_a_robot_that_does_not_answer_is_a_clear_error_within_seconds(fake_xarm: type[FakeXArmAPI]) -> None:
    fake_xarm.connect_delay_s = 1.5
    started = time.monotonic()
    with pytest.raises(RobotError, match="xArm7 at 10.0.0.9 did not answer within 0.5 s: check that it is powered"):
        connect_robot("xarm7", "10.0.0.9", HardwareLimits(connect_timeout_s=0.5))
    assert time.monotonic() - started < 1.5
    deadline = time.monotonic() + 10
    while not fake_xarm.instances and time.monotonic() < deadline:
        time.sleep(0.05)
    [late] = fake_xarm.instances  # it answered after all, too late: let go of
    assert not late.connected
    fake_xarm.connect_delay_s, fake_xarm.refuse = 0.0, True
    with pytest.raises(RobotError, match=r"does not answer \(connect socket failed\): check that the controller"):
        connect_robot("xarm7", "10.0.0.9")


def test_without_the_sdk_the_error_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xarm", None)
    monkeypatch.setitem(sys.modules, "xarm.wrapper", None)
    with pytest.raises(TeleopError, match=r"pip install 'teleop\[xarm\]'"):
        XArmDriver("192.168.1.185").connect()
    monkeypatch.setitem(sys.modules, "panda_py", None)
    with pytest.raises(TeleopError, match=r"pip install 'teleop\[franka\]'"):
        connect_robot("franka", "172.16.0.2")


# --- the command line ------------------------------------------------------------------------------------------


def test_teleop_record_drives_the_real_arm_and_records_the_simulators_layout(
        fake_xarm: type[FakeXArmAPI], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from test_calibrate import _trace

    from recorder.hdf5 import EpisodeReader
    from teleop.cli import main

    trace = _trace(tmp_path / "forward.trace.jsonl", "forward")  # a Vive controller moved 15 cm forward
    assert main(["record", "--robot", "xarm7", "--real", "192.168.1.185", "--device", "replay", "--device-arg",
                 str(trace), "--out", str(tmp_path / "real"), "--seconds", "2", "--camera", "usb=synthetic",
                 "--camera-size", "160x120"]) == 0
    printed = capsys.readouterr().out
    assert "the real xarm7 at 192.168.1.185" in printed and "Ctrl-\\ is the emergency stop" in printed
    [api] = [arm for arm in fake_xarm.instances if arm.port == "192.168.1.185"]
    assert len(api.sent) > 10 and not api.connected  # streamed, then disconnected
    assert main(["demo", "--robot", "xarm7", "--episodes", "1", "--out", str(tmp_path / "sim")]) == 0
    [real] = sorted((tmp_path / "real").glob("episode_*.h5"))
    [sim] = sorted((tmp_path / "sim").glob("episode_*.h5"))
    with EpisodeReader(real) as a, EpisodeReader(sim) as b:
        assert a.meta.joint_names == b.meta.joint_names and a.meta.action_names == b.meta.action_names
        assert a.meta.robot == b.meta.robot == "xarm7" and a.camera_names == ["usb"]
        assert a.num_steps > 10
        moved = a.joint_pos[-1][:7] - a.joint_pos[0][:7]
        assert np.abs(moved).max() > 0.01  # the arm followed the controller


def test_the_scripted_operator_cannot_drive_a_real_robot(fake_xarm: type[FakeXArmAPI], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from teleop.cli import main

    assert main(["record", "--robot", "xarm7", "--real", "192.168.1.185", "--out", str(tmp_path)]) != 0
    assert "the scripted operator needs the simulator's scene" in capsys.readouterr().err
    assert fake_xarm.instances == []  # refused before connecting


def test_teleop_robots_lists_the_drivers(capsys: pytest.CaptureFixture) -> None:
    from teleop.cli import main

    assert main(["robots"]) == 0
    out = capsys.readouterr().out
    assert "xarm7" in out and ("pip install 'teleop[xarm]'" in out or "--real ADDRESS" in out)


# --- the Allegro hand's CAN protocol ---------------------------------------------------------------------------


def test_the_allegro_driver_speaks_the_hands_protocol(allegro_hand: tuple[str, SimulatedAllegro]) -> None:
    channel, hand = allegro_hand
    robot = connect_robot("allegro", channel, FAST)
    assert hand.received[:4] == [SYSTEM_OFF, HAND_INFO, SET_PERIOD, SYSTEM_ON] and hand.period_s == 0.003
    assert robot.driver.info == {"hardware": 0x0400, "firmware": 0x0108, "hand": "right", "temperature_c": 31,
                                 "status": 1}
    assert not any(SET_TORQUE <= c < SET_TORQUE + 4 for c in hand.received)  # limp until the first command
    far = np.array(ALLEGRO.home) + 3.0  # the PD law would ask for far more than the motors may take
    for _ in range(5):
        robot.command(far)
        time.sleep(0.02)
    assert np.all(np.abs(hand.pwm) <= PWM_LIMIT) and np.any(np.abs(hand.pwm) > 0)
    robot.emergency_stop()
    time.sleep(0.05)
    assert np.all(hand.pwm == 0) and not hand.on  # limp: zero torque, servos off
    before = len(hand.received)
    robot.close()  # zero torque (four frames), reports off, servos off
    deadline = time.monotonic() + 2.0
    while len(hand.received) < before + 6 and time.monotonic() < deadline:  # the hand reads what was sent
        time.sleep(0.01)
    assert hand.received[-3:] == [SET_TORQUE + 3, SET_PERIOD, SYSTEM_OFF] and hand.period_s == 0


def test_a_hand_that_stops_reporting_goes_limp_and_faults(allegro_hand: tuple[str, SimulatedAllegro]) -> None:
    channel, hand = allegro_hand
    robot = connect_robot("allegro", channel, FAST)
    try:
        for _ in range(10):
            robot.command(np.array(ALLEGRO.home) + 0.3)
            time.sleep(0.02)
        assert np.any(hand.pwm != 0)
        hand.period_s = -1.0  # the cable is pulled: no more reports
        time.sleep(0.3)
        assert np.all(hand.pwm == 0)  # the torque loop let go
        time.sleep(0.4)
        with pytest.raises(RobotError, match="no joint positions from the hand .* check the CAN cable"):
            robot.step(0.05)
    finally:
        robot.close()


def test_a_hand_that_is_off_or_overheated_is_a_clear_error(allegro_hand: tuple[str, SimulatedAllegro]) -> None:
    started = time.monotonic()
    with pytest.raises(RobotError, match="Allegro hand on CAN virtual:nobody does not answer: check that the hand "
                                         "is switched on"):
        connect_robot("allegro", "virtual:nobody")
    assert time.monotonic() - started < 2.0
    channel, hand = allegro_hand
    hand.status = 0x03
    with pytest.raises(RobotError, match="reports high temperature: let it cool down"):
        connect_robot("allegro", channel)



# --- the Franka Panda through panda-python ----------------------------------------------------------------------


def test_the_franka_driver_streams_to_its_controller_and_reports_reflexes(fake_panda: type[FakePanda]) -> None:
    robot = connect_robot("franka", "172.16.0.2", FAST)
    try:
        [panda] = fake_panda.instances
        controller = panda.controller
        assert controller is not None
        for _ in range(10):
            robot.command(np.array(FRANKA.home) + 0.05, 1.0)  # and close the hand
            time.sleep(0.02)
        assert np.allclose(controller.target, np.array(FRANKA.home) + 0.05, atol=0.01)
        gripper = robot.driver._gripper
        deadline = time.monotonic() + 2.0
        while not gripper.moves and time.monotonic() < deadline:  # on the gripper's own thread
            time.sleep(0.01)
        assert gripper.moves == [0.0]  # closed, once: the same command is not sent again
        assert robot.joint_state()[0][7:].tolist() == [0.0, 0.0]  # the fingers, from the hand's width
        panda.error = "libfranka: Move command aborted: motion aborted by reflex! [\"cartesian_reflex\"]"
        with pytest.raises(RobotError, match="Franka Panda at 172.16.0.2: libfranka reports: .*cartesian_reflex"):
            robot.step(0.05)
        panda.error = ""
        robot.emergency_stop()
        assert panda.controller is None and panda.stops == 1
        robot.release()
        robot.command(np.array(FRANKA.home))
        assert panda.controller is not None and panda.controller is not controller  # a new controller
    finally:
        robot.close()
    fake_panda.refuse = True
    with pytest.raises(RobotError, match="does not answer .*Connection timeout.*FCI activated"):
        connect_robot("franka", "172.16.0.2")


def test_ctrl_backslash_is_the_emergency_stop_of_teleop_record(fake_xarm: type[FakeXArmAPI]) -> None:
    import os
    import signal

    from teleop.cli import _emergency_stop_key

    robot = real_xarm()
    try:
        with _emergency_stop_key(robot):
            os.kill(os.getpid(), signal.SIGQUIT)  # what the terminal sends for Ctrl-\
            time.sleep(0.05)
        [api] = fake_xarm.instances
        assert api.emergency_stops == 1 and not robot.status().ok
        assert signal.getsignal(signal.SIGQUIT) is signal.SIG_DFL  # given back after the recording
    finally:
        robot.close()
