"""The whole product path through the command line: demo -> episodes -> list -> replay -> train -> eval."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recorder.hdf5 import EpisodeReader
from teleop.cli import main
from teleop.replay import replay_joint_positions


@pytest.fixture(scope="module")
def franka_episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "episodes"
    assert main(["demo", "--robot", "franka", "--task", "franka-reach", "--episodes", "3", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("robot", ["xarm7", "allegro"])
def test_demo_records_episodes_for_every_robot(robot: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / robot
    assert main(["demo", "--robot", robot, "--episodes", "2", "--out", str(out)]) == 0
    assert "recorded 2 episodes" in capsys.readouterr().out
    assert main(["episodes", "list", str(out)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("episode_")]
    assert len(lines) == 2 and all(robot in line for line in lines)


def test_episodes_are_complete_aligned_and_stamped(franka_episodes: Path) -> None:
    paths = sorted(franka_episodes.glob("*.h5"))
    assert len(paths) == 3 and not list(franka_episodes.glob("*.partial"))
    for path in paths:
        with EpisodeReader(path) as episode:
            n = episode.num_steps
            assert n > 10 and episode.success is True
            t = episode.timestamps
            assert np.all(np.diff(t) > 0)
            arrays = [episode.joint_pos, episode.joint_vel, episode.ee_pose, episode.action, t]
            arrays += [episode.device(key) for key in episode.device_keys]
            arrays += [episode.extras(key) for key in episode.extras_keys]
            assert {len(a) for a in arrays} == {n}
            assert set(episode.camera_names) == {"front", "wrist"}
            for camera in episode.camera_names:
                stamps = episode.camera_timestamps(camera)
                assert len(stamps) == n and np.all(np.diff(stamps) > 0)
                assert np.all(stamps >= t) and np.all(stamps[:-1] < t[1:])  # captured during its own tick
                frames = episode.frames(camera)
                assert frames.shape == (n, 224, 224, 3)
                assert frames[0].std() > 10 and frames[-1].std() > 10  # not blank
                assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 1  # the scene changed
            attrs = episode.attrs
            for key in ("robot", "task", "instruction", "control_rate_hz", "operator_device", "start_time",
                        "software_version", "joint_names", "achieved_rate_hz", "late_ticks"):
                assert key in attrs, key
            assert episode.camera_info("front").K.shape == (3, 3)


def test_replaying_recorded_actions_reproduces_recorded_joint_states(franka_episodes: Path) -> None:
    for path in sorted(franka_episodes.glob("*.h5")):
        recorded, replayed = replay_joint_positions(path)
        np.testing.assert_allclose(replayed, recorded, atol=1e-6)


def test_a_broken_episode_is_named_and_its_neighbours_still_listed(
    franka_episodes: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(franka_episodes, folder)
    broken = folder / "episode_000001.h5"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 3])
    (folder / "episode_000002.h5").write_bytes(b"not an hdf5 file at all")
    assert main(["episodes", "list", str(folder)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert "franka-reach" in by_name["episode_000000.h5"] and "yes" in by_name["episode_000000.h5"]
    assert "ERROR" in by_name["episode_000001.h5"] and "ERROR" in by_name["episode_000002.h5"]
    with pytest.raises(Exception, match="episode_000001.h5"):
        EpisodeReader(broken)


def test_train_then_eval_prints_a_success_rate(franka_episodes: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(["train", str(franka_episodes), "--out", str(run), "--steps", "200"]) == 0
    assert (run / "policy.pt").is_file() and (run / "config.json").is_file()
    capsys.readouterr()
    assert main(["eval", str(run), "--episodes", "2", "--max-seconds", "2"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    assert result["episodes"] == 2 and 0.0 <= result["success_rate"] <= 1.0


@pytest.mark.parametrize(("argv", "valid"), [
    (["demo", "--robot", "ur5"], "allegro, franka, xarm7"),
    (["demo", "--task", "franka-stack"], "allegro-reach, franka-pick, franka-reach, xarm7-allegro-reach, xarm7-reach"),
    (["demo", "--robot", "xarm7", "--task", "franka-pick"], "xarm7-reach"),
])
def test_unknown_names_list_the_valid_ones(argv: list[str], valid: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    assert main([*argv, "--out", str(tmp_path / "x")]) == 2
    assert valid in capsys.readouterr().err


def test_listing_a_missing_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["episodes", "list", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_an_unknown_device_lists_the_backends() -> None:
    from teleop.errors import UnknownNameError
    from teleop.rig import RigConfig, build_rig

    with pytest.raises(UnknownNameError, match="gamepad, keyboard, openxr, openxr-hands, replay, scripted, vive"):
        build_rig(RigConfig(device="spacemouse"))


@pytest.mark.parametrize(("robot", "device", "says"), [
    ("franka", "webcam-hands", "tracks a hand"),
    ("allegro", "vive", "gives no hand keypoints"),
    ("allegro", "gamepad", "gives no hand keypoints"),
])
def test_a_device_that_cannot_drive_the_robot_says_which_can(robot: str, device: str, says: str) -> None:
    from teleop.errors import TeleopError
    from teleop.rig import RigConfig, build_rig

    with pytest.raises(TeleopError, match=says):
        build_rig(RigConfig(robot=robot, device=device))


def test_zarr_episodes_go_through_the_same_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "zarr"
    assert main(["demo", "--robot", "xarm7", "--episodes", "2", "--format", "zarr", "--out", str(out)]) == 0
    paths = sorted(out.glob("*.zarr"))
    assert len(paths) == 2
    capsys.readouterr()
    assert main(["episodes", "list", str(out)]) == 0
    assert capsys.readouterr().out.count("xarm7-reach") == 2
    recorded, replayed = replay_joint_positions(paths[0])
    np.testing.assert_allclose(replayed, recorded, atol=1e-6)
    assert main(["train", str(out), "--out", str(tmp_path / "run"), "--steps", "50"]) == 0


def test_a_real_camera_is_recorded_beside_the_simulator_cameras(tmp_path: Path) -> None:
    from recorder.backend import open_episode
    from recorder.cameras import SyntheticCamera
    from teleop.recording import record_episode
    from teleop.rig import RigConfig, build_rig
    from teleop.session import SessionConfig

    camera = SyntheticCamera(width=128, height=48, fps=30)
    config = RigConfig(robot="franka", session=SessionConfig(max_duration_s=1.0, stop_on_success_s=None))
    with camera:
        rig = build_rig(config, cameras={"webcam": camera})
        try:
            episode = record_episode(rig, tmp_path, seed=0)
        finally:
            rig.close()
    with open_episode(episode.path) as reader:
        assert set(reader.camera_names) == {"front", "wrist", "webcam"}
        seq = reader.camera_seq("webcam")
        stamps, steps = reader.camera_timestamps("webcam"), reader.timestamps
        assert len(seq) == reader.num_steps and np.all(np.diff(seq) >= 0)
        assert np.all(stamps <= steps)  # never a frame from the future
        assert reader.frames("webcam").shape[1:] == (48, 128, 3)
        assert "webcam" in json.loads(reader.attrs["camera_stats"])


def test_demo_hold_is_how_long_the_operator_stays_at_the_goal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    steps = {}
    for hold in (0.0, 1.0):
        out = tmp_path / f"hold{hold:g}"
        assert main(["demo", "--episodes", "1", "--hold", str(hold), "--out", str(out)]) == 0
        [path] = sorted(out.glob("*.h5"))
        with EpisodeReader(path) as episode:
            assert episode.success is True
            steps[hold] = episode.num_steps
    assert 17 <= steps[1.0] - steps[0.0] <= 23  # the same scene, one more second at 20 Hz
    assert main(["demo", "--hold", "-1", "--out", str(tmp_path / "bad")]) != 0
    assert "--hold must be 0 or more seconds" in capsys.readouterr().err
