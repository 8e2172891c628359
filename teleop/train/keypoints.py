"""An image encoder trained with the policy, end to end: a small convnet read out as spatial-softmax keypoints.

The frozen encoders (R3M's ResNets, MVP's ViTs) pool each image into one vector; a 9-px ball leaves little trace
in it. This encoder keeps where things are: each of its last feature maps becomes a softmax over the image and
the embedding is the expected (x, y) of each (Levine et al. 2016's spatial softmax, as robomimic's and Diffusion
Policy's image encoders read out a ResNet). It starts random and learns from the behaviour-cloning loss, with
random shifts of the frames (DrQ: pad by `shift` px, replicating the border, and crop back at a random offset)
as the only augmentation. It is R3M's "scratch" baseline, trained end to end, made small enough for a CPU: on
franka-reach a probe of the target's position from the front camera is off by 3.4 cm, where pooled ResNet-18
embeddings are off by 13-17 cm (benchmarks/encoder_probe.py, BENCHMARKS.md).

Frames are resized to the encoder's input size (bilinear, antialiased) and rounded to uint8 once, by
`KeypointEncoder.prepare`, the same function at training time and at run time.

`teleop pretrain --encoder keypoints` trains it with R3M's objective on the recordings and writes
`{"keypoints": state dict, "teleop": {...}}` (CHECKPOINT_KEY); `teleop train --encoder-weights` loads that file,
frozen (R3M's protocol: the head alone trains on cached embeddings) or, with `--no-freeze-encoder`, as the start
of end-to-end training. A policy checkpoint always carries its keypoints encoder's weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from teleop.deps import require
from teleop.errors import TeleopError
from teleop.train.architectures import KeypointArchitecture

if TYPE_CHECKING:
    import torch
else:
    torch = require("torch", extra="train", purpose="an image encoder for behaviour cloning")

PREPROCESSING = "resize{size}-antialias-bilinear/uint8/centred"
LOGIT_RANGE = 30.0  # a softmax cell's logit is at least the peak's less this (see SpatialSoftmax)
CHECKPOINT_KEY = "keypoints"  # a pretrained keypoints encoder: {"keypoints": state dict, "teleop": {...}}


class SpatialSoftmax(torch.nn.Module):
    """Feature maps (B, K, H, W) -> (B, 2K): per map, the expected (x, y) in [-1, 1] under its softmax."""

    grid: torch.Tensor  # (H * W, 2) x and y of each cell

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], dim=1), persistent=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        logits = maps.flatten(2)
        # Cells more than LOGIT_RANGE below a map's peak weigh exp(-30) of it: as good as nothing, and kept from the
        # subnormal floats that a sharp map's softmax would otherwise produce, which make the CPU 4x slower.
        logits = torch.maximum(logits, logits.amax(dim=-1, keepdim=True).detach() - LOGIT_RANGE)
        attention = torch.softmax(logits, dim=-1)  # (B, K, H*W)
        return (attention @ self.grid).flatten(1)


class KeypointEncoder(torch.nn.Module):
    """Images with values 0-255 -> keypoints (B, 2K), trained with the policy (`trainable`) unless `freeze`d.

    Input (B, 3, H, W) or (B, H, W, 3) uint8; frames of another size than `input_size` are resized first (see
    `prepare`). Attribute names follow `encoders.Encoder`, so a run config, a checkpoint and the feature cache
    describe both the same way.

    Attributes:
        weights, weights_sha256: The pretrained checkpoint the weights came from and its SHA-256, or None for a
            seeded random init (`load_weights` sets them).
        trainable: True: the policy's optimiser trains it (end to end); False: frozen, like a ResNet of R3M.
    """

    def __init__(
        self, name: str, arch: KeypointArchitecture, init_seed: int = 0, image_size: int | None = None
    ) -> None:
        super().__init__()
        self.weights: Path | None = None
        self.weights_sha256: str | None = None
        self.trainable = True
        size = arch.image_size if image_size is None else int(image_size)
        if not 32 <= size <= 512 or size % 2:
            raise TeleopError(f"the keypoints encoder takes an even input size of 32 to 512 px, not {size}: "
                              f"choose e.g. {arch.image_size}")
        self.name, self.arch, self.init_seed, self.size = name, arch, init_seed, size
        self.feature_dim = arch.feature_dim
        c = arch.channels
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.conv = torch.nn.Sequential(
                torch.nn.Conv2d(3, c, 5, stride=2, padding=2), torch.nn.ReLU(),
                torch.nn.Conv2d(c, c, 3, padding=1), torch.nn.ReLU(),
                torch.nn.Conv2d(c, arch.keypoints, 3, padding=1),
            )
        self.softmax = SpatialSoftmax(size // 2, size // 2)

    @property
    def input_size(self) -> int:
        return self.size

    def freeze(self) -> KeypointEncoder:
        """Frozen from now on: no gradients, and embeddings that a feature cache may keep."""
        self.trainable = False
        self.requires_grad_(False)
        return self.eval()

    def load_weights(self, state: dict[str, torch.Tensor], path: Path, sha256: str | None) -> None:
        """Load a pretrained state dict (the checkpoint's CHECKPOINT_KEY entry); `path` names it in errors."""
        try:
            self.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise TeleopError(f"{path}: its keypoints encoder does not match {self.name} at {self.size} px "
                              f"({exc}): pretrain it again with teleop pretrain --encoder keypoints") from exc
        self.weights, self.weights_sha256 = path, sha256

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Images 0-255, (B, 3, H, W) or (B, H, W, 3) -> uint8 (B, 3, S, S) at the input size S."""
        from teleop.train.encoders import _channels_first

        x = _channels_first(images)
        if tuple(x.shape[-2:]) == (self.size, self.size) and x.dtype == torch.uint8:
            return x.contiguous()
        x = torch.nn.functional.interpolate(x.to(torch.float32), size=(self.size, self.size), mode="bilinear",
                                            antialias=True, align_corners=False)
        return x.round().clamp(0, 255).to(torch.uint8)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(self.prepare(images))

    def embed(self, prepared: torch.Tensor) -> torch.Tensor:
        """Keypoints (B, 2K) of images (B, 3, S, S) 0-255 at the input size (`prepare`d, maybe shifted)."""
        x = prepared.to(self.softmax.grid.device).to(torch.float32) / 255.0 - 0.5
        return self.softmax(self.conv(x))

    def preprocessing(self) -> str:
        return PREPROCESSING.format(size=self.size)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description for run configs and checkpoints (the weights live in the policy's)."""
        start = f"{self.weights}" if self.weights is not None else f"a random init (seed {self.init_seed})"
        return {
            "name": self.name,
            "feature_dim": self.feature_dim,
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_sha256,
            "init": f"trained with the policy from {start}" if self.trainable else f"frozen: {start}",
            "init_seed": self.init_seed,
            "input_size": self.size,
            "preprocessing": self.preprocessing(),
            "trainable": self.trainable,
        }


def random_shift(images: torch.Tensor, shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's augmentation: each image (B, C, H, W) padded by `shift` px (border replicated) and cropped back to
    (H, W) at an offset drawn uniformly from 0..2*shift in x and in y. Returns float32."""
    x = images.to(torch.float32)
    if shift <= 0:
        return x
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (shift, shift, shift, shift), mode="replicate")
    offsets = torch.randint(0, 2 * shift + 1, (2, n), generator=generator).to(x.device)
    rows = (offsets[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (n, 1, h, 1)
    cols = (offsets[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (n, 1, 1, w)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


class EndToEnd(torch.nn.Module):
    """A trainable encoder and the policy as one module (what the optimiser and DistributedDataParallel see):
    frames (B, cameras, 3, S, S) uint8 and proprio (B, n) -> normalised action (B, A).

    In training mode each frame is randomly shifted (`random_shift`, drawn from `generator`); the cameras'
    keypoints go side by side in camera order, as `PolicyRunner.act` puts them.
    """

    def __init__(self, encoder: KeypointEncoder, policy: torch.nn.Module, shift: int,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.encoder, self.policy, self.shift, self.generator = encoder, policy, shift, generator

    def forward(self, frames: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        batch = frames.shape[0]
        images = frames.flatten(0, 1)
        if self.training:
            images = random_shift(images, self.shift, self.generator)
        return self.policy(self.encoder.embed(images).reshape(batch, -1), proprio)
