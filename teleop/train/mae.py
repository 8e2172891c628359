"""Masked autoencoding (He et al. 2022, facebookresearch/mae `models_mae.py`) as a `teleop pretrain` objective.

The encoder is our `vit.VisionTransformer` as it is (MAE's and MVP's: `patch_embed`, `cls_token`, the fixed
sin-cos `pos_embed`, `blocks`, the final LayerNorm `norm`), the decoder is MAE's, with MAE's parameter names
(Dd = decoder width, N patches, p = patch side):

    mask_token                     (1, 1, Dd), N(0, 0.02^2)
    decoder_embed.weight / .bias   Linear(D, Dd)
    decoder_pos_embed              (1, 1 + N, Dd), the fixed sin-cos table, not trained
    decoder_blocks.i.*             vit.Block(Dd, heads, 4), i = 0..depth-1
    decoder_norm.weight / .bias    LayerNorm(Dd)
    decoder_pred.weight / .bias    Linear(Dd, p * p * 3): a patch's pixels in (row, column, channel) order

so the checkpoint is MAE's `{"model": {...}}` and `encoders.build_encoder` reads its encoder part. MAE's decoder
is 512 wide with 8 blocks of 16 heads; the default here is 256 wide, 4 blocks of 8 heads, which a 2-core CPU
can afford beside a ViT-S. MAE's ablation (Table 1a-b) finds such a decoder nearly as good for fine-tuning but a
few points worse for linear probing, which is closer to how `teleop train` uses a frozen encoder: where time
allows, PretrainConfig(decoder_dim=512, decoder_depth=8, decoder_heads=16) is MAE's.

One step: `batch_size` random frames of all videos (which video a frame comes from does not matter to MAE), a
random resized crop of each, /255 and ImageNet mean/std as the Encoder does; per image a random `mask_ratio` of
the patches is hidden (MAE's scheme: argsort of uniform noise shuffles the patches, the first ones are kept,
the argsort of the shuffle restores the order). The encoder sees the CLS token and the visible patches; the
decoder sees their embeddings with a mask token in every hidden patch's place; the loss is the mean squared
error on the hidden patches only, against each patch's pixels (of the ImageNet-normalised image, as MAE's
`forward_loss` takes it) normalised by the patch's own mean and variance (MAE's `norm_pix_loss=True`).

Augmentation differs from MAE's ImageNet recipe on purpose:
- the random resized crop keeps 0.6-1 of the area (`crop_scale`), not 0.2-1: a robot scene's objects are small
  and a 0.2 crop often holds none of them, only table; it is cut from the frame as the encoder sees it and
  resized back bilinearly (MAE: from the full image, bicubic);
- no horizontal flip: a robot scene is not mirror symmetric (the arm stands on one side, left and right are
  different actions), so a flipped frame is a scene that never happens.

A `-avgpool` ViT has `fc_norm` in place of `norm`; it serves as the encoder's final LayerNorm over every token
here, so the checkpoint loads into that encoder with strict keys (MAE's fine-tuning would start `fc_norm`
afresh).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from teleop.deps import require
from teleop.errors import TeleopError
from teleop.train.encoders import imagenet_normalize
from teleop.train.pretrain import DEFAULT_BATCH_SIZE, DEFAULT_CROP_SCALE, default_lr, random_resized_crop
from teleop.train.vit import LAYER_NORM_EPS, Block, VisionTransformer, sincos_pos_embed

if TYPE_CHECKING:
    import torch

    from teleop.train.pretrain import PretrainConfig, Videos
else:
    torch = require("torch", extra="train", purpose="pretraining a ViT with MAE's objective")

NORM_PIX_EPS = 1e-6  # MAE's forward_loss: (target - mean) / (var + 1e-6) ** 0.5
ADAMW_BETAS = (0.9, 0.95)  # MAE's main_pretrain.py


def kept_patches(num_patches: int, mask_ratio: float) -> int:
    """Visible patches per image: round((1 - mask_ratio) * num_patches) (49 of 196 at 0.75, as MAE).

    MAE truncates with int(); rounding gives the same counts where the product is whole and is immune to
    float error (int(10 * (1 - 0.9)) is 0).
    """
    return round((1.0 - mask_ratio) * num_patches)


@dataclass(frozen=True)
class Masking:
    """Which patches of each image the encoder sees.

    Attributes:
        keep: (B, K) indices of the visible patches, in shuffled order (the encoder's token order).
        restore: (B, N) permutation that puts [visible tokens, then hidden ones] back into patch order.
        mask: (B, N) float, 1 for a hidden patch, 0 for a visible one, in patch order.
    """

    keep: torch.Tensor
    restore: torch.Tensor
    mask: torch.Tensor


def random_masking(noise: torch.Tensor, keep_count: int) -> Masking:
    """MAE's per-image random masking from uniform noise (B, N): the `keep_count` lowest-noise patches stay."""
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    mask = torch.ones(noise.shape, dtype=torch.float32)
    mask[:, :keep_count] = 0.0
    return Masking(shuffle[:, :keep_count], restore, torch.gather(mask, 1, restore))


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, 3, S, S) -> (B, N, p * p * 3): patches in row-major order, each as (row, column, channel) pixels."""
    b, c, s, _ = images.shape
    g = s // patch_size
    x = images.reshape(b, c, g, patch_size, g, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, patch_size * patch_size * c)


def normalised_patches(patches: torch.Tensor) -> torch.Tensor:
    """Each patch's pixels less their mean, over their standard deviation (MAE's norm_pix_loss targets)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)  # unbiased, as torch's default that MAE uses
    return (patches - mean) / (var + NORM_PIX_EPS) ** 0.5


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over hidden patches of the per-patch mean squared error: pred, target (B, N, P), mask (B, N)."""
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum()


class MAEDecoder(torch.nn.Module):
    """MAE's decoder (parameter names in the module docstring): encoder tokens (B, 1 + K, D) -> pixels (B, N, P)."""

    def __init__(self, embed_dim: int, grid: int, patch_size: int, width: int = 256, depth: int = 4,
                 num_heads: int = 8, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, width))
        self.decoder_embed = torch.nn.Linear(embed_dim, width)
        self.decoder_pos_embed = torch.nn.Parameter(sincos_pos_embed(width, grid)[None], requires_grad=False)
        self.decoder_blocks = torch.nn.ModuleList(Block(width, num_heads, mlp_ratio) for _ in range(depth))
        self.decoder_norm = torch.nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.decoder_pred = torch.nn.Linear(width, patch_size * patch_size * 3)
        for m in self.modules():  # MAE's initialisation, as vit.VisionTransformer's
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                torch.nn.init.zeros_(m.bias)
            elif isinstance(m, torch.nn.LayerNorm):
                torch.nn.init.ones_(m.weight)
                torch.nn.init.zeros_(m.bias)
        torch.nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, tokens: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        x = self.decoder_embed(tokens)
        b, n = restore.shape
        hidden = self.mask_token.expand(b, n - (x.shape[1] - 1), -1)
        patches = torch.cat([x[:, 1:], hidden], dim=1)  # visible ones in shuffled order, then the mask tokens
        patches = torch.gather(patches, 1, restore[..., None].expand(-1, -1, x.shape[-1]))  # back in patch order
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # the CLS token predicts nothing


