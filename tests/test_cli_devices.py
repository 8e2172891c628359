"""`teleop devices`, `teleop record` with a trace, and replaying that trace as a device."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recorder.backend import open_episode
from teleop.backends import BACKENDS
from teleop.cli import main


def test_devices_lists_every_backend_with_whether_it_is_here(capsys: pytest.CaptureFixture) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.strip().splitlines()[1:]}
    assert set(rows) == set(BACKENDS)
    assert rows["scripted"].split()[2:4] == ["yes", "yes"]
    for name in ("vive", "openxr", "gamepad", "webcam-hands"):  # no such hardware on a test machine
        assert rows[name].split()[3] == "no"
        assert "pip install" in rows[name] or "--device" in rows[name] or "teleop models" in rows[name]


def test_a_recorded_trace_replayed_as_the_device_reproduces_the_episode(tmp_path: Path) -> None:
    first, second = tmp_path / "original", tmp_path / "replayed"
    assert main(["record", "--device", "scripted", "--robot", "franka", "--task", "franka-reach",
                 "--seconds", "6", "--trace", "--out", str(first)]) == 0
    trace = first / "episode_000000.trace.jsonl"
    assert trace.is_file()
    assert main(["record", "--device", "replay", "--device-arg", str(trace), "--robot", "franka",
                 "--task", "franka-reach", "--seconds", "6", "--out", str(second)]) == 0
    with open_episode(first / "episode_000000.h5") as a, open_episode(second / "episode_000000.h5") as b:
        assert a.success and b.success
        assert b.attrs["operator_device"] == "replay"
        # Real-time replay: how many ticks the episode takes depends on how late the loop runs (on a loaded
        # 2-core machine 25 against 31 steps were seen), so the two are compared as paths in space: every point of
        # one lies near the other (both end once success has held, wherever the arm is then). test_trace.py checks
        # exactness on a simulated clock.
        assert _hausdorff(a.ee_pose[:, :3], b.ee_pose[:, :3]) < 0.03


def _hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest distance from a point of either path to the nearest point of the other [m]."""
    d = np.linalg.norm(a[:, None] - b[None], axis=2)
    return float(max(d.min(axis=1).max(), d.min(axis=0).max()))


def test_record_refuses_a_device_that_cannot_drive_the_robot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["record", "--device", "webcam-hands", "--robot", "xarm7", "--out", str(tmp_path)]) == 2
    assert "tracks a hand" in capsys.readouterr().err


def test_replay_without_a_trace_says_what_it_needs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["record", "--device", "replay", "--out", str(tmp_path)]) == 2
    assert "--device-arg" in capsys.readouterr().err


def test_record_adds_real_cameras_beside_the_simulators_and_reports_each(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    cv2 = pytest.importorskip("cv2")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for k in range(90):
        writer.write(np.full((48, 64, 3), (k, 0, 200), np.uint8))  # BGR: red, blue counting the frames
    writer.release()
    out = tmp_path / "episodes"
    assert main(["record", "--device", "scripted", "--seconds", "2", "--image-size", "64", "--renderer", "tiny",
                 "--camera", "usb=synthetic", "--camera", f"clip={video}", "--camera-size", "128x96",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cameras front, wrist, usb, clip;" in printed
    assert "  camera usb: " in printed and "device timestamps" in printed
    assert "  camera clip: " in printed and "receive timestamps" in printed
    with open_episode(out / "episode_000000.h5") as episode:
        assert set(episode.camera_names) == {"front", "wrist", "usb", "clip"}
        assert episode.frame("usb", 0).shape == (96, 128, 3) and episode.frame("clip", 0).shape == (96, 128, 3)
        red = episode.frames("clip")[..., 0].mean(axis=(1, 2))
        assert red.min() > 150  # the video's frames, as RGB
        seq = episode.camera_seq("usb")
        assert np.all(np.diff(seq) >= 0) and seq[-1] > seq[0]  # the synthetic camera's own frames, in order
        stats = json.loads(str(episode.attrs["camera_stats"]))
        usb = episode.camera_stats("usb")
        assert usb is not None and usb.as_dict() == stats["usb"]  # the reader's view of the stored counts
        front = episode.camera_stats("front")
        assert front is not None and (front.state, front.timestamps, front.drops) == ("sim", "tick", 0)
    assert stats["usb"]["timestamps"] == "device" and stats["clip"]["timestamps"] == "receive"
    assert stats["usb"]["used"] == len(set(seq.tolist()))


@pytest.mark.parametrize(("camera", "message"), [
    ("usb=7", "no camera at index 7"),
    ("front=synthetic", "camera names ['front'] are taken by the simulator's cameras"),
    ("usb", "is not NAME=SOURCE"),
    ("usb=webcam", "camera source 'webcam' of 'usb' is none of"),
])
def test_record_says_what_is_wrong_with_a_camera_before_recording(
        tmp_path: Path, capsys: pytest.CaptureFixture, camera: str, message: str) -> None:
    pytest.importorskip("cv2")
    assert main(["record", "--device", "scripted", "--seconds", "1", "--image-size", "64", "--renderer", "tiny",
                 "--camera", camera, "--camera-size", "128x96", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing recorded
