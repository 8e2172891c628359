"""The rig (the simulator or a real robot) in its own process: built, previewed and recorded there, reported to the
window through messages.

The control loop shares neither a thread nor an interpreter lock with the window. pybullet holds Python's lock
while it renders (about 10 ms a camera), and the window holds it while it draws, so in one process each waits for
the other: the loop's step jitter tripled with the window open (BENCHMARKS.md, "The desktop app and the control
loop"). In the child, every pybullet call happens on its main thread (pybullet's EGL renderer is bound to the
thread that created the simulator). Real cameras are handed over unstarted; the child starts them, records them
beside the simulator's and stops them when it ends.

Messages to the child: ("build", RigConfig), ("check_device",), ("preview", seed), ("record", take, seed, format,
image_codec), ("key", name, pressed), ("stop", take), ("emergency_stop",), ("release",), ("shutdown",), where
`take` numbers the recordings; keys, stops and emergency stops are handled at once, also while an episode runs.
From the child: ("built", RigInfo), ("build_failed", text), ("device_checked", DeviceStatus), ("robot_status",
RobotStatus), ("previewed", LiveState), ("live", LiveState), ("recorded", RecordedEpisode), ("failed", text).
After each build the device is checked (Device.readiness: connected, sampling, and if not, why). A live state not
yet sent when the next one comes is replaced by it, so a slow window never holds the loop up.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal

from devices.keyboard import KeyboardDevice
from devices.status import DeviceStatus
from recorder.cameras import CameraSource
from recorder.step import Step
from recorder.sync import FrameUsage
from teleop.child import ROOT
from teleop.errors import TeleopError
from teleop.recording import record_episode
from teleop.rig import Rig, RigConfig, build_rig
from teleop.session import EpisodeResult

RECENT_TICKS = 100  # tick times a live state carries: 5 s at 20 Hz
SHUTDOWN_TIMEOUT_S = 30.0  # a running episode is finalised before the process ends


@dataclass(frozen=True)
class RigInfo:
    """What the UI needs to know of a built rig (it never touches the rig itself).

    Attributes:
        config: The configuration it was built from.
        image_size: The first camera's images (width, height) [px]: the simulator's, or a real camera's beside a
            real robot (224 x 224 when there is none).
        camera_sizes: Every camera's image (width, height) [px], by name: the simulator's, then the real ones.
        joint_names: Names of the recorded joints.
        instruction: The task's language instruction.
        driven_joints: How many of the joints (the first ones) the actions command: arm or hand joints, not the
            gripper fingers.
    """

    config: RigConfig
    image_size: tuple[int, int]
    camera_sizes: dict[str, tuple[int, int]]
    joint_names: tuple[str, ...]
    instruction: str
    driven_joints: int

    @property
    def cameras(self) -> tuple[str, ...]:
        """Camera names: the simulator's, then the real ones."""
        return tuple(self.camera_sizes)


@dataclass(frozen=True)
class LiveState:
    """A snapshot of the robot and cameras for display.

    Attributes:
        frames: Camera name -> RGB image, (H, W, 3) uint8.
        joint_pos: Measured joint positions, (n,), [rad] or [m].
        ee_pos: End-effector position in the robot base frame, (3,), [m].
        engaged: Whether the operator's clutch is engaged (None outside a recording).
        steps: Control ticks so far (0 for a preview).
        elapsed_s: Time since the first tick [s].
        rate_hz: Achieved control rate so far [Hz].
        success: Whether the task is succeeding now.
        t: Monotonic time of the tick [s].
        late_ticks: Ticks so far that started more than a period late.
        tick_ms: The last tick's own time [ms] (0 for a preview).
        joint_target: The joint targets commanded this tick, (driven_joints,) (empty for a preview).
        recent_tick_ms: The last RECENT_TICKS ticks' own times [ms], oldest first (empty for a preview).
        robot_message: What the robot is doing that the operator should know (RobotStatus.message: a real robot's
            soft start, a hold by its watchdog or workspace box, an emergency stop).
        camera_repeats: Real camera name -> steps so far that got no new frame from it (the one before repeated,
            or none yet).
    """

    frames: dict[str, np.ndarray]
    joint_pos: np.ndarray
    ee_pos: np.ndarray
    engaged: bool | None
    steps: int
    elapsed_s: float
    rate_hz: float
    success: bool
    t: float
    late_ticks: int = 0
    tick_ms: float = 0.0
    joint_target: np.ndarray = field(default_factory=lambda: np.zeros(0))
    recent_tick_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    robot_message: str = ""
    camera_repeats: dict[str, int] = field(default_factory=dict)


