"""Camera sources that capture on their own thread into a small ring buffer, each frame stamped and numbered.

Every source has the same lifecycle: construct (cheap, touches no device, starts no thread) -> start() (opens
the device on the caller's thread, so a missing camera raises there, then starts the capture thread) ->
latest() / frames_since(seq) (never block) -> stop(). Also a context manager.

Each frame carries the monotonic time it was captured [s] and `seq`, the count of frames the source delivered
(0, 1, ...), so a consumer tells a dropped frame (a gap) from a duplicate (the same seq twice). Capture time is
the device's timestamp mapped onto the monotonic clock where the SDK has one, else the time the frame was
received; status().timestamps says which. RealSense stamps frames on the device. OpenCV's V4L2 backend (USB
webcams on Linux) gives the driver's buffer timestamp as CAP_PROP_POS_MSEC, on CLOCK_MONOTONIC (the clock of
time.monotonic()): when a frame waited in the driver's queue, that is when it was captured and the receive
time is late by the wait. Other OpenCV backends, and video files (where CAP_PROP_POS_MSEC is a position in
the file), are stamped on receipt.

A source that stalls (no frame for `stall_periods` frame periods) or dies (its driver raised, the device was
unplugged) is marked in status() and counted; nothing is raised into the caller's loop.

Capture runs in a thread, not a process. Measured on this 2-core machine while other jobs kept it loaded (load
average 3-4): a 100 Hz loop doing 2 ms of numpy work per tick, 12 interleaved rounds of 400 ticks, median over
rounds of the tick-start lateness p99, beside 640x480 @ 30 fps synthetic sources: no camera 3.9 ms; 1 thread
5.3 ms; 2 threads 3.4 ms; 1 process 5.0 ms; 2 processes 5.2 ms (best rounds 2.8, 2.6, 2.6, 1.9, 2.5 ms; in one
quiet round 0.02 ms with 0 and 1 thread). The floor is the machine's other load, and neither threads nor
processes move it measurably. A capture thread holds the GIL ~0.3 ms per 640x480 frame (p50; making the image
and publishing it), under 2 % of the time for two cameras at 30 fps; OpenCV's read, the RealSense SDK's wait and
large numpy copies release the GIL. A process would add a copy of every frame through shared memory and a
second interpreter per camera for no measurable gain.
"""

from __future__ import annotations

import abc
import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np

from recorder.step import CameraFrame, CameraInfo
from teleop.deps import require
from teleop.errors import DeviceError, TeleopError

Clock = Callable[[], float]

RUNNING, STALLED, STOPPED, FINISHED, DEAD = "running", "stalled", "stopped", "finished", "dead"
JOIN_TIMEOUT_S = 5.0  # longest a driver's blocking read may hold up stop()
FPS_WINDOW_S = 1.0  # measured fps is over the frames received in the last second
MAX_DRIVER_LAG_S = 0.5  # a V4L2 buffer stamp further than this before its receipt is not on our clock


@dataclass(frozen=True)
class DepthFrame(CameraFrame):
    """A colour frame with a depth image registered to it (same pixel grid).

    Attributes:
        depth: (H, W) uint16 depth in units of `depth_scale_m` (0 = no reading).
        depth_scale_m: Metres per depth unit.
    """

    depth: np.ndarray | None = None
    depth_scale_m: float = 0.0


@dataclass(frozen=True)
class CameraStatus:
    """Health of a source.

    Attributes:
        state: "stopped", "running", "stalled" (running, but no frame for the stall window), "finished"
            (a video file ended) or "dead" (the driver raised; `last_error` says why).
        frames: Frames delivered since the source was created.
        fps: Delivery rate measured over the last second [Hz].
        errors: Failed reads (timeouts, empty frames), plus the error that killed the source.
        stalls: Times no frame arrived for longer than the stall window (an ongoing stall included).
        lost: Frames the device numbered but never delivered (only where the SDK numbers frames).
        last_error: Message of the last error, "" if none.
        timestamps: "device" (frames carry the device's or driver's capture time, on the monotonic clock) or
            "receive" (the time each frame reached this process).
    """

    state: str
    frames: int
    fps: float
    errors: int
    stalls: int
    lost: int
    last_error: str
    timestamps: str = "receive"

    @property
    def alive(self) -> bool:
        """Whether the capture thread is running (frames may still come)."""
        return self.state in (RUNNING, STALLED)


