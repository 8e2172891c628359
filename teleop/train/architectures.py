"""The image encoder architectures that `--encoder` can name: a registry that never needs torch.

The CLI lists these names and a run config records them without importing torch; `encoders.build_encoder`
builds the modules (`encoders.ResNet`, `vit.VisionTransformer`) from these descriptions.

ViT-S/16 has 12 attention heads here, not the 6 of timm's and DeiT's ViT-S: MVP builds its ViT-S with
`num_heads=12` (ir413/mvp, mvp/backbones/vit.py, `vit_s16`) and its ViT-S checkpoints are only used that way.
The head count leaves every parameter shape unchanged, so no checkpoint can tell; it changes the features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from teleop.errors import UnknownNameError

VIT_IMAGE_SIZE = 224  # [px], input side of a ViT without weights (checkpoints bring theirs in `pos_embed`)
DEFAULT_STEPS = 20000  # training steps of a head on frozen embeddings (R3M's protocol)
DEFAULT_SHIFT = 4  # [px] of random shift while a keypoints encoder trains, at its 96-px input (DrQ: 4 px at 84)


@dataclass(frozen=True)
class ResNetArchitecture:
    """A torchvision ResNet with `fc` removed.

    Attributes:
        block: "basic" (ResNet-18/34) or "bottleneck" (ResNet-50).
        layers: Blocks in layer1..layer4.
        feature_dim: Length of the average-pooled embedding.
    """

    block: Literal["basic", "bottleneck"]
    layers: tuple[int, int, int, int]
    feature_dim: int


@dataclass(frozen=True)
class ViTArchitecture:
    """A Vision Transformer with timm's (and so MAE's and MVP's) parameter names.

    Attributes:
        embed_dim: Token width D; also the embedding length.
        depth: Transformer blocks.
        num_heads: Attention heads (D / num_heads per head).
        patch_size: Side of the square patches [px].
        mlp_ratio: Hidden width of each block's MLP over D.
        pooling: "cls": the CLS token after the final LayerNorm `norm` (MVP; MAE's linear probing).
            "avg": the mean of the patch tokens after `fc_norm` (MAE's fine-tuning with global_pool).
    """

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    mlp_ratio: int = 4
    pooling: Literal["cls", "avg"] = "cls"

    @property
    def feature_dim(self) -> int:
        return self.embed_dim


@dataclass(frozen=True)
class KeypointArchitecture:
    """A small convnet trained with the policy, end to end, read out as spatial-softmax keypoints.

    Attributes:
        channels: Width of the convolutions.
        keypoints: Feature maps turned into one (x, y) expected position each; the embedding is 2 x keypoints.
        image_size: Default input side [px].
        steps: Default training steps (RESULTS.md).
    """

    channels: int = 32
    keypoints: int = 32
    image_size: int = 96
    steps: int = 3000  # default training steps: each costs the encoder's forward and backward pass

    @property
    def feature_dim(self) -> int:
        return 2 * self.keypoints


Architecture = ResNetArchitecture | ViTArchitecture | KeypointArchitecture

ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": ResNetArchitecture("basic", (2, 2, 2, 2), 512),
    "resnet34": ResNetArchitecture("basic", (3, 4, 6, 3), 512),
    "resnet50": ResNetArchitecture("bottleneck", (3, 4, 6, 3), 2048),
    "vit-s16": ViTArchitecture(embed_dim=384, depth=12, num_heads=12),
    "vit-b16": ViTArchitecture(embed_dim=768, depth=12, num_heads=12),
    "vit-l16": ViTArchitecture(embed_dim=1024, depth=24, num_heads=16),
    "vit-s16-avgpool": ViTArchitecture(embed_dim=384, depth=12, num_heads=12, pooling="avg"),
    "vit-b16-avgpool": ViTArchitecture(embed_dim=768, depth=12, num_heads=12, pooling="avg"),
    "vit-l16-avgpool": ViTArchitecture(embed_dim=1024, depth=24, num_heads=16, pooling="avg"),
    "keypoints": KeypointArchitecture(),
}


def encoder_names() -> tuple[str, ...]:
    """Names accepted by `encoders.build_encoder` (and `teleop train --encoder`)."""
    return tuple(ARCHITECTURES)


def encoder_feature_dim(name: str) -> int:
    """Length of the embedding that encoder `name` returns (512 for ResNet-18/34, 384 for ViT-S, ...)."""
    return architecture(name).feature_dim


def architecture(name: str) -> Architecture:
    """The description of encoder `name`, or UnknownNameError listing the valid names."""
    if name not in ARCHITECTURES:
        raise UnknownNameError("encoder", name, list(ARCHITECTURES))
    return ARCHITECTURES[name]


def encoder_frozen(name: str, has_weights: bool, freeze: bool | None = None) -> bool:
    """Whether encoder `name` stays frozen while the policy trains: a ResNet or ViT always; the keypoints encoder
    as `freeze` says, else when it starts from pretrained weights (R3M's protocol)."""
    if not isinstance(architecture(name), KeypointArchitecture):
        return True
    return freeze if freeze is not None else has_weights


def default_steps(name: str, frozen: bool = False) -> int:
    """Training steps for encoder `name` when none are given: DEFAULT_STEPS for a frozen encoder (only the head
    trains, hundreds of steps a second), fewer for one that trains with the policy (keypoints, unless `frozen`)."""
    arch = architecture(name)
    return arch.steps if isinstance(arch, KeypointArchitecture) and not frozen else DEFAULT_STEPS