def live_state(step: Step, result: EpisodeResult, t_first: float, driven_joints: int,
               robot_message: str = "", camera_repeats: dict[str, int] | None = None) -> LiveState:
    """Summarise a recorded step and the running result for display."""
    elapsed = step.t - t_first
    return LiveState(
        frames={name: frame.rgb for name, frame in step.frames.items()},
        joint_pos=np.asarray(step.joint_pos), ee_pos=np.asarray(step.ee_pose[:3]),
        engaged=bool(step.device.get("engaged", False)), steps=result.steps, elapsed_s=elapsed,
        rate_hz=(result.steps - 1) / elapsed if elapsed > 0 else 0.0, success=result.success, t=step.t,
        late_ticks=result.late_ticks, tick_ms=result.tick_ms[-1] if result.tick_ms else 0.0,
        joint_target=np.asarray(step.action[:driven_joints], dtype=float),
        recent_tick_ms=np.asarray(result.tick_ms[-RECENT_TICKS:], dtype=float), robot_message=robot_message,
        camera_repeats=dict(camera_repeats or {}),
    )


def preview_state(rig: Rig, t: float) -> LiveState:
    """Cameras and joints of the rig as it stands, outside a recording (a real camera's newest frame)."""
    q, _ = rig.sim.joint_state()
    frames = {name: rig.sim.render(name).rgb for name in rig.sim.cameras}
    latest = {name: camera.latest() for name, camera in rig.session.cameras.items()}
    frames.update({name: frame.rgb for name, frame in latest.items() if frame is not None})
    return LiveState(frames=frames, joint_pos=q,
                     ee_pos=rig.sim.ee_pose()[:3, 3], engaged=None, steps=0, elapsed_s=0.0,
                     rate_hz=0.0, success=rig.task.success(rig.sim), t=t)


