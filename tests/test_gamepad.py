"""The gamepad device, fed real evdev `struct input_event` bytes that the `inputs` package parses.

There is no /dev/uinput here, so no virtual pad: each test pad is an `inputs.GamePad` whose character device
is a FIFO (or a file) the test writes packed input_event records into. Only the sysfs name lookup is
replaced (a FIFO has no /sys/class/input entry); reading and parsing are inputs' own.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from devices.gamepad import Gamepad, layout_for_name
from kinematics.velocity_mapping import VelocityMappingConfig
from teleop.errors import DeviceError, UnknownNameError

inputs = pytest.importorskip("inputs")

EV_SYN, EV_KEY, EV_ABS = 0x00, 0x01, 0x03
SYN_REPORT, SYN_DROPPED = 0, 3
ABS = {"X": 0x00, "Y": 0x01, "Z": 0x02, "RX": 0x03, "RY": 0x04, "RZ": 0x05, "HAT0X": 0x10, "HAT0Y": 0x11}
BTN = {"SOUTH": 0x130, "EAST": 0x131, "NORTH": 0x133, "WEST": 0x134, "TL": 0x136, "TR": 0x137, "TL2": 0x138,
       "TR2": 0x139, "SELECT": 0x13A, "START": 0x13B, "MODE": 0x13C, "THUMBL": 0x13D, "THUMBR": 0x13E}
DS4 = "Sony Interactive Entertainment Wireless Controller"
DUALSENSE = "Sony Interactive Entertainment DualSense Wireless Controller"
EVENT = struct.Struct("llHHi")  # struct input_event on x86_64: timeval (2 longs), type, code, value
assert EVENT.size == 24


def event(ev_type: int, code: int, value: int, t: float = 1_700_000_000.25) -> bytes:
    return EVENT.pack(int(t), round((t % 1) * 1e6), ev_type, code, value)


def report(*changes: tuple[int, int, int], t: float = 1_700_000_000.25) -> bytes:
    """A kernel report: the changed values, then SYN_REPORT."""
    return b"".join(event(*c, t=t) for c in changes) + event(EV_SYN, SYN_REPORT, 0, t=t)


def test_pad(path: str, name: str):  # noqa: ANN201
    """An inputs.GamePad reading `path` instead of /dev/input/eventN."""

    class FilePad(inputs.GamePad):  # type: ignore[name-defined,misc]
        def _set_name(self) -> None:  # the kernel's name is in sysfs, which a FIFO does not have
            self.name = name

    return FilePad(inputs.devices, "/dev/input/by-id/usb-Test_Pad-event-joystick", char_path_override=path)


test_pad.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


class Plug:
    """Pads to hand out, one per open; none left: `inputs` finds no pad."""

    def __init__(self, tmp_path, name: str = DS4) -> None:  # noqa: ANN001
        self.tmp_path, self.name, self.opened = tmp_path, name, 0
        self.ready: list[str] = []
        self.lock = threading.Lock()

    def fifo(self) -> int:
        """Plug in a new pad; returns the fd to write its events to (close it to unplug)."""
        path = str(self.tmp_path / f"event{len(os.listdir(self.tmp_path))}")
        os.mkfifo(path)
        writer = os.open(path, os.O_RDWR)  # never blocks, unlike O_WRONLY before a reader exists
        with self.lock:
            self.ready.append(path)
        return writer

    def __call__(self):  # noqa: ANN204
        with self.lock:
            if not self.ready:
                raise inputs.UnpluggedError("No gamepad found.")
            self.opened += 1
            return test_pad(self.ready.pop(0), self.name)


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


def send(device: Gamepad, fd: int, data: bytes) -> None:
    """Write events and wait until the reader has parsed all of them."""
    target = device.events + len(data) // EVENT.size
    os.write(fd, data)
    wait_for(lambda: device.events >= target)


@pytest.fixture
def plug(tmp_path) -> Plug:  # noqa: ANN001
    return Plug(tmp_path)


def _connected(plug: Plug, **kwargs) -> tuple[Gamepad, int]:  # noqa: ANN003
    fd = plug.fifo()
    device = Gamepad(open_pad=plug, reopen_interval_s=0.02, **kwargs)
    device.connect()
    return device, fd


def test_dualshock4_sticks_triggers_hat_and_buttons_map_to_the_velocity_mapping_names(plug) -> None:  # noqa: ANN001
    device, fd = _connected(plug)
    try:
        assert device.layout.name == "dualshock4" and device.pad_name == DS4
        assert device.status().connected and device.status().reason == ""
        send(device, fd, report((EV_ABS, ABS["X"], 255), (EV_ABS, ABS["Y"], 0), (EV_ABS, ABS["RX"], 128),
                                (EV_ABS, ABS["RY"], 192), (EV_ABS, ABS["Z"], 255), (EV_ABS, ABS["RZ"], 51),
                                (EV_ABS, ABS["HAT0X"], -1), (EV_ABS, ABS["HAT0Y"], -1),
                                (EV_KEY, BTN["SOUTH"], 1), (EV_KEY, BTN["NORTH"], 1), (EV_KEY, BTN["TR"], 1),
                                (EV_KEY, BTN["SELECT"], 1), (EV_KEY, BTN["MODE"], 1), t=1_700_000_123.5))
        sample = device.read()
        assert sample.engaged  # deadman "always"
        assert sample.axes["left_x"] == 1.0 and sample.axes["left_y"] == 1.0  # right, pushed forward
        assert sample.axes["right_x"] == 0.0 and sample.axes["right_y"] == pytest.approx(-64 / 127)  # pulled back
        assert sample.axes["l2"] == 1.0 and sample.axes["r2"] == pytest.approx(0.2) and sample.gripper == 0.2
        assert sample.axes["dpad_x"] == -1.0 and sample.axes["dpad_y"] == 1.0  # left, up
        pressed = {name for name, down in sample.buttons.items() if down}
        assert pressed == {"cross", "triangle", "r1", "share", "ps"}
        assert sample.device_time == pytest.approx(1_700_000_123.5)
        assert device.status().last_sample_age_s is not None
        send(device, fd, report((EV_ABS, ABS["X"], 0), (EV_ABS, ABS["Y"], 255), (EV_KEY, BTN["WEST"], 1),
                                (EV_KEY, BTN["EAST"], 1), (EV_KEY, BTN["SOUTH"], 0)))
        sample = device.read()
        assert sample.axes["left_x"] == -1.0 and sample.axes["left_y"] == -1.0
        assert sample.buttons["square"] and sample.buttons["circle"] and not sample.buttons["cross"]
    finally:
        device.disconnect()


def test_dualsense_is_found_by_name_and_reports_create_as_share_too(tmp_path) -> None:  # noqa: ANN001
    plug = Plug(tmp_path, DUALSENSE)
    device, fd = _connected(plug)
    try:
        assert device.layout.name == "dualsense"
        send(device, fd, report((EV_ABS, ABS["RX"], 0), (EV_ABS, ABS["RY"], 0), (EV_KEY, BTN["SELECT"], 1),
                                (EV_KEY, BTN["START"], 1), (EV_KEY, BTN["THUMBL"], 1), (EV_KEY, BTN["TL2"], 1)))
        sample = device.read()
        assert sample.axes["right_x"] == -1.0 and sample.axes["right_y"] == 1.0
        pressed = {name for name, down in sample.buttons.items() if down}
        assert pressed == {"create", "share", "options", "l3", "l2"}
    finally:
        device.disconnect()


def test_layouts_by_name_and_the_generic_ranges() -> None:
    assert layout_for_name("Wireless Controller").name == "dualshock4"  # a DS4 over Bluetooth
    assert layout_for_name("DualSense Wireless Controller").name == "dualsense"
    assert layout_for_name("Microsoft X-Box 360 pad").name == "generic"
    x = next(a for a in layout_for_name("Microsoft X-Box 360 pad").axes if a.name == "left_y")
    assert x.normalise(-32768, x.lo, x.hi) == 1.0 and x.normalise(32767, x.lo, x.hi) == -1.0
    assert x.normalise(0, x.lo, x.hi) == 0.0
    with pytest.raises(UnknownNameError, match="dualshock4"):
        Gamepad(layout="xbox")
    with pytest.raises(UnknownNameError, match="cross"):
        Gamepad(deadman="grip")


def test_no_deadzone_here_and_a_report_counts_only_once_complete(plug) -> None:  # noqa: ANN001
    device, fd = _connected(plug)
    try:
        send(device, fd, report((EV_ABS, ABS["X"], 131), (EV_ABS, ABS["Y"], 126)))
        sample = device.read()
        assert sample.axes["left_x"] == pytest.approx(3 / 127) and sample.axes["left_y"] == pytest.approx(2 / 128)
        send(device, fd, event(EV_ABS, ABS["X"], 255))  # no SYN_REPORT yet: half a report
        assert device.read().axes["left_x"] == pytest.approx(3 / 127)
        send(device, fd, event(EV_SYN, SYN_REPORT, 0))
        assert device.read().axes["left_x"] == 1.0
        send(device, fd, event(EV_ABS, ABS["X"], 0) + event(EV_SYN, SYN_DROPPED, 0) + report((EV_ABS, ABS["Y"], 0)))
        assert device.read().axes["left_x"] == 1.0 and device.read().axes["left_y"] == pytest.approx(2 / 128)
    finally:
        device.disconnect()


def test_a_deadman_button_engages_only_while_held(plug) -> None:  # noqa: ANN001
    device, fd = _connected(plug, deadman="l1")
    try:
        assert not device.read().engaged
        send(device, fd, report((EV_KEY, BTN["TL"], 1)))
        assert device.read().engaged
        send(device, fd, report((EV_KEY, BTN["TL"], 0)))
        assert not device.read().engaged
    finally:
        device.disconnect()


def test_samples_drive_the_dualshock_velocity_mapping(plug) -> None:  # noqa: ANN001
    device, fd = _connected(plug)
    mapping = VelocityMappingConfig.dualshock().build()
    T = np.eye(4)
    T[:3, 3] = (0.4, 0.0, 0.4)
    mapping.reset(T)
    try:
        send(device, fd, report((EV_ABS, ABS["Y"], 0), (EV_ABS, ABS["X"], 128)))  # left stick forward
        mapping.update(device.read(), T)
        time.sleep(0.05)
        target = mapping.update(device.read(), T)
        assert target[0, 3] > 0.4 and abs(target[1, 3]) < 1e-12  # forward is +x in the base frame
    finally:
        device.disconnect()


def test_unplug_by_end_of_stream_then_replug_resumes(plug) -> None:  # noqa: ANN001
    device, fd = _connected(plug)
    try:
        send(device, fd, report((EV_ABS, ABS["X"], 255)))
        os.close(fd)  # the pad goes away: the reader sees the end of the stream
        wait_for(lambda: not device.pad_connected)
        sample = device.read()
        assert not sample.engaged and sample.axes["left_x"] == 0.0
        status = device.status()
        assert not status.connected and status.reason.startswith("unplugged: the event stream ended")
        time.sleep(0.1)  # several reopen attempts find nothing, without crashing
        assert device.connected and not device.pad_connected and "retrying" in device.status().reason
        fd = plug.fifo()  # plugged back in
        wait_for(lambda: device.pad_connected)
        assert device.reconnects == 1 and device.status().connected and device.status().reason == ""
        send(device, fd, report((EV_ABS, ABS["Y"], 0)))
        sample = device.read()
        assert sample.engaged and sample.axes["left_y"] == 1.0
    finally:
        device.disconnect()
        os.close(fd)


def test_a_read_error_marks_the_pad_unplugged(plug) -> None:  # noqa: ANN001
    if not os.path.exists("/proc/self/mem"):
        pytest.skip("needs /proc/self/mem, whose first bytes fail to read")
    plug.ready.append("/proc/self/mem")  # every read fails with an OSError (EIO), as a removed pad's (ENODEV)
    device = Gamepad(open_pad=plug, reopen_interval_s=0.02)
    device.connect()
    try:
        wait_for(lambda: not device.pad_connected)
        assert device.status().reason.startswith("unplugged: [Errno") and not device.read().engaged
    finally:
        device.disconnect()


def test_connect_without_a_pad_says_what_to_do(plug) -> None:  # noqa: ANN001
    with pytest.raises(DeviceError, match="no gamepad found.*plug in a DualShock 4 or DualSense"):
        Gamepad(open_pad=plug).connect()


def test_disconnect_stops_the_reader_within_a_second_whether_reading_or_waiting(plug) -> None:  # noqa: ANN001
    device, fd = _connected(plug)
    thread = device._thread
    assert thread is not None and thread.is_alive()
    start = time.monotonic()
    device.disconnect()  # the reader is blocked waiting for events on an idle pad
    assert not thread.is_alive() and time.monotonic() - start < 1.0
    with pytest.raises(DeviceError, match="connect"):
        device.read()
    assert not device.status().connected and "call .connect()" in device.status().reason
    os.close(fd)

    fd = plug.fifo()
    device.connect()
    os.close(fd)
    wait_for(lambda: not device.pad_connected)  # now the reader waits to reopen a pad
    thread = device._thread
    start = time.monotonic()
    device.disconnect()
    assert thread is not None and not thread.is_alive() and time.monotonic() - start < 1.0


def test_read_never_waits_for_the_reader(plug) -> None:  # noqa: ANN001
    device, fd = _connected(plug)
    try:
        send(device, fd, report((EV_KEY, BTN["SOUTH"], 1)))
        events = device.events
        reads = 0
        for _ in range(20_000):  # the reader is blocked on an idle pad the whole time
            assert device.read().buttons["cross"]
            reads += 1
        assert reads == 20_000 and device.events == events
    finally:
        device.disconnect()
        os.close(fd)
