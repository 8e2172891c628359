"""Putting camera frames on the control grid: each step takes the newest frame captured at or before it.

No frame is ever taken from the future and no timestamp is synthesised: a step stores the frame it used, with
that frame's own capture time and seq. When a camera has nothing newer, the step reuses the last frame (a
duplicate, and stale once older than `max_age_s`); frames a source produced that no step used are drops,
counted from the gaps in the seqs the steps used.

`align` is the rule as a pure function over whole arrays; `FrameSynchronizer` applies the same rule tick by
tick to live sources, and `FrameUsage` does the counting for both (and for frames rendered inside the tick).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import NamedTuple, Protocol

import numpy as np

from recorder.cameras import CameraStatus
from recorder.step import CameraFrame
from teleop.errors import DeviceError, TeleopError

Clock = Callable[[], float]


class Alignment(NamedTuple):
    """Which frame each step used.

    Attributes:
        frame_index: (N,) int64 index into the frame arrays, -1 where no frame was captured at or before the step.
        age_s: (N,) float64 step time minus the used frame's capture time [s], NaN where frame_index is -1.
        drops: Frames that no step used, between the first and the last used frame (seq gaps).
        duplicates: Steps that used the same frame as the step before.
        stale: Steps whose frame was older than max_age_s.
    """

    frame_index: np.ndarray
    age_s: np.ndarray
    drops: int
    duplicates: int
    stale: int


def align(step_times: np.ndarray, frame_times: np.ndarray, frame_seqs: np.ndarray, max_age_s: float) -> Alignment:
    """For each step, the newest frame (highest seq) captured at or before the step time.

    Args:
        step_times: (N,) increasing step times [s].
        frame_times: (M,) capture times [s], in seq order (they may jitter out of order).
        frame_seqs: (M,) increasing frame numbers of the source (gaps are frames not given here).
        max_age_s: Age above which a used frame counts as stale [s].
    """
    step_times, frame_times = np.asarray(step_times, np.float64), np.asarray(frame_times, np.float64)
    frame_seqs = np.asarray(frame_seqs, np.int64)
    if frame_times.shape != frame_seqs.shape or frame_times.ndim != 1 or step_times.ndim != 1:
        raise TeleopError(f"align needs (N,) step times and (M,) frame times and seqs, got shapes "
                          f"{step_times.shape}, {frame_times.shape}, {frame_seqs.shape}")
    if np.any(np.diff(frame_seqs) <= 0) or np.any(np.diff(step_times) <= 0):
        raise TeleopError("align needs strictly increasing frame seqs and step times: sort them first")
    # The newest frame at or before t is the last j with frame_times[j] <= t; with a suffix minimum that is a
    # search in a sorted array, and it never goes back in seq as t grows.
    suffix_min = np.minimum.accumulate(frame_times[::-1])[::-1]
    index = np.searchsorted(suffix_min, step_times, side="right").astype(np.int64) - 1
    found = index >= 0
    age = np.full(step_times.shape, np.nan)
    age[found] = step_times[found] - frame_times[index[found]]
    used = index[found]
    duplicates = int(np.sum(used[1:] == used[:-1]))
    distinct = np.unique(used)
    drops = int(np.sum(np.diff(frame_seqs[distinct]) - 1)) if distinct.size > 1 else 0
    stale = int(np.sum(age[found] > max_age_s))
    return Alignment(index, age, drops, duplicates, stale)


@dataclass
class SyncStats:
    """What the steps of an episode used from one camera.

    Attributes:
        frames: Frames the source produced from the first used one to the last used one (= used + drops).
        used: Distinct frames the steps used.
        drops: Frames produced in that span that no step used.
        duplicates: Steps that reused the frame of the step before.
        stale: Steps whose frame was older than the synchronizer's max age.
        missing: Steps without a frame from this camera (none had arrived yet).
        max_age_ms: Oldest frame any step used [ms]; None where the frame is made inside the tick.
        state: The source's state at the end ("running", "stalled", "finished", "dead", ...; "sim").
        errors: Errors the source counted.
        last_error: Its last error message.
        timestamps: What the frame times are: "device" (the camera's or driver's capture time), "receive" (when
            the frame reached the host) or "tick" (rendered inside the tick, at its time).
    """

    frames: int = 0
    used: int = 0
    drops: int = 0
    duplicates: int = 0
    stale: int = 0
    missing: int = 0
    max_age_ms: float | None = None
    state: str = ""
    errors: int = 0
    last_error: str = ""
    timestamps: str = ""

    def as_dict(self) -> dict[str, int | float | str | None]:
        return asdict(self)


class FrameUsage:
    """Counts drops, duplicates and staleness from the frames successive steps used, by their seqs."""

    def __init__(self, max_age_s: float = math.inf) -> None:
        self.max_age_s = max_age_s
        self.stats = SyncStats()
        self.last: CameraFrame | None = None

    def record(self, frame: CameraFrame | None, age_s: float | None = None) -> None:
        """Count the frame one step used (None: the step had none); `age_s` None where age has no meaning."""
        s = self.stats
        if frame is None:
            s.missing += 1
            return
        if self.last is not None and frame.seq == self.last.seq:
            s.duplicates += 1
        else:
            s.drops += max(0, frame.seq - self.last.seq - 1) if self.last is not None else 0
            s.used += 1
        s.frames = s.used + s.drops
        if age_s is not None:
            s.max_age_ms = max(s.max_age_ms or 0.0, age_s * 1e3)
            s.stale += int(age_s > self.max_age_s)
        self.last = frame


class FrameSource(Protocol):
    """What the synchronizer needs of a camera (CameraSource has it)."""

    def frames_since(self, seq: int) -> list[CameraFrame]: ...

    def latest(self) -> CameraFrame | None: ...

    def status(self) -> CameraStatus: ...


class FrameSynchronizer:
    """Each control tick, the newest frame of every camera captured at or before the tick time.

    Frames captured after the tick time wait for a later tick. A camera with nothing new gives its last frame
    again (counted as a duplicate, and stale once older than `max_age_s`); a stalled or dead camera thus keeps
    the episode's layout and shows in stats() instead of stopping the loop.

    Args:
        cameras: Camera name -> started source.
        max_age_s: Age above which a used frame counts as stale [s].
        clock: Monotonic clock [s] (the sources' clock).
        sleep: Sleep function used while waiting for first frames.
    """

    def __init__(self, cameras: Mapping[str, FrameSource], max_age_s: float = 0.1,
                 clock: Clock = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if max_age_s <= 0:
            raise TeleopError(f"max_age_s must be positive, got {max_age_s}")
        self.cameras = dict(cameras)
        self.max_age_s = max_age_s
        self.clock, self.sleep = clock, sleep
        self._usage = {name: FrameUsage(max_age_s) for name in self.cameras}
        self._pending: dict[str, list[CameraFrame]] = {name: [] for name in self.cameras}
        self._pulled = dict.fromkeys(self.cameras, -1)

    def wait_for_first_frames(self, timeout_s: float) -> None:
        """Block until every camera has a frame; raise DeviceError naming those without one after `timeout_s`."""
        deadline = self.clock() + timeout_s
        waiting = [name for name, cam in self.cameras.items() if cam.latest() is None]
        while waiting and self.clock() < deadline:
            self.sleep(0.005)
            waiting = [name for name in waiting if self.cameras[name].latest() is None]
        if waiting:
            states = ", ".join(f"{name!r} ({_describe(self.cameras[name].status())})" for name in waiting)
            raise DeviceError(f"no frame within {timeout_s} s from camera {states}: start() every camera before "
                              "the episode, check its connection, or leave it out")

    def frames_for_tick(self, t: float | None = None) -> dict[str, CameraFrame]:
        """Camera name -> the frame this tick uses; a camera that has never delivered is left out.

        Args:
            t: Tick time [s]; None reads the clock.
        """
        t = self.clock() if t is None else t
        frames: dict[str, CameraFrame] = {}
        for name in self.cameras:
            frame = self._choose(name, t)
            self._usage[name].record(frame, None if frame is None else t - frame.t)
            if frame is not None:
                frames[name] = frame
        return frames

    def _choose(self, name: str, t: float) -> CameraFrame | None:
        pending = self._pending[name]
        new = self.cameras[name].frames_since(self._pulled[name])
        if new:
            pending.extend(new)
            self._pulled[name] = new[-1].seq
        ready = [i for i, frame in enumerate(pending) if frame.t <= t]
        if not ready:
            return self._usage[name].last
        chosen = pending[ready[-1]]
        del pending[: ready[-1] + 1]
        return chosen

    def stats(self) -> dict[str, SyncStats]:
        """Camera name -> counts so far, with the source's state and errors now."""
        out = {}
        for name, usage in self._usage.items():
            status = self.cameras[name].status()
            out[name] = replace(usage.stats, state=status.state, errors=status.errors, last_error=status.last_error,
                                timestamps=status.timestamps)
        return out


def _describe(status: CameraStatus) -> str:
    return f"{status.state}: {status.last_error}" if status.last_error else status.state
