"""The keypoints encoder: trained with the policy end to end, it reads where a small object is.

The synthetic task: each frame shows a 6-px red dot at a random place on a noisy grey background, and the
action's first two columns are the dot's x and y; the other columns follow the joint positions.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recorder.hdf5 import EpisodeReader, EpisodeWriter
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop.errors import TeleopError

torch = pytest.importorskip("torch")

from teleop.train.encoders import build_encoder  # noqa: E402  (after the torch check)
from teleop.train.keypoints import SpatialSoftmax, random_shift  # noqa: E402
from teleop.train.runner import load_policy, read_checkpoint  # noqa: E402
from teleop.train.trainer import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMAGE = 64  # [px]
JOINTS = ("joint0", "joint1", "joint2")
ACTIONS = ("x", "y", "joint2")
STEPS = 40


def _meta() -> EpisodeMeta:
    K = np.array([[60.0, 0, IMAGE / 2], [0, 60.0, IMAGE / 2], [0, 0, 1]])
    return EpisodeMeta(robot="dot", task="dot_reach", instruction="point at the red dot", control_rate_hz=20.0,
                       operator_device="scripted", joint_names=JOINTS, action_names=ACTIONS,
                       cameras={"front": CameraInfo(IMAGE, IMAGE, K, np.eye(4))}, start_time=1.7e9)


def _write_episode(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    writer = EpisodeWriter(path, _meta())
    for i in range(STEPS):
        img = np.clip(np.full((IMAGE, IMAGE, 3), 100) + rng.integers(-10, 11, (IMAGE, IMAGE, 3)), 0, 255)
        row, col = rng.integers(4, IMAGE - 10, size=2)
        img[row : row + 6, col : col + 6] = (230, 30, 30)
        joints = rng.uniform(-1, 1, len(JOINTS))
        action = np.array([(col + 3) / IMAGE, (row + 3) / IMAGE, joints[2] + 0.1])
        writer.append(Step(t=0.05 * i, joint_pos=joints, joint_vel=np.zeros(len(JOINTS)),
                           ee_pose=np.array([0.4, 0, 0.3, 1, 0, 0, 0]), action=action,
                           frames={"front": CameraFrame(img.astype(np.uint8), 0.05 * i)}))
    return writer.close(True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keypoints")
    for folder in ("episodes", "held_out"):
        (root / folder).mkdir()
    for i in range(8):
        _write_episode(root / "episodes" / f"episode_{i:06d}.h5", seed=i)
    held_out = _write_episode(root / "held_out" / "episode_000000.h5", seed=99)
    config = TrainConfig(episodes_dir=root / "episodes", out_dir=root / "run", steps=600, encoder="keypoints",
                         image_size=IMAGE, device="cpu", hidden=(128, 128), chunk=1)  # each frame its own dot
    train(config, log=lambda _: None)
    return {"run": root / "run", "held_out": held_out}


def _predictions(run_dir: Path, episode: Path) -> tuple[np.ndarray, np.ndarray]:
    runner = load_policy(run_dir, device="cpu")
    with EpisodeReader(episode) as reader:
        rgb, proprio, action = reader.frames("front"), reader.joint_pos, reader.action
    return np.stack([runner.act(rgb[i], proprio[i]) for i in range(STEPS)]), np.asarray(action)


def test_the_trained_encoder_locates_the_dot_on_held_out_frames(run) -> None:
    predicted, action = _predictions(run["run"], run["held_out"])
    error_px = np.abs(predicted[:, :2] - action[:, :2]).mean() * IMAGE
    guess_px = np.abs(action[:, :2] - 0.5).mean() * IMAGE  # predicting the centre
    assert error_px < 0.35 * guess_px, (error_px, guess_px)


def test_the_checkpoint_carries_the_trained_encoder(run) -> None:
    checkpoint = read_checkpoint(run["run"] / "policy.pt")
    assert checkpoint["encoder"]["trainable"] and checkpoint["encoder"]["input_size"] == IMAGE
    random = build_encoder("keypoints", image_size=IMAGE).state_dict()
    trained = checkpoint["encoder_state_dict"]
    assert set(trained) == set(random)
    assert any(not torch.equal(trained[k], random[k]) for k in random), "the encoder did not train"
    first, _ = _predictions(run["run"], run["held_out"])
    second, _ = _predictions(run["run"], run["held_out"])
    np.testing.assert_array_equal(first, second)


def test_a_checkpoint_without_the_encoder_weights_is_refused(run, tmp_path: Path) -> None:
    checkpoint = read_checkpoint(run["run"] / "policy.pt")
    del checkpoint["encoder_state_dict"]
    torch.save(checkpoint, tmp_path / "policy.pt")
    with pytest.raises(TeleopError, match="lacks the weights of its keypoints encoder"):
        load_policy(tmp_path / "policy.pt", device="cpu")


def test_keypoints_take_their_own_weights_file_and_a_sane_size(tmp_path: Path) -> None:
    torch.save({"r3m": {"module.convnet.conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "r3m.pt")
    with pytest.raises(TeleopError, match="holds no keypoints encoder .*R3M and MAE checkpoints go with"):
        build_encoder("keypoints", tmp_path / "r3m.pt")
    torch.save({"keypoints": {"conv.0.weight": torch.zeros(1)}, "teleop": {}}, tmp_path / "bad.pt")
    with pytest.raises(TeleopError, match="does not match keypoints"):
        build_encoder("keypoints", tmp_path / "bad.pt")
    with pytest.raises(TeleopError, match="even input size"):
        build_encoder("keypoints", image_size=31)
    with pytest.raises(TeleopError, match="shift must be 0 or more"):
        replace(TrainConfig(episodes_dir=tmp_path, out_dir=tmp_path), shift=-1)


def test_frames_of_another_size_are_resized_as_in_training() -> None:
    encoder = build_encoder("keypoints", image_size=48)
    frames = torch.randint(0, 256, (2, 120, 160, 3), dtype=torch.uint8)
    prepared = encoder.prepare(frames)
    assert prepared.shape == (2, 3, 48, 48) and prepared.dtype == torch.uint8
    torch.testing.assert_close(encoder(frames), encoder.embed(prepared))


def test_spatial_softmax_finds_a_peak() -> None:
    maps = torch.full((1, 2, 5, 9), -50.0)
    maps[0, 0, 0, 0] = 50.0  # top left
    maps[0, 1, 4, 6] = 50.0  # bottom row, 3/4 of the way across
    keypoints = SpatialSoftmax(5, 9)(maps)
    torch.testing.assert_close(keypoints, torch.tensor([[-1.0, -1.0, 0.5, 1.0]]))


def test_random_shift_moves_each_image_by_at_most_the_shift() -> None:
    images = torch.arange(2 * 10 * 10, dtype=torch.float32).reshape(2, 1, 10, 10)
    images = images.expand(2, 3, 10, 10).contiguous()
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        shifted = random_shift(images, 2, generator)
        assert shifted.shape == images.shape
        for b in range(2):
            inner = shifted[b, 0, 2:8, 2:8]  # never reaches the replicated border
            dy, dx = np.argwhere(images[b, 0].numpy() == inner[0, 0].item())[0] - 2
            assert abs(dy) <= 2 and abs(dx) <= 2
            torch.testing.assert_close(inner, images[b, 0, 2 + dy : 8 + dy, 2 + dx : 8 + dx])
            seen.add((int(dy), int(dx)))
    assert len(seen) > 5  # the offsets vary
    torch.testing.assert_close(random_shift(images, 0), images)


def test_default_steps_follow_the_encoder() -> None:
    from teleop.train.architectures import DEFAULT_STEPS, default_steps

    assert default_steps("resnet18") == default_steps("vit-s16") == DEFAULT_STEPS
    assert default_steps("keypoints") < DEFAULT_STEPS  # each step trains the encoder too
    assert default_steps("keypoints", frozen=True) == DEFAULT_STEPS


def test_the_cli_trains_keypoints_unless_given_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import teleop.cli

    seen: list[tuple[str, int]] = []
    cameras: list[str | None] = []

    def fake_train(_dir: Path, _out: Path, steps: int, **kw: object) -> None:
        seen.append((kw["encoder"], steps))  # type: ignore[arg-type]
        cameras.append(kw["camera"])  # type: ignore[arg-type]

    monkeypatch.setattr(teleop.cli, "_train", fake_train)
    (tmp_path / "eps").mkdir()
    weights = tmp_path / "r3m.pt"
    weights.write_bytes(b"")
    for extra in ([], ["--encoder-weights", str(weights)], ["--encoder", "vit-s16", "--steps", "7"],
                  ["--encoder", "keypoints", "--encoder-weights", str(weights)],  # frozen: the head alone trains
                  ["--encoder", "keypoints", "--encoder-weights", str(weights), "--no-freeze-encoder"],
                  ["--freeze-encoder"]):
        assert teleop.cli.main(["train", str(tmp_path / "eps"), "--out", str(tmp_path / "run"), *extra]) == 0
    assert seen == [("keypoints", 3000), ("resnet18", 20000), ("vit-s16", 7), ("keypoints", 20000),
                    ("keypoints", 3000), ("keypoints", 20000)]
    assert cameras == [None] * 6  # every camera of the episodes


def test_a_sharp_map_gives_no_subnormal_weights() -> None:
    """A cell far below its map's peak weighs exp(-LOGIT_RANGE) of it, not a subnormal float (those make the CPU's
    arithmetic several times slower: a pretrained encoder's sharp maps slowed training fourfold)."""
    from teleop.train.keypoints import LOGIT_RANGE

    softmax = SpatialSoftmax(8, 8)
    maps = torch.zeros(1, 1, 8, 8, requires_grad=True)
    with torch.no_grad():
        maps[0, 0, 2, 5] = 1000.0  # every other cell 1000 below the peak
    captured: list[torch.Tensor] = []
    original = torch.softmax

    def recording_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
        out = original(x, dim=dim)
        captured.append(out)
        return out

    torch.softmax = recording_softmax  # type: ignore[assignment]
    try:
        keypoint = softmax(maps)
    finally:
        torch.softmax = original  # type: ignore[assignment]
    [attention] = captured
    assert float(attention.detach().min()) >= np.exp(-LOGIT_RANGE) / 64 > np.finfo(np.float32).tiny
    torch.testing.assert_close(keypoint, torch.tensor([[5 * 2 / 7 - 1, 2 * 2 / 7 - 1]]), atol=1e-6, rtol=0)
    keypoint.sum().backward()
    assert maps.grad is not None and torch.isfinite(maps.grad).all()
