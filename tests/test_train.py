"""Behaviour cloning end to end on small synthetic episodes, and the encoder's checkpoint compatibility.

The synthetic task: each step shows a square whose colour encodes a scalar u in [0, 1]; the action's
first columns depend on u (only visible in the image), the others on the joint positions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recorder.hdf5 import EpisodeReader, EpisodeWriter
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop.errors import TeleopError, UnknownNameError

torch = pytest.importorskip("torch")

from teleop.train.encoders import (  # noqa: E402  (after the torch check)
    build_encoder,
    center_crop,
    encoder_feature_dim,
    resize_shorter_side,
)
from teleop.train.features import cache_key, load_features  # noqa: E402
from teleop.train.policy import PROPRIO_STD_FLOOR, BCPolicy, Normalization  # noqa: E402
from teleop.train.runner import PolicyRunner, load_policy  # noqa: E402
from teleop.train.trainer import Evaluate, TrainConfig, TrainResult, train  # noqa: E402

IMAGE = 64  # [px]
JOINTS = tuple(f"joint{i}" for i in range(7)) + ("finger1", "finger2")
ACTIONS = tuple(f"joint{i}" for i in range(7)) + ("gripper",)
STEPS_PER_EPISODE = 30
TRAIN_STEPS = 300


# ------------------------------------------------------------------------------------------ synthetic data


def _meta() -> EpisodeMeta:
    K = np.array([[60.0, 0, IMAGE / 2], [0, 60.0, IMAGE / 2], [0, 0, 1]])
    cam = CameraInfo(width=IMAGE, height=IMAGE, K=K, T_world_camera=np.eye(4))
    return EpisodeMeta(
        robot="panda",
        task="colour_reach",
        instruction="reach where the square's colour says",
        control_rate_hz=20.0,
        operator_device="scripted",
        joint_names=JOINTS,
        action_names=ACTIONS,
        cameras={"front": cam, "wrist": CameraInfo(IMAGE, IMAGE, K, np.eye(4), mount="panda_hand")},
        start_time=1.7e9,
    )


def _frame(u: float, rng: np.random.Generator) -> np.ndarray:
    """A grey background with sensor noise and a 32 px square coloured by u (red for 1, blue for 0)."""
    img = np.full((IMAGE, IMAGE, 3), 90, dtype=np.int16) + rng.integers(-8, 9, (IMAGE, IMAGE, 3))
    top, left = rng.integers(4, IMAGE - 36, size=2)
    img[top : top + 32, left : left + 32] = (255 * u, 60, 255 * (1 - u))
    return np.clip(img, 0, 255).astype(np.uint8)


def _action(u: float, joint_pos: np.ndarray) -> np.ndarray:
    """The demonstrator's rule: colour decides joints 0-1 and the gripper, proprio the rest."""
    action = np.empty(len(ACTIONS))
    action[0], action[1] = 2 * u - 1, 0.5 - u
    action[2:7] = joint_pos[2:7] + 0.1
    action[7] = float(u > 0.5)
    return action


def _write_episode(path: Path, seed: int, success: bool | None) -> Path:
    rng = np.random.default_rng(seed)
    writer = EpisodeWriter(path, _meta())
    for i in range(STEPS_PER_EPISODE):
        u = float(rng.uniform())
        joint_pos = rng.uniform(-1, 1, len(JOINTS))
        t = 0.05 * i
        writer.append(
            Step(
                t=t,
                joint_pos=joint_pos,
                joint_vel=np.zeros(len(JOINTS)),
                ee_pose=np.array([0.4, 0, 0.3, 1, 0, 0, 0]),
                action=_action(u, joint_pos),
                frames={"front": CameraFrame(_frame(u, rng), t), "wrist": CameraFrame(_frame(1 - u, rng), t)},
            )
        )
    return writer.close(success)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """4 successful + 1 failed training episodes, 1 held-out episode, R3M-layout encoder weights."""
    root = tmp_path_factory.mktemp("bc")
    episodes, held_out = root / "episodes", root / "held_out"
    episodes.mkdir()
    held_out.mkdir()
    for i in range(4):
        _write_episode(episodes / f"episode_{i:06d}.h5", seed=i, success=True)
    _write_episode(episodes / "episode_000004.h5", seed=4, success=False)
    _write_episode(held_out / "episode_000000.h5", seed=99, success=True)
    weights = root / "r3m_model.pt"
    _save_r3m_checkpoint(build_encoder("resnet18", init_seed=7), weights)
    return {"root": root, "episodes": episodes, "held_out": held_out, "weights": weights}


