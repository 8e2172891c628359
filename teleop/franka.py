"""Franka Emika Panda through panda-python (`pip install 'teleop[franka]'`: panda_py 1.x with libfranka 0.9.2).

Why panda-python: the Panda speaks libfranka below 0.10, and of the maintained Python bindings only panda-python's
wheel on PyPI carries that libfranka (0.9.2). pylibfranka and franky-control's PyPI wheels carry libfranka 0.21
for the Franka Research 3 (franky's 0.9.2 build is a download from its GitHub releases). It also streams joint
targets the way this loop needs: `controllers.JointPosition` runs a joint impedance law at 1 kHz in C++, and
`set_control(q, dq)` only replaces its target, from any thread at any rate, so Python never runs the 1 kHz loop
(pylibfranka's does). The pin is `<2`: panda-python 2 renames these controllers.

Errors do not raise by themselves: `fault()` asks `raise_error()` each step, and a reflex or a collision ends the
episode with what libfranka says; recovery (`panda.recover()`) is left to the operator, after they have seen why.
The gripper's calls block for the whole motion, so they run on a thread of their own; a command is sent only when
it changes by more than GRIPPER_STEP.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np

from teleop.deps import require
from teleop.errors import RobotError

JOINTS = 7
MAX_WIDTH = 0.08  # [m] the Franka Hand's opening
GRIPPER_SPEED = 0.1  # [m/s]
GRIPPER_STEP = 0.05  # smallest change of the gripper command that is sent (0..1)


class FrankaDriver:
    """teleop.hardware.Driver over panda_py.Panda with a JointPosition controller and the Franka Hand."""

    def __init__(self, address: str, sdk: Any = None) -> None:
        self.address = address
        self.name = f"Franka Panda at {address}"
        self._sdk = sdk  # the panda_py module (tests pass a stand-in)
        self._panda: Any = None
        self._controller: Any = None
        self._controllers: Any = None  # panda_py.controllers
        self._gripper: Any = None
        self._width = 1.0  # last known opening (0 closed .. 1 open)
        self._commanded: float | None = None
        self._moves: queue.Queue[float | None] = queue.Queue()
        self._gripper_thread: threading.Thread | None = None

    def connect(self) -> None:
        panda_py = self._sdk or require("panda_py", "franka", "the Franka Panda", package="panda-python")
        try:
            self._panda = panda_py.Panda(self.address)
        except Exception as exc:  # libfranka's NetworkException and friends arrive as RuntimeError or their own
            raise RobotError(f"{self.name} does not answer ({exc}): check that Desk shows the joints unlocked and "
                             "FCI activated, and that this computer reaches the address") from exc
        self._controllers = panda_py.controllers
        self._start_controller()
        try:
            self._gripper = panda_py.libfranka.Gripper(self.address)
        except Exception:  # a Panda without a hand still moves
            self._gripper = None
        if self._gripper is not None:
            self._gripper_thread = threading.Thread(target=self._run_gripper, name=f"gripper {self.address}",
                                                    daemon=True)
            self._gripper_thread.start()

    def read(self) -> tuple[np.ndarray, np.ndarray, float | None]:
        state = self._connected().get_state()
        q, dq = np.asarray(state.q, dtype=float)[:JOINTS], np.asarray(state.dq, dtype=float)[:JOINTS]
        return q, dq, (self._width if self._gripper is not None else None)

    def send(self, q: np.ndarray, gripper: float | None) -> None:
        if self._controller is None:  # after an emergency stop was released
            self._start_controller()
        self._connected()
        self._controller.set_control(np.asarray(q, dtype=float), np.zeros(JOINTS))
        if self._gripper is not None and gripper is not None and (
                self._commanded is None or abs(gripper - self._commanded) > GRIPPER_STEP):
            self._commanded = gripper
            self._moves.put(gripper)

    def hold(self) -> None:
        if self._panda is not None and self._controller is not None:
            self._controller.set_control(np.asarray(self._panda.get_state().q, dtype=float)[:JOINTS], np.zeros(JOINTS))

    def emergency_stop(self) -> None:
        """Stop the torque controller: the arm holds where it is; the next command after release starts a new one."""
        if self._panda is not None:
            self._panda.stop_controller()
            self._controller = None

    def fault(self) -> str:
        if self._panda is None:
            return "not connected"
        try:
            self._panda.raise_error()
        except RuntimeError as exc:
            return f"libfranka reports: {exc} (press the user stop and release it, or recover in Desk)"
        return ""

    def close(self) -> None:
        self._moves.put(None)
        if self._gripper_thread is not None:
            self._gripper_thread.join(5.0)
        if self._panda is not None:
            if self._controller is not None:
                self._panda.stop_controller()
            self._panda = self._controller = None

    def _start_controller(self) -> None:
        """A joint impedance controller whose target starts where the arm is."""
        self._controller = self._controllers.JointPosition()
        self._connected().start_controller(self._controller)

    def _connected(self) -> Any:
        if self._panda is None:
            raise RobotError(f"{self.name} is not connected")
        return self._panda

    def _run_gripper(self) -> None:
        """Blocking Franka Hand moves, the latest command first (older ones are dropped)."""
        while (command := self._moves.get()) is not None:
            while not self._moves.empty():  # only the newest matters
                newer = self._moves.get()
                if newer is None:
                    return
                command = newer
            width = (1.0 - command) * MAX_WIDTH
            try:
                self._gripper.move(width, GRIPPER_SPEED)
                self._width = float(np.clip(self._gripper.read_once().width / MAX_WIDTH, 0.0, 1.0))
            except Exception:  # a gripper error must not stop the arm; the recorded width says where it is
                continue