class Capture(NamedTuple):
    """What a backend's read returns: RGB (H, W, 3) uint8, capture time [s], optional (H, W) uint16 depth."""

    rgb: np.ndarray
    t: float
    depth: np.ndarray | None = None
    depth_scale_m: float = 0.0


class StreamEnded(Exception):
    """Raised by a backend's read when the source has no more frames (the end of a video file)."""


def unknown_pose() -> np.ndarray:
    """(4, 4) NaN: the episode file says 'not calibrated' rather than storing a made-up pose."""
    return np.full((4, 4), np.nan)


class CameraSource(abc.ABC):
    """Base class of camera backends: the capture thread, ring buffer, numbering and health.

    Backends implement `_open` (on the caller's thread; raise a TeleopError that says what to do), `_read`
    (blocking read of one frame on the capture thread: a Capture, None for a failed read already counted with
    `_count_error`, or raise StreamEnded), `_close` and `_info`.

    Args:
        fps: Nominal frame rate [Hz] (backends may replace it with the device's own when opened).
        clock: Monotonic clock [s].
        buffer_size: Frames kept for frames_since().
        stall_periods: No frame for this many nominal periods marks the source stalled.
    """

    label = "camera"
    spec = ""  # NAME=SOURCE it was made from by parse_camera, "" when made otherwise
    timestamps = "receive"  # what frame times are (CameraStatus.timestamps); a backend may set it when opened

    def __init__(self, fps: float, clock: Clock = time.monotonic, buffer_size: int = 4,
                 stall_periods: float = 5.0) -> None:
        if fps <= 0 or buffer_size < 1 or stall_periods <= 0:
            raise TeleopError(f"fps, buffer_size and stall_periods must be positive, got {fps}, {buffer_size}, "
                              f"{stall_periods}")
        self.fps = float(fps)
        self.clock = clock
        self.stall_periods = stall_periods
        self._ring: collections.deque[CameraFrame] = collections.deque(maxlen=buffer_size)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = STOPPED
        self._seq = 0
        self._errors = self._stalls_ended = self._lost = 0
        self._last_error = ""
        self._started_at = 0.0
        self._last_receive: float | None = None
        self._receive_times: collections.deque[float] = collections.deque(maxlen=256)

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the device and start capturing; a no-op while already running."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._open()
        self._stop.clear()
        with self._lock:
            self._state = RUNNING
            self._started_at = self.clock()
            self._last_receive = None
        self._thread = threading.Thread(target=self._run, name=f"capture {self.label}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop capturing and close the device; safe to call twice. A finished or dead state is kept."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():  # the driver is stuck in a read: closing under it could crash the process
                self._count_error(f"the capture thread did not stop within {JOIN_TIMEOUT_S} s")
                return
        self._close()
        with self._lock:
            if self._state in (RUNNING, STALLED):
                self._state = STOPPED

    def __enter__(self) -> CameraSource:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __getstate__(self) -> dict[str, Any]:
        """A camera not yet started can be sent to another process (the desktop app's rig process starts it)."""
        if self._thread is not None:
            raise TeleopError(f"{self.label} is running: only a camera not yet started can move to another process")
        state = self.__dict__.copy()
        for name in ("_lock", "_stop"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # --- consumer side ---------------------------------------------------------------------------------

    def latest(self) -> CameraFrame | None:
        """The newest frame, None before the first; never blocks."""
        with self._lock:
            return self._ring[-1] if self._ring else None

    def frames_since(self, seq: int) -> list[CameraFrame]:
        """Buffered frames numbered after `seq`, oldest first (older ones have left the ring: see the gap)."""
        with self._lock:
            return [frame for frame in self._ring if frame.seq > seq]

    def wait_for_frame(self, timeout_s: float, sleep: Callable[[float], None] = time.sleep) -> CameraFrame | None:
        """Block until a first frame is buffered or `timeout_s` passes on the source's clock."""
        deadline = self.clock() + timeout_s
        while (frame := self.latest()) is None and self.clock() < deadline and self.status().alive:
            sleep(0.002)
        return frame

    def info(self) -> CameraInfo:
        """Image size, intrinsics and pose (NaN where not calibrated)."""
        return self._info()

    def status(self) -> CameraStatus:
        """Health now: state, counts and the measured frame rate."""
        now = self.clock()
        with self._lock:
            since = self._started_at if self._last_receive is None else self._last_receive
            stalled = self._state == RUNNING and now - since > self._stall_s
            recent = [t for t in self._receive_times if t > now - FPS_WINDOW_S]
            fps = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
            return CameraStatus(state=STALLED if stalled else self._state, frames=self._seq, fps=fps,
                                errors=self._errors, stalls=self._stalls_ended + int(stalled), lost=self._lost,
                                last_error=self._last_error, timestamps=self.timestamps)

    @property
    def _stall_s(self) -> float:
        return self.stall_periods / self.fps

    # --- capture thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                capture = self._read()
            except StreamEnded:
                self._set_state(FINISHED)
                return
            except Exception as exc:  # any driver failure ends this source, never the caller's loop
                self._count_error(f"{type(exc).__name__}: {exc}")
                self._set_state(DEAD)
                return
            if capture is not None:
                self._publish(capture)

    def _publish(self, capture: Capture) -> None:
        receive = self.clock()
        with self._lock:
            if self._last_receive is not None and receive - self._last_receive > self._stall_s:
                self._stalls_ended += 1
            if capture.depth is None:
                frame = CameraFrame(capture.rgb, capture.t, self._seq)
            else:
                frame = DepthFrame(capture.rgb, capture.t, self._seq, capture.depth, capture.depth_scale_m)
            self._seq += 1
            self._last_receive = receive
            self._receive_times.append(receive)
            self._ring.append(frame)

    def _set_state(self, state: str) -> None:
        with self._lock:
            self._state = state

    def _count_error(self, message: str) -> None:
        with self._lock:
            self._errors += 1
            self._last_error = message

    def _count_lost(self, frames: int) -> None:
        """Frames the device produced that never reached us (known where the SDK numbers its frames)."""
        with self._lock:
            self._lost += frames

    def _wait(self, seconds: float) -> bool:
        """Sleep on the capture thread; True when stop() was called meanwhile."""
        return self._stop.wait(seconds) if seconds > 0 else self._stop.is_set()

    # --- backend hooks ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def _open(self) -> None: ...

    @abc.abstractmethod
    def _read(self) -> Capture | None: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    @abc.abstractmethod
    def _info(self) -> CameraInfo: ...


# --- synthetic -----------------------------------------------------------------------------------------

COUNTER_BITS = 24


def synthetic_image(k: int, gradient: np.ndarray) -> np.ndarray:
    """Frame `k` of the synthetic stream: the gradient scrolled, a moving white square, `k` as a bar code.

    Args:
        k: Frame number, drawn in the top row as COUNTER_BITS black/white cells (most significant first).
        gradient: (H, 2W, 3) uint8 strip from `synthetic_gradient`.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    height, width = gradient.shape[0], gradient.shape[1] // 2
    offset = (4 * k) % width
    rgb = np.ascontiguousarray(gradient[:, offset:offset + width])
    cell = _cell(width)
    side = max(4, height // 8)
    x = (7 * k) % (width - side)
    y = cell + 1 + (5 * k) % (height - side - cell - 1)
    rgb[y:y + side, x:x + side] = 255
    bits = (k >> np.arange(COUNTER_BITS - 1, -1, -1)) & 1
    rgb[:cell, : COUNTER_BITS * cell] = np.repeat(bits * 255, cell).astype(np.uint8)[None, :, None]
    return rgb


def read_counter(rgb: np.ndarray) -> int:
    """The frame number drawn by `synthetic_image` into (H, W, 3) `rgb`."""
    cell = _cell(rgb.shape[1])
    centres = rgb[cell // 2, cell // 2: COUNTER_BITS * cell: cell].astype(int).mean(axis=-1)
    return int(sum(int(v > 127) << (COUNTER_BITS - 1 - i) for i, v in enumerate(centres)))


def synthetic_gradient(width: int, height: int) -> np.ndarray:
    """(H, 2W, 3) uint8 strip, periodic in x with period W, so any W-wide window is a seamless scroll."""
    x = np.arange(2 * width) % width
    y = np.arange(height)
    strip = np.empty((height, 2 * width, 3), np.uint8)
    strip[..., 0] = (255 * x / width).astype(np.uint8)[None, :]
    strip[..., 1] = (255 * y / height).astype(np.uint8)[:, None]
    strip[..., 2] = 64
    return strip


def _cell(width: int) -> int:
    return max(2, width // (2 * COUNTER_BITS))


class SyntheticCamera(CameraSource):
    """Moving test content at a fixed rate, stamped with the clock when each frame is made.

    Args:
        width, height: Image size [px]; at least 96 x 16, so the bar code fits.
        fps: Frame rate [Hz]; a frame that comes late is not followed by a burst (the schedule skips ahead).
        clock: Monotonic clock [s] for stamping and pacing.
    """

    label = "synthetic camera"
    timestamps = "device"  # stamped when the image is made

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, clock: Clock = time.monotonic,
                 buffer_size: int = 4, stall_periods: float = 5.0) -> None:
        super().__init__(fps, clock, buffer_size, stall_periods)
        if width < 4 * COUNTER_BITS or height < 16:
            raise TeleopError(f"a synthetic camera needs at least {4 * COUNTER_BITS}x16 px, got {width}x{height}")
        self.width, self.height = width, height
        self._gradient = np.empty((0, 0, 3), np.uint8)  # made by start(), not by the constructor
        self._k = 0
        self._due = 0.0

    def _open(self) -> None:
        if self._gradient.size == 0:
            self._gradient = synthetic_gradient(self.width, self.height)
        self._due = self.clock()

    def _read(self) -> Capture | None:
        if self._wait(self._due - self.clock()):
            return None
        now = self.clock()
        if now < self._due:  # an injected clock that has not reached the due time yet
            return None
        rgb = synthetic_image(self._k, self._gradient)
        self._k += 1
        period = 1.0 / self.fps
        self._due = self._due + period if now - self._due < period else now + period
        return Capture(rgb, now)

    def _close(self) -> None:
        pass

    def _info(self) -> CameraInfo:
        return CameraInfo(self.width, self.height, np.full((3, 3), np.nan), unknown_pose(), "world")


# --- OpenCV: webcams and video files --------------------------------------------------------------------


class OpenCVCamera(CameraSource):
    """A USB webcam (by index) or a video file (by path) through OpenCV.

    A webcam opened through the V4L2 backend is stamped with the driver's buffer time (see the module
    docstring) when the clock is time.monotonic and the first frame's stamp is no more than
    `MAX_DRIVER_LAG_S` before its receipt. A later stamp outside that window is counted as an error, and that
    frame's time is its receipt less the previous frame's wait in the driver (kept after the previous frame's
    time). Other webcams and video files are stamped on receipt.

    Args:
        source: Camera index (/dev/video<index> on Linux) or a video file path.
        width, height: Requested image size [px]; None keeps the device's or file's. Frames of another size
            are resized, so every frame has the declared size.
        fps: Requested rate for a webcam; for a file, None plays it at its own rate.
        realtime: Files only: play at the file's rate (True) or as fast as frames decode (False).
        K: Intrinsics (3, 3) from a calibration; None stores NaN (not calibrated).
        T_world_camera: Camera pose (4, 4), OpenCV convention; None stores NaN (not calibrated).
        mount: Link the camera is fixed to.
        max_read_failures: Consecutive failed webcam reads after which the camera counts as dead (unplugged).
    """

    def __init__(self, source: int | str | os.PathLike[str], width: int | None = None, height: int | None = None,
                 fps: float | None = None, realtime: bool = True, clock: Clock = time.monotonic,
                 K: np.ndarray | None = None, T_world_camera: np.ndarray | None = None, mount: str = "world",
                 buffer_size: int = 4, stall_periods: float = 5.0, max_read_failures: int = 30) -> None:
        super().__init__(fps or 30.0, clock, buffer_size, stall_periods)
        self.source = source if isinstance(source, int) else Path(source)
        self.label = f"camera {source}" if isinstance(source, int) else f"video {Path(source).name}"
        self.size = (width, height)
        self.requested_fps = fps
        self.realtime = realtime
        self.K = np.full((3, 3), np.nan) if K is None else np.asarray(K, float)
        self.T_world_camera = unknown_pose() if T_world_camera is None else np.asarray(T_world_camera, float)
        self.mount = mount
        self.max_read_failures = max_read_failures
        self._cv2: Any = None  # the cv2 module, imported by start()
        self._cap: Any = None
        self._failures = 0
        self._due = 0.0
        self._driver_stamps: bool | None = None  # None: not decided until the first frame
        self._lag = 0.0  # the last usable stamp's wait in the driver [s]
        self._last_t = -np.inf

    @property
    def is_file(self) -> bool:
        return not isinstance(self.source, int)

    def _open(self) -> None:
        cv2 = self._cv2 = require("cv2", "cameras", "an OpenCV camera", package="opencv-python-headless")
        if isinstance(self.source, Path):
            if not self.source.is_file():
                raise DeviceError(f"no video file at {self.source}: check the path")
            cap = cv2.VideoCapture(str(self.source))
            if not cap.isOpened():
                raise DeviceError(f"OpenCV cannot decode {self.source}: convert it to mp4 (H.264) or MJPG avi")
        else:
            cap = cv2.VideoCapture(self.source)
            if not cap.isOpened():
                raise DeviceError(
                    f"no camera at index {self.source}: OpenCV could not open it; list the cameras there are with "
                    "`v4l2-ctl --list-devices` (or `ls /dev/video*`), check the cable and that no other program "
                    "holds the camera, or pass a video file path")
            self._request(cap)
        native_fps = cap.get(cv2.CAP_PROP_FPS)
        if self.is_file and self.requested_fps is None and native_fps > 0:
            self.fps = float(native_fps)
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size = (self.size[0] or width, self.size[1] or height)
        self._cap, self._failures, self._due = cap, 0, self.clock()
        self._driver_stamps = False if self.is_file or not self._stamps_on_monotonic_clock(cap) else None
        self.timestamps = "receive"

    def _stamps_on_monotonic_clock(self, cap: Any) -> bool:
        """Whether CAP_PROP_POS_MSEC can be a V4L2 buffer time on our clock (checked again on the first frame)."""
        try:
            backend = cap.getBackendName()
        except Exception:  # noqa: BLE001  (OpenCV raises cv2.error when a backend has no name)
            return False
        return backend == "V4L2" and self.clock is time.monotonic

    def _request(self, cap: Any) -> None:
        cv2, (width, height) = self._cv2, self.size
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if self.requested_fps:
            cap.set(cv2.CAP_PROP_FPS, self.requested_fps)

    def _read(self) -> Capture | None:
        if self.is_file and self.realtime:
            if self._wait(self._due - self.clock()):
                return None
            self._due = max(self._due + 1.0 / self.fps, self.clock())
        ok, bgr = self._cap.read()
        t = self.clock()
        if not ok or bgr is None:
            self._failed_read()
            return None
        self._failures = 0
        return Capture(self._to_rgb(bgr), self._capture_time(t))

    def _capture_time(self, receive: float) -> float:
        """The driver's stamp of the frame just read where it is usable (class docstring), else `receive`."""
        if self._driver_stamps is False:
            return receive
        stamp = float(self._cap.get(self._cv2.CAP_PROP_POS_MSEC)) / 1000.0
        lag = receive - stamp
        usable = 0.0 <= lag <= MAX_DRIVER_LAG_S
        if self._driver_stamps is None:  # the first frame decides whether this driver stamps on our clock
            self._driver_stamps = usable
            self.timestamps = "device" if usable else "receive"
            if not usable:
                return receive
        if usable:
            self._lag = lag
        else:
            self._count_error(f"{self.label}: the driver stamped a frame {lag:.3f} s before it arrived; its "
                              "time is estimated from its receipt")
            stamp = max(receive - self._lag, np.nextafter(self._last_t, np.inf))
        self._last_t = stamp
        return stamp

    def _failed_read(self) -> None:
        if self.is_file:
            raise StreamEnded
        self._failures += 1
        self._count_error(f"{self.label} returned no frame")
        if self._failures >= self.max_read_failures:
            raise DeviceError(f"{self.label} returned no frame {self._failures} times in a row: it was unplugged "
                              "or another program took it; reconnect it and start the camera again")
        self._wait(1.0 / self.fps)
        return None

    def _to_rgb(self, bgr: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        width, height = self.size
        if (rgb.shape[1], rgb.shape[0]) != (width, height):
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)
        return rgb

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def _info(self) -> CameraInfo:
        width, height = self.size
        if width is None or height is None:
            raise TeleopError(f"the image size of {self.label} is known once it is open: call start() first, "
                              "or give width and height")
        return CameraInfo(width, height, self.K, self.T_world_camera, self.mount)


# --- Intel RealSense -----------------------------------------------------------------------------------


class DeviceClockMap:
    """Maps a device clock onto the monotonic clock from (device time, receive time) pairs.

    The offset is the smallest `receive - device` seen, allowed to rise by `drift` s/s so it follows a device
    crystal that runs slow. Mapped times keep the device's intervals between frames; they are late by the
    transport's shortest latency (a constant the host cannot see, a few ms over USB 3), and never later than
    the receive time.
    """

    def __init__(self, drift: float = 1e-4) -> None:
        self.drift = drift
        self._offset: float | None = None
        self._last_device = 0.0

    def __call__(self, device_s: float, receive_s: float) -> float:
        """Monotonic capture time [s] of a frame stamped `device_s` [s] on the device, received at `receive_s`."""
        candidate = receive_s - device_s
        if self._offset is None:
            self._offset = candidate
        else:
            allowed = self._offset + self.drift * max(0.0, device_s - self._last_device)
            self._offset = min(candidate, allowed)
        self._last_device = device_s
        return min(device_s + self._offset, receive_s)


class RealSenseCamera(CameraSource):
    """An Intel RealSense colour stream, with depth registered to it when `depth` is True.

    Frames are stamped with the device timestamp mapped to the monotonic clock: hardware-clock timestamps
    through a DeviceClockMap, system-time and global-time ones (host wall clock [ms]) by the wall-to-monotonic
    offset at receive.

    Args:
        serial: Serial number of the camera; None takes the first one found.
        width, height: Image size [px] of colour (and depth).
        fps: Frame rate [Hz] of the streams.
        depth: Also stream depth, aligned to the colour image, delivered in DepthFrame.depth.
        clock, wall_clock: Monotonic and Unix clocks [s].
        timeout_s: How long one read waits for a frame before counting a failed read.
    """

    def __init__(self, serial: str | None = None, width: int = 640, height: int = 480, fps: float = 30.0,
                 depth: bool = False, clock: Clock = time.monotonic, wall_clock: Clock = time.time,
                 T_world_camera: np.ndarray | None = None, mount: str = "world", timeout_s: float = 1.0,
                 buffer_size: int = 4, stall_periods: float = 5.0) -> None:
        super().__init__(fps, clock, buffer_size, stall_periods)
        self.serial, self.width, self.height, self.depth = serial, width, height, depth
        self.label = f"RealSense {serial}" if serial else "RealSense"
        self.timestamps = "device"  # the SDK's frame timestamps, mapped onto the monotonic clock
        self.wall_clock = wall_clock
        self.T_world_camera = unknown_pose() if T_world_camera is None else np.asarray(T_world_camera, float)
        self.mount = mount
        self.timeout_s = timeout_s
        self._rs: Any = None
        self._pipeline: Any = None
        self._align: Any = None
        self._K: np.ndarray | None = None
        self._depth_scale_m = 0.0
        self._clock_map = DeviceClockMap()
        self._last_number: int | None = None

    def _open(self) -> None:
        rs = self._rs = require("pyrealsense2", "realsense", "a RealSense camera")
        config = rs.config()
        if self.serial:
            config.enable_device(self.serial)
        fps = int(round(self.fps))
        config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, fps)
        if self.depth:
            config.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, fps)
        pipeline = rs.pipeline()
        try:
            profile = pipeline.start(config)
        except RuntimeError as exc:
            which = f"with serial {self.serial}" if self.serial else "at all"
            raise DeviceError(f"no RealSense camera {which} could be started ({exc}): plug it into a USB 3 port, "
                              "check `rs-enumerate-devices`, and that the size and rate are ones it offers") from exc
        intrinsics = profile.get_stream(rs.stream.color).as_video_stream_profile().get_intrinsics()
        self._K = np.array([[intrinsics.fx, 0.0, intrinsics.ppx], [0.0, intrinsics.fy, intrinsics.ppy],
                            [0.0, 0.0, 1.0]])
        if self.depth:
            self._depth_scale_m = float(profile.get_device().first_depth_sensor().get_depth_scale())
            self._align = rs.align(rs.stream.color)
        self._pipeline, self._clock_map, self._last_number = pipeline, DeviceClockMap(), None

    def _read(self) -> Capture | None:
        try:
            frames = self._pipeline.wait_for_frames(int(self.timeout_s * 1000))
        except RuntimeError as exc:
            if "didn't arrive" not in str(exc):  # anything but a timeout: the device is gone
                raise
            self._count_error(f"{self.label}: {exc}")
            return None
        receive = self.clock()
        if self._align is not None:
            frames = self._align.process(frames)
        color = frames.get_color_frame()
        if not color:
            self._count_error(f"{self.label}: a frame set without colour")
            return None
        self._check_numbering(int(color.get_frame_number()))
        t = self._capture_time(color, receive)
        rgb = np.array(np.asanyarray(color.get_data()), dtype=np.uint8)  # copy: the SDK reuses its buffers
        if not self.depth:
            return Capture(rgb, t)
        depth = frames.get_depth_frame()
        if not depth:
            self._count_error(f"{self.label}: a frame set without depth")
            return None
        return Capture(rgb, t, np.array(np.asanyarray(depth.get_data()), dtype=np.uint16), self._depth_scale_m)

    def _capture_time(self, frame: Any, receive: float) -> float:
        device_s = float(frame.get_timestamp()) / 1000.0
        domain = frame.get_frame_timestamp_domain()
        if domain == self._rs.timestamp_domain.hardware_clock:
            return self._clock_map(device_s, receive)
        wall_to_monotonic = self.clock() - self.wall_clock()
        return min(device_s + wall_to_monotonic, receive)

    def _check_numbering(self, number: int) -> None:
        if self._last_number is not None and number > self._last_number + 1:
            self._count_lost(number - self._last_number - 1)
        self._last_number = number

    def _close(self) -> None:
        if self._pipeline is not None:
            try:
                self._pipeline.stop()
            except RuntimeError:  # already stopped by an unplug
                pass
            self._pipeline = None

    def _info(self) -> CameraInfo:
        if self._K is None:
            raise TeleopError(f"the intrinsics of {self.label} come from the device: call start() first")
        return CameraInfo(self.width, self.height, self._K, self.T_world_camera, self.mount)


