"""Device traces: record what a device returned, and replay it later as a device.

A trace is a JSON-lines file, written incrementally and flushed after every line, so a killed process loses
at most the line it was writing:

    line 1   {"format": "teleop-trace", "version": 1, "device": "<device name>"}
    line 2.. {"t": ..., "engaged": ..., "T_world_device": [[4 x 4]] | null, "keypoints": [[21 x 3]] | null,
              "gripper": ..., "axes": {...}, "buttons": {...}, "device_time": ... | null}

Floats are written with Python's shortest round-trip repr (NaN as `NaN`), so a trace reads back bit for bit.
At 20-250 Hz a line is a few hundred bytes (a few kB with keypoints): well within what a disk keeps up with.

`RecordingDevice` wraps any device and records every sample it returns (a trace beside an episode);
`ReplayDevice` plays a trace back at its original timing, as a device a session can run with.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from devices.base import Clock, Device, DeviceSample
from teleop.errors import DeviceError

FORMAT = "teleop-trace"
VERSION = 1
_SHAPES = {"T_world_device": (4, 4), "keypoints": (21, 3)}
_EPS_S = 1e-9  # clock rounding tolerance when comparing replay offsets [s]


class TruncatedTraceWarning(UserWarning):
    """The last line of a trace was cut off (the recording process was killed mid-write); it was skipped."""


@dataclass(frozen=True)
class Trace:
    """A loaded trace.

    Attributes:
        path: The file it was read from.
        device: Name of the device that produced the samples.
        samples: The samples, in recording order, with their original times.
    """

    path: Path
    device: str
    samples: tuple[DeviceSample, ...]

    @property
    def offsets(self) -> np.ndarray:
        """Time of each sample since the first one (N,) [s]."""
        t = np.array([s.t for s in self.samples], dtype=np.float64)
        return t - t[0] if len(t) else t


# ---------------------------------------------------------------------------------------------- writing
class TraceRecorder:
    """Appends device samples to a trace file; thread-safe; each line is flushed as it is written.

    The header (with the device name) is written with the first sample, or on close() if there was none.

    Args:
        path: Trace file to create (an existing file is replaced); parent folders are created.
        device: Name of the device the samples come from; None lets RecordingDevice fill it in.
    """

    def __init__(self, path: str | Path, device: str | None = None) -> None:
        self.path = Path(path)
        self.device = device
        self.count = 0
        self._lock = threading.Lock()
        self._header_written = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file: IO[str] | None = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise DeviceError(f"cannot create the trace file {self.path}: {exc.strerror}; pick a writable "
                              "folder") from exc

    def append(self, sample: DeviceSample) -> None:
        """Write one sample as one line (and the header before the first)."""
        line = json.dumps(sample_to_dict(sample))
        with self._lock:
            file = self._open_file()
            self._write_header(file)
            file.write(line + "\n")
            file.flush()
            self.count += 1

    def close(self) -> None:
        """Finish the file; safe to call twice."""
        with self._lock:
            if self._file is None:
                return
            self._write_header(self._file)
            self._file.close()
            self._file = None

    def __enter__(self) -> TraceRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_file(self) -> IO[str]:
        if self._file is None:
            raise DeviceError(f"the trace {self.path} is closed: create a new TraceRecorder to record more")
        return self._file

    def _write_header(self, file: IO[str]) -> None:
        if not self._header_written:
            header = {"format": FORMAT, "version": VERSION, "device": self.device or "unknown"}
            file.write(json.dumps(header) + "\n")
            self._header_written = True


def sample_to_dict(sample: DeviceSample) -> dict[str, Any]:
    """A sample as JSON-ready values (arrays as nested lists, None kept)."""
    return {
        "t": float(sample.t),
        "engaged": bool(sample.engaged),
        "T_world_device": _array_to_list(sample.T_world_device),
        "keypoints": _array_to_list(sample.keypoints),
        "gripper": float(sample.gripper),
        "axes": {str(k): float(v) for k, v in sample.axes.items()},
        "buttons": {str(k): bool(v) for k, v in sample.buttons.items()},
        "device_time": None if sample.device_time is None else float(sample.device_time),
    }


def sample_from_dict(record: dict[str, Any]) -> DeviceSample:
    """The inverse of sample_to_dict. Raises ValueError, KeyError or TypeError on a malformed record."""
    device_time = record["device_time"]
    return DeviceSample(
        t=_finite(record["t"], "t"),
        engaged=_bool(record["engaged"], "engaged"),
        T_world_device=_list_to_array(record["T_world_device"], "T_world_device"),
        keypoints=_list_to_array(record["keypoints"], "keypoints"),
        gripper=float(record["gripper"]),
        axes={str(k): float(v) for k, v in dict(record["axes"]).items()},
        buttons={str(k): _bool(v, f"button {k}") for k, v in dict(record["buttons"]).items()},
        device_time=None if device_time is None else float(device_time),
    )


def _array_to_list(value: np.ndarray | None) -> list | None:
    return None if value is None else np.asarray(value, dtype=np.float64).tolist()


def _list_to_array(value: list | None, name: str) -> np.ndarray | None:
    if value is None:
        return None
    array = np.array(value, dtype=np.float64)
    if array.shape != _SHAPES[name]:
        raise ValueError(f"{name} has shape {array.shape}, expected {_SHAPES[name]}")
    return array


def _finite(value: Any, name: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} is {number}, not a finite number")
    return number


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} is {value!r}, not true/false")
    return value


# ---------------------------------------------------------------------------------------------- reading
def read_trace(path: str | Path) -> Trace:
    """Load a trace.

    A cut-off last line (no newline, not valid JSON: the recorder was killed mid-write) is skipped with a
    TruncatedTraceWarning; the rest loads.

    Raises:
        DeviceError: the file is missing, not a trace, or has a malformed line (the message names the file and
            the line) or times that go backwards.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceError(f"cannot read the trace {path}: {exc}; check the path") from exc
    lines = text.split("\n")
    complete = lines[-1] == ""  # the file ends with a newline: no line was cut off
    if complete:
        lines.pop()
    if not lines:
        raise DeviceError(f"{path} is empty: it is not a trace (record one with TraceRecorder)")
    device = _parse_header(path, lines[0])
    samples: list[DeviceSample] = []
    for number, line in enumerate(lines[1:], start=2):
        last_cut = number == len(lines) and not complete
        sample = _parse_sample(path, number, line, last_cut)
        if sample is not None:
            samples.append(sample)
    times = [s.t for s in samples]
    backwards = next((i for i in range(1, len(times)) if times[i] < times[i - 1]), None)
    if backwards is not None:
        raise DeviceError(f"{path}, line {backwards + 2}: sample time {times[backwards]} is earlier than the "
                          f"previous one ({times[backwards - 1]}): the trace is not in recording order")
    return Trace(path, device, tuple(samples))


