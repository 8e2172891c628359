"""`teleop pretrain`: R3M's objective on recorded episodes, and the checkpoint it writes used by `teleop train`.

The synthetic videos: a bright square crosses the frame from left to right over the episode, at a height of
its own per episode, so frame order and episode identity are both visible in the pixels.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from recorder.hdf5 import EpisodeWriter
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop.errors import TeleopError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from teleop.train.encoders import AnyEncoder, build_encoder, file_sha256  # noqa: E402  (after the torch check)
from teleop.train.keypoints import KeypointEncoder  # noqa: E402
from teleop.train.pretrain import PretrainConfig, R3MObjective, Videos, load_videos, pretrain  # noqa: E402
from teleop.train.runner import load_policy, read_checkpoint  # noqa: E402
from teleop.train.trainer import TrainConfig, train  # noqa: E402

IMAGE = 48  # [px] recorded
SIZE = 32  # [px] encoder input
STEPS = 12  # per episode


def _meta(cameras: tuple[str, ...] = ("front", "wrist")) -> EpisodeMeta:
    K = np.array([[40.0, 0, IMAGE / 2], [0, 40.0, IMAGE / 2], [0, 0, 1]])
    return EpisodeMeta(
        robot="panda", task="square", instruction="follow the square", control_rate_hz=20.0,
        operator_device="scripted", joint_names=("j0", "j1"), action_names=("j0", "j1"),
        cameras={c: CameraInfo(IMAGE, IMAGE, K, np.eye(4)) for c in cameras}, start_time=1.7e9,
    )


def _frame(t: int, row: int) -> np.ndarray:
    img = np.full((IMAGE, IMAGE, 3), 40, dtype=np.uint8)
    left = 2 + t * (IMAGE - 14) // (STEPS - 1)
    img[row : row + 10, left : left + 10] = (250, 220, 30)
    return img


def _write(path: Path, row: int, success: bool = True, steps: int = STEPS,
           instruction: str = "follow the square") -> None:
    writer = EpisodeWriter(path, dataclasses.replace(_meta(), instruction=instruction))
    for i in range(steps):
        q = np.array([i / steps, row / IMAGE])
        frames = {"front": CameraFrame(_frame(i, row), 0.05 * i),
                  "wrist": CameraFrame(_frame(i, IMAGE - 12 - row), 0.05 * i)}
        writer.append(Step(t=0.05 * i, joint_pos=q, joint_vel=np.zeros(2),
                           ee_pose=np.array([0.4, 0, 0.3, 1, 0, 0, 0]), action=q + 0.1, frames=frames))
    writer.close(success)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pretrain") / "episodes"
    root.mkdir()
    for i, row in enumerate((2, 10, 18, 26, 34)):
        _write(root / f"episode_{i:06d}.h5", row, success=i != 4)  # a failed episode is still a video
    return root


def _config(episodes: Path, out: Path, **kwargs: object) -> PretrainConfig:
    defaults: dict[str, object] = {"image_size": SIZE, "steps": 40, "batch_size": 8, "lr": 1e-3, "seed": 0,
                                   "threads": 1}  # one thread: two slow down badly beside busy neighbours
    return PretrainConfig(episodes, out, **(defaults | kwargs))  # type: ignore[arg-type]


def test_pretraining_writes_an_r3m_checkpoint_that_train_and_eval_use(episodes: Path, tmp_path: Path) -> None:
    out = tmp_path / "enc.pt"
    lines: list[str] = []
    result = pretrain(_config(episodes, out), log=lines.append)
    assert result.videos == 10 and result.frames == 10 * STEPS  # both cameras of all five episodes
    assert any("images/s" in line and "step 40/40" in line for line in lines)

    saved = torch.load(out, weights_only=True)
    assert saved["teleop"]["objective"] == "r3m" and saved["teleop"]["image_size"] == SIZE
    assert len(saved["teleop"]["loss"]) == 40 and saved["teleop"]["instructions"] == ["follow the square"]
    assert "module.convnet.layer4.1.bn2.running_var" in saved["r3m"]

    encoder = build_encoder("resnet18", out)
    assert encoder.input_size == SIZE  # the size it was trained at
    assert encoder.describe()["input_size"] == SIZE
    random = build_encoder("resnet18", init_seed=0)
    assert not torch.equal(encoder.convnet.conv1.weight, random.convnet.conv1.weight)

    run = tmp_path / "run"
    train(TrainConfig(episodes, run, steps=20, encoder_weights=out, device="cpu"), log=lambda _: None)
    runner = load_policy(run)
    frame = _frame(3, 10)
    assert runner.act(frame, np.zeros(2)).shape == (2,)
    assert runner._encoder.input_size == SIZE  # rebuilt at the size it was trained with


def test_time_contrast_orders_the_frames_after_training(episodes: Path, tmp_path: Path) -> None:
    """The time-contrast term alone, without augmentation, on fixed batches: 1.28 before, 0.52-0.55 after 100
    steps here with two seeds (chance is log 5 = 1.61). The full objective learns more slowly on these videos."""
    config = _config(episodes, tmp_path / "enc.pt", steps=100, lang_weight=0.0, crop_scale=1.0)
    encoder = build_encoder("resnet18", init_seed=0, image_size=SIZE)
    videos = load_videos(sorted(episodes.glob("*.h5")), (), encoder, log=lambda _: None)

    before = _held_out_tcn(encoder, videos, config)
    pretrain(config, log=lambda _: None)
    after = _held_out_tcn(build_encoder("resnet18", tmp_path / "enc.pt"), videos, config)
    assert after < 0.7 * before, (before, after)


def _held_out_tcn(encoder: AnyEncoder, videos: Videos, config: PretrainConfig) -> float:
    """The time-contrast loss on 8 fixed batches, the encoder in eval mode."""
    objective = R3MObjective(encoder, 1, config)
    objective.convnet.eval()
    rng = np.random.default_rng(123)
    with torch.no_grad():
        return float(np.mean([objective.loss(videos, rng)[1]["tcn"] for _ in range(8)]))


@pytest.fixture(scope="module")
def keypoints_checkpoint(episodes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keypoints") / "kp.pt"
    pretrain(_config(episodes, out, encoder="keypoints", steps=150, lang_weight=0.0, crop_scale=1.0),
             log=lambda _: None)
    return out


def test_the_keypoints_encoder_pretrains_with_r3ms_objective(episodes: Path, keypoints_checkpoint: Path) -> None:
    saved = torch.load(keypoints_checkpoint, weights_only=True)
    assert set(saved) == {"keypoints", "teleop"} and saved["teleop"]["architecture"] == "keypoints"
    encoder = build_encoder("keypoints", keypoints_checkpoint)
    assert isinstance(encoder, KeypointEncoder) and encoder.input_size == SIZE  # the size it was trained at
    assert encoder.describe()["weights_sha256"] == file_sha256(keypoints_checkpoint)
    random = build_encoder("keypoints", init_seed=0, image_size=SIZE)
    videos = load_videos(sorted(episodes.glob("*.h5")), (), random, log=lambda _: None)
    config = _config(episodes, keypoints_checkpoint, encoder="keypoints", lang_weight=0.0, crop_scale=1.0)
    before, after = _held_out_tcn(random, videos, config), _held_out_tcn(encoder, videos, config)
    assert after < 0.7 * before, (before, after)


def test_a_pretrained_keypoints_encoder_stays_frozen_unless_told(episodes: Path, keypoints_checkpoint: Path,
                                                                 tmp_path: Path) -> None:
    pretrained = build_encoder("keypoints", keypoints_checkpoint).state_dict()
    for freeze, run in ((None, tmp_path / "frozen"), (False, tmp_path / "tuned")):
        train(TrainConfig(episodes, run, steps=20, encoder="keypoints", encoder_weights=keypoints_checkpoint,
                          freeze_encoder=freeze, camera=None, device="cpu"), log=lambda _: None)
        checkpoint = read_checkpoint(run / "policy.pt")
        stored = checkpoint["encoder_state_dict"]
        same = all(torch.equal(stored[k], pretrained[k]) for k in pretrained)
        assert same == (freeze is None) and checkpoint["encoder"]["trainable"] == (freeze is False)
        assert checkpoint["encoder"]["weights"] == str(keypoints_checkpoint)
        cached = list((run / "feature_cache").glob("*.npz"))
        assert len(cached) == (8 if freeze is None else 0)  # frozen: both cameras of 4 successful episodes
        runner = load_policy(run)
        assert runner.act({"front": _frame(3, 10), "wrist": _frame(3, 20)}, np.zeros(2)).shape == (2,)


def test_a_frozen_random_keypoints_encoder_keeps_its_init(episodes: Path, tmp_path: Path) -> None:
    train(TrainConfig(episodes, tmp_path / "run", steps=20, encoder="keypoints", freeze_encoder=True,
                      image_size=SIZE, device="cpu"), log=lambda _: None)
    checkpoint = read_checkpoint(tmp_path / "run" / "policy.pt")
    random = build_encoder("keypoints", init_seed=0, image_size=SIZE).state_dict()
    assert all(torch.equal(checkpoint["encoder_state_dict"][k], random[k]) for k in random)
    assert checkpoint["encoder"]["init"].startswith("frozen: a random init")
    with pytest.raises(TeleopError, match="only the keypoints encoder trains with the policy"):
        TrainConfig(episodes, tmp_path / "x", encoder="resnet18", freeze_encoder=False)


def test_chosen_cameras_and_the_input_size_of_frames(episodes: Path) -> None:
    encoder = build_encoder("resnet18", image_size=SIZE)
    videos = load_videos(sorted(episodes.glob("*.h5")), ("wrist",), encoder, log=lambda _: None)
    assert videos.count == 5 and videos.frames.shape == (5 * STEPS, 3, SIZE, SIZE)
    assert videos.frames.dtype == np.uint8 and videos.names[0].endswith(":wrist")
    assert list(videos.lengths) == [STEPS] * 5 and list(videos.starts) == [i * STEPS for i in range(5)]
    with pytest.raises(TeleopError, match="no camera top"):
        load_videos(sorted(episodes.glob("*.h5")), ("top",), encoder, log=lambda _: None)


def test_too_few_videos_and_bad_configs_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "one"
    root.mkdir()
    _write(root / "episode_000000.h5", 4)
    _write(root / "episode_000001.h5", 8, steps=2)  # too short to sample three frames from
    with pytest.raises(TeleopError, match="too few videos to pretrain on: 1 with"):
        pretrain(_config(root, tmp_path / "x.pt", cameras=("front",)), log=lambda _: None)
    with pytest.raises(TeleopError, match="trains a ResNet or the keypoints encoder"):
        _config(root, tmp_path / "x.pt", encoder="vit-s16")
    keypoints = PretrainConfig(root, tmp_path / "x.pt", encoder="keypoints")
    assert (keypoints.image_size, keypoints.crop_scale) == (96, 1.0)  # no crops: RESULTS.md
    assert PretrainConfig(root, tmp_path / "x.pt").crop_scale == 0.6  # R3M's
    with pytest.raises(TeleopError, match="batch_size must be at least 2"):
        _config(root, tmp_path / "x.pt", batch_size=1)
    with pytest.raises(TeleopError, match="out of range"):
        build_encoder("resnet18", image_size=8)
    with pytest.raises(TeleopError, match="multiple of 16, not 120"):  # a random ViT is built at the size asked
        build_encoder("vit-s16", image_size=120)


def test_the_command_line(episodes: Path, tmp_path: Path) -> None:
    from teleop.cli import main

    out = tmp_path / "cli.pt"
    assert main(["pretrain", str(episodes), "--out", str(out), "--steps", "2", "--batch-size", "4",
                 "--image-size", str(SIZE), "--camera", "front", "--threads", "1"]) == 0
    assert torch.load(out, weights_only=True)["teleop"]["videos"][0].endswith(":front")


def test_several_folders_pretrain_together_with_their_instructions(episodes: Path, tmp_path: Path) -> None:
    from teleop.cli import main

    other = tmp_path / "other task"
    other.mkdir()
    for i, row in enumerate((6, 30)):
        _write(other / f"episode_{i:06d}.h5", row, instruction="chase the square")
    out = tmp_path / "both.pt"
    assert main(["pretrain", str(episodes), str(other), "--out", str(out), "--steps", "2", "--batch-size", "4",
                 "--image-size", str(SIZE), "--threads", "1"]) == 0
    meta = torch.load(out, weights_only=True)["teleop"]
    assert sorted(meta["instructions"]) == ["chase the square", "follow the square"]
    assert len(meta["episodes"]) == 7 and sum(str(other) in path for path in meta["episodes"]) == 2
    assert meta["config"]["more_dirs"] == [str(other)]