def _save_r3m_checkpoint(encoder, path: Path) -> None:
    """Save a convnet as R3M does: DataParallel prefix, language heads beside it."""
    state = {f"module.convnet.{k}": v for k, v in encoder.convnet.state_dict().items()}
    state["module.lang_enc.model.embeddings.weight"] = torch.zeros(4, 3)
    state["module.lang_rew.pred.0.weight"] = torch.zeros(2, 2)
    torch.save({"r3m": state}, path)


def _success_rate(episode: Path, tolerance: float = 0.2, frames: int = 6) -> tuple[list[int], Evaluate]:
    """An evaluate function: share of held-out steps where the policy reads the colour right, i.e. gets
    the colour-decided columns (joints 0-1 and the gripper) within `tolerance`."""
    calls: list[int] = []

    def evaluate(runner: PolicyRunner) -> float:
        calls.append(1)
        with EpisodeReader(episode) as reader:
            rgb, proprio, action = reader.frames(runner.camera, 0, frames), reader.joint_pos, reader.action
        columns = [0, 1, 7]
        errors = [np.abs(runner.act(rgb[i], proprio[i]) - action[i])[columns].max() for i in range(frames)]
        return float(np.mean(np.array(errors) < tolerance))

    return calls, evaluate


@pytest.fixture(scope="module")
def trained(data: dict[str, Path]) -> tuple[TrainResult, TrainConfig, list[int]]:
    config = TrainConfig(
        episodes_dir=data["episodes"],
        out_dir=data["root"] / "run",
        steps=TRAIN_STEPS,
        encoder_weights=data["weights"],
        eval_every=100,
        cache_dir=data["root"] / "cache",
        device="cpu",
        chunk=1,  # each synthetic frame decides its own action: nothing to predict ahead
    )
    calls, evaluate = _success_rate(data["held_out"] / "episode_000000.h5")
    result = train(config, log=lambda _: None, evaluate=evaluate)
    return result, config, calls


# ------------------------------------------------------------------------------------------------ training


def test_training_reduces_the_loss_by_a_large_factor(trained) -> None:
    result, config, _ = trained
    assert result.steps == config.steps
    assert result.num_episodes == 4  # the failed episode is left out
    assert result.num_samples == 4 * STEPS_PER_EPISODE
    assert result.final_loss < result.first_loss / 10
    assert result.steps_per_s > 0 and result.wall_time_s > 0


def test_run_directory_holds_config_log_and_checkpoints(trained, data) -> None:
    result, config, _ = trained
    run = result.run_dir
    assert (run / "policy.pt").is_file() and (run / "policy_best.pt").is_file()
    doc = json.loads((run / "config.json").read_text())
    assert doc["encoder"]["weights"] == str(data["weights"].resolve())
    assert len(doc["encoder"]["weights_sha256"]) == 64
    assert doc["train"]["steps"] == TRAIN_STEPS and doc["data"]["camera"] == "front"
    records = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    assert losses[-1]["step"] == TRAIN_STEPS and all(np.isfinite(r["loss"]) for r in losses)
    lrs = [r["lr"] for r in losses]  # the cosine schedule: from lr down to 0
    assert lrs[0] == pytest.approx(config.lr, rel=0.01) and lrs[-1] == pytest.approx(0, abs=1e-9)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert [r["step"] for r in records if "success" in r] == [100, 200, 300]


def test_evaluate_is_called_and_the_best_checkpoint_kept(trained) -> None:
    result, _, calls = trained
    assert len(calls) == 3  # steps 100, 200 and 300 (the last one coincides with the final evaluation)
    rates = [rate for _, rate in result.evaluations]
    assert result.best_success_rate == max(rates)
    assert result.best_step == result.evaluations[rates.index(max(rates))][0]
    best = torch.load(result.run_dir / "policy_best.pt", weights_only=True)
    assert best["step"] == result.best_step and best["success_rate"] == result.best_success_rate
    assert result.best_success_rate >= 0.5