class MAEObjective:
    """MAE's loss over random frames of the videos (see the module docstring); `vit` is trained in place.

    Its `pos_embed` stays the fixed sin-cos table (MAE's requires_grad=False); the decoder is created here.
    """

    def __init__(self, vit: VisionTransformer, config: PretrainConfig) -> None:
        self.config = config
        self.batch_size = config.batch_size or DEFAULT_BATCH_SIZE["mae"]  # settled by PretrainConfig
        self.lr = config.lr or default_lr("mae", self.batch_size)
        self.vit = vit
        vit.requires_grad_(True)
        vit.pos_embed.requires_grad_(False)
        self.final_norm = vit.norm if vit.arch.pooling == "cls" else vit.fc_norm
        self.patch_size = vit.arch.patch_size
        self.num_patches = (vit.image_size // self.patch_size) ** 2
        self.keep_count = kept_patches(self.num_patches, config.mask_ratio)
        if not 1 <= self.keep_count < self.num_patches:
            raise TeleopError(
                f"a mask ratio of {config.mask_ratio} leaves {self.keep_count} of {self.num_patches} patches "
                f"visible at {vit.image_size} px: at least one must be visible and one hidden; choose another "
                "mask ratio or a larger image size"
            )
        self.decoder = MAEDecoder(vit.arch.embed_dim, vit.image_size // self.patch_size, self.patch_size,
                                  config.decoder_dim, config.decoder_depth, config.decoder_heads, vit.arch.mlp_ratio)

    @property
    def images_per_step(self) -> int:
        return self.batch_size

    def parameters(self) -> list[torch.nn.Parameter]:
        """The trained ones: everything but the two fixed position tables."""
        modules = (self.vit.parameters(), self.decoder.parameters())
        return [p for p in itertools.chain(*modules) if p.requires_grad]

    def train(self) -> None:
        self.vit.train()
        self.decoder.train()

    def optimizer(self) -> torch.optim.Optimizer:
        """MAE's AdamW (betas 0.9, 0.95); as timm's add_weight_decay, no decay on biases and LayerNorm weights.

        MAE's cls_token and mask_token decay (they are not 1-D); the fixed position tables are not trained.
        """
        named = itertools.chain(self.vit.named_parameters(), self.decoder.named_parameters())
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for name, p in named:
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        groups = [{"params": no_decay, "weight_decay": 0.0},
                  {"params": decay, "weight_decay": self.config.weight_decay}]
        # fused: one kernel for all parameters, 3x faster than the default on a CPU for a ViT-S's 22M
        return torch.optim.AdamW(groups, lr=self.lr, betas=ADAMW_BETAS, fused=True)

    def sample(self, videos: Videos, rng: np.random.Generator) -> np.ndarray:
        """Rows (B,) into videos.frames, uniformly over all frames (with replacement only if there are too few)."""
        total = len(videos.frames)
        return rng.choice(total, size=self.batch_size, replace=total < self.batch_size)

    def images(self, videos: Videos, rows: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
        """Frames `rows`, a random resized crop each (none with rng None), ImageNet-normalised: (B, 3, S, S)."""
        frames = torch.from_numpy(videos.frames[rows])
        if rng is None:
            x = frames.float()
        else:
            x = random_resized_crop(frames[:, None], self.config.crop_scale or DEFAULT_CROP_SCALE, rng)
        return imagenet_normalize(x / 255.0)

    def masking(self, batch: int, rng: np.random.Generator) -> Masking:
        return random_masking(torch.from_numpy(rng.random((batch, self.num_patches))), self.keep_count)

    def encode_visible(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """MAE's forward_encoder: (B, 3, S, S), keep (B, K) -> (B, 1 + K, D), the CLS token first."""
        vit = self.vit
        x = vit.patch_embed(images) + vit.pos_embed[:, 1:]
        x = torch.gather(x, 1, keep[..., None].expand(-1, -1, x.shape[-1]))
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in vit.blocks:
            x = block(x)
        return self.final_norm(x)

    def reconstruction_loss(self, images: torch.Tensor, masking: Masking) -> torch.Tensor:
        """Normalised images (B, 3, S, S) -> the loss on their hidden patches."""
        pred = self.decoder(self.encode_visible(images, masking.keep), masking.restore)
        target = normalised_patches(patchify(images, self.patch_size))
        return masked_patch_loss(pred, target, masking.mask)

    def loss(self, videos: Videos, rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        rows = self.sample(videos, rng)
        images = self.images(videos, rows, rng)
        loss = self.reconstruction_loss(images, self.masking(len(rows), rng))
        return loss, {"loss": loss.item()}

    def checkpoint(self, meta: dict[str, Any]) -> dict[str, Any]:
        """MAE's layout, `{"model": {encoder keys, decoder keys, "mask_token"}, "teleop": meta}`."""
        state = {**self.vit.state_dict(), **self.decoder.state_dict()}
        return {"model": {k: v.detach().clone() for k, v in state.items()}, "teleop": meta}

