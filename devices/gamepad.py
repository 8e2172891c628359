"""A PlayStation (DualShock 4, DualSense) or other evdev gamepad, read through the `inputs` package.

A reader thread, started by connect(), blocks on the pad's event stream and keeps the newest state; read()
copies that state and never blocks. Events are applied in whole reports: changes are committed at each
SYN_REPORT, and after a SYN_DROPPED the kernel's partial report is discarded.

Axes are normalised with the pad's ranges (asked from the kernel with EVIOCGABS where the event file is an
evdev device, else the layout's defaults): sticks to [-1, 1] with the centre at 0 (DS4 / DualSense: 0..255
centred at 128), triggers to [0, 1], the d-pad hat to -1 / 0 / 1. Y axes are flipped to the convention of
kinematics.velocity_mapping: stick y +1 pushed forward, d-pad y +1 up; x +1 right. No deadzone is applied
here (the mapping does that). Axis names: left_x, left_y, right_x, right_y, dpad_x, dpad_y, l2, r2 (the
analogue triggers, 0 released .. 1 pressed); `gripper` is the r2 trigger.

Evdev codes of the Linux drivers (hid-sony for the DualShock 4 before kernel 6.2, hid-playstation for the
DualSense and, from 6.2, the DualShock 4), which follow the kernel gamepad spec (Documentation/input/
gamepad.rst: BTN_NORTH is the top face button, BTN_WEST the left one):

    ABS_X / ABS_Y     left stick          BTN_SOUTH   cross         BTN_TL / BTN_TR       l1 / r1
    ABS_RX / ABS_RY   right stick         BTN_EAST    circle        BTN_TL2 / BTN_TR2     l2 / r2 (digital)
    ABS_Z / ABS_RZ    l2 / r2 triggers    BTN_NORTH   triangle      BTN_SELECT            share (DS4), create
    ABS_HAT0X / Y     d-pad               BTN_WEST    square        BTN_START / BTN_MODE  options / ps
                                                                    BTN_THUMBL / THUMBR   l3 / r3

The DualSense reports its Create button as both "create" and "share", so a map written for one pad works on
the other. The "generic" layout reads the same codes with the PlayStation names by position; on an Xbox pad
(xpad driver: sticks -32768..32767) A is "cross", B "circle", and xpad's X / Y arrive as BTN_NORTH /
BTN_WEST, i.e. "triangle" / "square". The motion-sensor and touchpad event devices of a PlayStation pad are
skipped. A pad driven by hid-generic (no hid-sony / hid-playstation module) uses other codes: load the
driver.

Finding the pad: `inputs` lists pads from udev's /dev/input/by-id and /dev/input/by-path links whose name
ends in "-event-joystick"; a pad without such a link (some Bluetooth set-ups) is not listed. For those, pass
`open_pad` returning `inputs.GamePad(inputs.devices, "<a by-id style path>", char_path_override=
"/dev/input/eventN")`.

Hot-plug: if the pad goes away (the read raises OSError, the stream ends, or `inputs` finds no pad), read()
returns engaged False, `status()` says why, and the thread tries to reopen it every `reopen_interval_s`;
plugging it back in resumes. The rate in `status()` counts the pad's reports: the kernel sends one only
when something changes, so a pad at rest reports rarely.

How events are read: `inputs.GamePad.read()` loops forever on an empty read, so end-of-stream could not be
seen; the reader instead opens the pad's character file itself (unbuffered, so select() sees every pending
event), stores it as the GamePad's `_character_file` (the file `inputs` reads from), and calls
`GamePad._do_iter()`, which reads one `struct input_event` and parses it with inputs' code tables. A
kernel evdev device returns whole events on every read.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, BinaryIO

from devices.base import Clock, Device, DeviceSample
from devices.status import DeviceStatus, RateMeter
from teleop.deps import require
from teleop.errors import DeviceError, UnknownNameError

STICK, TRIGGER, HAT = "stick", "trigger", "hat"
BUTTONS: tuple[str, ...] = (
    "cross", "circle", "square", "triangle", "l1", "r1", "l2", "r2",
    "share", "create", "options", "ps", "l3", "r3",
)
"""Every button name a layout may report."""
AXES: tuple[str, ...] = ("left_x", "left_y", "right_x", "right_y", "dpad_x", "dpad_y", "l2", "r2")
DEADMAN_ALWAYS = "always"
_SUBDEVICE_SUFFIXES = ("Motion Sensors", "Touchpad")
_POLL_S = 0.1  # how often a blocked reader looks at the stop flag [s]


@dataclass(frozen=True)
class AxisSpec:
    """One evdev absolute axis.

    Attributes:
        code: Evdev code name (as `inputs` names it), e.g. "ABS_X".
        name: Axis name in DeviceSample.axes.
        kind: STICK (centred, to [-1, 1]), TRIGGER (to [0, 1]) or HAT (-1, 0, 1).
        lo, hi: Raw range used when the kernel cannot be asked (not an evdev device).
        flip: Negate (evdev y axes grow downward / toward the operator).
    """

    code: str
    name: str
    kind: str
    lo: int
    hi: int
    flip: bool = False

    def normalise(self, value: int, lo: int, hi: int) -> float:
        """Raw `value` in [lo, hi] -> [-1, 1] (stick, hat) or [0, 1] (trigger), flipped if needed."""
        if hi <= lo:
            return 0.0
        if self.kind == TRIGGER:
            out = (value - lo) / (hi - lo)
            return min(1.0, max(0.0, -out if self.flip else out))
        centre = (lo + hi + 1) // 2  # 0..255 -> 128; -32768..32767 -> 0; -1..1 -> 0
        span = (hi - centre) if value >= centre else (centre - lo)
        out = (value - centre) / span if span > 0 else 0.0
        out = min(1.0, max(-1.0, out))
        return -out if self.flip else out


@dataclass(frozen=True)
class GamepadLayout:
    """Evdev codes -> axis and button names for one kind of pad."""

    name: str
    axes: tuple[AxisSpec, ...]
    buttons: tuple[tuple[str, tuple[str, ...]], ...]  # evdev key code name -> button names

    @property
    def button_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for _, names in self.buttons for name in names))


def _axes(stick: tuple[int, int]) -> tuple[AxisSpec, ...]:
    return (
        AxisSpec("ABS_X", "left_x", STICK, *stick),
        AxisSpec("ABS_Y", "left_y", STICK, *stick, flip=True),
        AxisSpec("ABS_RX", "right_x", STICK, *stick),
        AxisSpec("ABS_RY", "right_y", STICK, *stick, flip=True),
        AxisSpec("ABS_Z", "l2", TRIGGER, 0, 255),
        AxisSpec("ABS_RZ", "r2", TRIGGER, 0, 255),
        AxisSpec("ABS_HAT0X", "dpad_x", HAT, -1, 1),
        AxisSpec("ABS_HAT0Y", "dpad_y", HAT, -1, 1, flip=True),
    )


def _buttons(select_names: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return (
        ("BTN_SOUTH", ("cross",)), ("BTN_EAST", ("circle",)), ("BTN_NORTH", ("triangle",)),
        ("BTN_WEST", ("square",)), ("BTN_TL", ("l1",)), ("BTN_TR", ("r1",)), ("BTN_TL2", ("l2",)),
        ("BTN_TR2", ("r2",)), ("BTN_SELECT", select_names), ("BTN_START", ("options",)),
        ("BTN_MODE", ("ps",)), ("BTN_THUMBL", ("l3",)), ("BTN_THUMBR", ("r3",)),
    )


LAYOUTS: dict[str, GamepadLayout] = {
    "dualshock4": GamepadLayout("dualshock4", _axes((0, 255)), _buttons(("share",))),
    "dualsense": GamepadLayout("dualsense", _axes((0, 255)), _buttons(("create", "share"))),
    "generic": GamepadLayout("generic", _axes((-32768, 32767)), _buttons(("share",))),
}
AUTO = "auto"


def layout_for_name(device_name: str) -> GamepadLayout:
    """The layout for a pad's kernel name ("Sony Interactive Entertainment Wireless Controller" is a DS4)."""
    if "DualSense" in device_name:
        return LAYOUTS["dualsense"]
    if "Wireless Controller" in device_name:  # DS4: "[Sony ... Entertainment] Wireless Controller"
        return LAYOUTS["dualshock4"]
    return LAYOUTS["generic"]