CAMERA_BACKENDS: dict[str, type[CameraSource]] = {
    "synthetic": SyntheticCamera,
    "opencv": OpenCVCamera,
    "realsense": RealSenseCamera,
}


# --- from the command line ------------------------------------------------------------------------------

CAMERA_SOURCES = ("a webcam index (0, 1, ...) or /dev/videoN", "a video file", "realsense[:SERIAL]",
                  "realsense-depth[:SERIAL]", "synthetic")


def parse_camera(spec: str, size: tuple[int, int] | None = None, fps: float = 30.0) -> tuple[str, CameraSource]:
    """A camera from `NAME=SOURCE` (see CAMERA_SOURCES), constructed but not started.

    Args:
        spec: e.g. "usb=0", "usb=/dev/video2", "side=realsense:0123456789", "clip=demo.mp4", "test=synthetic".
        size: (width, height) [px]; None keeps a webcam's or a video's own (RealSense and synthetic: 640x480).
        fps: Frame rate requested from a webcam, a RealSense or a synthetic camera [Hz]; a video file plays at
            its own.

    Raises:
        TeleopError: A spec that is not NAME=SOURCE, or a source that is none of the above (the message lists them).
    """
    name, sep, source = spec.partition("=")
    name, source = name.strip(), source.strip()
    if not sep or not name or not source or "/" in name:
        raise TeleopError(f"camera {spec!r} is not NAME=SOURCE (a name without '/', e.g. usb=0); SOURCE is one "
                          f"of: {', '.join(CAMERA_SOURCES)}")
    camera = _camera(name, source, size, fps)
    camera.spec = f"{name}={source}"
    return name, camera


