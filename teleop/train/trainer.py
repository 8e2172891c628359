"""Behaviour cloning with the R3M protocol: frozen encoder, BatchNorm MLP, MSE, Adam, best-of evaluations.

`train(config)` writes a run directory:
    config.json       the TrainConfig, device, encoder identity (weights path and SHA-256) and data summary
    train_log.jsonl   {"step", "loss", "lr"} every ~0.5% of the steps (lr: that of the next step); {"step",
                      "success"} after each evaluation
    policy.pt         the policy after the last step (see runner.save_checkpoint)
    policy_best.pt    the policy at the best evaluation, when an `evaluate` function is given
    feature_cache/    embeddings per episode, unless TrainConfig.cache_dir points elsewhere
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from teleop.deps import require
from teleop.errors import TeleopError
from teleop.progress import progress_bar
from teleop.train.actions import ACTION_SPACES, DEFAULT_CHUNK, DEFAULT_HORIZON
from teleop.train.architectures import ARCHITECTURES, DEFAULT_SHIFT, KeypointArchitecture, encoder_frozen
from teleop.train.distributed import Ranks, process_group
from teleop.train.runner import (
    BEST_POLICY_FILE,
    POLICY_FILE,
    PolicyInfo,
    PolicyRunner,
    resolve_device,
    save_checkpoint,
)

if TYPE_CHECKING:
    import torch

    from teleop.train.actions import ActionSpace
    from teleop.train.encoders import AnyEncoder
    from teleop.train.features import FeatureSet
    from teleop.train.policy import BCPolicy

LR_SCHEDULES = ("cosine", "constant")

Evaluate = Callable[[PolicyRunner], float]
"""Roll the policy out (e.g. in the simulator) and return its success rate in [0, 1]."""


@dataclass(frozen=True)
class TrainConfig:
    """One behaviour-cloning run (defaults: R3M's protocol).

    Attributes:
        episodes_dir: Directory of recorded episodes.
        out_dir: Run directory to write (created; files of an earlier run there are replaced).
        steps: Gradient steps.
        batch_size: Samples per step, drawn uniformly with replacement (at least 2, for BatchNorm).
        lr: Adam learning rate (at the start, with the cosine schedule).
        lr_schedule: "cosine": decayed to 0 over the steps along a half cosine (RESULTS.md); "constant".
        encoder: One of teleop.train.encoders.encoder_names(): "resnet18", "resnet34", "resnet50", "vit-s16", ...
            (frozen), or "keypoints" (trained with the policy, end to end: teleop.train.keypoints).
        encoder_weights: R3M, torchvision, MAE or MVP checkpoint, or a keypoints encoder of `teleop pretrain`; None
            trains on a randomly initialised encoder.
        freeze_encoder: keypoints: False trains the encoder with the policy, True freezes it (the head alone trains,
            on cached embeddings); None: frozen with encoder_weights (R3M's protocol), trained without. The
            ResNets and ViTs are always frozen.
        camera: Camera whose frames the policy sees, or several, comma-separated ("front,wrist"); None: every
            camera of the first episode, in its order (an arm needs its wrist camera as well: RESULTS.md).
        image_size: ResNets: side of the encoder's input [px]; None: the size a `teleop pretrain` checkpoint was
            trained at, else R3M's 224. Smaller is faster to encode and to roll out.
        hidden: MLP hidden layer sizes.
        seed: Seed of the policy initialisation and the minibatch sampling.
        eval_every: Steps between calls of `evaluate` (it is also called after the last step).
        device: "auto" (CUDA when available), "cpu" or "cuda[:N]".
        include_failed: Train on every readable episode, not only those marked successful.
        cache_dir: Embedding cache; None: out_dir / "feature_cache".
        feature_batch_size: Frames per encoder forward pass.
        action_space: What the policy predicts (teleop.train.actions): "joint" (the recorded joint targets),
            "ee-delta" (the commanded end-effector motion `horizon` steps ahead, through IK at run time), or
            "auto": ee-delta for arms, joint for hands.
        horizon: Steps ahead of an ee-delta target.
        chunk: Targets predicted per step (ee-delta poses, or rows of joint targets), ensembled at run time (ACT;
            teleop.train.actions); 1: none; None: DEFAULT_CHUNK (RESULTS.md).
        trim_idle: Leave out each episode's idle start (before the first commanded motion, less 0.2 s; the
            rule of `teleop episodes trim --auto`).
        threads: Threads of torch's CPU kernels while the policy trains and acts (the small MLP runs fastest
            on one, and one is not slowed down by busy neighbours); encoding frames uses one per core.
        max_episodes: Train on the first this many usable episodes (in the folder's order); None: all.
        shift: Random shift [px] of the frames while a trainable encoder ("keypoints") trains; 0: none.
    """

    episodes_dir: Path
    out_dir: Path
    steps: int = 20000
    batch_size: int = 32
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    encoder: str = "resnet18"
    encoder_weights: Path | None = None
    freeze_encoder: bool | None = None
    camera: str | None = "front"
    image_size: int | None = None
    hidden: tuple[int, ...] = (256, 256)
    seed: int = 0
    eval_every: int = 1000
    device: str = "auto"
    include_failed: bool = False
    cache_dir: Path | None = None
    feature_batch_size: int = 32
    action_space: str = "auto"
    horizon: int = DEFAULT_HORIZON
    chunk: int | None = None
    trim_idle: bool = True
    threads: int = 1
    max_episodes: int | None = None
    shift: int = DEFAULT_SHIFT

    def __post_init__(self) -> None:
        for name in ("episodes_dir", "out_dir", "encoder_weights", "cache_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        problems = _config_problems(self)
        if problems:
            raise TeleopError("invalid training config: " + "; ".join(problems))

    @property
    def feature_cache(self) -> Path:
        """Where embeddings are cached."""
        return self.cache_dir if self.cache_dir is not None else self.out_dir / "feature_cache"

    @property
    def frozen(self) -> bool:
        """Whether the encoder stays frozen (see freeze_encoder)."""
        return encoder_frozen(self.encoder, self.encoder_weights is not None, self.freeze_encoder)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (paths as strings)."""
        return {
            k: str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(self).items()
        }


def _config_problems(c: TrainConfig) -> list[str]:
    checks = [
        (c.steps >= 1, f"steps must be at least 1, got {c.steps}"),
        (c.batch_size >= 2, f"batch_size must be at least 2 (BatchNorm needs a batch), got {c.batch_size}"),
        (math.isfinite(c.lr) and c.lr > 0, f"lr must be a positive number, got {c.lr}"),
        (c.eval_every >= 1, f"eval_every must be at least 1, got {c.eval_every}"),
        (c.lr_schedule in LR_SCHEDULES, f"lr_schedule must be {' or '.join(LR_SCHEDULES)}, got {c.lr_schedule!r}"),
        (c.feature_batch_size >= 1, f"feature_batch_size must be at least 1, got {c.feature_batch_size}"),
        (c.action_space in ("auto", *ACTION_SPACES),
         f"action_space must be auto, {' or '.join(ACTION_SPACES)}, got {c.action_space!r}"),
        (c.horizon >= 1, f"horizon must be at least 1 step, got {c.horizon}"),
        (c.chunk is None or c.chunk >= 1, f"chunk must be at least 1 target, got {c.chunk}"),
        (c.threads >= 1, f"threads must be at least 1, got {c.threads}"),
        (c.max_episodes is None or c.max_episodes >= 1, f"max_episodes must be at least 1, got {c.max_episodes}"),
        (c.shift >= 0, f"shift must be 0 or more pixels, got {c.shift}"),
        (c.freeze_encoder is not False or isinstance(ARCHITECTURES.get(c.encoder), KeypointArchitecture),
         f"only the keypoints encoder trains with the policy; {c.encoder} stays frozen"),
        (bool(c.hidden) and all(h > 0 for h in c.hidden), f"hidden sizes must be positive, got {c.hidden}"),
        (
            c.device == "auto" or c.device.split(":")[0] in ("cpu", "cuda"),
            f"device must be auto, cpu or cuda[:N], got {c.device!r}",
        ),
    ]
    return [message for ok, message in checks if not ok]


@dataclass(frozen=True)
class TrainResult:
    """Summary of a finished run.

    Attributes:
        run_dir: Directory holding policy.pt, config.json, train_log.jsonl.
        first_loss, final_loss: Mean minibatch MSE (normalised actions) over the first and the last 5% of
            the steps.
        steps: Gradient steps taken.
        wall_time_s: Whole run, encoding and evaluations included [s].
        steps_per_s: Gradient steps per second, evaluations excluded.
        num_episodes, num_samples: Training data used (samples: the steps kept, see TrainConfig.trim_idle).
        encoded_episodes: Episodes whose embeddings were computed (0 when all came from the cache).
        best_success_rate: Best value `evaluate` returned, None without `evaluate`.
        best_step: Step of that evaluation (policy_best.pt), None without `evaluate`.
        evaluations: (step, success rate) of every evaluation.
    """

    run_dir: Path
    first_loss: float
    final_loss: float
    steps: int
    wall_time_s: float
    steps_per_s: float
    num_episodes: int
    num_samples: int
    encoded_episodes: int
    best_success_rate: float | None = None
    best_step: int | None = None
    evaluations: tuple[tuple[int, float], ...] = field(default_factory=tuple)


class TrainingStopped(TeleopError):
    """`train`'s `stop` asked to end the run before its last step; no policy was written."""


def train(
    config: TrainConfig, log: Callable[[str], None] = print, evaluate: Evaluate | None = None,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Fit a BC policy on the successful episodes of `config.episodes_dir` and save the run.

    Args:
        config: What to train and where to write it.
        log: Progress messages (about every 10% of the steps).
        evaluate: Called with a PolicyRunner every `eval_every` steps and after the last one; returns a
            success rate. The best-scoring policy is saved as policy_best.pt (R3M reports the best).
        stop: Asked before every step; True ends the run with TrainingStopped (e.g. a Cancel button).

    Under torchrun (WORLD_SIZE > 1; see teleop.train.distributed) each process trains a DistributedDataParallel
    replica on its own minibatches (seed + rank), so a step averages world_size x batch_size samples. Rank 0
    encodes the episodes into the feature cache before the others read it, and alone logs, evaluates and writes
    the run folder; every rank returns its own TrainResult.

    Raises:
        TeleopError: Bad config, no usable episodes, unreadable encoder weights.
        TrainingStopped: `stop` returned True.
    """
    with process_group(resolve_device(config.device)) as ranks:
        return _train(config, ranks.main_only(log), evaluate if ranks.is_main else None, ranks, stop)


def _train(config: TrainConfig, log: Callable[[str], None], evaluate: Evaluate | None, ranks: Ranks,
           stop: Callable[[], bool] | None = None) -> TrainResult:
    from teleop.train.actions import default_action_space, make_action_space
    from teleop.train.encoders import build_encoder
    from teleop.train.features import load_features, select_episodes, split_cameras
    from teleop.train.keypoints import KeypointEncoder

    torch = require("torch", extra="train", purpose="training a policy")
    started = time.perf_counter()
    device = ranks.device(resolve_device(config.device))
    episodes = select_episodes(config.episodes_dir, config.include_failed, log)
    if config.max_episodes is not None and len(episodes) < config.max_episodes:
        raise TeleopError(f"{config.episodes_dir} has {len(episodes)} usable episodes, fewer than the "
                          f"{config.max_episodes} asked for: record more demonstrations or ask for fewer")
    episodes = episodes[: config.max_episodes]
    encoder = build_encoder(config.encoder, config.encoder_weights, image_size=config.image_size).to(device)
    if isinstance(encoder, KeypointEncoder) and config.frozen:
        encoder.freeze()
    if encoder.trainable:  # the keypoints encoder: trained with the policy
        start = "" if encoder.weights is None else f", starting from {encoder.weights}"
        log(f"the {config.encoder} encoder trains with the policy ({encoder.input_size} px, random shifts of "
            f"{config.shift} px{start})")
    elif encoder.weights is None:
        log(f"no encoder weights given: {config.encoder} is randomly initialised (seed {encoder.init_seed})")
    camera = config.camera or _every_camera(episodes[0])
    with ranks.main_first(), torch_threads(os.cpu_count() or 1):  # convolutions over batches of frames: every core
        data = load_features(episodes, encoder, camera, config.feature_cache, config.feature_batch_size, log)
    if data.encoded_episodes and not ranks.is_main:
        raise TeleopError(f"rank {ranks.rank} did not find the embeddings that rank 0 cached in "
                          f"{config.feature_cache}: put the feature cache on a filesystem every rank can read")
    space_name = default_action_space(data.robot) if config.action_space == "auto" else config.action_space
    chunk = config.chunk if config.chunk is not None else DEFAULT_CHUNK
    space = make_action_space(space_name, data.robot, config.horizon, chunk)
    samples = training_samples(data, space, config.trim_idle)
    log(
        f"training on {len(samples.features)} of {data.num_samples} steps of {len(episodes)} {data.robot} "
        f"{data.task} episodes ({space_name} actions{', idle starts left out' if config.trim_idle else ''}), "
        f"{device}"
    )
    torch.manual_seed(config.seed)
    embed_dim = encoder.feature_dim * len(split_cameras(camera))  # the cameras' embeddings side by side
    policy = _build_policy(samples, embed_dim, config).to(device)
    info = PolicyInfo(
        data.robot, data.task, data.instruction, data.camera, data.joint_names, data.action_names,
        data.control_rate_hz, data.image_size, space_name, space.horizon, space.chunk,
    )
    if ranks.is_main:
        config.out_dir.mkdir(parents=True, exist_ok=True)
        (config.out_dir / BEST_POLICY_FILE).unlink(missing_ok=True)  # never leave an earlier run's best behind
        _write_config(config, device, encoder, data, ranks.world_size)
    loop = _Loop(config, policy, encoder, info, log, evaluate, ranks, stop)
    log_file = open(config.out_dir / "train_log.jsonl", "w") if ranks.is_main else io.StringIO()
    with torch_threads(config.threads), log_file:
        loop.run(_tensors(samples, device), log_file)
    if ranks.is_main:
        save_checkpoint(config.out_dir / POLICY_FILE, policy, encoder, info, loop.checkpoint_extra(config.steps))
    ranks.barrier()  # every rank returns once the checkpoint is there
    return loop.result(config.out_dir, time.perf_counter() - started, data, len(samples.features))


def _every_camera(episode: Path) -> str:
    """The cameras of an episode, comma-separated in its order ("front,wrist")."""
    from recorder.backend import open_episode

    with open_episode(episode) as reader:
        return ",".join(reader.camera_names)


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's CPU kernels on `threads` threads while the block runs; the caller's count afterwards."""
    torch = require("torch", extra="train", purpose="training a policy")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class Samples:
    """The training rows: embedding, what the policy sees of the robot, and its target (see
    teleop.train.actions), one row per kept step."""

    features: np.ndarray
    proprio: np.ndarray
    targets: np.ndarray


def training_samples(data: FeatureSet, space: ActionSpace, trim_idle: bool) -> Samples:
    """Per episode: targets in `space` (computed on the whole episode, so a target may look past its idle
    end), then the rows from the idle start on (recorder.trim.motion_range) when trim_idle."""
    from recorder.trim import motion_range

    features, proprio, targets = [], [], []
    for e in range(len(data.episodes)):
        rows = np.flatnonzero(data.episode_index == e)
        episode_targets = space.targets(data.proprio[rows], data.actions[rows])
        found = motion_range(data.actions[rows], data.control_rate_hz) if trim_idle else None
        start = found.start if found is not None else 0
        features.append(data.features[rows[start:]])
        proprio.append(data.proprio[rows[start:]])
        targets.append(episode_targets[start:])
    return Samples(np.concatenate(features), space.proprio(np.concatenate(proprio)), np.concatenate(targets))


def _build_policy(samples: Samples, embed_dim: int, config: TrainConfig) -> BCPolicy:
    from teleop.train.policy import BCPolicy, Normalization

    policy = BCPolicy(embed_dim, samples.proprio.shape[1], samples.targets.shape[1], config.hidden)
    policy.set_normalization(Normalization.fit(samples.proprio, samples.targets))
    return policy


def _tensors(samples: Samples, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch = require("torch", extra="train", purpose="training a policy")
    return tuple(torch.from_numpy(a).to(device) for a in (samples.features, samples.proprio, samples.targets))


def _write_config(config: TrainConfig, device: str, encoder: AnyEncoder, data: FeatureSet, world_size: int) -> None:
    torch = require("torch", extra="train", purpose="training a policy")
    doc = {
        "train": config.to_dict(),
        "device": device,
        "world_size": world_size,  # processes, each stepping on batch_size samples
        "torch": torch.__version__,
        "encoder": encoder.describe(),
        "data": {
            "episodes": [str(p) for p in data.episodes],
            "num_samples": data.num_samples,
            "robot": data.robot,
            "task": data.task,
            "instruction": data.instruction,
            "camera": data.camera,
            "joint_names": list(data.joint_names),
            "action_names": list(data.action_names),
        },
    }
    (config.out_dir / "config.json").write_text(json.dumps(doc, indent=2) + "\n")


class _Loop:
    """The optimisation loop with its logging, evaluation and best-checkpoint bookkeeping."""

    def __init__(
        self,
        config: TrainConfig,
        policy: BCPolicy,
        encoder: AnyEncoder,
        info: PolicyInfo,
        log: Callable[[str], None],
        evaluate: Evaluate | None,
        ranks: Ranks,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        self.config, self.policy, self.encoder, self.info = config, policy, encoder, info
        self.stop = stop
        self.log, self.evaluate, self.rank = log, evaluate, ranks.rank
        from teleop.train.features import split_cameras
        from teleop.train.keypoints import EndToEnd, KeypointEncoder

        torch = require("torch", extra="train", purpose="training a policy")
        self.generator = torch.Generator().manual_seed(config.seed + ranks.rank)  # each rank its own minibatches
        # what the optimiser steps: the policy, or a trainable encoder and the policy as one module
        self.trained = (EndToEnd(encoder, policy, config.shift, self.generator)
                        if isinstance(encoder, KeypointEncoder) and encoder.trainable else policy)
        self.cameras = len(split_cameras(info.camera))
        self.model = ranks.wrap(self.trained)  # what the steps run: DistributedDataParallel under torchrun
        self.record_every = max(1, config.steps // 200)
        self.progress_every = max(1, config.steps // 10)
        self.summary_window = max(1, config.steps // 20)  # steps averaged into first_loss / final_loss
        device = next(policy.parameters()).device
        self.step_losses = torch.zeros(config.steps, device=device)  # on the device: no sync per step
        self.evaluations: list[tuple[int, float]] = []
        self.lr = config.lr
        self.eval_time_s = 0.0
        self.train_time_s = 0.0

    def run(self, tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor], log_file: IO[str]) -> None:
        """Take config.steps Adam steps on random minibatches (with replacement), logging and evaluating."""
        torch = require("torch", extra="train", purpose="training a policy")
        features, proprio, actions = tensors
        with torch.no_grad():
            targets = self.policy.normalize_action(actions)
        optimizer = torch.optim.Adam(self.trained.parameters(), lr=self.config.lr)
        schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.config.steps)
                    if self.config.lr_schedule == "cosine" else None)
        self.trained.train()
        started = time.perf_counter()
        for step in range(1, self.config.steps + 1):
            if self.stop is not None and self.stop():
                raise TrainingStopped(f"training stopped after {step - 1} of {self.config.steps} steps: no policy "
                                      "was written")
            idx = torch.randint(features.shape[0], (self.config.batch_size,), generator=self.generator)
            idx = idx.to(features.device)
            loss = torch.nn.functional.mse_loss(self.model(features[idx], proprio[idx]), targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            self.lr = float(optimizer.param_groups[0]["lr"])  # for the next step
            self.step_losses[step - 1] = loss.detach()
            self._after_step(step, started, log_file)
        self.train_time_s = time.perf_counter() - started - self.eval_time_s

    def _after_step(self, step: int, started: float, log_file: IO[str]) -> None:
        last = step == self.config.steps
        if step % self.record_every == 0 or last:
            self._record_loss(step, log_file)
        if step % self.progress_every == 0 or last:
            self._log_progress(step, started)
        if self.evaluate is not None and (step % self.config.eval_every == 0 or last):
            self._evaluate(self.evaluate, step, log_file)

    def _mean_loss(self, start: int, stop: int) -> float:
        """Mean minibatch loss of steps start+1..stop (normalised-action MSE)."""
        return float(self.step_losses[max(start, 0) : stop].mean())

    def _record_loss(self, step: int, log_file: IO[str]) -> None:
        loss = self._mean_loss((step - 1) // self.record_every * self.record_every, step)
        if not math.isfinite(loss):
            raise TeleopError(
                f"training diverged at step {step} (loss {loss}): lower lr (now {self.config.lr}) "
                "or check the episodes for extreme actions"
            )
        log_file.write(json.dumps({"step": step, "loss": loss, "lr": self.lr}) + "\n")
        log_file.flush()

    def _log_progress(self, step: int, started: float) -> None:
        rate = step / max(time.perf_counter() - started - self.eval_time_s, 1e-9)
        loss = self._mean_loss(step - self.progress_every, step)
        speed = f"{rate:.3g} steps/s"
        if self.trained is not self.policy:  # the encoder trains too: its frames are the cost
            speed += f", {rate * self.config.batch_size * self.cameras:.0f} images/s"
        left = (self.config.steps - step) / rate
        self.log(f"{progress_bar(step / self.config.steps)} step {step}/{self.config.steps}  loss {loss:.4g}  "
                 f"({speed}, {left:.0f} s left)")

    def _evaluate(self, evaluate: Evaluate, step: int, log_file: IO[str]) -> None:
        t0 = time.perf_counter()
        self.trained.eval()
        rate = float(evaluate(PolicyRunner(self.encoder, self.policy, self.info)))
        self.trained.train()
        if not math.isfinite(rate):
            raise TeleopError(
                f"evaluate returned {rate} at step {step}: it must return a success rate in [0, 1]"
            )
        self.evaluations.append((step, rate))
        log_file.write(json.dumps({"step": step, "success": rate}) + "\n")
        log_file.flush()
        best = max(r for _, r in self.evaluations[:-1]) if len(self.evaluations) > 1 else None
        if best is None or rate > best:
            path = self.config.out_dir / BEST_POLICY_FILE
            save_checkpoint(path, self.policy, self.encoder, self.info, self.checkpoint_extra(step, rate))
        self.log(f"step {step}: success rate {rate:.3f} (best {max(r for _, r in self.evaluations):.3f})")
        self.eval_time_s += time.perf_counter() - t0

    def checkpoint_extra(self, step: int, success_rate: float | None = None) -> dict[str, Any]:
        """Fields that a checkpoint adds to the policy itself."""
        if success_rate is None and self.evaluations and self.evaluations[-1][0] == step:
            success_rate = self.evaluations[-1][1]
        return {"config": self.config.to_dict(), "step": step, "success_rate": success_rate}

    def result(self, run_dir: Path, wall_time_s: float, data: FeatureSet, num_samples: int) -> TrainResult:
        best = max(self.evaluations, key=lambda e: e[1]) if self.evaluations else None
        return TrainResult(
            run_dir=run_dir,
            first_loss=self._mean_loss(0, self.summary_window),
            final_loss=self._mean_loss(self.config.steps - self.summary_window, self.config.steps),
            steps=self.config.steps,
            wall_time_s=wall_time_s,
            steps_per_s=self.config.steps / max(self.train_time_s, 1e-9),
            num_episodes=len(data.episodes),
            num_samples=num_samples,
            encoded_episodes=data.encoded_episodes,
            best_success_rate=None if best is None else best[1],
            best_step=None if best is None else best[0],
            evaluations=tuple(self.evaluations),
        )