def find_gamepad(index: int = 0) -> Any:
    """The `index`-th gamepad `inputs` finds now (an `inputs.GamePad`), motion and touchpad parts skipped.

    Raises:
        inputs.UnpluggedError: there are not that many pads.
    """
    inputs = _inputs()
    manager = inputs.DeviceManager()  # a fresh scan of /dev/input: pads come and go
    pads = [pad for pad in manager.gamepads if not str(pad.name).endswith(_SUBDEVICE_SUFFIXES)]
    if index >= len(pads):
        raise inputs.UnpluggedError(f"no gamepad number {index} (found {len(pads)})")
    return pads[index]


def _inputs() -> ModuleType:
    return require("inputs", extra="gamepad", purpose="The gamepad device")


class _EndOfStream(Exception):
    """The event stream ended (the pad went away)."""


@dataclass
class _State:
    axes: dict[str, float]
    buttons: dict[str, bool]
    device_time: float | None = None


class Gamepad(Device):
    """A gamepad as axes and buttons for kinematics.velocity_mapping (see the module docstring).

    Args:
        layout: "auto" (from the pad's name), "dualshock4", "dualsense" or "generic".
        index: Which pad, if several are plugged in (0 is the first `inputs` finds).
        deadman: "always" (engaged whenever the pad is connected) or a button name held to engage.
        clock: Monotonic clock [s] stamping the samples.
        reopen_interval_s: Wait between attempts to reopen an unplugged pad [s].
        open_pad: Returns an opened-for-reading `inputs.GamePad` or raises (OSError,
            inputs.UnpluggedError); default: find_gamepad(index).
    """

    name = "gamepad"

    def __init__(self, layout: str = AUTO, index: int = 0, deadman: str = DEADMAN_ALWAYS,
                 clock: Clock = time.monotonic, reopen_interval_s: float = 0.5,
                 open_pad: Callable[[], Any] | None = None) -> None:
        super().__init__(clock)
        if layout != AUTO and layout not in LAYOUTS:
            raise UnknownNameError("gamepad layout", layout, [AUTO, *LAYOUTS])
        if deadman != DEADMAN_ALWAYS and deadman not in BUTTONS:
            raise UnknownNameError("gamepad deadman button", deadman, [DEADMAN_ALWAYS, *BUTTONS])
        self.layout_name = layout
        self.index = index
        self.deadman = deadman
        self.reopen_interval_s = reopen_interval_s
        self._open_pad = open_pad or (lambda: find_gamepad(index))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._layout = LAYOUTS["generic"] if layout == AUTO else LAYOUTS[layout]
        self._state = _State(*_neutral(self._layout))
        self._pending = _State({}, {})  # changes since the last SYN_REPORT (reader thread only)
        self._dropping = False
        self._ranges: dict[str, tuple[int, int]] = {}
        self._pad_connected = False
        self._pad_name: str | None = None
        self._reason = ""
        self._meter = RateMeter()
        self.events = 0  # events parsed since connect()
        self.reconnects = 0  # times the pad was reopened after going away

    # ---------------------------------------------------------------------------------------- public
    def status(self) -> DeviceStatus:
        """Pad plugged in and read, report rate, age of the newest report and, if unwell, why."""
        if not self.connected:
            return DeviceStatus(False, reason=f"{self.name} is not connected: call .connect() first")
        with self._lock:
            return self._meter.status(self.clock(), connected=self._pad_connected, reason=self._reason)

    @property
    def pad_name(self) -> str | None:
        """The kernel's name of the pad opened last, e.g. "Sony Interactive Entertainment Wireless Controller"."""
        with self._lock:
            return self._pad_name

    @property
    def pad_connected(self) -> bool:
        """Whether the pad is plugged in and being read now."""
        with self._lock:
            return self._pad_connected

    @property
    def layout(self) -> GamepadLayout:
        """The layout in use (for "auto": the one of the pad opened last)."""
        return self._layout

    # ------------------------------------------------------------------------------------- lifecycle
    def _connect(self) -> None:
        _inputs()
        pad, events = self._open()  # the first open is synchronous: a missing pad is an error now
        self._stop.clear()
        self.events = self.reconnects = 0
        with self._lock:
            self._meter.reset()
        self._thread = threading.Thread(target=self._run, args=(pad, events), name="gamepad-reader", daemon=True)
        self._thread.start()

    def _disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        with self._lock:
            self._pad_connected = False
            self._reason = ""

    def _read(self) -> DeviceSample:
        now = self.clock()
        with self._lock:
            state, live = self._state, self._pad_connected
        engaged = live and (self.deadman == DEADMAN_ALWAYS or state.buttons.get(self.deadman, False))
        return DeviceSample(t=now, engaged=engaged, gripper=state.axes.get("r2", 0.0) if live else 0.0,
                            axes=dict(state.axes), buttons=dict(state.buttons), device_time=state.device_time)

    # ------------------------------------------------------------------------------------ the reader
    def _open(self) -> tuple[Any, BinaryIO]:
        """Find and open the pad; raises DeviceError (with what to do) if there is none."""
        inputs = _inputs()
        try:
            pad = self._open_pad()
            events = _open_events(pad)
        except PermissionError as exc:
            raise DeviceError(f"no permission to read the gamepad ({exc.filename}): add yourself to the "
                              "'input' group (sudo usermod -aG input $USER, then log in again) or add a udev "
                              "rule for the pad") from exc
        except (OSError, inputs.UnpluggedError) as exc:
            raise DeviceError(f"no gamepad found ({exc}): plug in a DualShock 4 or DualSense (USB, or pair it "
                              "over Bluetooth) and try again, or pick another device with --device") from exc
        self._start_pad(pad, events)
        return pad, events

    def _start_pad(self, pad: Any, events: BinaryIO) -> None:
        layout = layout_for_name(str(pad.name)) if self.layout_name == AUTO else LAYOUTS[self.layout_name]
        ranges = _kernel_ranges(events, layout)
        with self._lock:
            self._layout, self._ranges = layout, ranges
            axes, buttons = _neutral(layout)
            self._state = _State(axes, buttons)
            self._pending = _State({}, {})
            self._dropping = False
            self._pad_connected = True
            self._pad_name = str(pad.name)
            self._reason = ""

    def _run(self, pad: Any, events: BinaryIO) -> None:
        inputs = _inputs()
        try:
            while not self._stop.is_set():
                try:
                    self._pump(pad, events)
                except (OSError, struct.error, inputs.UnpluggedError, _EndOfStream) as exc:
                    self._unplugged(exc)
                finally:
                    events.close()
                reopened = self._reopen()
                if reopened is None:
                    return
                pad, events = reopened
        except Exception as exc:  # an unexpected failure must not leave a stale, engaged state behind
            self._unplugged(exc)
            with self._lock:
                self._reason = f"the gamepad reader failed: {exc!r}; disconnect and connect again"

    def _pump(self, pad: Any, events: BinaryIO) -> None:
        """Parse events until stopped; raises when the pad goes away."""
        inputs = _inputs()
        while not self._stop.is_set():
            readable, _, _ = select.select([events], [], [], _POLL_S)
            if not readable:
                continue
            try:
                parsed = pad._do_iter()  # one input_event, parsed by inputs (see the module docstring)
            except (inputs.UnknownEventType, inputs.UnknownEventCode):
                continue  # a code inputs has no name for is none of ours
            if parsed is None:
                raise _EndOfStream("the event stream ended")
            for event in parsed:
                self._apply(event.ev_type, event.code, int(event.state), float(event.timestamp))

    def _reopen(self) -> tuple[Any, BinaryIO] | None:
        """Try to reopen the pad every reopen_interval_s until it is back or the device is stopped."""
        while not self._stop.wait(self.reopen_interval_s):
            try:
                pad, events = self._open()
            except DeviceError as exc:
                with self._lock:
                    self._reason = f"{self._reason.split(';')[0]}; retrying: {exc}"
                continue
            self.reconnects += 1
            return pad, events
        return None

    def _unplugged(self, exc: BaseException) -> None:
        with self._lock:
            self._pad_connected = False
            self._state = _State(*_neutral(self._layout))
            self._reason = f"unplugged: {exc or type(exc).__name__}; reopening every {self.reopen_interval_s:g} s"

    def _apply(self, ev_type: str, code: str, value: int, timestamp: float) -> None:
        """Stage one event; commit the staged changes at SYN_REPORT."""
        self.events += 1
        if ev_type == "Sync":
            if code == "SYN_DROPPED":  # the kernel dropped events: this report is incomplete
                self._dropping = True
            elif code == "SYN_REPORT":
                self._commit(timestamp)
            return
        if self._dropping:
            return
        if ev_type == "Absolute":
            spec = next((a for a in self._layout.axes if a.code == code), None)
            if spec is not None:
                lo, hi = self._ranges.get(code, (spec.lo, spec.hi))
                self._pending.axes[spec.name] = spec.normalise(value, lo, hi)
        elif ev_type == "Key":
            for key, names in self._layout.buttons:
                if key == code:
                    self._pending.buttons.update(dict.fromkeys(names, value != 0))

    def _commit(self, timestamp: float) -> None:
        if self._dropping:
            self._dropping = False
        else:
            with self._lock:
                axes = {**self._state.axes, **self._pending.axes}
                buttons = {**self._state.buttons, **self._pending.buttons}
                self._state = _State(axes, buttons, timestamp)
                self._meter.tick(self.clock())
        self._pending = _State({}, {})


