"""`teleop train` on two processes under torchrun (gloo on the CPU), launched as the README says, on small
synthetic episodes: one run folder written by rank 0, one encoding pass, replicas that end identical, a
checkpoint that `teleop eval` reads as usual.

Each rank runs this module (`_rank_main`): it notes every encoder pass, evaluation and the policy each rank ends
with in a probe folder, then hands over to `python -m teleop.cli`. Only the simulator rollout of an evaluation is
replaced (by the policy acting on a recorded frame); everything else is the real run.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from recorder.hdf5 import EpisodeReader, EpisodeWriter
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop.errors import TeleopError
from teleop.train.distributed import Ranks, ranks_from_env

torch = pytest.importorskip("torch")

from teleop.train.runner import load_policy  # noqa: E402  (after the torch check)

TESTS = Path(__file__).resolve().parent
IMAGE = 64  # [px]
JOINTS = tuple(f"joint{i}" for i in range(7)) + ("finger1", "finger2")
ACTIONS = tuple(f"joint{i}" for i in range(7)) + ("gripper",)
EPISODES = 3
STEPS_PER_EPISODE = 20
TRAIN_STEPS = 120
EVAL_EVERY = 60
SUCCESS_RATES = (0.5, 0.25)  # what the evaluations at steps 60 and 120 report: the best is at step 60


# ------------------------------------------------------------------------------------------ synthetic data


def _write_episode(path: Path, seed: int) -> Path:
    """A successful episode whose first action columns follow a colour only the front camera shows."""
    rng = np.random.default_rng(seed)
    K = np.array([[60.0, 0, IMAGE / 2], [0, 60.0, IMAGE / 2], [0, 0, 1]])
    meta = EpisodeMeta(robot="panda", task="colour_reach", instruction="reach where the colour says",
                       control_rate_hz=20.0, operator_device="scripted", joint_names=JOINTS, action_names=ACTIONS,
                       cameras={"front": CameraInfo(IMAGE, IMAGE, K, np.eye(4))}, start_time=1.7e9)
    writer = EpisodeWriter(path, meta)
    for i in range(STEPS_PER_EPISODE):
        u = float(rng.uniform())
        image = np.full((IMAGE, IMAGE, 3), 90, dtype=np.uint8)
        image[16:48, 16:48] = (255 * u, 60, 255 * (1 - u))
        joint_pos = rng.uniform(-1, 1, len(JOINTS))
        action = np.r_[2 * u - 1, 0.5 - u, joint_pos[2:7] + 0.1, float(u > 0.5)]
        writer.append(Step(t=0.05 * i, joint_pos=joint_pos, joint_vel=np.zeros(len(JOINTS)),
                           ee_pose=np.array([0.4, 0, 0.3, 1, 0, 0, 0]), action=action,
                           frames={"front": CameraFrame(image, 0.05 * i)}))
    return writer.close(True)


def _parameter_digest(named: dict[str, Any]) -> str:
    """SHA-256 of the parameters' bytes, in the given order."""
    return hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in named.values())).hexdigest()


# ------------------------------------------------------------------------------------ what each rank runs