def _camera(name: str, source: str, size: tuple[int, int] | None, fps: float) -> CameraSource:
    width, height = size if size else (None, None)
    kind, _, serial = source.partition(":")
    index = source.removeprefix("/dev/video")
    if index.isdigit():
        return OpenCVCamera(int(index), width, height, fps=fps)
    if kind in ("realsense", "realsense-depth"):
        return RealSenseCamera(serial or None, width or 640, height or 480, fps=fps, depth=kind == "realsense-depth")
    if source == "synthetic":
        return SyntheticCamera(width or 640, height or 480, fps=fps)
    if Path(source).suffix:
        return OpenCVCamera(source, width, height)
    raise TeleopError(f"camera source {source!r} of {name!r} is none of: {', '.join(CAMERA_SOURCES)}")


# --- finding the cameras there are ----------------------------------------------------------------------


@dataclass(frozen=True)
class FoundCamera:
    """A camera find_cameras() tried.

    Attributes:
        source: What `--camera NAME=SOURCE` takes for it ("0", "realsense:0123456789").
        device: Where it is ("/dev/video0", "Intel RealSense D435").
        width, height: Size of the frames it delivered [px]; 0 where it delivered none (or was not streamed).
        fps: Delivery rate measured while it was probed [Hz].
        timestamps: What its frame times are (CameraStatus.timestamps); "" where it was not streamed.
        problem: Why it cannot be used as it is, "" if it can.
    """

    source: str
    device: str
    width: int = 0
    height: int = 0
    fps: float = 0.0
    timestamps: str = ""
    problem: str = ""


