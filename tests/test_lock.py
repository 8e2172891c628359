"""The recording process holds an OS lock on its episode: repair acts the instant a recording dies and never
touches a live one, and recordings into one folder never collide."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recorder.backend import create_writer, open_episode
from recorder.repair import RepairedEpisode, RepairProblem, repair_directory
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop.errors import EpisodeError

FORMATS = ["hdf5", "zarr"]


def meta() -> EpisodeMeta:
    return EpisodeMeta(robot="panda", task="reach", instruction="reach", control_rate_hz=50.0,
                       operator_device="scripted", joint_names=("j0", "j1"), action_names=("a0", "a1"),
                       cameras={"front": CameraInfo(8, 8, np.eye(3), np.eye(4))}, start_time=1.7e9)


def step(i: int) -> Step:
    return Step(t=0.02 * i, joint_pos=np.full(2, i, float), joint_vel=np.zeros(2), ee_pose=np.zeros(7),
                action=np.full(2, -i, float), device={}, extras={},
                frames={"front": CameraFrame(np.full((8, 8, 3), i % 256, np.uint8), 0.02 * i, i)})


def _record_child(directory: str, fmt: str, episodes: str, steps: str) -> None:
    """Record `episodes` episodes of `steps` steps; with steps < 0, flush |steps| steps and wait to be killed."""
    n = int(steps)
    for _ in range(int(episodes)):
        writer = create_writer(Path(directory), meta(), fmt, flush_interval_s=0.0, min_free_bytes=0)
        for i in range(abs(n)):
            writer.append(step(i))
        if n < 0:
            print("flushed", flush=True)
            time.sleep(60)
        writer.close(True)


def start(tmp_path: Path, fmt: str, episodes: int, steps: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, str(tmp_path), fmt, str(episodes), str(steps)],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])


@pytest.mark.parametrize("fmt", FORMATS)
def test_repair_leaves_a_live_recording_alone_and_repairs_it_the_instant_its_process_dies(
    tmp_path: Path, fmt: str
) -> None:
    child = start(tmp_path, fmt, 1, -20)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "flushed"
        [problem] = repair_directory(tmp_path)
        assert isinstance(problem, RepairProblem) and "is being recorded" in problem.message
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    [repaired] = repair_directory(tmp_path)  # no waiting: the kernel released the lock with the process
    assert isinstance(repaired, RepairedEpisode) and repaired.num_steps == 20
    with open_episode(repaired.path) as episode:
        np.testing.assert_array_equal(episode.joint_pos[:, 0], np.arange(20))
    assert sorted(p.name for p in tmp_path.iterdir()) == [repaired.path.name]  # the lock file is gone too


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_writer_refuses_an_episode_another_process_records(tmp_path: Path, fmt: str) -> None:
    child = start(tmp_path, fmt, 1, -3)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "flushed"
        [partial] = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        taken = partial.with_name(partial.name.removesuffix(".partial"))
        with pytest.raises(EpisodeError, match="is being recorded by another process"):
            create_writer(taken, meta(), fmt).open()
        other = create_writer(tmp_path, meta(), fmt)  # a folder: the next free number
        assert other.path.name != taken.name
        other.discard()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_recordings_into_one_folder_never_collide(tmp_path: Path, fmt: str) -> None:
    children = [start(tmp_path, fmt, 15, 3) for _ in range(2)]
    for child in children:
        assert child.wait(timeout=120) == 0
    episodes = sorted(p for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert len(episodes) == 30 and not any(p.name.endswith(".partial") for p in episodes)
    for path in episodes:
        with open_episode(path) as episode:
            assert episode.num_steps == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # every lock file was removed


def test_a_finished_or_discarded_episode_leaves_no_lock_file(tmp_path: Path) -> None:
    kept = create_writer(tmp_path, meta())
    kept.append(step(0))
    kept.close()
    dropped = create_writer(tmp_path, meta())
    dropped.append(step(0))
    dropped.discard()
    assert sorted(os.listdir(tmp_path)) == ["episode_000000.h5"]


if __name__ == "__main__":
    _record_child(*sys.argv[1:5])