def test_saved_state_carries_batchnorm_and_normalisation(trained, data) -> None:
    result, _, _ = trained
    ckpt = torch.load(result.run_dir / "policy.pt", weights_only=True)
    state = ckpt["state_dict"]
    buffers = (
        "bn.running_mean",
        "bn.running_var",
        "proprio_mean",
        "proprio_std",
        "action_mean",
        "action_std",
    )
    assert set(buffers) <= set(state)
    assert state["bn.num_batches_tracked"] == TRAIN_STEPS
    proprio, actions = _training_arrays(data["episodes"])
    np.testing.assert_allclose(state["proprio_mean"].numpy(), proprio.mean(0), atol=1e-5)
    np.testing.assert_allclose(state["proprio_std"].numpy(), np.maximum(proprio.std(0), PROPRIO_STD_FLOOR), rtol=1e-4)
    np.testing.assert_allclose(state["action_std"].numpy(), actions.std(0), rtol=1e-4)
    assert state["bn.running_mean"].shape == (512,) and not ckpt["policy"]["bn_proprio"]  # the embedding only
    assert ckpt["info"]["action_names"] == list(ACTIONS) and ckpt["info"]["camera"] == "front"
    assert ckpt["encoder"]["weights_sha256"] is not None


def test_a_proprio_column_that_barely_moves_is_not_blown_up() -> None:
    rng = np.random.default_rng(0)
    proprio = np.c_[rng.normal(0.0, 0.3, 200), 0.04 + rng.normal(0.0, 1e-4, 200)]  # a joint, an open finger
    norm = Normalization.fit(proprio, rng.normal(size=(200, 2)))
    assert norm.proprio_std[0] == pytest.approx(proprio[:, 0].std(), rel=1e-5)
    assert norm.proprio_std[1] == pytest.approx(PROPRIO_STD_FLOOR)
    policy = BCPolicy(3, 2, 2)
    policy.set_normalization(norm)
    policy.eval()
    x = torch.zeros(1, 3)
    still = torch.tensor([[0.0, 0.04]], dtype=torch.float32)
    moved = still + torch.tensor([[0.0, 0.001]])  # the finger 1 mm off: 0.02 of a std, not 10 stds
    with torch.no_grad():
        inputs = [(p - policy.proprio_mean) / policy.proprio_std for p in (still, moved)]
    assert float((inputs[1] - inputs[0]).abs().max()) == pytest.approx(0.001 / PROPRIO_STD_FLOOR, rel=1e-3)
    assert BCPolicy(3, 2, 2, bn_proprio=True).bn.num_features == 5 and policy.bn.num_features == 3
    assert policy(x, still).shape == (1, 2)


def _training_arrays(episodes: Path) -> tuple[np.ndarray, np.ndarray]:
    proprio, actions = [], []
    for i in range(4):
        with EpisodeReader(episodes / f"episode_{i:06d}.h5") as reader:
            proprio.append(reader.joint_pos)
            actions.append(reader.action)
    return np.concatenate(proprio), np.concatenate(actions)


def test_second_run_reuses_the_cached_features(trained, data) -> None:
    first, config, _ = trained
    assert first.encoded_episodes == 4
    again = replace(config, out_dir=data["root"] / "run2", steps=20)
    result = train(again, log=lambda _: None)
    assert result.encoded_episodes == 0
    assert not (result.run_dir / "policy_best.pt").exists()  # no evaluate, no best


def test_encoding_shows_progress_and_images_per_second(data, tmp_path: Path) -> None:
    lines: list[str] = []
    episodes = [data["episodes"] / f"episode_{i:06d}.h5" for i in range(2)]
    load_features(episodes, build_encoder("resnet18", image_size=32), "front", tmp_path, log=lines.append)
    assert len(lines) == 2 and all("images/s, " in line and " s left)" in line for line in lines)
    assert lines[-1].startswith("[####################] encoding episode 2/2: episode_000001.h5 front")