def _neutral(layout: GamepadLayout) -> tuple[dict[str, float], dict[str, bool]]:
    return {spec.name: 0.0 for spec in layout.axes}, dict.fromkeys(layout.button_names, False)


def _open_events(pad: Any) -> BinaryIO:
    """Open the pad's event file unbuffered and hand it to `inputs` (see the module docstring).

    O_NONBLOCK only for the open (a FIFO without a writer would block it); reads then block as usual.
    """
    fd = os.open(pad.get_char_device_path(), os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    events = os.fdopen(fd, "rb", buffering=0)
    pad._character_file = events
    return events  # type: ignore[return-value]


_ABS_CODES = {"ABS_X": 0x00, "ABS_Y": 0x01, "ABS_Z": 0x02, "ABS_RX": 0x03, "ABS_RY": 0x04, "ABS_RZ": 0x05,
              "ABS_HAT0X": 0x10, "ABS_HAT0Y": 0x11}
_ABSINFO = struct.Struct("6i")  # struct input_absinfo: value, minimum, maximum, fuzz, flat, resolution


def _kernel_ranges(events: BinaryIO, layout: GamepadLayout) -> dict[str, tuple[int, int]]:
    """Axis code -> (min, max) from the kernel (ioctl EVIOCGABS); empty for a file that is no evdev device."""
    if not stat.S_ISCHR(os.fstat(events.fileno()).st_mode):
        return {}
    ranges: dict[str, tuple[int, int]] = {}
    for spec in layout.axes:
        request = (2 << 30) | (_ABSINFO.size << 16) | (ord("E") << 8) | (0x40 + _ABS_CODES[spec.code])
        try:
            info = _ABSINFO.unpack(fcntl.ioctl(events.fileno(), request, bytes(_ABSINFO.size)))
        except OSError:
            continue  # the pad has no such axis
        if info[2] > info[1]:
            ranges[spec.code] = (info[1], info[2])
    return ranges
