"""UFACTORY xArm7 through its Python SDK (`pip install 'teleop[xarm]'`: xarm-python-sdk, `xarm.wrapper.XArmAPI`).

Joint targets stream in mode 6, joint online trajectory planning: each `set_servo_angle(angle, speed, mvacc,
wait=False)` replaces the running target and the controller replans toward it within the given speed and
acceleration, so a 20-100 Hz loop with irregular ticks stays smooth. (Mode 1, `set_servo_angle_j`, chases each
target at full speed with no planning and wants a steady 100-250 Hz stream from a real-time host.)

Units: radians throughout (`is_radian=True`). The SDK's calls return a code (getters: `(code, value)`), 0 for
success; a nonzero code is a RobotError naming it and its meaning. Controller errors and warnings
(`error_code`, `warn_code`) are cleared once on connect (a latched error from an earlier session would refuse
every motion) and otherwise reported, not cleared: the operator decides when the cause is gone. Collision
sensitivity and the controller's own safety settings are left as the user set them in UFACTORY Studio.

The xArm Gripper, if present, takes positions -10..850 (850 open); it is commanded only when the command
changes by more than GRIPPER_STEP, as each command starts a motion of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from teleop.deps import require
from teleop.errors import RobotError

MODE_JOINT_PLANNING = 6  # joint online trajectory planning
STATE_READY = 0
GRIPPER_OPEN = 850.0  # xArm Gripper position fully open (0: closed)
GRIPPER_STEP = 0.05  # smallest change of the gripper command that is sent (0..1)
JOINTS = 7

API_CODES = {  # the SDK's return codes (xarm-python-sdk doc/api/xarm_api_code.md)
    -9: "emergency stop", -8: "out of range", -7: "joint angle limit", -6: "cartesian position limit",
    -4: "command does not exist", -2: "not ready (motion not enabled or state not set)", -1: "not connected",
    1: "an error on the controller has not been cleared", 2: "a warning on the controller has not been cleared",
    3: "response timeout", 8: "send error (a network problem)", 9: "state is not ready to move",
    10: "invalid result", 11: "other error", 12: "parameter error",
}
CONTROLLER_ERRORS = {  # controller error codes (same document), the ones an operator meets
    1: "the emergency stop button is pushed", 2: "emergency IO triggered", 3: "emergency stop of the three-state "
    "switch", 10: "servo motor error", 11: "servo motor 1 error", 17: "servo motor 7 error", 19: "end module "
    "communication error", 21: "kinematic error", 22: "self-collision", 23: "joint angle exceeds the limit",
    24: "speed exceeds the limit", 25: "planning error", 31: "collision caused abnormal current",
    35: "safety boundary limit",
}


class XArmDriver:
    """teleop.hardware.Driver over XArmAPI; `speed` [rad/s] and `accel` [rad/s^2] bound mode 6's planner."""

    def __init__(self, address: str, speed: float = 1.0, accel: float = 8.0, sdk: Any = None) -> None:
        self.address = address
        self.name = f"xArm7 at {address}"
        self.speed, self.accel = speed, accel
        self._sdk = sdk  # the xarm.wrapper module (tests pass a stand-in)
        self._arm: Any = None
        self._gripper: float | None = None  # last gripper command sent (0 open .. 1 closed); None: none yet
        self.has_gripper = False

    def connect(self) -> None:
        wrapper = self._sdk or require("xarm.wrapper", "xarm", "the xArm7", package="xarm-python-sdk")
        try:
            self._arm = wrapper.XArmAPI(self.address, is_radian=True)
        except Exception as exc:  # the SDK raises a bare Exception('connect socket failed')
            raise RobotError(f"{self.name} does not answer ({exc}): check that the controller is on, that the "
                             "Ethernet cable is in, and the address (UFACTORY Studio shows it)") from exc
        arm = self._arm
        if not arm.connected:
            raise RobotError(f"{self.name} does not answer: check that the controller is on, that the Ethernet "
                             "cable is in, and the address (UFACTORY Studio shows it)")
        arm.clean_warn()
        arm.clean_error()
        for call, args in (("motion_enable", (True,)), ("set_mode", (MODE_JOINT_PLANNING,)),
                           ("set_state", (STATE_READY,))):
            self._check(getattr(arm, call)(*args), call)
        self.has_gripper = arm.set_gripper_mode(0) == 0 and arm.set_gripper_enable(True) == 0

    def read(self) -> tuple[np.ndarray, np.ndarray, float | None]:
        code, states = self._connected().get_joint_states(is_radian=True)
        self._check(code, "get_joint_states")
        q, dq = np.asarray(states[0][:JOINTS], dtype=float), np.asarray(states[1][:JOINTS], dtype=float)
        opening = None
        if self.has_gripper:
            code, position = self._arm.get_gripper_position()
            if code == 0 and position is not None:
                opening = float(np.clip(position / GRIPPER_OPEN, 0.0, 1.0))
        return q, dq, opening

    def send(self, q: np.ndarray, gripper: float | None) -> None:
        arm = self._connected()
        code = arm.set_servo_angle(angle=[float(v) for v in q], speed=self.speed, mvacc=self.accel, wait=False,
                                   is_radian=True)
        self._check(code, "set_servo_angle")
        if self.has_gripper and gripper is not None and (self._gripper is None
                                                         or abs(gripper - self._gripper) > GRIPPER_STEP):
            self._check(arm.set_gripper_position((1.0 - gripper) * GRIPPER_OPEN, wait=False), "set_gripper_position")
            self._gripper = gripper

    def hold(self) -> None:
        """The measured joints become the target: the planner decelerates to them."""
        if self._arm is None or not self._arm.connected:
            return
        code, states = self._arm.get_joint_states(is_radian=True)
        if code == 0:
            self._arm.set_servo_angle(angle=list(states[0][:JOINTS]), speed=self.speed, mvacc=self.accel,
                                      wait=False, is_radian=True)

    def emergency_stop(self) -> None:
        if self._arm is not None:
            self._arm.emergency_stop()

    def fault(self) -> str:
        arm = self._arm
        if arm is None or not arm.connected:
            return "the connection is lost"
        if arm.has_error:
            code = arm.error_code
            return f"controller error {code} ({CONTROLLER_ERRORS.get(code, 'see the xArm manual')})"
        return ""

    def close(self) -> None:
        if self._arm is not None:
            self._arm.disconnect()
            self._arm = None

    def _connected(self) -> Any:
        if self._arm is None:
            raise RobotError(f"{self.name} is not connected")
        return self._arm

    def _check(self, code: int, call: str) -> None:
        if code != 0:
            fault = self.fault() if code in (1, 9) else ""
            raise RobotError(f"{self.name}: {call} returned {code} ({API_CODES.get(code, 'unknown code')})"
                             + (f"; {fault}" if fault else ""))
