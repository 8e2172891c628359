"""Key presses from a terminal, fed to a KeyboardDevice (the keyboard front end of `teleop record`).

start() puts the terminal in cbreak mode (keys arrive one byte at a time, unechoed; Ctrl-C still interrupts)
and starts a reader thread; stop() ends it and restores the terminal, as does interpreter exit.

A terminal sends bytes, never key releases. A key counts as held while its auto-repeat keeps arriving and is
released once no repeat came for `hold_s` (longer than the repeat interval, ~30 ms, shorter than the initial
repeat delay, ~250-600 ms, so a tap lasts about hold_s). Space (engage) is a toggle: each space byte toggles
once, since a terminal cannot tell a held space from taps. Escape sequences (arrow and function keys) are
dropped, so that the letters in them move nothing.
"""

from __future__ import annotations

import atexit
import os
import select
import sys
import termios
import threading
import time
import tty
from typing import IO, Any

from devices.base import Clock
from devices.keyboard import ENGAGE_KEY, FASTER_KEY, KEY_MAP, KEYS, SLOWER_KEY, KeyboardDevice
from teleop.errors import TeleopError

_ESC = 0x1B
_NAMED = {ord(" "): ENGAGE_KEY, ord("="): FASTER_KEY, ord("+"): FASTER_KEY, ord("-"): SLOWER_KEY}
_TOGGLES = frozenset({ENGAGE_KEY})


def key_map_text() -> str:
    """KEY_MAP as lines for a terminal: key, then what it does."""
    width = max(len(key) for key in KEY_MAP)
    return "\n".join(f"  {key:<{width}}  {action}" for key, action in KEY_MAP.items())


def key_names(data: bytes) -> list[str]:
    """KeyboardDevice key names (see KEYS) of the bytes a terminal sent, in order; others are dropped.

    An escape sequence (ESC, then "[" or "O", parameters, a final letter) is dropped whole.
    """
    names: list[str] = []
    i = 0
    while i < len(data):
        if data[i] == _ESC:
            i = _after_escape(data, i)
            continue
        name = _NAMED.get(data[i], chr(data[i]).lower() if data[i] < 0x80 else "")
        if name in KEYS:
            names.append(name)
        i += 1
    return names


def _after_escape(data: bytes, i: int) -> int:
    """Index just past the escape sequence starting at data[i] (ESC)."""
    i += 1
    if i < len(data) and data[i] in b"[O":
        i += 1
        while i < len(data) and 0x20 <= data[i] <= 0x3F:  # parameter and intermediate bytes
            i += 1
    return min(i + 1, len(data))  # the final byte


def terminal_fd(stream: IO[Any]) -> int:
    """The file descriptor of `stream` if it is a terminal.

    Raises:
        TeleopError: `stream` is not a terminal (a pipe, a file, captured input).
    """
    try:
        fd = stream.fileno()
        if os.isatty(fd):
            return fd
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both OSError and ValueError
        pass
    raise TeleopError("the keyboard needs a terminal (or use teleop gui): run teleop record in a terminal, "
                      "with its input not redirected")


class TerminalKeys:
    """Reads a terminal on a thread and presses / releases the keys of a KeyboardDevice (module docstring).

    Args:
        device: Receives press() and release().
        stream: The terminal to read (default sys.stdin at start()).
        hold_s: A key is released when no repeat of it arrived for this long [s].
        clock: Monotonic clock [s] timing the holds.
        poll_s: Longest wait of the reader between looks at the holds [s].
    """

    def __init__(self, device: KeyboardDevice, stream: IO[Any] | None = None, hold_s: float = 0.12,
                 clock: Clock = time.monotonic, poll_s: float = 0.01) -> None:
        self.device = device
        self.stream = stream
        self.hold_s = hold_s
        self.clock = clock
        self.poll_s = poll_s
        self.bytes_read = 0  # since start()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._saved: list[Any] | None = None
        self._last_seen: dict[str, float] = {}  # held key -> time its latest byte arrived (reader thread only)

    def start(self) -> None:
        """Put the terminal in cbreak mode and start reading it.

        Raises:
            TeleopError: the stream is not a terminal.
        """
        if self._thread is not None:
            return
        fd = terminal_fd(self.stream if self.stream is not None else sys.stdin)
        self._saved = termios.tcgetattr(fd)  # restored by stop() (setcbreak returns it only from Python 3.12)
        tty.setcbreak(fd)
        self._fd = fd
        atexit.register(self._restore)
        self._stop.clear()
        self.bytes_read = 0
        self._thread = threading.Thread(target=self._run, args=(fd,), name="terminal-keys", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading, release every key and restore the terminal; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self._restore()
        atexit.unregister(self._restore)

    def __enter__(self) -> TerminalKeys:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _restore(self) -> None:
        if self._fd is not None and self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        self._fd, self._saved = None, None

    def _run(self, fd: int) -> None:
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([fd], [], [], self.poll_s)
                if readable:
                    data = os.read(fd, 256)
                    if not data:  # end of input: the terminal went away
                        return
                    self._pressed(data)
                self._release_expired()
        except OSError:  # the terminal closed under us
            return
        finally:
            for key in self._last_seen:
                self.device.release(key)
            self._last_seen.clear()

    def _pressed(self, data: bytes) -> None:
        now = self.clock()
        self.bytes_read += len(data)
        for key in key_names(data):
            if key in _TOGGLES:
                self.device.release(key)  # every byte is a fresh press, so it toggles
            self.device.press(key)
            self._last_seen[key] = now

    def _release_expired(self) -> None:
        now = self.clock()
        for key, seen in list(self._last_seen.items()):
            if now - seen > self.hold_s:
                self.device.release(key)
                del self._last_seen[key]
