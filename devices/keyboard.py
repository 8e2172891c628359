"""The keyboard as a 6-DoF device (and a crude hand), for operators without VR.

Key events come from a front end (the Qt window, or a terminal) through press()/release(); the device
integrates a virtual controller pose from the keys held. The key map is KEY_MAP (shown in the GUI).
"""

from __future__ import annotations

import threading
import time

import numpy as np
from scipy.spatial.transform import Rotation

from devices.base import Clock, Device, DeviceSample
from devices.human_hand import HumanHand

# key -> (kind, axis index, sign)
_TRANSLATE = {"w": (0, 1), "s": (0, -1), "a": (1, 1), "d": (1, -1), "r": (2, 1), "f": (2, -1)}
_ROTATE = {"i": (1, 1), "k": (1, -1), "j": (0, -1), "l": (0, 1), "q": (2, 1), "e": (2, -1)}
_FINGERS = ("1", "2", "3", "4", "5")

KEYS: tuple[str, ...] = (*_TRANSLATE, *_ROTATE, "g", *_FINGERS, "space")
"""Every key name press()/release() act on."""

KEY_MAP: dict[str, str] = {
    "space": "engage / release (clutch: the robot follows only while engaged)",
    "w / s": "forward / back (+x / -x)",
    "a / d": "left / right (+y / -y)",
    "r / f": "up / down (+z / -z)",
    "j / l": "roll",
    "i / k": "pitch",
    "q / e": "yaw",
    "g": "toggle gripper open / closed",
    "1-5": "hold to curl thumb, index, middle, ring, little (hands)",
}


class KeyboardDevice(Device):
    """Held keys move a virtual controller at `speed` [m/s] and `turn_rate` [rad/s].

    Thread-safe: press()/release() may come from a UI thread while the session reads.
    """

    name = "keyboard"

    def __init__(self, speed: float = 0.15, turn_rate: float = 0.8, curl_rate: float = 1.5,
                 clock: Clock = time.monotonic) -> None:
        super().__init__(clock)
        self.speed, self.turn_rate, self.curl_rate = speed, turn_rate, curl_rate
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self.hand = HumanHand()
        self._connect()  # a front end may send keys before the session connects

    def _connect(self) -> None:
        self._held.clear()
        self._pose = np.eye(4)
        self._engaged = False
        self._gripper = 0.0
        self._curl = np.full(5, 0.1)
        self._t_last = self.clock()

    def press(self, key: str) -> None:
        key = key.lower()
        with self._lock:
            if key == "space":
                self._engaged = not self._engaged
            elif key == "g":
                self._gripper = 0.0 if self._gripper > 0.5 else 1.0
            else:
                self._held.add(key)

    def release(self, key: str) -> None:
        with self._lock:
            self._held.discard(key.lower())

    def _read(self) -> DeviceSample:
        now = self.clock()
        with self._lock:
            dt = min(max(0.0, now - self._t_last), 0.2)  # a stalled reader must not cause a leap
            self._t_last = now
            velocity, omega = np.zeros(3), np.zeros(3)
            for key in self._held:
                if key in _TRANSLATE:
                    axis, sign = _TRANSLATE[key]
                    velocity[axis] += sign * self.speed
                if key in _ROTATE:
                    axis, sign = _ROTATE[key]
                    omega[axis] += sign * self.turn_rate
            curling = np.array([key in self._held for key in _FINGERS])
            self._curl = np.clip(self._curl + np.where(curling, 1, -1) * self.curl_rate * dt, 0.0, 1.0)
            self._pose[:3, 3] += velocity * dt
            self._pose[:3, :3] = Rotation.from_rotvec(omega * dt).as_matrix() @ self._pose[:3, :3]
            return DeviceSample(
                t=now, engaged=self._engaged, T_world_device=self._pose.copy(), gripper=self._gripper,
                keypoints=self.hand.keypoints(self._curl), buttons={k: True for k in self._held},
            )
