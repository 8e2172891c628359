"""Pretraining an image encoder on the user's own recordings, for `teleop train --encoder-weights`.

Two objectives (`--objective`), each for its kind of encoder:

`r3m` trains a ResNet with R3M's objective (Nair et al. 2022; facebookresearch/r3m `Trainer.update`).
Every step samples `batch_size` videos (one camera of one episode each) and five frames of each: a start
frame i0 from the first `alpha` of the video, an end frame ig from its last `alpha`, and s0 < s1 <= s2 anywhere.
The loss adds:
- time contrast (TCN): with similarity = -L2 distance of embeddings, s2 is closer to s1 than to s0 or to s2 of
  three other videos, and s0 closer to s1 than to s2 or to s0 of three other videos (InfoNCE);
- video-language alignment: an MLP scores (e(i0), e(frame), instruction); the score rises along the video:
  (i0, ig) above (i0, i0) and other videos' (i0, ig) under this instruction, likewise (i0, s1) above (i0, s0) and
  (i0, s2) above (i0, s1) (InfoNCE with three other videos each). A text encoder cannot be downloaded here, so
  an instruction is a learned embedding of its text (one per distinct instruction of the recordings);
- L1 and L2 penalties on the embeddings (weight 1e-5 each).
Augmentation is R3M's "rctraj": one random resized crop per video for all five frames. Adam, lr 1e-4, 16 videos.
The result is an R3M checkpoint, `{"r3m": {"module.convnet.*": ...}, "teleop": {...}}`, which every R3M loader
reads. The same objective trains the keypoints encoder (teleop.train.keypoints: the embedding is where 32
features are in the image), at its 96-px input; its checkpoint is `{"keypoints": {...}, "teleop": {...}}`.

`mae` trains a ViT (vit-s16, vit-b16, vit-l16 and their -avgpool forms) as a masked autoencoder (He et al. 2022;
facebookresearch/mae; see teleop.train.mae): `batch_size` random frames of all videos per step, a random resized
crop each, 75% of the patches hidden, the mean squared error of the decoder's reconstruction of the hidden
patches' normalised pixels. MAE's AdamW (betas 0.9, 0.95, weight decay 0.05, none on biases and norms) at MAE's
base lr 1.5e-4 per 256 images, so 3.75e-5 at the default 64 images per step; constant, as r3m's (MAE's 800-epoch
warmup and cosine schedule do not fit runs of a thousand steps). The ViT is built at `image_size` (a multiple of
16: 128 px is 8 x 8 patches) with MAE's fixed sin-cos positions. The result is MAE's checkpoint layout,
`{"model": {encoder and decoder weights}, "teleop": {...}}`: `build_encoder("vit-s16", path)` drops the decoder
and takes the input size from `pos_embed`.

"teleop" records the objective, the input size it was trained at (`teleop train` encodes at that size), the
episodes and the losses.

Frames are read once, cropped and resized as the encoder will see them (R3M's geometry for a ResNet, MVP's
centred square for a ViT, at `image_size`) and kept in memory: 25 episodes of 40 steps from two cameras take
100 MB at 128 px.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from teleop.deps import require
from teleop.errors import TeleopError
from teleop.train.architectures import ARCHITECTURES, KeypointArchitecture

if TYPE_CHECKING:
    import torch

    from teleop.train.encoders import AnyEncoder

OBJECTIVES = ("r3m", "mae")
ENCODERS = {  # the encoders each objective trains, the first one its default
    "r3m": ("resnet18", "resnet34", "resnet50", "keypoints"),
    "mae": ("vit-s16", "vit-b16", "vit-l16", "vit-s16-avgpool", "vit-b16-avgpool", "vit-l16-avgpool"),
}
DEFAULT_BATCH_SIZE = {"r3m": 16, "mae": 64}  # r3m: videos of five frames (80 images); mae: images
R3M_LR = 1e-4  # R3M's Adam
MAE_BASE_LR = 1.5e-4  # per 256 images (MAE's PRETRAIN.md --blr); the lr is base * batch_size / 256
DEFAULT_CROP_SCALE = 0.6  # smallest area fraction of the random resized crop (R3M's and MAE's augmentation)
DEFAULT_IMAGE_SIZE = 128  # [px]: 3.5x faster than R3M's 224 on a small CPU; `teleop train` follows the checkpoint
_MIN_FRAMES = 3  # a video needs s0 < s1 <= s2
_NEGATIVES = 3  # other videos per contrast, as R3M
_VIT_PATCH = 16  # [px], every ViT of ENCODERS["mae"]


def default_lr(objective: str, batch_size: int) -> float:
    """r3m: R3M's 1e-4 whatever the batch; mae: MAE's linear scaling rule, 1.5e-4 per 256 images."""
    return R3M_LR if objective == "r3m" else MAE_BASE_LR * batch_size / 256


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run (defaults: the objective's published hyperparameters, at a smaller input size).

    Attributes:
        episodes_dir: Directory of recorded episodes; every intact one is used, failed ones too (they are
            still videos of the scene).
        out: Checkpoint file to write.
        more_dirs: Further directories of episodes pretrained on with those of `episodes_dir`: other tasks and
            robots. Their instructions differ, which gives R3M's language term something to tell apart (with one
            task's recordings it stays at chance: RESULTS.md).
        objective: "r3m" or "mae".
        encoder: r3m: "resnet18" (default), "resnet34", "resnet50" or "keypoints"; mae: "vit-s16" (default),
            "vit-b16", "vit-l16" or their "-avgpool" forms.
        init_weights: Start from this checkpoint (e.g. R3M's or MAE's published one) instead of a random init; a
            ViT's must have been trained at `image_size`; MAE's decoder always starts afresh.
        cameras: Cameras whose frames are videos; empty: every camera of the episodes.
        image_size: Side of the encoder's input [px]; a multiple of 16 for mae; None: DEFAULT_IMAGE_SIZE, the
            keypoints encoder's own (96) for it.
        steps: Optimiser steps.
        batch_size: r3m: videos per step, five frames each (default 16); mae: images per step (default 64).
        lr: Learning rate; default r3m: 1e-4 (Adam), mae: 1.5e-4 * batch_size / 256 (AdamW).
        alpha: r3m: fraction of a video that the start and the end frame are drawn from.
        tcn_weight, lang_weight, l1_weight, l2_weight: r3m: weights of the loss terms.
        crop_scale: Smallest area fraction of the random resized crop (1: no augmentation); None: 0.6 (R3M's and
            MAE's augmentation), 1 for the keypoints encoder (one crop per video lets the time contrast tell videos
            apart by where the scene sits, not by where the target is: RESULTS.md).
        seed: Seed of the initialisation, sampling and augmentation.
        threads: torch threads (default: one per core).
        max_episodes: Use the first this many episodes; None: all.
        mask_ratio: mae: fraction of each image's patches hidden from the encoder.
        decoder_dim, decoder_depth, decoder_heads: mae: the decoder's width, blocks and heads (MAE's: 512, 8, 16).
        weight_decay: mae: AdamW's weight decay (none on biases and norms).
    """

    episodes_dir: Path
    out: Path
    more_dirs: tuple[Path, ...] = ()
    objective: str = "r3m"
    encoder: str | None = None
    init_weights: Path | None = None
    cameras: tuple[str, ...] = ()
    image_size: int | None = None
    steps: int = 1000
    batch_size: int | None = None
    lr: float | None = None
    alpha: float = 0.2
    tcn_weight: float = 1.0
    lang_weight: float = 1.0
    l1_weight: float = 1e-5
    l2_weight: float = 1e-5
    crop_scale: float | None = None
    seed: int = 0
    threads: int | None = None
    max_episodes: int | None = None
    mask_ratio: float = 0.75
    decoder_dim: int = 256
    decoder_depth: int = 4
    decoder_heads: int = 8
    weight_decay: float = 0.05

    def __post_init__(self) -> None:
        for name in ("episodes_dir", "out", "init_weights"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        object.__setattr__(self, "cameras", tuple(self.cameras))
        object.__setattr__(self, "more_dirs", tuple(Path(d) for d in self.more_dirs))
        if self.objective not in OBJECTIVES:
            raise TeleopError(f"invalid pretraining config: objective must be one of {', '.join(OBJECTIVES)}, "
                              f"got {self.objective!r}")
        self._settle_defaults()
        problems = [message for ok, message in self._checks() if not ok]
        if problems:
            raise TeleopError("invalid pretraining config: " + "; ".join(problems))

    def _settle_defaults(self) -> None:
        """The objective's encoder, batch size and lr where None was given."""
        if self.encoder is None:
            object.__setattr__(self, "encoder", ENCODERS[self.objective][0])
        keypoints = isinstance(ARCHITECTURES.get(self.encoder or ""), KeypointArchitecture)
        if self.crop_scale is None:
            object.__setattr__(self, "crop_scale", 1.0 if keypoints else DEFAULT_CROP_SCALE)
        if self.image_size is None:
            arch = ARCHITECTURES.get(self.encoder or "")
            size = arch.image_size if isinstance(arch, KeypointArchitecture) else DEFAULT_IMAGE_SIZE
            object.__setattr__(self, "image_size", size)
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", DEFAULT_BATCH_SIZE[self.objective])
        if self.lr is None:
            object.__setattr__(self, "lr", default_lr(self.objective, self.batch_size or 1))

    def _checks(self) -> list[tuple[bool, str]]:
        batch, lr = self.batch_size or 0, self.lr or 0.0
        other = {"r3m": "mae", "mae": "r3m"}[self.objective]
        kind = {"r3m": "a ResNet or the keypoints encoder", "mae": "a ViT"}
        checks = [
            (self.encoder in ENCODERS[self.objective],
             f"the {self.objective} objective trains {kind[self.objective]} "
             f"({', '.join(ENCODERS[self.objective])}), not {self.encoder!r}"
             + (f": use --objective {other} for it" if self.encoder in ENCODERS[other] else "")),
            (self.steps >= 1, f"steps must be at least 1, got {self.steps}"),
            (math.isfinite(lr) and lr > 0, f"lr must be a positive number, got {self.lr}"),
            (0.0 < (self.crop_scale or 0.0) <= 1.0, f"crop_scale must be in (0, 1], got {self.crop_scale}"),
            (self.threads is None or self.threads >= 1, f"threads must be at least 1, got {self.threads}"),
            (self.max_episodes is None or self.max_episodes >= 1,
             f"max_episodes must be at least 1, got {self.max_episodes}"),
        ]
        if self.objective == "r3m":
            checks += [
                (batch >= 2, f"batch_size must be at least 2 (other videos are the negatives), got {batch}"),
                (0.0 < self.alpha <= 1.0, f"alpha must be in (0, 1], got {self.alpha}"),
                (min(self.tcn_weight, self.lang_weight, self.l1_weight, self.l2_weight) >= 0,
                 "loss weights must not be negative"),
            ]
        else:
            checks += self._mae_checks(batch)
        return checks

    @property
    def size(self) -> int:
        """The input size [px], settled by __post_init__."""
        return self.image_size or DEFAULT_IMAGE_SIZE

    def _mae_checks(self, batch: int) -> list[tuple[bool, str]]:
        patches = (self.size // _VIT_PATCH) ** 2
        visible = round((1.0 - self.mask_ratio) * patches)  # mae.kept_patches, without importing torch
        return [
            (batch >= 1, f"batch_size must be at least 1, got {batch}"),
            (self.size >= 2 * _VIT_PATCH and self.size % _VIT_PATCH == 0,
             f"image_size must be a multiple of the ViT's {_VIT_PATCH}-px patches and at least {2 * _VIT_PATCH}, "
             f"got {self.image_size} (128 px: 8 x 8 patches)"),
            (0.0 < self.mask_ratio < 1.0 and (patches < 2 or 1 <= visible < patches),
             f"mask_ratio must leave at least one of the {patches} patches visible and one hidden, got "
             f"{self.mask_ratio} (MAE: 0.75)"),
            (self.decoder_depth >= 1 and self.decoder_heads >= 1 and self.decoder_dim % 4 == 0
             and self.decoder_dim % self.decoder_heads == 0,
             f"the decoder needs a depth and heads of at least 1 and a width divisible by 4 (its sin-cos "
             f"positions) and by the heads, got width {self.decoder_dim}, depth {self.decoder_depth}, heads "
             f"{self.decoder_heads}"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0,
             f"weight_decay must not be negative, got {self.weight_decay}"),
        ]

    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            return str(v) if isinstance(v, Path) else ([plain(x) for x in v] if isinstance(v, tuple) else v)

        return {k: plain(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Videos:
    """Frames of every video, ready for the encoder: uint8 (N, 3, S, S), cropped and resized.

    Attributes:
        frames: All videos' frames, concatenated.
        starts, lengths: Where each video's frames are in `frames`, and how many.
        instruction: Index into `instructions` of each video's instruction, -1 for none.
        instructions: Distinct instructions.
        names: "<episode file>:<camera>" of each video.
    """

    frames: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    instruction: np.ndarray
    instructions: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.lengths)


@dataclass(frozen=True)
class PretrainResult:
    out: Path
    steps: int
    videos: int
    frames: int
    first_loss: float
    final_loss: float
    wall_time_s: float
    images_per_s: float


def load_videos(
    episodes: Sequence[Path], cameras: Sequence[str], encoder: AnyEncoder, log: Callable[[str], None] = print,
    min_frames: int = _MIN_FRAMES, min_videos: int = 2,
) -> Videos:
    """Each chosen camera of each episode as one video, its frames cropped and resized as `encoder` does
    (`geometry`; the keypoints encoder's `prepare`).

    Videos shorter than `min_frames` are skipped; fewer than `min_videos` left is an error (r3m's defaults:
    three frames to sample s0 < s1 <= s2, two videos to contrast).
    """
    from recorder.backend import open_episode
    from teleop.train.keypoints import KeypointEncoder

    torch = require("torch", extra="train", purpose="pretraining an encoder")
    chunks: list[np.ndarray] = []
    lengths, instruction, names = [], [], []
    instructions: dict[str, int] = {}
    for path in episodes:
        with open_episode(path) as reader:
            chosen = list(cameras) or list(reader.camera_names)
            missing = [c for c in chosen if c not in reader.camera_names]
            if missing:
                raise TeleopError(f"{path} has no camera {', '.join(missing)}: choose from "
                                  f"{', '.join(reader.camera_names)}")
            text = reader.meta.instruction or ""
            for camera in chosen:
                frames = reader.frames(camera, 0, reader.num_steps)
                if frames.shape[0] < min_frames:
                    log(f"skipping {Path(path).name}:{camera}: {frames.shape[0]} frames, fewer than {min_frames}")
                    continue
                with torch.no_grad():
                    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
                    if isinstance(encoder, KeypointEncoder):
                        x = encoder.prepare(x)
                    else:
                        x = encoder.geometry(x).round().clamp(0, 255).to(torch.uint8)
                chunks.append(x.numpy())
                lengths.append(len(x))
                instruction.append(instructions.setdefault(text, len(instructions)) if text else -1)
                names.append(f"{Path(path).name}:{camera}")
    if len(lengths) < min_videos:
        why = "pretraining contrasts videos with each other: " if min_videos > 1 else ""
        raise TeleopError(f"too few videos to pretrain on: {len(lengths)} with at least {min_frames} frames; "
                          f"{why}record more episodes")
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    return Videos(np.concatenate(chunks), np.concatenate([[0], np.cumsum(lengths_arr)[:-1]]), lengths_arr,
                  np.asarray(instruction, dtype=np.int64), tuple(instructions), tuple(names))


class Objective(Protocol):
    """A pretraining loss and what it trains; `_optimise` steps it, `pretrain` writes its checkpoint."""

    @property
    def images_per_step(self) -> int: ...

    def parameters(self) -> list[torch.nn.Parameter]: ...

    def train(self) -> None: ...

    def optimizer(self) -> torch.optim.Optimizer: ...

    def loss(self, videos: Videos, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one random batch and its parts (metrics["loss"] is the loss)."""
        ...

    def checkpoint(self, meta: dict[str, Any]) -> dict[str, Any]:
        """What to save: the trained weights in their published layout, with `meta` under "teleop"."""
        ...


def random_resized_crop(images: torch.Tensor, min_area: float, rng: np.random.Generator) -> torch.Tensor:
    """One random resized crop per group: uint8 (B, K, 3, S, S) -> float (B * K, 3, S, S), 0-255.

    As torchvision's RandomResizedCrop: area fraction uniform in [min_area, 1], aspect ratio log-uniform in
    [3/4, 4/3], clipped to the frame; bilinear resize back to S. All K images of a group share the crop (R3M
    crops a video's frames alike).
    """
    torch = require("torch", extra="train", purpose="pretraining an encoder")
    b, k, c, s, _ = images.shape
    out = torch.empty((b, k, c, s, s), dtype=torch.float32)
    for i in range(b):
        area = rng.uniform(min_area, 1.0)
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        h = min(s, round(s * math.sqrt(area / aspect)))
        w = min(s, round(s * math.sqrt(area * aspect)))
        top, left = rng.integers(0, s - h + 1), rng.integers(0, s - w + 1)
        crop = images[i, :, :, top : top + h, left : left + w].float()
        # a crop is never larger than the frame: only upsampling, where antialiasing changes nothing (and
        # takes twice as long)
        out[i] = torch.nn.functional.interpolate(crop, size=(s, s), mode="bilinear", align_corners=False)
    return out.view(b * k, c, s, s)


class R3MObjective:
    """R3M's loss over a batch of videos (see the module docstring); `encoder` (a ResNet's convnet, or the
    keypoints encoder) is trained in place."""

    def __init__(self, encoder: AnyEncoder, num_instructions: int, config: PretrainConfig,
                 hidden_dim: int = 1024, lang_dim: int = 64) -> None:
        from teleop.train.keypoints import KeypointEncoder

        th = require("torch", extra="train", purpose="pretraining an encoder")
        nn = th.nn
        self.config = config
        self.keypoints = encoder if isinstance(encoder, KeypointEncoder) else None
        self.convnet: torch.nn.Module = encoder if isinstance(encoder, KeypointEncoder) else encoder.convnet
        feature_dim = encoder.feature_dim
        self.language = nn.Embedding(max(num_instructions, 1), lang_dim)
        layers: list[torch.nn.Module] = []
        width = 2 * feature_dim + lang_dim
        for _ in range(4):  # R3M's LanguageReward: four hidden ReLU layers
            layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        self.reward = nn.Sequential(*layers, nn.Linear(width, 1))

    @property
    def images_per_step(self) -> int:
        return self._batch_size * 5

    @property
    def _batch_size(self) -> int:
        return self.config.batch_size or DEFAULT_BATCH_SIZE["r3m"]  # settled by PretrainConfig

    def parameters(self) -> list[torch.nn.Parameter]:
        return [*self.convnet.parameters(), *self.language.parameters(), *self.reward.parameters()]

    def train(self) -> None:
        for module in (self.convnet, self.language, self.reward):
            module.train()

    def optimizer(self) -> torch.optim.Optimizer:
        """R3M's Adam, no weight decay."""
        torch = require("torch", extra="train", purpose="pretraining an encoder")
        return torch.optim.Adam(self.parameters(), lr=self.config.lr or default_lr("r3m", self._batch_size))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, D) of float images (B, 3, S, S) with values in 0-1."""
        from teleop.train.encoders import imagenet_normalize

        if self.keypoints is not None:
            return self.keypoints.embed(images * 255.0)
        return self.convnet(imagenet_normalize(images))

    def checkpoint(self, meta: dict[str, Any]) -> dict[str, Any]:
        """R3M's layout: `{"r3m": {"module.convnet.*", "module.lang_rew.pred.*", "module.lang_enc.*"}}`; the
        keypoints encoder's: `{"keypoints": {"conv.*"}}`."""
        from teleop.train.keypoints import CHECKPOINT_KEY

        if self.keypoints is not None:
            weights = {k: v.detach().clone() for k, v in self.keypoints.state_dict().items()}
            return {CHECKPOINT_KEY: weights, "teleop": meta}
        state = {f"module.convnet.{k}": v.detach().clone() for k, v in self.convnet.state_dict().items()}
        state |= {f"module.lang_rew.pred.{k}": v.detach().clone() for k, v in self.reward.state_dict().items()}
        state["module.lang_enc.embedding.weight"] = self.language.weight.detach().clone()
        return {"r3m": state, "teleop": meta}

    def sample(self, videos: Videos, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Frame rows (B, 5) into videos.frames [i0, ig, s0, s1, s2] and the videos' instruction (B,)."""
        chosen = rng.choice(videos.count, size=self._batch_size, replace=videos.count < self._batch_size)
        rows = np.empty((len(chosen), 5), dtype=np.int64)
        alpha = self.config.alpha
        for b, v in enumerate(chosen):
            n = int(videos.lengths[v])
            i0 = rng.integers(0, max(1, int(alpha * n)))
            ig = rng.integers(min(n - 1, max(0, math.ceil((1 - alpha) * n) - 1)), n)
            s1 = rng.integers(1, n)
            s0 = rng.integers(0, s1)
            s2 = rng.integers(s1, n)
            rows[b] = videos.starts[v] + np.array([i0, ig, s0, s1, s2])
        return rows, videos.instruction[chosen]

    def augment(self, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """One random resized crop per video for its five frames: uint8 (B, 5, 3, S, S) -> float (B*5, 3, S, S)."""
        return random_resized_crop(images, self.config.crop_scale or DEFAULT_CROP_SCALE, rng)

    def loss(self, videos: Videos, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        torch = require("torch", extra="train", purpose="pretraining an encoder")
        rows, lang = self.sample(videos, rng)
        images = torch.from_numpy(videos.frames[rows.reshape(-1)]).view(*rows.shape, *videos.frames.shape[1:])
        embeddings = self.embed(self.augment(images, rng) / 255.0)
        e = embeddings.view(rows.shape[0], 5, -1)
        e0, eg, es0, es1, es2 = e.unbind(1)
        c = self.config
        l1 = embeddings.abs().sum(-1).mean()
        l2 = embeddings.norm(dim=-1).mean()
        metrics = {"l1": l1.item(), "l2": l2.item()}
        total = c.l1_weight * l1 + c.l2_weight * l2
        if c.tcn_weight > 0:
            tcn, aligned = self._tcn(es0, es1, es2, rng)
            total = total + c.tcn_weight * tcn
            metrics |= {"tcn": tcn.item(), "aligned": aligned}
        with_text = torch.from_numpy(lang >= 0)
        if c.lang_weight > 0 and bool(with_text.any()):
            words = self.language(torch.from_numpy(np.maximum(lang, 0)))
            lang_loss, accuracy = self._language(e0, eg, es0, es1, es2, words, with_text, rng)
            total = total + c.lang_weight * lang_loss
            metrics |= {"lang": lang_loss.item(), "lang_acc": accuracy}
        metrics["loss"] = total.item()
        return total, metrics

    def _tcn(self, es0: torch.Tensor, es1: torch.Tensor, es2: torch.Tensor,
             rng: np.random.Generator) -> tuple[torch.Tensor, float]:
        th = require("torch", extra="train", purpose="pretraining an encoder")

        def sim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return -th.linalg.norm(a - b, dim=-1)

        others = self._other_videos(len(es0), rng)
        sim02, sim12, sim01 = sim(es2, es0), sim(es2, es1), sim(es1, es0)
        neg2 = th.stack([sim(es2, es2[o]) for o in others], -1)
        neg0 = th.stack([sim(es0, es0[o]) for o in others], -1)
        # InfoNCE: the positive's logit against itself and the negatives (a log-softmax, numerically stable)
        loss2 = -th.log_softmax(th.cat([sim12[:, None], sim02[:, None], neg2], -1), -1)[:, 0]
        loss0 = -th.log_softmax(th.cat([sim01[:, None], sim02[:, None], neg0], -1), -1)[:, 0]
        aligned = float(((sim02 < sim12) & (sim01 > sim02)).float().mean())
        return ((loss2 + loss0) / 2).mean(), aligned

    def _language(self, e0: torch.Tensor, eg: torch.Tensor, es0: torch.Tensor, es1: torch.Tensor,
                  es2: torch.Tensor, words: torch.Tensor, with_text: torch.Tensor,
                  rng: np.random.Generator) -> tuple[torch.Tensor, float]:
        th = require("torch", extra="train", purpose="pretraining an encoder")

        def score(start: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
            return self.reward(th.cat([start, frame, words], -1)).squeeze(-1)

        losses, correct = [], []
        for later, earlier in ((eg, e0), (es1, es0), (es2, es1)):
            negatives = [score(e0, earlier)]
            for o in self._other_videos(len(e0), rng):
                negatives.append(score(e0[o], later[o]))
            logits = th.cat([score(e0, later)[:, None], th.stack(negatives, -1)], -1)
            losses.append(-th.log_softmax(logits, -1)[:, 0])
            correct.append((logits[:, 0] > logits[:, 1:].max(-1).values).float())
        mask = with_text.float()
        loss = (th.stack(losses).mean(0) * mask).sum() / mask.sum()
        accuracy = float((th.stack(correct).mean(0) * mask).sum() / mask.sum())
        return loss, accuracy

    @staticmethod
    def _other_videos(batch: int, rng: np.random.Generator) -> list[np.ndarray]:
        """_NEGATIVES index arrays, each pairing every batch row with a different row (a cyclic shift)."""
        shifts = rng.choice(np.arange(1, batch), size=_NEGATIVES, replace=batch - 1 < _NEGATIVES)
        return [(np.arange(batch) + s) % batch for s in shifts]


def pretrain(config: PretrainConfig, log: Callable[[str], None] = print) -> PretrainResult:
    """Train an encoder on the recordings in `config.episodes_dir` (and `config.more_dirs`) and write it to
    `config.out`.

    Raises:
        TeleopError: Bad config, too few usable videos, unreadable init weights, an unwritable output.
    """
    from teleop.train.encoders import build_encoder
    from teleop.train.features import select_episodes
    from teleop.train.runner import save_torch_file
    from teleop.train.trainer import torch_threads

    torch = require("torch", extra="train", purpose="pretraining an encoder")
    started = time.perf_counter()
    name = config.encoder or ENCODERS[config.objective][0]  # settled by PretrainConfig
    episodes = [path for directory in (config.episodes_dir, *config.more_dirs)
                for path in select_episodes(directory, include_failed=True, log=log)][: config.max_episodes]
    torch.manual_seed(config.seed)
    encoder = build_encoder(name, config.init_weights, init_seed=config.seed, image_size=config.image_size)
    with torch_threads(config.threads or os.cpu_count() or 1):
        # MAE needs frames, not videos: any one of them will do
        minimum = {"min_frames": 1, "min_videos": 1} if config.objective == "mae" else {}
        videos = load_videos(episodes, config.cameras, encoder, log, **minimum)
        log(f"pretraining {name} ({config.objective}) on {videos.count} videos, {len(videos.frames)} "
            f"frames at {config.image_size} px ({videos.frames.nbytes / 1e6:.0f} MB) from {len(episodes)} episodes")
        objective = _OBJECTIVES[config.objective](encoder, videos, config)
        losses = _optimise(objective, videos, config, log)
    meta = {
        "objective": config.objective,
        "architecture": name,
        "image_size": config.image_size,
        "config": config.to_dict(),
        "episodes": [str(p) for p in episodes],
        "videos": list(videos.names),
        "instructions": list(videos.instructions),
        "loss": [float(v) for v in losses],
    }
    save_torch_file(objective.checkpoint(meta), config.out, "the pretrained encoder",
                    "free disk space or choose another --out")
    elapsed = time.perf_counter() - started
    window = max(1, len(losses) // 20)
    images = config.steps * objective.images_per_step
    log(f"wrote {config.out}: loss {np.mean(losses[:window]):.4g} -> {np.mean(losses[-window:]):.4g} in "
        f"{elapsed:.0f} s; train with: teleop train DIR --encoder {name} --encoder-weights {config.out}")
    return PretrainResult(config.out, config.steps, videos.count, len(videos.frames), float(np.mean(losses[:window])),
                          float(np.mean(losses[-window:])), elapsed, images / max(elapsed, 1e-9))


def _r3m_objective(encoder: AnyEncoder, videos: Videos, config: PretrainConfig) -> R3MObjective:
    objective = R3MObjective(encoder, len(videos.instructions), config)
    objective.convnet.requires_grad_(True)
    return objective


def _mae_objective(encoder: AnyEncoder, videos: Videos, config: PretrainConfig) -> Objective:
    from teleop.train.encoders import Encoder
    from teleop.train.mae import MAEObjective
    from teleop.train.vit import VisionTransformer

    if not isinstance(encoder, Encoder) or not isinstance(encoder.backbone, VisionTransformer):
        raise TeleopError(f"the mae objective trains a ViT, and {encoder.name} is none: pass --encoder vit-s16")
    return MAEObjective(encoder.backbone, config)


_OBJECTIVES: dict[str, Callable[[AnyEncoder, Videos, PretrainConfig], Objective]] = {
    "r3m": _r3m_objective,
    "mae": _mae_objective,
}


def _optimise(objective: Objective, videos: Videos, config: PretrainConfig,
              log: Callable[[str], None]) -> list[float]:
    from teleop.progress import progress_bar

    rng = np.random.default_rng(config.seed)
    optimizer = objective.optimizer()
    objective.train()
    losses: list[float] = []
    every = max(1, config.steps // 20)
    started = time.perf_counter()
    for step in range(1, config.steps + 1):
        loss, metrics = objective.loss(videos, rng)
        if not math.isfinite(metrics["loss"]):
            raise TeleopError(f"pretraining diverged at step {step} (loss {metrics['loss']}): lower lr "
                              f"(now {config.lr})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(metrics["loss"])
        if step % every == 0 or step == config.steps:
            elapsed = time.perf_counter() - started
            rate = step * objective.images_per_step / elapsed
            shown = "".join(f"  {k} {v:.3g}" for k, v in metrics.items() if k != "loss")
            eta = elapsed / step * (config.steps - step)
            log(f"{progress_bar(step / config.steps)} step {step}/{config.steps}  loss {np.mean(losses[-every:]):.4g}"
                f"{shown}  ({rate:.0f} images/s, {eta:.0f} s left)")
    return losses