def _parse_header(path: Path, line: str) -> str:
    try:
        header = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DeviceError(f"{path}, line 1: not a trace header ({exc.msg}): is this a teleop trace?") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DeviceError(f"{path}, line 1: not a teleop trace header (expected format {FORMAT!r})")
    if header.get("version") != VERSION:
        raise DeviceError(f"{path}, line 1: trace version {header.get('version')!r} is not supported (this "
                          f"software reads version {VERSION}): update the software")
    return str(header.get("device", "unknown"))


def _parse_sample(path: Path, number: int, line: str, last_cut: bool) -> DeviceSample | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        if last_cut:
            warnings.warn(TruncatedTraceWarning(
                f"{path}, line {number}: the last line was cut off (recording interrupted); skipped it"),
                stacklevel=3)
            return None
        raise DeviceError(f"{path}, line {number}: not valid JSON ({exc.msg}): the trace is corrupt") from exc
    try:
        if not isinstance(record, dict):
            raise TypeError(f"expected an object, got {type(record).__name__}")
        return sample_from_dict(record)
    except KeyError as exc:
        raise DeviceError(f"{path}, line {number}: the sample has no field {exc}: the trace is corrupt") from exc
    except (TypeError, ValueError) as exc:
        raise DeviceError(f"{path}, line {number}: malformed sample ({exc}): the trace is corrupt") from exc


