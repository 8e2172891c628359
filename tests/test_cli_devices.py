"""`teleop devices`, `teleop record` with a trace, and replaying that trace as a device."""

from __future__ import annotations

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
        # one lies near the other, and they end at the same place. test_trace.py checks exactness on a simulated
        # clock.
        a_path, b_path = a.ee_pose[:, :3], b.ee_pose[:, :3]
        assert _hausdorff(a_path, b_path) < 0.03
        assert np.linalg.norm(a_path[-1] - b_path[-1]) < 0.005


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
