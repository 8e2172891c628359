"""`teleop calibrate`: gestures recorded in a rotated tracking frame recover R_base_device; `record --calibration`.

The traces are what a Vive would record from a person standing in a SteamVR-like tracking frame (+y up),
facing 110 degrees away from the robot's x axis, with the floor tilted 5 degrees: hand tremor on every sample,
idle samples before and after each gesture, and a sloppy, slightly curved motion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from devices.base import DeviceSample
from devices.trace import ReplayDevice, TraceRecorder
from kinematics.calibration import Calibration, load_calibration, save_calibration
from recorder.backend import open_episode
from teleop.calibrate import RoutineConfig, run_calibration
from teleop.cli import main
from teleop.errors import TeleopError

RATE_HZ = 90.0
TREMOR_M = 0.0015
TREMOR_DEG = 0.3
# Tracking frame <- robot base: SteamVR's y-up convention, the operator turned 110 deg, a 5 deg tilt.
R_TRACK_BASE = Rotation.from_euler("XZY", [-90.0, 110.0, 5.0], degrees=True).as_matrix()
R_BASE_DEVICE = R_TRACK_BASE.T  # what a calibration must recover
ORIGIN_TRACK = np.array([0.4, 1.1, -0.3])  # where the robot base sits in the tracking frame [m]


def _angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(R_a @ R_b.T).magnitude()))


class _Person:
    """Writes the samples of a person holding a Vive controller, in the tracking frame, at 90 Hz."""

    def __init__(self, recorder: TraceRecorder, seed: int = 0) -> None:
        self.recorder = recorder
        self.rng = np.random.default_rng(seed)
        self.t = 100.0
        self.p_base = np.array([0.45, 0.0, 0.35])  # controller position in the base frame [m]

    def idle(self, seconds: float, grip: bool = False) -> None:
        for _ in range(round(seconds * RATE_HZ)):
            self._emit(self.p_base, grip)

    def move(self, delta_base: np.ndarray, seconds: float, lost: slice | None = None) -> None:
        """Move by delta_base [m] with the grip held, smoothly, on a slight arc; samples in `lost` lose tracking."""
        start = self.p_base.copy()
        n = round(seconds * RATE_HZ)
        bend = 0.01 * np.cross(delta_base / np.linalg.norm(delta_base), [0.3, 0.5, 0.8])  # a hand is no ruler
        for i in range(n + 1):
            s = i / n
            progress = 3 * s**2 - 2 * s**3  # smooth start and stop
            self.p_base = start + progress * delta_base + np.sin(np.pi * s) * bend
            self._emit(self.p_base, True, tracked=lost is None or i not in range(n + 1)[lost])

    def _emit(self, p_base: np.ndarray, grip: bool, tracked: bool = True) -> None:
        T = np.eye(4)
        # Held with its axes along the base axes, as the still pose asks; tremor on every sample.
        tremor = Rotation.from_rotvec(np.radians(TREMOR_DEG) * self.rng.normal(size=3) / np.sqrt(3)).as_matrix()
        T[:3, :3] = tremor @ R_TRACK_BASE
        T[:3, 3] = ORIGIN_TRACK + R_TRACK_BASE @ p_base + self.rng.normal(0.0, TREMOR_M, 3)
        self.recorder.append(DeviceSample(
            t=self.t, engaged=grip and tracked, T_world_device=T if tracked else None, gripper=0.0,
            axes={"trackpad_x": 0.0, "trackpad_y": 0.0}, buttons={"grip": grip, "trigger": False}))
        self.t += 1.0 / RATE_HZ


def _trace(path: Path, script: str, seed: int = 0, lost: slice | None = None) -> Path:
    with TraceRecorder(path, device="vive") as recorder:
        person = _Person(recorder, seed)
        person.idle(0.3)
        if script == "point":
            person.move(np.array([0.2, 0.0, 0.0]), 0.9, lost)
            person.idle(0.15, grip=True)
            person.idle(0.3)
            # A sloppy "up": 10 degrees off vertical, toward the operator.
            person.move(0.2 * np.array([-np.sin(0.17), 0.0, np.cos(0.17)]), 0.9, lost)
            person.idle(0.15, grip=True)
        elif script == "still":
            person.idle(2.4, grip=True)
        elif script == "forward":
            person.move(np.array([0.15, 0.0, 0.0]), 0.8)
            person.idle(0.2, grip=True)
        elif script != "nothing":
            raise ValueError(script)
        person.idle(0.3)
    return path


@pytest.mark.parametrize("method", ["point", "still"])
def test_calibrate_recovers_the_rotation_from_a_replayed_gesture(
        method: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    trace = _trace(tmp_path / f"{method}.trace.jsonl", method)
    out = tmp_path / "calibration.json"
    assert main(["calibrate", "--device", "replay", "--device-arg", str(trace), "--method", method,
                 "--out", str(out), "--timeout", "5"]) == 0
    calibration = load_calibration(out)
    assert _angle_deg(calibration.R_base_device, R_BASE_DEVICE) < 2.0
    assert calibration.method == {"point": "point_forward", "still": "still_pose"}[method]
    printed = capsys.readouterr().out
    assert "grip" in printed and "yaw" in printed and f"--calibration {out}" in printed


def test_record_with_the_calibration_moves_the_robot_forward(tmp_path: Path) -> None:
    calibration = tmp_path / "calibration.json"
    assert main(["calibrate", "--device", "replay", "--device-arg", str(_trace(tmp_path / "p.jsonl", "point")),
                 "--out", str(calibration)]) == 0
    forward = _trace(tmp_path / "forward.trace.jsonl", "forward", seed=1)
    moves = {}
    for name, extra in (("calibrated", ["--calibration", str(calibration)]), ("raw", [])):
        out = tmp_path / name
        assert main(["record", "--device", "replay", "--device-arg", str(forward), "--robot", "franka",
                     "--task", "franka-reach", "--seconds", "2", "--out", str(out), *extra]) == 0
        with open_episode(out / "episode_000000.h5") as episode:
            moves[name] = episode.ee_pose[-1, :3] - episode.ee_pose[0, :3]
    move = moves["calibrated"]
    assert np.linalg.norm(move) > 0.1
    assert np.degrees(np.arccos(move[0] / np.linalg.norm(move))) < 10.0  # toward the robot's +x
    assert moves["raw"][0] < 0.0  # without the calibration, the same gesture moves it backwards


def test_no_grip_press_times_out_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with TraceRecorder(tmp_path / "idle.jsonl", device="vive") as recorder:
        _Person(recorder).idle(2.0)
    assert main(["calibrate", "--device", "replay", "--device-arg", str(tmp_path / "idle.jsonl"),
                 "--out", str(tmp_path / "c.json"), "--timeout", "0.3"]) == 2
    assert "no grip press within 0.3 s" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


def test_a_trace_that_ends_before_the_gesture_says_so(tmp_path: Path, clock: Any) -> None:
    with TraceRecorder(tmp_path / "idle.jsonl", device="vive") as recorder:
        _Person(recorder).idle(0.5)
    with ReplayDevice(tmp_path / "idle.jsonl", clock=clock) as device, pytest.raises(TeleopError, match="ended"):
        run_calibration(device, "point", lambda _: None, clock, clock.sleep, timeout_s=30.0)


def test_a_few_untracked_samples_are_skipped_and_reported(tmp_path: Path, clock: Any) -> None:
    trace = _trace(tmp_path / "lost.jsonl", "point", lost=slice(30, 40))
    said: list[str] = []
    with ReplayDevice(trace, clock=clock) as device:  # on the simulated clock: replays instantly
        calibration = run_calibration(device, "point", said.append, clock, clock.sleep, timeout_s=30.0)
    assert _angle_deg(calibration.R_base_device, R_BASE_DEVICE) < 2.0
    assert any("skipped" in line and "tracking lost" in line for line in said)


def test_tracking_lost_for_most_of_a_gesture_is_refused(tmp_path: Path, clock: Any) -> None:
    trace = _trace(tmp_path / "lost.jsonl", "point", lost=slice(5, 70))
    with ReplayDevice(trace, clock=clock) as device, pytest.raises(TeleopError, match="not tracked in"):
        run_calibration(device, "point", lambda _: None, clock, clock.sleep, timeout_s=30.0)


def test_releasing_the_still_pose_early_says_how_long_to_hold(tmp_path: Path, clock: Any) -> None:
    trace = _trace(tmp_path / "still.jsonl", "still")
    with ReplayDevice(trace, clock=clock) as device, pytest.raises(TeleopError, match="hold it .* for 3 s"):
        run_calibration(device, "still", lambda _: None, clock, clock.sleep, config=RoutineConfig(hold_s=3.0))


def test_the_routine_polls_at_about_100_hz(tmp_path: Path, clock: Any) -> None:
    trace = _trace(tmp_path / "still.jsonl", "still")
    with ReplayDevice(trace, clock=clock) as device:
        start = clock()
        run_calibration(device, "still", lambda _: None, clock, clock.sleep)
        reads = device.status().sample_rate_hz
    assert clock() - start < 3.0
    assert reads == pytest.approx(100.0, rel=0.05)


@pytest.mark.parametrize("device", ["keyboard", "gamepad", "webcam-hands", "openxr-hands", "scripted"])
def test_devices_without_a_pose_are_refused_naming_those_with_one(
        device: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["calibrate", "--device", device, "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err
    assert "gives no controller pose" in err and "vive, openxr" in err


def test_a_replayed_keyboard_trace_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with TraceRecorder(tmp_path / "keys.jsonl", device="keyboard") as recorder:
        recorder.append(DeviceSample(t=0.0))
    assert main(["calibrate", "--device", "replay", "--device-arg", str(tmp_path / "keys.jsonl"),
                 "--out", str(tmp_path / "c.json")]) == 2
    assert "recorded from keyboard" in capsys.readouterr().err


@pytest.mark.parametrize("content", [None, "{not json", '{"format": "something else"}'])
def test_record_with_a_missing_or_corrupt_calibration_names_the_file(
        content: str | None, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "calibration.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    assert main(["record", "--device", "scripted", "--calibration", str(path), "--out", str(tmp_path / "ep")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and ("calibrat" in err)


def test_a_calibration_for_a_velocity_device_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    calibration = save_calibration(Calibration(R_BASE_DEVICE, "still_pose", ""), tmp_path / "calibration.json")
    assert main(["record", "--device", "gamepad", "--calibration", str(calibration),
                 "--out", str(tmp_path / "ep")]) == 2
    assert "leave out the calibration" in capsys.readouterr().err