def _rank_main(probes: Path, episode: Path, cli_args: list[str]) -> None:
    """Probe this rank's run into `probes`, then run `python -m teleop.cli *cli_args`."""
    import teleop.evaluate
    import teleop.train.features as features
    import teleop.train.trainer as trainer

    rank = os.environ["RANK"]
    encode, result = features.encode_episode, trainer._Loop.result

    def noted(name: str, line: str) -> None:
        with open(probes / f"{name}_rank{rank}.txt", "a") as f:
            f.write(line + "\n")

    def counted_encode(reader, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        noted("encoded", Path(reader.path).name)
        return encode(reader, *args, **kwargs)

    def rollout_on_a_recorded_frame(runner, episodes, **kwargs):  # noqa: ANN001, ANN003, ANN202
        with EpisodeReader(episode) as reader:
            action = runner.act(reader.frames(runner.camera, 0, 1)[0], reader.joint_pos[0])
        noted("evaluated", json.dumps(action.tolist()))
        calls = len((probes / f"evaluated_rank{rank}.txt").read_text().splitlines())
        return SimpleNamespace(success_rate=SUCCESS_RATES[calls - 1])

    def probed_result(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        params = dict(self.trained.named_parameters())  # the policy, and a keypoints encoder training with it
        doc = {"names": list(params), "params": _parameter_digest(params),
               "losses": hashlib.sha256(self.step_losses.cpu().numpy().tobytes()).hexdigest()}
        (probes / f"policy_rank{rank}.json").write_text(json.dumps(doc))
        return result(self, *args, **kwargs)

    features.encode_episode = counted_encode
    teleop.evaluate.evaluate_runner = rollout_on_a_recorded_frame
    trainer._Loop.result = probed_result
    sys.argv = ["teleop", *cli_args]
    runpy.run_module("teleop.cli", run_name="__main__")


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])


# ------------------------------------------------------------------------------------------------ the run


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Two ranks trained by torchrun on a frozen encoder, from an empty working folder."""
    return _launch(tmp_path_factory.mktemp("ddp"), ["--encoder", "resnet18", "--steps", str(TRAIN_STEPS),
                                                    "--eval-every", str(EVAL_EVERY), "--eval-episodes", "1"])


@pytest.fixture(scope="module")
def launched_keypoints(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Two ranks training the keypoints encoder with the policy, end to end."""
    return _launch(tmp_path_factory.mktemp("ddp_keypoints"), ["--encoder", "keypoints", "--steps", "30",
                                                              "--image-size", "32"])


