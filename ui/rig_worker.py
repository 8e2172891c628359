"""The rig on its own thread: building, previewing and recording, reported to the UI through signals.

Every pybullet call happens on this one thread: pybullet's EGL renderer is bound to the thread that created
the simulator (rendering from another thread gives blank frames or crashes), and the session loop blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot

from devices.base import Device
from recorder.cameras import CameraSource
from recorder.step import Step
from teleop.errors import TeleopError
from teleop.recording import record_episode
from teleop.rig import Rig, RigConfig, build_rig
from teleop.session import EpisodeResult


@dataclass(frozen=True)
class RigInfo:
    """What the UI needs to know of a built rig (it never touches the rig itself).

    Attributes:
        config: The configuration it was built from.
        image_size: The simulator's camera images (width, height) [px].
        camera_sizes: Every camera's image (width, height) [px], by name: the simulator's, then the real ones.
        joint_names: Names of the recorded joints.
        instruction: The task's language instruction.
        device: The operator device; only its thread-safe methods may be called from the UI
            (KeyboardDevice.press / release, `connected`).
    """

    config: RigConfig
    image_size: tuple[int, int]
    camera_sizes: dict[str, tuple[int, int]]
    joint_names: tuple[str, ...]
    instruction: str
    device: Device

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


def live_state(step: Step, result: EpisodeResult, t_first: float) -> LiveState:
    """Summarise a recorded step and the running result for display."""
    elapsed = step.t - t_first
    return LiveState(
        frames={name: frame.rgb for name, frame in step.frames.items()},
        joint_pos=np.asarray(step.joint_pos), ee_pos=np.asarray(step.ee_pose[:3]),
        engaged=bool(step.device.get("engaged", False)), steps=result.steps, elapsed_s=elapsed,
        rate_hz=(result.steps - 1) / elapsed if elapsed > 0 else 0.0, success=result.success, t=step.t,
        late_ticks=result.late_ticks, tick_ms=result.tick_ms[-1] if result.tick_ms else 0.0,
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


class RigWorker(QObject):
    """Owns the rig; its slots run on the thread it was moved to, one at a time.

    Slots (call through queued signals): build(RigConfig), preview(seed), record(seed), shutdown().
    Signals: built(RigInfo) or build_failed(str); previewed(LiveState); while recording, live(LiveState) at
    most every `min_interval_s`, then recorded(RecordedEpisode) or failed(str).
    `request_stop()` may be called from any thread.
    """

    built = pyqtSignal(object)
    build_failed = pyqtSignal(str)
    previewed = pyqtSignal(object)
    live = pyqtSignal(object)
    recorded = pyqtSignal(object)
    failed = pyqtSignal(str)

    def __init__(self, out_dir: Path, min_interval_s: float = 1 / 30,
                 cameras: Mapping[str, CameraSource] | None = None) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.cameras = dict(cameras or {})  # started by the caller; recorded beside the simulator's
        self.min_interval_s = min_interval_s
        self.rig: Rig | None = None
        self._stop = threading.Event()
        self._t_first: float | None = None
        self._t_emitted = -np.inf

    @property
    def stopping(self) -> bool:
        """Whether a stop of the running episode was requested."""
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Ask the running episode to end after the current tick; it is then finalised."""
        self._stop.set()

    @pyqtSlot(object)
    def build(self, config: RigConfig) -> None:
        """Close the current rig and build a new one."""
        self._close_rig()
        try:
            rig = build_rig(config, cameras=self.cameras)
        except TeleopError as exc:
            self.build_failed.emit(str(exc))
            return
        self.rig = rig
        infos = rig.session.camera_infos()
        self.built.emit(RigInfo(config=config, image_size=rig.sim.config.image_size,
                                camera_sizes={name: (info.width, info.height) for name, info in infos.items()},
                                joint_names=rig.sim.joint_names, instruction=rig.task.language_instruction(),
                                device=rig.device))

    @pyqtSlot(int)
    def preview(self, seed: int) -> None:
        """Reset the task with `seed` and report the scene."""
        if self.rig is None:
            return
        self.rig.session.reset(seed)
        self.previewed.emit(preview_state(self.rig, self.rig.session.clock()))

    @pyqtSlot(int, str, str)
    def record(self, seed: int, format: str = "hdf5", image_codec: str = "lossless") -> None:
        """Record one episode into `out_dir` in `format` with colour frames stored by `image_codec` (blocks this
        thread until it ends)."""
        if self.rig is None:
            self.failed.emit("no rig: pick a robot, task and device first")
            return
        self._stop.clear()
        self._t_first, self._t_emitted = None, -np.inf
        try:
            episode = record_episode(self.rig, self.out_dir, seed, should_stop=self._stop.is_set,
                                     on_step=self._on_step, format=format, image_codec=image_codec)
        except Exception as exc:  # reported to the operator; the worker must stay usable
            self.failed.emit(f"{type(exc).__name__}: {exc}")
            return
        self.recorded.emit(episode)

    @pyqtSlot()
    def shutdown(self) -> None:
        """Release the simulator."""
        self._close_rig()

    def _close_rig(self) -> None:
        if self.rig is not None:
            self.rig.close()
            self.rig = None

    def _on_step(self, step: Step, result: EpisodeResult) -> None:
        if self._t_first is None:
            self._t_first = step.t
        if result.steps == 1 or step.t - self._t_emitted >= self.min_interval_s:
            self._t_emitted = step.t
            self.live.emit(live_state(step, result, self._t_first))
