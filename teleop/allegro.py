"""Wonik Allegro Hand V4 over CAN with python-can (`pip install 'teleop[allegro]'`), speaking the hand's own
protocol, as Wonik's ROS drivers do (allegro_hand_ros_v4 `candef.h`, `AllegroHandDrv.cpp`; the ROS 2
`allegro_hand_ros2` V4 SDK).

Why not the ROS 2 driver: it is a ros2_control hardware interface, so using it means a ROS 2 installation, a
controller manager and a bridge between its topics and this loop, for a protocol of five message kinds. The hand
is a CAN device at 1 Mbit/s with standard 11-bit frames; python-can reaches it through SocketCAN (`can0`, PEAK and
most USB adapters on Linux) or PCAN-Basic (`pcan:PCAN_USBBUS1`).

The protocol: frame ID = (command << 2) | hand ID. On connect: SYSTEM_OFF, a remote request for HAND_INFO
(version, right or left, temperature, status bits), SET_PERIOD of 3 ms, SYSTEM_ON. From then on the hand sends each
finger's four joint positions every 3 ms (FINGER_POSE 0x20 + finger, four little-endian int16, 333.3 / 65536 deg
per count). The V4 takes torques only (SET_TORQUE 0x60 + finger, four int16 PWM counts, 1200 counts = full
torque at 12 V): position targets become torques in a PD loop on this computer, run for every complete set of
four pose frames (333 Hz, as the ROS driver does), with ROS's gains and per-joint PWM limits. `send(q)` only sets
the loop's targets, so the 20-100 Hz teleoperation loop and the 333 Hz torque loop are decoupled. If pose frames
stop for STALE_S, the torque loop sends zero torque; after FAULT_S `fault()` says why, which ends the episode.

Fingers: 0 index, 1 middle, 2 ring, 3 thumb; joints 4 * finger + k (`joint_0.0` .. `joint_15.0`).
"""

from __future__ import annotations

import struct
import threading
import time
from typing import Any

import numpy as np

from teleop.deps import require
from teleop.errors import RobotError

SYSTEM_ON, SYSTEM_OFF = 0x40, 0x41
SET_TORQUE = 0x60  # + finger
SET_PERIOD = 0x81
HAND_INFO = 0x80
FINGER_POSE = 0x20  # + finger
RAD_PER_COUNT = 333.3 / 65536.0 * np.pi / 180.0
PWM_FULL = 1200.0  # V4 (12 V): PWM counts of full torque
# ROS's per-joint PWM limits (AllegroHandDef.h), each finger's joints 0..3: roll, near, middle, far; the thumb's own
PWM_LIMIT = np.array([250.0, 450.0, 300.0, 190.0] * 3 + [350.0, 270.0, 180.0, 180.0]) * 1.5
KP = 600.0  # PWM counts per rad (ROS: 600-1000)
KD = 15.0  # PWM counts per rad/s (ROS: 15-30)
PERIOD_MS = 3  # the hand's position reports
STALE_S = 0.1  # no complete pose report for this long: zero torque
FAULT_S = 0.5  # ... and for this long: a fault, which ends the episode
INFO_TIMEOUT_S = 1.0
JOINTS = 16
STATUS_BITS = {0x02: "high temperature", 0x04: "internal communication fault"}


def frame_id(command: int, hand: int = 0) -> int:
    """The 11-bit arbitration ID of `command` to or from hand `hand`."""
    return (command << 2) | hand


def command_of(arbitration_id: int) -> int:
    return arbitration_id >> 2


def open_bus(channel: str, bitrate: int = 1_000_000) -> Any:
    """A python-can bus from "can0" (SocketCAN), "pcan:PCAN_USBBUS1" (PCAN-Basic) or "virtual:NAME" (python-can's
    in-process bus, what the tests use); `INTERFACE:CHANNEL` picks any python-can interface."""
    can = require("can", "allegro", "the Allegro hand over CAN", package="python-can")
    interface, _, name = channel.partition(":") if ":" in channel else ("socketcan", "", channel)
    kwargs: dict[str, Any] = {"bitrate": bitrate} if interface == "pcan" else {}  # SocketCAN's is set by `ip link`
    try:
        return can.Bus(channel=name, interface=interface, **kwargs)
    except (can.CanError, OSError, ValueError) as exc:
        raise RobotError(f"cannot open CAN channel {channel!r} ({exc}): for SocketCAN bring it up first "
                         "(sudo ip link set can0 up type can bitrate 1000000); for a PEAK adapter use "
                         "pcan:PCAN_USBBUS1") from exc


