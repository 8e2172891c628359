"""The keyboard as a rate-control device (and a crude hand), for operators without VR or a gamepad.

Key events come from a front end (the Qt window, or a terminal) through press()/release(). Like a gamepad,
the device reports axes in [-1, 1] (+1 while the positive key of a pair is down, -1 for the negative one,
0 for neither or both) and buttons; `kinematics.velocity_mapping.VelocityMappingConfig.keyboard()` turns
them into end-effector motion. The device has no pose (`T_world_device` is None). Space toggles
`engaged`; the gripper state is the mapping's (it toggles on the rising edge of the "g" button). Keys 1-5
curl the fingers of a model hand, whose keypoints drive hand robots. The key map is KEY_MAP (shown in the GUI).

A key counts as down in a sample if it was down at any time since the previous read, so a tap shorter than
one control tick is not lost.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from devices.base import Clock, Device, DeviceSample
from devices.human_hand import HumanHand

AXIS_KEYS: dict[str, tuple[str, str]] = {
    "forward": ("w", "s"),
    "left": ("a", "d"),
    "up": ("r", "f"),
    "roll": ("l", "j"),
    "pitch": ("i", "k"),
    "yaw": ("q", "e"),
}
"""Axis name -> (key for +1, key for -1). Directions in the robot base frame: forward +x, left +y, up +z;
roll, pitch and yaw are rotations about +x, +y and +z."""

AXES: tuple[str, ...] = tuple(AXIS_KEYS)
GRIPPER_KEY, ENGAGE_KEY, FASTER_KEY, SLOWER_KEY = "g", "space", "equal", "minus"
FINGER_KEYS: tuple[str, ...] = ("1", "2", "3", "4", "5")  # thumb, index, middle, ring, little

KEYS: tuple[str, ...] = (
    *(key for pair in AXIS_KEYS.values() for key in pair),
    GRIPPER_KEY, FASTER_KEY, SLOWER_KEY, *FINGER_KEYS, ENGAGE_KEY,
)
"""Every key name press()/release() act on (Qt key names: Key_<Name>); each is also a button."""

KEY_MAP: dict[str, str] = {
    "space": "engage / release (clutch: the robot follows only while engaged)",
    "w / s": "forward / back (+x / -x)",
    "a / d": "left / right (+y / -y)",
    "r / f": "up / down (+z / -z)",
    "l / j": "roll (+ / -, about x)",
    "i / k": "pitch (+ / -, about y)",
    "q / e": "yaw (+ / -, about z)",
    "g": "toggle gripper open / closed",
    "= / -": "faster / slower",
    "1-5": "hold to curl thumb, index, middle, ring, little (hands)",
}

_REST_CURL = 0.1  # a relaxed hand is slightly curled


class KeyboardDevice(Device):
    """Held keys as axes and buttons; space toggles engagement; keys 1-5 curl the fingers at `curl_rate`.

    Thread-safe: press()/release() may come from a UI thread while the session reads. Keys may be sent
    before connect(); disconnect() releases every key and disengages.
    """

    name = "keyboard"

    def __init__(self, curl_rate: float = 1.5, clock: Clock = time.monotonic) -> None:
        """Args:
            curl_rate: Finger curl speed while a key 1-5 is held [1/s] (curl 0 open .. 1 fist).
            clock: Monotonic clock [s] stamping the samples.
        """
        super().__init__(clock)
        self.curl_rate = curl_rate
        self.hand = HumanHand()
        self._lock = threading.Lock()
        self._held: set[str] = set()
        self._tapped: set[str] = set()  # pressed since the last read
        self._engaged = False
        self._curl = np.full(5, _REST_CURL)
        self._t_last = clock()

    def press(self, key: str) -> None:
        """Key `key` (a name in KEYS, any case) went down; other names are ignored."""
        key = key.lower()
        if key not in KEYS:
            return
        with self._lock:
            if key == ENGAGE_KEY and key not in self._held:  # toggle on the press, not on auto-repeat
                self._engaged = not self._engaged
            self._held.add(key)
            self._tapped.add(key)

    def release(self, key: str) -> None:
        """Key `key` went up."""
        with self._lock:
            self._held.discard(key.lower())

    def _connect(self) -> None:
        with self._lock:
            self._t_last = self.clock()  # no finger motion for the time spent unconnected

    def _disconnect(self) -> None:
        with self._lock:
            self._held.clear()
            self._tapped.clear()
            self._engaged = False
            self._curl = np.full(5, _REST_CURL)

    def _read(self) -> DeviceSample:
        now = self.clock()
        with self._lock:
            down = self._held | self._tapped
            self._tapped = set()
            dt = min(max(0.0, now - self._t_last), 0.2)  # a stalled reader must not snap the fingers
            self._t_last = now
            self._curl = self._curled(np.array([key in down for key in FINGER_KEYS]), dt)
            return DeviceSample(
                t=now,
                engaged=self._engaged,
                keypoints=self.hand.keypoints(self._curl),
                axes={axis: float(plus in down) - float(minus in down) for axis, (plus, minus) in AXIS_KEYS.items()},
                buttons={key: key in down for key in KEYS},
            )

    def _curled(self, curling: np.ndarray, dt: float) -> np.ndarray:
        """Curls (5,) after dt [s]: held fingers close toward a fist, the others relax to the rest curl."""
        step = self.curl_rate * dt
        return np.where(curling, np.minimum(self._curl + step, 1.0), np.maximum(self._curl - step, _REST_CURL))
