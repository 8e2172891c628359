"""Vision Transformer with timm's parameter names, so MAE and MVP checkpoints load with strict key matching.

Parameters (D = embed_dim, N = (image_size / patch_size)^2 patches, i = 0..depth-1):

    cls_token                              (1, 1, D)
    pos_embed                              (1, 1 + N, D), the CLS token's position first
    patch_embed.proj.weight / .bias        Conv2d(3, D, kernel = stride = patch_size)
    blocks.i.norm1.weight / .bias          LayerNorm(D)
    blocks.i.attn.qkv.weight / .bias       Linear(D, 3 D): q, k, v stacked in that order, heads inside each
    blocks.i.attn.proj.weight / .bias      Linear(D, D)
    blocks.i.norm2.weight / .bias          LayerNorm(D)
    blocks.i.mlp.fc1.weight / .bias        Linear(D, mlp_ratio D), then GELU (erf)
    blocks.i.mlp.fc2.weight / .bias        Linear(mlp_ratio D, D)
    norm.weight / .bias                    final LayerNorm (pooling "cls"), or instead
    fc_norm.weight / .bias                 LayerNorm of the mean patch token (pooling "avg")

Blocks are pre-norm, x + attn(norm1(x)) then x + mlp(norm2(x)), with softmax(q k^T / sqrt(D / heads)) v
attention and LayerNorm eps 1e-6: timm's `Block` as MAE (models_mae.py, models_vit.py) and MVP
(mvp/backbones/vit.py) build it. The readout follows MVP's `extract_feat` + `forward_norm` (the CLS token
after the blocks, then `norm`) or MAE's fine-tuning with `global_pool` (mean of the patch tokens, then
`fc_norm`). A ViT without a checkpoint gets MAE's initialisation and its fixed 2-D sin-cos `pos_embed`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from teleop.deps import require
from teleop.errors import TeleopError
from teleop.train.architectures import VIT_IMAGE_SIZE, ViTArchitecture

if TYPE_CHECKING:
    import torch
else:
    torch = require("torch", extra="train", purpose="a Vision Transformer image encoder")

LAYER_NORM_EPS = 1e-6  # MAE's and MVP's partial(nn.LayerNorm, eps=1e-6)
_READOUTS = {"cls": "cls-token/norm", "avg": "patch-mean/fc_norm"}  # part of the feature cache key


class PatchEmbed(torch.nn.Module):
    """Non-overlapping patches -> tokens: (B, 3, S, S) -> (B, N, D), patches in row-major order."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = torch.nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class Attention(torch.nn.Module):
    """Multi-head self-attention with one fused `qkv` projection (bias) and an output projection `proj`."""

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise TeleopError(f"a ViT of width {embed_dim} cannot have {num_heads} heads: pick a divisor")
        self.num_heads = num_heads
        self.qkv = torch.nn.Linear(embed_dim, 3 * embed_dim, bias=True)
        self.proj = torch.nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        # (B, N, 3 D) -> (3, B, heads, N, D / heads)
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # scale 1 / sqrt(D / heads)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(torch.nn.Module):
    """fc1 -> GELU (exact, erf) -> fc2."""

    def __init__(self, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(embed_dim, hidden_dim)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(hidden_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(torch.nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, embed_dim: int, num_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = torch.nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(embed_dim, num_heads)
        self.norm2 = torch.nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(embed_dim, mlp_ratio * embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(torch.nn.Module):
    """ViT encoder without a classifier: (B, 3, S, S) ImageNet-normalised images -> (B, D) embeddings.

    Attributes:
        arch: Widths, depth, heads, patch size and pooling.
        image_size: Input side S [px]; `pos_embed` has 1 + (S / patch_size)^2 rows.
        readout: How the embedding is read out of the tokens ("cls-token/norm" or "patch-mean/fc_norm").
    """

    def __init__(self, arch: ViTArchitecture, image_size: int = VIT_IMAGE_SIZE) -> None:
        super().__init__()
        if image_size % arch.patch_size or image_size <= 0:
            raise TeleopError(
                f"a ViT with {arch.patch_size}-px patches takes images whose side is a multiple of "
                f"{arch.patch_size}, not {image_size}"
            )
        self.arch = arch
        self.image_size = image_size
        self.readout = _READOUTS[arch.pooling]
        grid = image_size // arch.patch_size
        d = arch.embed_dim
        self.patch_embed = PatchEmbed(arch.patch_size, d)
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = torch.nn.Parameter(sincos_pos_embed(d, grid)[None])
        self.blocks = torch.nn.ModuleList(Block(d, arch.num_heads, arch.mlp_ratio) for _ in range(arch.depth))
        if arch.pooling == "cls":
            self.norm = torch.nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        else:
            self.fc_norm = torch.nn.LayerNorm(d, eps=LAYER_NORM_EPS)
        self._init_weights()

    def _init_weights(self) -> None:
        """MAE's initialisation: Xavier-uniform linear layers and patch projection, zero biases, unit LayerNorm
        weights, CLS token N(0, 0.02^2); `pos_embed` stays the fixed sin-cos table."""
        for m in self.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)
            elif isinstance(m, torch.nn.LayerNorm):
                torch.nn.init.ones_(m.weight)
                torch.nn.init.zeros_(m.bias)
        proj = self.patch_embed.proj
        torch.nn.init.xavier_uniform_(proj.weight.view(proj.weight.shape[0], -1))  # as a linear layer
        if proj.bias is not None:
            torch.nn.init.zeros_(proj.bias)
        torch.nn.init.normal_(self.cls_token, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            raise TeleopError(
                f"this ViT takes {self.image_size} x {self.image_size} images, got {tuple(images.shape)}: "
                "feed it through its Encoder, which resizes"
            )
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        if self.arch.pooling == "cls":
            return self.norm(x[:, 0])  # LayerNorm is per token: the same as norm(x)[:, 0]
        return self.fc_norm(x[:, 1:].mean(dim=1))


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos position table, (1 + grid^2, dim), a zero row for the CLS token first.

    Patch p = row * grid + col gets [sin(col w), cos(col w), sin(row w), cos(row w)] with
    w_k = 10000^(-k / (dim / 4)), k = 0..dim/4-1: the first half of the channels encodes the column
    (MAE's `get_2d_sincos_pos_embed` meshes w first), the second half the row.
    """
    if dim % 4:
        raise TeleopError(f"a 2-D sin-cos position table needs a width divisible by 4, not {dim}")
    quarter = dim // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * freqs
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    table = torch.cat([encode(cols), encode(rows)], dim=1)
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), table]).to(torch.float32)