class AllegroCANDriver:
    """teleop.hardware.Driver for the Allegro Hand V4 on a CAN channel (open_bus)."""

    def __init__(self, channel: str, hand: int = 0, kp: float = KP, kd: float = KD) -> None:
        self.channel, self.hand, self.kp, self.kd = channel, hand, kp, kd
        self.name = f"Allegro hand on CAN {channel}"
        self.info: dict[str, Any] = {}
        self._bus: Any = None
        self._can: Any = None
        self._lock = threading.Lock()
        self._q = np.zeros(JOINTS)
        self._dq = np.zeros(JOINTS)
        self._last_q = np.zeros(JOINTS)
        self._target: np.ndarray | None = None  # None: no torque (limp) until the first command
        self._seen = 0  # bit per finger of the current report
        self._t_report: float | None = None
        self._torque_on = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def connect(self) -> None:
        self._can = require("can", "allegro", "the Allegro hand over CAN", package="python-can")
        self._bus = open_bus(self.channel)
        self._send(SYSTEM_OFF, b"")
        self._bus.send(self._can.Message(arbitration_id=frame_id(HAND_INFO, self.hand), is_extended_id=False,
                                         is_remote_frame=True, dlc=8))
        self.info = self._hand_info()
        self._send(SET_PERIOD, struct.pack("<3H", PERIOD_MS, 0, 0))
        self._send(SYSTEM_ON, b"")
        self._thread = threading.Thread(target=self._loop, name=f"torque loop {self.channel}", daemon=True)
        self._thread.start()
        if not self._wait_for_report(INFO_TIMEOUT_S):
            raise RobotError(f"{self.name} answered but sends no joint positions: switch it off and on again")

    def read(self) -> tuple[np.ndarray, np.ndarray, float | None]:
        with self._lock:
            return self._q.copy(), self._dq.copy(), None

    def send(self, q: np.ndarray, gripper: float | None) -> None:
        with self._lock:
            self._target = np.asarray(q, dtype=float).copy()
            self._torque_on = True

    def hold(self) -> None:
        with self._lock:
            self._target = self._q.copy()

    def emergency_stop(self) -> None:
        """Zero torque and the servos off: the hand goes limp."""
        with self._lock:
            self._torque_on = False
            self._target = None
        self._send_torques(np.zeros(JOINTS))
        self._send(SYSTEM_OFF, b"")

    def fault(self) -> str:
        with self._lock:
            t = self._t_report
        if self._bus is None:
            return "not connected"
        if t is None or time.monotonic() - t > FAULT_S:
            age = "none yet" if t is None else f"none for {1e3 * (time.monotonic() - t):.0f} ms"
            return f"no joint positions from the hand ({age}): check the CAN cable and the hand's power"
        return ""

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        if self._bus is not None:
            try:
                self._send_torques(np.zeros(JOINTS))
                self._send(SET_PERIOD, struct.pack("<3H", 0, 0, 0))
                self._send(SYSTEM_OFF, b"")
            finally:
                self._bus.shutdown()
                self._bus = None

    # --- the protocol ---------------------------------------------------------------------------------

    def _send(self, command: int, data: bytes) -> None:
        try:
            self._bus.send(self._can.Message(arbitration_id=frame_id(command, self.hand), data=data,
                                             is_extended_id=False))
        except self._can.CanError as exc:
            raise RobotError(f"{self.name}: sending failed ({exc}): check the CAN cable and adapter") from exc

    def _send_torques(self, pwm: np.ndarray) -> None:
        counts = np.round(np.clip(pwm, -PWM_LIMIT, PWM_LIMIT)).astype("<i2")
        for finger in range(4):
            self._send(SET_TORQUE + finger, counts[4 * finger: 4 * finger + 4].tobytes())

    def _hand_info(self) -> dict[str, Any]:
        deadline = time.monotonic() + INFO_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            message = self._bus.recv(left)
            if message is None:
                break
            if command_of(message.arbitration_id) == HAND_INFO and len(message.data) >= 7:
                data = bytes(message.data)
                hardware, firmware = struct.unpack_from("<2H", data)
                status = data[6]
                problems = [text for bit, text in STATUS_BITS.items() if status & bit]
                if problems:
                    raise RobotError(f"{self.name} reports {', '.join(problems)}: let it cool down or power it "
                                     "off and on, then connect again")
                return {"hardware": hardware, "firmware": firmware, "hand": "left" if data[4] else "right",
                        "temperature_c": data[5], "status": status}
        raise RobotError(f"{self.name} does not answer: check that the hand is switched on, that the CAN cable is "
                         "in and terminated, and the channel (1 Mbit/s)")

    def _wait_for_report(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._t_report is not None:
                    return True
            time.sleep(0.005)
        return False

    def _loop(self) -> None:
        """Receive pose frames; after each complete report, run the PD law and send the four torque frames."""
        while not self._stop.is_set():
            try:
                message = self._bus.recv(0.01)
            except self._can.CanError:
                return  # the bus was shut down
            if message is None:
                self._limp_if_stale()
                continue
            finger = command_of(message.arbitration_id) - FINGER_POSE
            if not 0 <= finger < 4 or len(message.data) < 8:
                continue
            counts = np.frombuffer(bytes(message.data[:8]), dtype="<i2")
            with self._lock:
                self._q[4 * finger: 4 * finger + 4] = counts * RAD_PER_COUNT
                self._seen |= 1 << finger
                if self._seen != 0b1111:
                    continue
                self._seen = 0
                now = time.monotonic()
                if self._t_report is not None:
                    dt = max(now - self._t_report, 1e-3)
                    raw = (self._q - self._last_q) / dt
                    self._dq = 0.6 * self._dq + 0.4 * raw  # a low-pass, as the ROS driver filters
                self._last_q, self._t_report = self._q.copy(), now
                pwm = None
                if self._torque_on and self._target is not None:
                    pwm = self.kp * (self._target - self._q) - self.kd * self._dq
            if pwm is not None:
                try:
                    self._send_torques(pwm)
                except RobotError:
                    return  # fault() reports the silence that follows

    def _limp_if_stale(self) -> None:
        with self._lock:
            stale = self._t_report is not None and time.monotonic() - self._t_report > STALE_S
            on = self._torque_on
        if stale and on:
            try:
                self._send_torques(np.zeros(JOINTS))
            except RobotError:
                pass  # fault() reports the silence