def test_cache_key_follows_the_file_and_the_encoder(data) -> None:
    episode = data["episodes"] / "episode_000000.h5"
    random_encoder, loaded = (
        build_encoder("resnet18", init_seed=7),
        build_encoder("resnet18", data["weights"]),
    )
    key = cache_key(episode, loaded, "front")
    assert key == cache_key(episode, build_encoder("resnet18", data["weights"]), "front")
    assert key != cache_key(episode, random_encoder, "front")  # same numbers, but no weights file
    assert key != cache_key(episode, loaded, "wrist")
    assert cache_key(episode, random_encoder, "front") != cache_key(
        episode, build_encoder("resnet18", init_seed=8), "front"
    )
    stat = episode.stat()
    os.utime(episode, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    try:
        assert key != cache_key(episode, loaded, "front")
    finally:
        os.utime(episode, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_loaded_policy_reproduces_the_trained_mapping(trained, data) -> None:
    result, _, _ = trained
    runner = load_policy(result.run_dir, device="cpu")
    assert (runner.robot, runner.task, runner.camera) == ("panda", "colour_reach", "front")
    assert runner.action_names == ACTIONS and runner.joint_names == JOINTS
    with EpisodeReader(data["episodes"] / "episode_000001.h5") as reader:
        rgb, proprio, action = reader.frames("front"), reader.joint_pos, reader.action
    predicted = np.stack([runner.act(rgb[i], proprio[i]) for i in range(0, STEPS_PER_EPISODE, 3)])
    assert predicted.shape == (10, len(ACTIONS)) and predicted.dtype == np.float64
    # errors in units of each column's std; predicting the mean would score about 0.8
    error = np.abs(predicted - action[::3]).mean(axis=0) / action.std(axis=0)
    assert error.mean() < 0.3 and error.max() < 0.5, error


def test_act_rejects_inputs_of_the_wrong_shape(trained) -> None:
    runner = load_policy(trained[0].run_dir, device="cpu")
    with pytest.raises(TeleopError, match="joint positions"):
        runner.act(np.zeros((IMAGE, IMAGE, 3), np.uint8), np.zeros(3))
    with pytest.raises(TeleopError, match="uint8"):
        runner.act(np.zeros((IMAGE, IMAGE, 3)), np.zeros(len(JOINTS)))


def test_a_policy_of_two_cameras_sees_both(data, tmp_path: Path) -> None:
    config = TrainConfig(episodes_dir=data["episodes"], out_dir=tmp_path / "run", steps=100, camera=None,
                         cache_dir=data["root"] / "cache", device="cpu")  # None: every camera of the episodes
    result = train(config, log=lambda _: None)
    runner = load_policy(result.run_dir, device="cpu")
    assert runner.cameras == ("front", "wrist") and runner._policy.embed_dim == 2 * 512
    with EpisodeReader(data["episodes"] / "episode_000001.h5") as reader:
        front, wrist, proprio = reader.frame("front", 0), reader.frame("wrist", 0), reader.joint_pos[0]
    assert runner.act({"front": front, "wrist": wrist}, proprio).shape == (len(ACTIONS),)
    with pytest.raises(TeleopError, match="no frame of camera 'wrist'"):
        runner.act({"front": front}, proprio)
    with pytest.raises(TeleopError, match="a frame of each camera front, wrist"):
        runner.act(front, proprio)
    with pytest.raises(TeleopError, match="comma-separated"):
        train(replace(config, camera="front,,wrist"), log=lambda _: None)


def test_missing_or_corrupt_checkpoint_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TeleopError, match=str(tmp_path / "policy.pt")):
        load_policy(tmp_path)
    (tmp_path / "policy.pt").write_bytes(b"not a torch file")
    with pytest.raises(TeleopError, match="corrupt"):
        load_policy(tmp_path)


def test_changed_or_missing_encoder_weights_are_refused(trained, data, tmp_path: Path) -> None:
    _, config, _ = trained
    weights = tmp_path / "weights_copy.pt"
    weights.write_bytes(data["weights"].read_bytes())
    run = replace(config, out_dir=tmp_path / "run", steps=5, encoder_weights=weights)
    assert train(run, log=lambda _: None).encoded_episodes == 0  # same weights bytes: same cache entries
    _save_r3m_checkpoint(build_encoder("resnet18", init_seed=8), weights)
    with pytest.raises(TeleopError, match="changed since the policy was trained"):
        load_policy(tmp_path / "run")
    weights.unlink()
    with pytest.raises(TeleopError, match="missing"):
        load_policy(tmp_path / "run")


def test_no_successful_episode_says_what_was_found(tmp_path: Path) -> None:
    for i in range(2):
        _write_episode(tmp_path / f"episode_{i:06d}.h5", seed=i, success=False)
    config = TrainConfig(episodes_dir=tmp_path, out_dir=tmp_path / "run", steps=5)
    with pytest.raises(TeleopError, match=r"found 2 episode files \(2 failed, 0 without a success flag\)"):
        train(config, log=lambda _: None)


def test_config_validation() -> None:
    with pytest.raises(TeleopError, match="batch_size"):
        TrainConfig(episodes_dir=Path("e"), out_dir=Path("o"), batch_size=1)
    with pytest.raises(TeleopError, match="lr_schedule must be cosine or constant"):
        TrainConfig(episodes_dir=Path("e"), out_dir=Path("o"), lr_schedule="linear")
    assert TrainConfig(episodes_dir="e", out_dir="o").out_dir == Path("o")  # type: ignore[arg-type]


def test_train_package_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import teleop.train, teleop.train.trainer, teleop.train.runner, teleop.train.features\n"
        "from teleop.errors import MissingDependencyError\n"
        "try:\n    import teleop.train.encoders\nexcept MissingDependencyError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'teleop[train]'" in out.stdout


# ------------------------------------------------------------------------------------------------ encoders


def test_r3m_checkpoint_loads_and_reproduces_the_outputs(data) -> None:
    reference = build_encoder("resnet18", init_seed=7)
    loaded = build_encoder("resnet18", data["weights"])
    assert loaded.weights == data["weights"].resolve() and loaded.weights_sha256 is not None
    images = torch.from_numpy(np.stack([_frame(u, np.random.default_rng(1)) for u in (0.1, 0.9)]))
    with torch.no_grad():
        np.testing.assert_array_equal(loaded(images).numpy(), reference(images).numpy())
        assert not torch.equal(build_encoder("resnet18", init_seed=8)(images), reference(images))


def test_torchvision_layout_with_classifier_loads(tmp_path: Path) -> None:
    reference = build_encoder("resnet18", init_seed=3)
    state = dict(reference.convnet.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(1000, 512), torch.zeros(1000)
    torch.save(state, tmp_path / "resnet18.pth")
    torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
    images = torch.randint(0, 256, (1, 3, 48, 40), dtype=torch.uint8)
    with torch.no_grad():
        for name in ("resnet18.pth", "wrapped.pth"):
            assert torch.equal(build_encoder("resnet18", tmp_path / name)(images), reference(images))


def test_wrong_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    torch.save(build_encoder("resnet34").convnet.state_dict(), tmp_path / "r34.pth")
    expected = r"do not fit resnet18.*unexpected \(layer1\.2\..*looks like resnet34"
    with pytest.raises(TeleopError, match=expected):
        build_encoder("resnet18", tmp_path / "r34.pth")
    torch.save({"r3m": {"module.convnet.conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "partial.pt")
    with pytest.raises(TeleopError, match=r"missing \(bn1\.weight"):
        build_encoder("resnet18", tmp_path / "partial.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(TeleopError, match="cannot read encoder weights"):
        build_encoder("resnet18", tmp_path / "junk.pt")
    with pytest.raises(TeleopError, match="not found"):
        build_encoder("resnet18", tmp_path / "absent.pt")
    with pytest.raises(UnknownNameError, match="resnet50"):
        build_encoder("vit_b")


@pytest.mark.parametrize(
    ("name", "params", "dim"),
    [("resnet18", 11_176_512, 512), ("resnet34", 21_284_672, 512), ("resnet50", 23_508_032, 2048)],
)
def test_architectures_match_torchvision_sizes(name: str, params: int, dim: int) -> None:
    encoder = build_encoder(name)
    # torchvision's parameter counts minus the 1000-way fc layer
    assert sum(p.numel() for p in encoder.convnet.parameters()) == params
    assert "fc.weight" not in encoder.convnet.state_dict()
    assert "layer4.1.bn2.running_var" in encoder.convnet.state_dict()
    assert encoder_feature_dim(name) == dim == encoder.feature_dim
    with torch.no_grad():
        assert encoder(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, dim)


def test_preprocessing_layouts_and_geometry() -> None:
    encoder = build_encoder("resnet18")
    hwc = torch.randint(0, 256, (2, 60, 80, 3), dtype=torch.uint8)
    chw_float = hwc.permute(0, 3, 1, 2).float()
    assert encoder.preprocess(hwc).shape == (2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(encoder(hwc), encoder(chw_float))
    assert resize_shorter_side(torch.zeros(1, 3, 60, 80), 256).shape[-2:] == (256, 341)  # int(256 * 4 / 3)
    ramp = torch.arange(300.0).view(1, 1, 1, 300).expand(1, 1, 256, 300)
    assert center_crop(ramp, 224)[0, 0, 0, 0] == 38  # round((300 - 224) / 2)
    encoder.train()
    assert not encoder.training  # frozen: BatchNorm keeps the checkpoint's statistics
    with pytest.raises(TeleopError, match="RGB images"):
        encoder(torch.zeros(2, 64, 64))
