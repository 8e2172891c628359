"""What a policy predicts (teleop.train.actions) and which steps it trains on, on real scripted demonstrations
of franka-reach: ee-delta targets are what the operator commanded, decoding one through the IK moves the arm
where the demonstration went, the idle start is left out, and a trained ee-delta policy round-trips through
its checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SimulatedClock

from teleop.errors import TeleopError, UnknownNameError

torch = pytest.importorskip("torch")

from teleop.train.actions import (  # noqa: E402
    DEFAULT_CHUNK,
    DEFAULT_HORIZON,
    default_action_space,
    make_action_space,
)

DEMOS = 3


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three scripted franka-reach demonstrations with 32x32 cameras, on the simulator's clock."""
    from teleop.recording import record_episode
    from teleop.rig import RigConfig, build_rig
    from teleop.session import SessionConfig
    from teleop.sim import SimConfig

    folder = tmp_path_factory.mktemp("reach")
    clock = SimulatedClock()
    rig = build_rig(RigConfig(robot="franka", task="franka-reach", sim=SimConfig(image_size=(32, 32)),
                              session=SessionConfig(rate_hz=20.0)), clock=clock, sleep=clock.sleep)
    try:
        for seed in range(DEMOS):
            assert record_episode(rig, folder, seed).result.success
    finally:
        rig.close()
    return folder