class RigHost:
    """The child's side: owns the rig and the real cameras, runs one request at a time on its main thread.

    A reader thread takes keys and stop requests as they come, also while an episode runs; an outbox thread sends
    the messages, so neither the loop nor the pipe waits for the other.
    """

    def __init__(self, conn: Connection, out_dir: Path, cameras: Mapping[str, CameraSource],
                 min_interval_s: float) -> None:
        self.conn = conn
        self.out_dir = out_dir
        self.min_interval_s = min_interval_s
        self.rig: Rig | None = None
        self.cameras: dict[str, CameraSource] = {}
        self.camera_error = ""
        for name, camera in cameras.items():
            try:
                camera.start()
            except (TeleopError, OSError) as exc:
                self.camera_error = f"camera {name} did not start: {exc}"
                break
            self.cameras[name] = camera
        self.requests: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.stopped_take = -1  # the latest take asked to stop (a stop may come before its take starts)
        self.closing = threading.Event()
        self._keys: list[tuple[str, bool]] = []
        self._keys_lock = threading.Lock()
        self._t_first: float | None = None
        self._t_sent = -np.inf
        self._usage: dict[str, FrameUsage] = {}  # the running episode's frames of each real camera
        self.outbox = Outbox(conn)

    def serve(self) -> None:
        """Answer requests until ("shutdown",) or the window's end of the pipe closes."""
        threading.Thread(target=self._read, name="rig requests", daemon=True).start()
        try:
            while (request := self.requests.get())[0] != "shutdown":
                getattr(self, request[0])(*request[1:])
        finally:
            self._close_rig()
            for camera in self.cameras.values():
                camera.stop()
            self.outbox.close()

    def _read(self) -> None:
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                message = ("shutdown",)
            if message[0] == "key":
                self._key(*message[1:])
            elif message[0] == "stop":
                self.stopped_take = max(self.stopped_take, message[1])
            elif message[0] in ("emergency_stop", "release"):
                self._emergency(message[0] == "emergency_stop")
            else:
                self.requests.put(message)
            if message[0] == "shutdown":
                self.closing.set()  # an episode still running ends and is kept
                return

    def build(self, config: RigConfig) -> None:
        """Close the current rig and build a new one."""
        self._close_rig()
        if self.camera_error:
            self.outbox.put(("build_failed", self.camera_error))
            return
        try:
            rig = build_rig(config, cameras=self.cameras)
        except TeleopError as exc:
            self.outbox.put(("build_failed", str(exc)))
            return
        self.rig = rig
        sizes = {name: (info.width, info.height) for name, info in rig.session.camera_infos().items()}
        self.outbox.put(("built", RigInfo(
            config=config, image_size=next(iter(sizes.values()), (224, 224)), camera_sizes=sizes,
            joint_names=rig.sim.joint_names, instruction=rig.task.language_instruction(),
            driven_joints=len(rig.sim.spec.joints))))
        self.check_device()

    def check_device(self) -> None:
        """Connect the device, read it for a moment, and report whether it is ready."""
        if self.rig is None:
            return
        try:
            status = self.rig.device.readiness()
        except Exception as exc:  # a driver's own failure: the device is not ready, and the host stays usable
            status = DeviceStatus(False, reason=f"{type(exc).__name__}: {exc}")
        self.outbox.put(("device_checked", status))

    def preview(self, seed: int) -> None:
        """Reset the task with `seed` and report the scene."""
        if self.rig is not None:
            self.rig.session.reset(seed)
            self.outbox.put(("previewed", preview_state(self.rig, self.rig.session.clock())))

    def record(self, take: int, seed: int, format: str = "hdf5", image_codec: str = "lossless") -> None:
        """Record take number `take` into `out_dir` (blocks the requests until it ends)."""
        if self.rig is None:
            self.outbox.put(("failed", "no rig: pick a robot, task and device first"))
            return

        def should_stop() -> bool:
            return self.stopped_take >= take or self.closing.is_set()

        self._t_first, self._t_sent = None, -np.inf
        self._usage = {name: FrameUsage() for name in self.cameras}
        try:
            episode = record_episode(self.rig, self.out_dir, seed, should_stop=should_stop,
                                     on_step=self._on_step, format=format, image_codec=image_codec)
        except Exception as exc:  # reported to the operator; the host must stay usable
            self.outbox.put(("failed", f"{type(exc).__name__}: {exc}"))
            return
        finally:
            with self._keys_lock:
                self._keys.clear()
        self.outbox.put(("recorded", episode))

    def _emergency(self, stop: bool) -> None:
        """From the reader thread, at once, also while an episode runs: a real robot stops the SDK's hardest way and
        ignores commands until released; the simulator holds."""
        rig = self.rig
        if rig is None:
            return
        robot = rig.sim
        if stop:
            getattr(robot, "emergency_stop", robot.hold)()
        elif hasattr(robot, "release"):
            robot.release()
        self.outbox.put(("robot_status", robot.status()))

    def _close_rig(self) -> None:
        if self.rig is not None:
            self.rig.close()
            self.rig = None

    def _key(self, name: str, pressed: bool) -> None:
        with self._keys_lock:
            self._keys.append((name, pressed))
        self._flush_keys()

    def _flush_keys(self) -> None:
        """Hand queued keys to a keyboard device once it is connected (record_episode connects it after the reset)."""
        rig = self.rig
        device = rig.device if rig is not None else None
        if not isinstance(device, KeyboardDevice) or not device.connected:
            return
        with self._keys_lock:
            keys, self._keys = self._keys, []
        for name, pressed in keys:
            (device.press if pressed else device.release)(name)

    def _on_step(self, step: Step, result: EpisodeResult) -> None:
        self._flush_keys()
        for name, usage in self._usage.items():
            usage.record(step.frames.get(name))
        if self._t_first is None:
            self._t_first = step.t
        if result.steps == 1 or step.t - self._t_sent >= self.min_interval_s:
            self._t_sent = step.t
            assert self.rig is not None
            robot = self.rig.sim
            repeats = {name: usage.stats.duplicates + usage.stats.missing for name, usage in self._usage.items()}
            self.outbox.put(("live", live_state(step, result, self._t_first, len(robot.spec.joints),
                                                robot.status().message, repeats)))