def find_cameras(probe_s: float = 1.0, video_nodes: list[str] | None = None) -> list[FoundCamera]:
    """Every camera here that `--camera` can name: each V4L2 node (/dev/video*) opened through OpenCV and
    streamed for `probe_s`, then each RealSense device the SDK lists (if pyrealsense2 is installed; not
    streamed, since RealSense cameras also appear among the V4L2 nodes).

    Args:
        probe_s: How long each webcam is streamed to measure its size, rate and timestamps [s].
        video_nodes: Device paths (or indices) to try; None lists /dev/video* on Linux, else tries indices 0-4.

    Raises:
        MissingDependencyError: OpenCV is not installed.
    """
    require("cv2", "cameras", "finding webcams", package="opencv-python-headless")
    if video_nodes is None and sys.platform.startswith("linux"):
        video_nodes = sorted((str(p) for p in Path("/dev").glob("video*")), key=_node_index)
    elif video_nodes is None:
        video_nodes = [str(k) for k in range(5)]
    found = [_probe_webcam(node, probe_s) for node in video_nodes if _node_index(node) >= 0]
    return found + _realsense_devices()


def _node_index(node: str) -> int:
    index = Path(node).name.removeprefix("video")
    return int(index) if index.isdigit() else -1


def _probe_webcam(node: str, probe_s: float) -> FoundCamera:
    index = _node_index(node)
    camera = OpenCVCamera(index)
    try:
        camera.start()
    except DeviceError:
        return FoundCamera(str(index), node, problem="OpenCV cannot open it (a metadata node of a camera listed "
                                                     "beside it, or another program holds it)")
    try:
        first = camera.wait_for_frame(max(probe_s, 0.5))
        if first is not None:
            time.sleep(probe_s)  # frames for the measured rate
        status, info = camera.status(), camera.info()
    finally:
        camera.stop()
    if first is None:
        return FoundCamera(str(index), node, problem=f"opened, but no frame came ({status.last_error or status.state})")
    return FoundCamera(str(index), node, info.width, info.height, status.fps, status.timestamps)


def _realsense_devices() -> list[FoundCamera]:
    try:
        rs = require("pyrealsense2", "realsense", "finding RealSense cameras")
    except TeleopError:
        return []
    found = []
    for device in rs.context().query_devices():
        serial = device.get_info(rs.camera_info.serial_number)
        found.append(FoundCamera(f"realsense:{serial}", device.get_info(rs.camera_info.name)))
    return found