def _episode(folder: Path, i: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from recorder.backend import open_episode

    with open_episode(sorted(folder.glob("episode_*.h5"))[i]) as episode:
        return episode.joint_pos, episode.action, episode.ee_pose


def test_defaults_follow_the_robot() -> None:
    assert default_action_space("franka") == default_action_space("xarm7") == "ee-delta"
    assert default_action_space("allegro") == "joint"
    assert default_action_space("a-robot-without-a-model") == "joint"
    with pytest.raises(TeleopError, match="allegro has no end effector"):
        make_action_space("ee-delta", "allegro")
    with pytest.raises(UnknownNameError, match="action space 'cartesian'"):
        make_action_space("cartesian", "franka")
    with pytest.raises(TeleopError, match="horizon must be at least 1"):
        make_action_space("ee-delta", "franka", horizon=0)


def test_joint_space_is_the_recorded_action(demos: Path) -> None:
    joint_pos, action, _ = _episode(demos)
    space = make_action_space("joint", "franka")
    np.testing.assert_array_equal(space.targets(joint_pos, action), action.astype(np.float32))
    np.testing.assert_array_equal(space.proprio(joint_pos), joint_pos.astype(np.float32))
    np.testing.assert_array_equal(space.decode(action[5], joint_pos[5], 0.05), action[5])


def test_ee_delta_targets_are_the_commanded_motion_horizon_steps_ahead(demos: Path) -> None:
    from kinematics.robot_model import RobotModel
    from kinematics.robots import get_robot

    joint_pos, action, ee_pose = _episode(demos)
    model = RobotModel(get_robot("franka"))
    space = make_action_space("ee-delta", "franka", horizon=3)
    seen = space.proprio(joint_pos)
    assert seen.shape == (len(joint_pos), 7 + 2)  # pose, then the two finger joints
    np.testing.assert_allclose(seen[:, :3], ee_pose[:, :3], atol=1e-5)  # the recorded pose is FK of joint_pos
    assert np.all(seen[:, 3] >= 0)  # quaternion sign fixed
    targets = space.targets(joint_pos, action)
    assert targets.shape == (len(joint_pos), 6 + 1)
    n = len(joint_pos)
    for t in (0, n // 2, n - 2):
        ahead = model.fk(action[min(t + 3, n - 1), :7])[:3, 3]
        np.testing.assert_allclose(targets[t, :3], ahead - ee_pose[t, :3], atol=1e-5)
    np.testing.assert_array_equal(targets[:, 6], action[:, 7].astype(np.float32))  # gripper as recorded
    idle = int(np.flatnonzero(np.abs(np.diff(action[:, :7], axis=0)).max(axis=1) > 1e-4)[0])
    assert np.abs(targets[: max(idle - 3, 1), :3]).max() < 1e-4  # no motion commanded while idle


def test_decoding_the_demonstrations_targets_retraces_the_demonstration(demos: Path) -> None:
    """Fed the recorded targets step by step, the IK puts the end effector where the demonstration's commands
    did, within the joint limits."""
    from kinematics.robot_model import RobotModel
    from kinematics.robots import get_robot

    joint_pos, action, _ = _episode(demos, 1)
    model = RobotModel(get_robot("franka"))
    space = make_action_space("ee-delta", "franka", horizon=1)
    targets = space.targets(joint_pos, action)
    space.reset(joint_pos[0])
    for t in range(len(joint_pos) - 1):
        command = space.decode(targets[t], joint_pos[t], 0.05)
        assert command.shape == (8,) and command[7] == pytest.approx(action[t, 7])
        assert np.all(command[:7] >= model.lower) and np.all(command[:7] <= model.upper)
        reached = model.fk(command[:7])[:3, 3]
        np.testing.assert_allclose(reached, model.fk(action[t + 1, :7])[:3, 3], atol=5e-3)


def test_a_chunk_holds_the_next_targets_and_decoding_ensembles_them(demos: Path) -> None:
    """ACT's chunks: the targets of steps t + horizon .. t + horizon + C - 1; at run time each step's target is the
    weighted mean of what the last C steps predicted for it, in the world frame."""
    from scipy.spatial.transform import Rotation

    joint_pos, action, _ = _episode(demos)
    single, chunked = (make_action_space("ee-delta", "franka", horizon=2, chunk=c) for c in (1, 3))
    targets = chunked.targets(joint_pos, action)
    assert targets.shape == (len(joint_pos), 3 * 6 + 1)
    np.testing.assert_array_equal(targets[:, :6], single.targets(joint_pos, action)[:, :6])
    later = make_action_space("ee-delta", "franka", horizon=4).targets(joint_pos, action)
    np.testing.assert_array_equal(targets[:, 12:18], later[:, :6])  # the chunk's last: horizon + 2
    np.testing.assert_array_equal(targets[:, 18], action[:, 7].astype(np.float32))

    q = joint_pos[-1]  # the arm stands still: every prediction is relative to the same pose
    chunked.reset(q)
    position = chunked._fk(q)[:3, 3]
    for step, offsets in enumerate(([0.01, 0.02, 0.03], [0.05, 0.06, 0.07], [0.09, 0.10, 0.11])):
        prediction = np.zeros(19)
        prediction[[0, 6, 12]] = offsets  # x of the chunk's three targets
        prediction[[5, 11, 17]] = offsets  # and a rotation about z
        chunked.decode(prediction, q, 0.05)
        if step == 0:  # nothing older: the first target of the chunk
            np.testing.assert_allclose(chunked.target[:3, 3] - position, [0.01, 0, 0], atol=1e-9)
    # step 2's target was predicted at step 0 (third of its chunk), 1 (second) and 2 (first): 0.03, 0.06, 0.09
    weights = np.exp(-0.01 * np.arange(3))
    weights /= weights.sum()
    expected = weights @ np.array([0.03, 0.06, 0.09])
    np.testing.assert_allclose(chunked.target[:3, 3] - position, [expected, 0, 0], atol=1e-9)
    about_z = Rotation.from_matrix(chunked.target[:3, :3] @ chunked._fk(q)[:3, :3].T).as_rotvec()
    np.testing.assert_allclose(about_z, [0, 0, expected], atol=1e-3)
    with pytest.raises(TeleopError, match="a chunk must hold at least 1 target"):
        make_action_space("joint", "franka", chunk=0)


def test_a_joint_chunk_holds_the_next_rows_and_decoding_ensembles_them() -> None:
    """ACT's own case: chunks of joint targets, each step's action the weighted mean of the rows predicted for it."""
    action = np.arange(12, dtype=np.float64).reshape(6, 2)  # 6 steps of 2 joint targets
    space = make_action_space("joint", "allegro", chunk=3)
    targets = space.targets(np.zeros((6, 2)), action)
    assert targets.shape == (6, 6)
    np.testing.assert_array_equal(targets[0], [0, 1, 2, 3, 4, 5])  # rows 0, 1, 2
    np.testing.assert_array_equal(targets[5], [10, 11, 10, 11, 10, 11])  # the last row repeated past the end
    space.reset(np.zeros(2))
    predictions = [np.full(6, 10.0 * (k + 1)) + np.repeat([0.0, 1.0, 2.0], 2) for k in range(3)]
    out = [space.decode(p, np.zeros(2), 0.05) for p in predictions]
    np.testing.assert_allclose(out[0], [10, 10])  # nothing older: the first row of the only prediction
    # step 2's rows: made at step 0 (its third row, 12), 1 (second, 21) and 2 (first, 30)
    weights = np.exp(-0.01 * np.arange(3))
    np.testing.assert_allclose(out[2], np.full(2, weights @ [12.0, 21.0, 30.0] / weights.sum()))
    assert make_action_space("joint", "allegro").decode(np.ones(3), np.zeros(3), 0.05).tolist() == [1, 1, 1]


def test_training_leaves_out_the_idle_start_and_keeps_the_hold(demos: Path) -> None:
    from recorder.trim import motion_range
    from teleop.train.features import FeatureSet
    from teleop.train.trainer import training_samples

    episodes = sorted(demos.glob("episode_*.h5"))
    parts = [_episode(demos, i) for i in range(DEMOS)]
    data = FeatureSet(
        features=np.concatenate([np.full((len(p[0]), 2), i, np.float32) for i, p in enumerate(parts)]),
        proprio=np.concatenate([p[0] for p in parts]).astype(np.float32),
        actions=np.concatenate([p[1] for p in parts]).astype(np.float32),
        episode_index=np.concatenate([np.full(len(p[0]), i) for i, p in enumerate(parts)]),
        episodes=tuple(episodes), robot="franka", task="franka-reach", instruction="", joint_names=(),
        action_names=(), camera="front", encoded_episodes=0,
    )
    space = make_action_space("ee-delta", "franka", 3)
    everything = training_samples(data, space, trim_idle=False)
    trimmed = training_samples(data, space, trim_idle=True)
    assert len(everything.features) == data.num_samples
    starts = [motion_range(p[1], 20.0).start for p in parts]
    assert all(s > 0 for s in starts) and len(trimmed.features) == data.num_samples - sum(starts)
    for i, (p, start) in enumerate(zip(parts, starts, strict=True)):
        rows = np.flatnonzero(trimmed.features[:, 0] == i)
        assert len(rows) == len(p[0]) - start  # the end (the hold after success) is kept
        np.testing.assert_allclose(trimmed.targets[rows], space.targets(p[0], p[1])[start:], atol=1e-5)  # float32 rows


@pytest.mark.parametrize("chunk", [None, 1])
def test_an_ee_delta_policy_trains_saves_and_acts_through_the_ik(
    demos: Path, tmp_path: Path, chunk: int | None
) -> None:
    from teleop.train.runner import load_policy
    from teleop.train.trainer import TrainConfig, train

    threads = torch.get_num_threads()
    result = train(TrainConfig(episodes_dir=demos, out_dir=tmp_path / "run", steps=60, encoder="resnet18",
                               cache_dir=tmp_path / "cache", feature_batch_size=16, threads=1, chunk=chunk),
                   log=lambda m: None)
    assert torch.get_num_threads() == threads  # restored
    assert result.num_samples < sum(len(_episode(demos, i)[0]) for i in range(DEMOS))  # idle starts left out
    runner = load_policy(result.run_dir)
    chunk = chunk or DEFAULT_CHUNK  # ACT's chunks by default
    assert (runner.info.action_space, runner.info.horizon, runner.info.chunk) == ("ee-delta", DEFAULT_HORIZON, chunk)
    assert runner._policy.action_dim == 6 * chunk + 1
    from kinematics.robot_model import RobotModel
    from kinematics.robots import get_robot

    model = RobotModel(get_robot("franka"))
    joint_pos, _, _ = _episode(demos)
    runner.reset(joint_pos[0])
    rgb = np.zeros((32, 32, 3), np.uint8)
    previous = joint_pos[0, :7]
    for _ in range(chunk):  # through a full ensemble
        action = runner.act(rgb, joint_pos[0])
        assert action.shape == (8,) and np.all(np.isfinite(action))
        # one control period of joint motion at most: the IK's speed limit holds whatever the policy predicts
        assert np.all(np.abs(action[:7] - previous) <= model.velocity_limit * 0.05 + 1e-9)
        previous = action[:7]


def test_a_version_1_checkpoint_still_loads_as_joint_targets(demos: Path, tmp_path: Path) -> None:
    from teleop.train.runner import load_policy
    from teleop.train.trainer import TrainConfig, train

    result = train(TrainConfig(episodes_dir=demos, out_dir=tmp_path / "run", steps=20, action_space="joint",
                               chunk=1, cache_dir=tmp_path / "cache", feature_batch_size=16), log=lambda m: None)
    path = result.run_dir / "policy.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["version"] = 1
    for key in ("action_space", "horizon", "chunk"):  # none of them existed in version 1
        del checkpoint["info"][key]
    torch.save(checkpoint, path)
    runner = load_policy(result.run_dir)
    assert (runner.info.action_space, runner.info.horizon, runner.info.chunk) == ("joint", 1, 1)


def test_rollouts_on_worker_processes_give_what_one_process_gives(demos: Path, tmp_path: Path) -> None:
    from teleop.evaluate import evaluate_checkpoint
    from teleop.train.trainer import TrainConfig, train

    result = train(TrainConfig(episodes_dir=demos, out_dir=tmp_path / "run", steps=200,
                               cache_dir=tmp_path / "cache", feature_batch_size=16), log=lambda m: None)
    lines: list[str] = []
    alone_lines: list[str] = []
    alone = evaluate_checkpoint(result.run_dir, 3, seed=500, workers=1, max_duration_s=0.6, progress=alone_lines.append)
    shared = evaluate_checkpoint(result.run_dir / "policy.pt", 3, seed=500, workers=2, max_duration_s=0.6,
                                 progress=lines.append, record_dir=tmp_path / "rollouts")
    assert shared.successes == alone.successes and shared.steps == alone.steps and len(alone.steps) == 3
    assert sorted(line.split("(scene ")[1].split(":")[0] for line in lines) == ["500", "501", "502"]
    rate = f"{sum(alone.successes) / 3:.0%} so far, "
    for progress in (lines, alone_lines):  # a bar, the success rate so far and the time left
        assert progress[-1].startswith("[####################] eval episode 3/3 (") and rate in progress[-1]
        assert progress[-1].endswith(" s left")
    from recorder.backend import open_episode

    recorded = sorted((tmp_path / "rollouts").glob("episode_*.h5"))  # both workers recorded into one folder
    seeds = []
    for path in recorded:
        with open_episode(path) as episode:
            assert episode.meta.operator_device == "policy"
            seeds.append(episode.meta.seed)
    assert sorted(seeds) == [500, 501, 502]
    with pytest.raises(TeleopError, match="no policy checkpoint"):
        evaluate_checkpoint(tmp_path / "nothing", 2, workers=2)


def test_a_sweep_trains_tests_and_plots_every_cell(demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from teleop.cli import main

    out = tmp_path / "sweep"
    assert main(["sweep", str(demos), "--out", str(out), "--demos", "1,2", "--seeds", "2", "--steps", "30",
                 "--eval-every", "15", "--valid-episodes", "1", "--test-episodes", "2", "--workers", "2",
                 "--max-seconds", "0.3"]) == 0
    doc = json.loads((out / "sweep.json").read_text())
    cells = doc["cells"]
    assert [(c["demos"], c["seed"]) for c in cells] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    for cell in cells:
        run = Path(cell["run_dir"])
        assert (run / "policy_best.pt").is_file() and cell["best_step"] in (15, 30)
        assert 0.0 <= cell["test_success"] <= 1.0
        config = json.loads((run / "config.json").read_text())
        assert len(config["data"]["episodes"]) == cell["demos"]  # the first N demonstrations
    assert len(list((out / "feature_cache").glob("*.npz"))) == 2  # each episode encoded once, shared by the cells
    table = (out / "sweep.md").read_text()
    assert table.startswith("| encoder | 1 demos | 2 demos |") and "| resnet18 |" in table
    assert (out / "sweep.png").stat().st_size > 1000
    assert "sweep.png" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sweep", str(demos), "--out", str(tmp_path / "x"), "--demos", "5,zero"])
    assert main(["sweep", str(demos), "--out", str(tmp_path / "y"), "--encoder", "resnet99"]) == 2