class Outbox:
    """Sends messages on a thread of its own, in order; a live state still waiting is replaced by a newer one."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._items: deque[tuple[Any, ...] | None] = deque()
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="rig outbox", daemon=True)
        self._thread.start()

    def put(self, message: tuple[Any, ...] | None) -> None:
        with self._ready:
            if message is not None and message[0] == "live" and self._items and self._items[-1] is not None \
                    and self._items[-1][0] == "live":
                self._items[-1] = message
            else:
                self._items.append(message)
            self._ready.notify()

    def close(self) -> None:
        """Send what is queued, then stop."""
        self.put(None)
        self._thread.join(SHUTDOWN_TIMEOUT_S)

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._items))
                message = self._items.popleft()
            if message is None:
                return
            try:
                self.conn.send(message)
            except (OSError, ValueError):  # the window is gone
                return


def serve(fd: int) -> None:
    """The child process's entry point: its end of the socket is `fd`. The first message is the parent's import
    path (so that what the second one holds can be unpickled), the second (out_dir, cameras, min_interval_s)."""
    conn = Connection(fd)
    sys.path[:0] = [entry for entry in conn.recv() if entry not in sys.path]
    out_dir, cameras, min_interval_s = conn.recv()
    RigHost(conn, out_dir, cameras, min_interval_s).serve()


_CHILD_CODE = "import sys; from ui.rig_process import serve; serve(int(sys.argv[1]))"


class RigProcess(QObject):
    """The window's side: starts the child, sends it requests and turns its messages into signals.

    Requests: build(RigConfig), check_device(), preview(seed), record(seed, format, image_codec),
    send_key(name, pressed), request_stop(), shutdown(). Signals: built(RigInfo) then device_checked(DeviceStatus),
    or build_failed(str); previewed(LiveState); while
    recording, live(LiveState) at most every `min_interval_s`, then recorded(RecordedEpisode) or failed(str);
    died(str) if the child ends without being asked to.

    `cameras` are real cameras, not started: the child starts them, and a camera that does not start fails every
    build with a message naming it.
    """

    built = pyqtSignal(object)
    build_failed = pyqtSignal(str)
    device_checked = pyqtSignal(object)
    robot_status = pyqtSignal(object)
    previewed = pyqtSignal(object)
    live = pyqtSignal(object)
    recorded = pyqtSignal(object)
    failed = pyqtSignal(str)
    died = pyqtSignal(str)

    def __init__(self, out_dir: Path, min_interval_s: float = 1 / 30,
                 cameras: Mapping[str, CameraSource] | None = None) -> None:
        super().__init__()
        # A fresh interpreter (fork and exec): no Qt state or threads inherited, and unlike multiprocessing's
        # spawn it never runs the caller's main script again.
        ours, theirs = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        self._process = subprocess.Popen([sys.executable, "-c", _CHILD_CODE, str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send(sys.path)
        self._conn.send((Path(out_dir), dict(cameras or {}), min_interval_s))
        self._take = 0
        self._stopping = False
        self._closing = False
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="rig messages", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int | None:
        """The child process's id."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the child process is running."""
        return self._process.poll() is None

    @property
    def stopping(self) -> bool:
        """Whether a stop of the running episode was requested."""
        return self._stopping

    def build(self, config: RigConfig) -> None:
        self._send("build", config)

    def check_device(self) -> None:
        self._send("check_device")

    def preview(self, seed: int) -> None:
        self._send("preview", seed)

    def record(self, seed: int, format: str = "hdf5", image_codec: str = "lossless") -> None:
        self._take += 1
        self._stopping = False
        self._send("record", self._take, seed, format, image_codec)

    def send_key(self, name: str, pressed: bool) -> None:
        """A key of the keyboard device, pressed or released; queued in the child until the device is connected."""
        self._send("key", name, pressed)

    def emergency_stop(self) -> None:
        """Stop the robot now (handled at once in the child, also mid-episode); it stays stopped until release()."""
        self._send("emergency_stop")

    def release(self) -> None:
        self._send("release")

    def request_stop(self) -> None:
        """Ask the running episode to end after the current tick; it is then finalised."""
        self._stopping = True
        self._send("stop", self._take)

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """End a running episode (it is kept), release the simulator and cameras, and wait for the child."""
        self._closing = True
        self._send("shutdown")
        try:
            self._process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout_s)
        self._conn.close()

    def _send(self, *message: Any) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError):  # the child is gone: died() says so
                pass

    def _read(self) -> None:
        while True:
            try:
                kind, *args = self._conn.recv()
            except (EOFError, OSError):
                break
            getattr(self, kind).emit(*args)
        if not self._closing:
            try:
                code: int | None = self._process.wait(5.0)
            except subprocess.TimeoutExpired:
                code = None
            self.died.emit(f"the rig's process ended unexpectedly (exit code {code}); close the "
                           "window and start teleop gui again")
