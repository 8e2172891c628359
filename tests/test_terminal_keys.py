"""TerminalKeys on a pseudo-terminal: bytes in, held / released keys on a KeyboardDevice out."""

from __future__ import annotations

import io
import os
import pty
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from devices.keyboard import KEY_MAP, KEYS, KeyboardDevice
from devices.terminal_keys import TerminalKeys, key_map_text, key_names
from teleop.cli import main
from teleop.errors import TeleopError


@pytest.fixture
def terminal() -> Iterator[tuple[int, IO[Any]]]:
    """(fd to type into, the terminal's stream)."""
    master, slave = pty.openpty()
    stream = open(slave, "rb", buffering=0)
    yield master, stream
    stream.close()
    os.close(master)


@pytest.fixture
def device() -> Iterator[KeyboardDevice]:
    keyboard = KeyboardDevice()
    keyboard.connect()
    yield keyboard
    keyboard.disconnect()


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def held(device: KeyboardDevice, axis: str = "forward") -> float:
    """The axis as held now: the second of two reads (the first may still carry a tap since the last read)."""
    device.read()
    return device.read().axes[axis]


def test_bytes_become_key_names_and_escape_sequences_are_dropped() -> None:
    assert key_names(b"wW =-+1") == ["w", "w", "space", "equal", "minus", "equal", "1"]
    assert key_names(b"\x1b[A\x1b[1;5Ca\x1bOPx\x7f\xc3\xa9.") == ["a"]  # arrows, F1, unknown bytes
    assert set(key_names(bytes(range(256)))) <= set(KEYS)
    assert all(key.split(" / ")[0] in key_map_text() for key in KEY_MAP)


def test_repeats_hold_a_key_and_silence_releases_it_after_hold_s(terminal: tuple[int, IO[Any]],
                                                                 device: KeyboardDevice, clock: Any) -> None:
    master, stream = terminal
    with TerminalKeys(device, stream, hold_s=0.12, clock=clock) as keys:
        os.write(master, b"w")
        wait_for(lambda: keys.bytes_read == 1)
        clock.sleep(0.1)  # within hold_s: still held
        time.sleep(0.05)  # the reader looks at the holds every 10 ms
        assert held(device) == 1.0
        os.write(master, b"w")  # auto-repeat
        wait_for(lambda: keys.bytes_read == 2)
        clock.sleep(0.1)  # 0.2 s after the first byte, 0.1 s after the repeat
        time.sleep(0.05)
        assert held(device) == 1.0
        clock.sleep(0.05)  # 0.15 s of silence
        wait_for(lambda: held(device) == 0.0)


def test_real_auto_repeat_holds_then_releases_within_about_hold_s(terminal: tuple[int, IO[Any]],
                                                                  device: KeyboardDevice) -> None:
    master, stream = terminal
    with TerminalKeys(device, stream, hold_s=0.25):
        for _ in range(10):  # a terminal's repeat: every 30 ms
            os.write(master, b"a")
            time.sleep(0.03)
            assert held(device, "left") == 1.0
        silent_since = time.monotonic()
        wait_for(lambda: held(device, "left") == 0.0)
        assert time.monotonic() - silent_since < 2.0  # ~0.25 s; generous for a loaded machine


def test_each_space_byte_toggles_engagement_once(terminal: tuple[int, IO[Any]], device: KeyboardDevice) -> None:
    master, stream = terminal
    with TerminalKeys(device, stream) as keys:
        expected = False
        for count in range(1, 4):
            os.write(master, b" ")
            wait_for(lambda count=count: keys.bytes_read == count)  # type: ignore[misc]
            expected = not expected
            assert device.read().engaged is expected
        os.write(master, b"  ")  # two in one read: two toggles
        wait_for(lambda: keys.bytes_read == 5)
        assert device.read().engaged is expected


def test_unknown_bytes_move_nothing(terminal: tuple[int, IO[Any]], device: KeyboardDevice) -> None:
    master, stream = terminal
    with TerminalKeys(device, stream) as keys:
        os.write(master, b"xzp.,\x1b[A\x1b[D")
        wait_for(lambda: keys.bytes_read == 11)
        sample = device.read()
        assert not any(sample.buttons.values()) and not any(sample.axes.values()) and not sample.engaged


def test_the_terminal_mode_is_restored_after_stop_and_after_an_exception(terminal: tuple[int, IO[Any]],
                                                                         device: KeyboardDevice) -> None:
    master, stream = terminal
    before = termios.tcgetattr(stream.fileno())
    keys = TerminalKeys(device, stream)
    keys.start()
    assert not termios.tcgetattr(stream.fileno())[3] & termios.ICANON  # cbreak while running
    os.write(master, b"w")
    wait_for(lambda: keys.bytes_read == 1)
    keys.stop()
    assert termios.tcgetattr(stream.fileno()) == before
    assert held(device) == 0.0  # stop() releases every key
    keys.stop()  # harmless twice
    with pytest.raises(RuntimeError), TerminalKeys(device, stream):
        raise RuntimeError("the recording failed")
    assert termios.tcgetattr(stream.fileno()) == before


def test_not_a_terminal_is_a_clear_error(tmp_path: Path, device: KeyboardDevice) -> None:
    for stream in (io.StringIO(), open(os.devnull, "rb")):
        with pytest.raises(TeleopError, match="needs a terminal .*teleop gui"):
            TerminalKeys(device, stream).start()
        stream.close()


def test_record_with_the_keyboard_refuses_input_that_is_no_terminal(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    assert main(["record", "--device", "keyboard", "--out", str(tmp_path)]) == 2  # pytest's stdin is no terminal
    assert "needs a terminal" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