def _launch(root: Path, options: list[str]) -> SimpleNamespace:
    episodes, probes, cwd = root / "episodes", root / "probes", root / "cwd"
    for folder in (episodes, probes, cwd):
        folder.mkdir()
    for i in range(EPISODES):
        _write_episode(episodes / f"episode_{i:06d}.h5", seed=i)
    run = root / "run"
    cli = ["train", str(episodes), "--out", str(run), "--batch-size", "16", *options]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "test_distributed", str(probes), str(episodes / "episode_000000.h5"), *cli]
    # The ranks import this checkout and this module; one thread each (two ranks share the cores).
    path = os.pathsep.join(filter(None, [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}  # gloo, CPU
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return SimpleNamespace(root=root, run=run, probes=probes, cwd=cwd, episodes=episodes, stdout=done.stdout)


def _probe(launched: SimpleNamespace, name: str, rank: int) -> list[str]:
    path = launched.probes / f"{name}_rank{rank}.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_rank_0_alone_writes_one_run_folder(launched) -> None:
    assert sorted(p.name for p in launched.root.iterdir()) == ["cwd", "episodes", "probes", "run"]
    assert list(launched.cwd.iterdir()) == []
    assert sorted(p.name for p in launched.run.iterdir()) == [
        "config.json", "feature_cache", "policy.pt", "policy_best.pt", "train_log.jsonl"]
    config = json.loads((launched.run / "config.json").read_text())
    assert config["world_size"] == 2 and config["device"] == "cpu"
    records = [json.loads(line) for line in (launched.run / "train_log.jsonl").read_text().splitlines()]
    losses = [r["step"] for r in records if "loss" in r]
    assert losses == sorted(set(losses)) and losses[-1] == TRAIN_STEPS  # one writer: no step twice
    assert [(r["step"], r["success"]) for r in records if "success" in r] == [(60, 0.5), (120, 0.25)]


def test_only_rank_0_logs_and_evaluates(launched) -> None:
    assert launched.stdout.count(f"step {TRAIN_STEPS}/{TRAIN_STEPS}") == 1
    assert launched.stdout.count("best success rate during training: 50%") == 1
    assert len(_probe(launched, "evaluated", 0)) == 2 and _probe(launched, "evaluated", 1) == []


def test_the_encoder_runs_once_per_episode_on_rank_0(launched) -> None:
    expected = [f"episode_{i:06d}.h5" for i in range(EPISODES)]
    assert sorted(_probe(launched, "encoded", 0)) == expected
    assert _probe(launched, "encoded", 1) == []  # rank 1 read rank 0's cache
    assert len(list((launched.run / "feature_cache").glob("*.npz"))) == EPISODES
    assert launched.stdout.count("encoding episode") == EPISODES


def test_replicas_sample_their_own_batches_and_end_identical(launched) -> None:
    ranks = [json.loads((launched.probes / f"policy_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["losses"] != ranks[1]["losses"]  # different minibatches ...
    assert ranks[0]["params"] == ranks[1]["params"]  # ... averaged gradients: the same parameters
    state = torch.load(launched.run / "policy.pt", weights_only=True)["state_dict"]
    assert _parameter_digest({n: state[n] for n in ranks[0]["names"]}) == ranks[0]["params"]  # unwrapped names


def test_a_keypoints_encoder_trains_in_step_on_both_ranks(launched_keypoints) -> None:
    ranks = [json.loads((launched_keypoints.probes / f"policy_rank{r}.json").read_text()) for r in (0, 1)]
    assert any(name.startswith("encoder.conv.") for name in ranks[0]["names"])
    assert ranks[0]["losses"] != ranks[1]["losses"] and ranks[0]["params"] == ranks[1]["params"]
    checkpoint = torch.load(launched_keypoints.run / "policy.pt", weights_only=True)
    stored = {f"encoder.{k}": v for k, v in checkpoint["encoder_state_dict"].items()}
    stored |= {f"policy.{k}": v for k, v in checkpoint["state_dict"].items()}
    assert _parameter_digest({n: stored[n] for n in ranks[0]["names"]}) == ranks[0]["params"]
    assert _probe(launched_keypoints, "encoded", 0) == [] and not (launched_keypoints.run / "feature_cache").exists()
    runner = load_policy(launched_keypoints.run, device="cpu")
    with EpisodeReader(launched_keypoints.episodes / "episode_000001.h5") as reader:
        action = runner.act(reader.frames("front", 0, 1)[0], reader.joint_pos[0])
    assert action.shape == (len(ACTIONS),) and np.all(np.isfinite(action))


def test_the_checkpoints_load_and_act(launched) -> None:
    best = torch.load(launched.run / "policy_best.pt", weights_only=True)
    assert best["step"] == EVAL_EVERY and best["success_rate"] == SUCCESS_RATES[0]
    runner = load_policy(launched.run, device="cpu")
    with EpisodeReader(launched.episodes / "episode_000001.h5") as reader:
        action = runner.act(reader.frames("front", 0, 1)[0], reader.joint_pos[0])
    assert action.shape == (len(ACTIONS),) and np.all(np.isfinite(action))


# ------------------------------------------------------------------------------------------------ the ranks


def test_without_torchrun_there_is_one_rank() -> None:
    assert ranks_from_env({}) == Ranks() and ranks_from_env({"WORLD_SIZE": "1", "RANK": "0"}) == Ranks()
    assert not Ranks().distributed and Ranks().is_main and Ranks().device("cuda") == "cuda"


def test_torchrun_variables_give_the_rank_and_its_gpu() -> None:
    ranks = ranks_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (ranks.rank, ranks.local_rank, ranks.world_size) == (3, 1, 4)
    assert ranks.distributed and not ranks.is_main
    assert ranks.device("cuda") == "cuda:1" and ranks.device("cpu") == "cpu"
    messages: list[str] = []
    ranks.main_only(messages.append)("only rank 0 says this")
    assert messages == []


@pytest.mark.parametrize("env", [{"WORLD_SIZE": "2"}, {"WORLD_SIZE": "2", "RANK": "2"}, {"WORLD_SIZE": "two"}])
def test_incomplete_torchrun_variables_say_how_to_launch(env: dict[str, str]) -> None:
    with pytest.raises(TeleopError, match="torchrun"):
        ranks_from_env(env)