# ------------------------------------------------------------------------------------------------ devices
class RecordingDevice(Device):
    """Wraps a device and records every sample its read() returns into a TraceRecorder.

    The wrapper has the inner device's name and lifecycle; the caller owns (and closes) the recorder. If the
    recorder was made without a device name, the inner device's name is used.
    """

    def __init__(self, inner: Device, recorder: TraceRecorder) -> None:
        super().__init__(inner.clock)
        self.inner = inner
        self.recorder = recorder
        self.name = inner.name
        if recorder.device is None:
            recorder.device = inner.name

    def _connect(self) -> None:
        self.inner.connect()

    def _disconnect(self) -> None:
        self.inner.disconnect()

    def _read(self) -> DeviceSample:
        sample = self.inner.read()
        self.recorder.append(sample)
        return sample


class ReplayDevice(Device):
    """A recorded trace played back as a device.

    Realtime: the clock starts at the first read() after connect(); sample i becomes available once
    `clock() - t_start >= trace_t[i] - trace_t[0]`, and read() returns the newest available one. Otherwise
    each read() returns the next sample. Returned samples are re-stamped: `t` is the current clock time and
    `device_time` the time the sample was originally recorded. After the last sample (which lasts one median
    sample interval), the trace starts over if `loop`, else read() returns the last sample with
    engaged False (the session holds the robot) and `finished` is True.

    Args:
        path: Trace file (see the module docstring).
        realtime: Replay at the recorded timing (True) or one sample per read (False).
        loop: Start over at the end instead of disengaging.
        clock: Monotonic clock [s].
        sleep: Sleeps the given seconds; used by samples() to pace a replay without a session.
    """

    name = "replay"

    def __init__(self, path: str | Path, realtime: bool = True, loop: bool = False,
                 clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(clock)
        self.path = Path(path)
        self.realtime = realtime
        self.loop = loop
        self.sleep = sleep
        self.trace: Trace | None = None
        self._samples: tuple[DeviceSample, ...] = ()
        self._offsets: list[float] = []
        self._duration = 0.0
        self._t_start: float | None = None
        self._next = 0
        self.finished = False

    def _connect(self) -> None:
        trace = read_trace(self.path)
        if not trace.samples:
            raise DeviceError(f"the trace {self.path} has no samples: record a longer trace")
        self.trace = trace
        self._samples = trace.samples
        self._offsets = trace.offsets.tolist()
        gaps = np.diff(self._offsets)
        self._duration = self._offsets[-1] + (float(np.median(gaps)) if len(gaps) else 0.0)
        self._t_start = None
        self._next = 0
        self.finished = False

    def _read(self) -> DeviceSample:
        now = self.clock()
        if self._t_start is None:
            self._t_start = now
        index = self._realtime_index(now - self._t_start) if self.realtime else self._stepped_index()
        original = self._samples[index if index is not None else -1]
        restamped = dataclasses.replace(original, t=now, device_time=original.t)
        return restamped if index is not None else dataclasses.replace(restamped, engaged=False)

    def samples(self) -> Iterator[DeviceSample]:
        """Every sample once, in order, each yielded at its recorded offset from the first (paced with
        `sleep`), re-stamped as read() does. Connects first if needed."""
        if not self.connected:
            self.connect()
        t_start = self.clock()
        for offset, original in zip(self._offsets, self._samples, strict=True):
            wait = t_start + offset - self.clock()
            if wait > 0:
                self.sleep(wait)
            yield dataclasses.replace(original, t=self.clock(), device_time=original.t)

    def _realtime_index(self, elapsed: float) -> int | None:
        """Index of the newest sample available after `elapsed` [s]; None once the trace has ended."""
        if self.loop and self._duration > 0:
            elapsed = math.fmod(elapsed, self._duration)
        elif elapsed >= self._duration - _EPS_S and elapsed > self._offsets[-1] + _EPS_S:
            self.finished = True
            return None
        return max(0, bisect.bisect_right(self._offsets, elapsed + _EPS_S) - 1)

    def _stepped_index(self) -> int | None:
        if self._next >= len(self._samples):
            if not self.loop:
                self.finished = True
                return None
            self._next = 0
        index, self._next = self._next, self._next + 1
        return index
