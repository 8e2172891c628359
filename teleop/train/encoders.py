"""Frozen image encoders: R3M's ResNets and MAE / MVP's Vision Transformers, preprocessing built in.

The ResNets are defined here with torchvision's parameter and buffer names (`conv1`, `bn1`,
`layer1.0.conv1`, ..., `layer4.1.bn2`, `downsample.0/1`, Bottleneck `conv3`/`bn3`) and `fc` replaced by an
identity, so R3M checkpoints (`torch.load(p)["r3m"]`, keys `module.convnet.*`) and torchvision state dicts
load with strict key matching. A ResNet encoder does what R3M's evaluation does: Resize(256) of the shorter
side, CenterCrop(224), /255, ImageNet mean/std.

The ViTs (`vit.VisionTransformer`, timm's names) load MAE and MVP checkpoints (`torch.load(p)["model"]`; the
decoder's `decoder_*` and `mask_token` and a classifier `head.*` are dropped) or a bare state dict of the
encoder, with strict key matching. A ViT encoder does what MVP does to its camera frames (pixmc's
`compute_pixel_obs`, mvp/bc/dataset.py's `resize_crop` + `normalize`): the centred square of side min(H, W),
resized to the ViT's input size (224, or what the checkpoint's `pos_embed` was trained at, e.g. MVP's 256-px
ViT-L) with bilinear interpolation and no antialiasing (cv2.INTER_LINEAR), /255, ImageNet mean/std. Its
embedding is MVP's, the CLS token after the final LayerNorm; the `-avgpool` names give MAE fine-tuning's
mean patch token after `fc_norm` instead.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from teleop.deps import require
from teleop.errors import TeleopError
from teleop.train.architectures import (
    ARCHITECTURES,
    VIT_IMAGE_SIZE,
    KeypointArchitecture,
    ResNetArchitecture,
    ViTArchitecture,
    architecture,
)
from teleop.train.architectures import encoder_feature_dim as encoder_feature_dim  # re-exported
from teleop.train.architectures import encoder_names as encoder_names  # re-exported

if TYPE_CHECKING:
    import torch
else:
    torch = require("torch", extra="train", purpose="an image encoder for behaviour cloning")

from teleop.train.keypoints import KeypointEncoder  # noqa: E402  (after the torch check, for its error)
from teleop.train.vit import VisionTransformer  # noqa: E402

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_SHORTER_SIDE = 256  # [px], R3M / torchvision Resize(256)
CROP_SIZE = 224  # [px], CenterCrop(224)
PREPROCESSING = "resize256-antialias-bilinear/centercrop224/imagenet-norm"  # part of the feature cache key

_R3M_PREFIXES = ("module.convnet.", "convnet.")
_R3M_FILES = "an R3M model.pt or a torchvision ResNet state dict"
_VIT_FILES = (
    "an MAE or MVP checkpoint ({'model': {'cls_token': ..., 'blocks.0.attn.qkv.weight': ...}}) or a ViT state dict"
)
_VIT_DROPPED_PREFIXES = ("decoder_", "mask_token", "head.")  # MAE's decoder, MAE's mask token, a classifier


def _resnet_architecture(name: str) -> ResNetArchitecture:
    arch = architecture(name)
    if not isinstance(arch, ResNetArchitecture):
        raise TeleopError(f"{name} is not a ResNet: build it with build_encoder({name!r})")
    return arch


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> torch.nn.Conv2d:
    return torch.nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> torch.nn.Conv2d:
    return torch.nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _downsample(in_planes: int, out_planes: int, stride: int) -> torch.nn.Sequential | None:
    """Projection shortcut (`downsample.0` conv, `downsample.1` BN) where the shape changes."""
    if stride == 1 and in_planes == out_planes:
        return None
    return torch.nn.Sequential(_conv1x1(in_planes, out_planes, stride), torch.nn.BatchNorm2d(out_planes))


class BasicBlock(torch.nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.relu = torch.nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(torch.nn.Module):
    """1x1 -> 3x3 (strided, as torchvision's v1.5) -> 1x1 convolutions with a residual (ResNet-50)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_planes)
        self.bn3 = torch.nn.BatchNorm2d(out_planes)
        self.relu = torch.nn.ReLU(inplace=True)
        self.downsample = _downsample(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(torch.nn.Module):
    """torchvision's ResNet with `fc` = Identity: (B, 3, H, W) normalised image -> (B, 512 | 2048)."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(64)
        self.relu = torch.nn.ReLU(inplace=True)
        self.maxpool = torch.nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_planes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stage, in_planes = _stage(block, in_planes, planes, blocks, stride=1 if i == 0 else 2)
            self.add_module(f"layer{i + 1}", stage)
        self.avgpool = torch.nn.AdaptiveAvgPool2d((1, 1))
        self.fc = torch.nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation: Kaiming-normal convolutions, BN weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.ones_(m.weight)
                torch.nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _stage(
    block: type[BasicBlock] | type[Bottleneck], in_planes: int, planes: int, blocks: int, stride: int
) -> tuple[torch.nn.Sequential, int]:
    """One `layerN`: the first block strides and projects; returns the stage and its output width."""
    modules = [block(in_planes, planes, stride)]
    out_planes = planes * block.expansion
    modules += [block(out_planes, planes) for _ in range(blocks - 1)]
    return torch.nn.Sequential(*modules), out_planes


def build_resnet(name: str) -> ResNet:
    """An untrained ResNet-18/34/50 with torchvision's names and no `fc` (uses the global torch RNG)."""
    arch = _resnet_architecture(name)
    return ResNet(BasicBlock if arch.block == "basic" else Bottleneck, arch.layers)


def imagenet_normalize(images: torch.Tensor) -> torch.Tensor:
    """Float images (B, 3, H, W) with values in 0-1, less ImageNet's mean, over its std (what every encoder here
    takes after its geometry)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def resize_shorter_side(images: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision Resize(size) on float images (B, C, H, W): bilinear, antialiased, aspect kept."""
    h, w = images.shape[-2:]
    if min(h, w) == size:
        return images
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    return torch.nn.functional.interpolate(
        images, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
    )


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """torchvision CenterCrop(size) of images (B, C, H, W) with H, W >= size."""
    h, w = images.shape[-2:]
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return images[..., top : top + size, left : left + size]


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images (B, C, H, W) -> (B, C, size, size), bilinear without antialiasing (as cv2.INTER_LINEAR)."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return torch.nn.functional.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=False
    )


@dataclass(frozen=True)
class ResizeCenterCrop:
    """R3M's geometry (torchvision's ImageNet evaluation): Resize(resize) of the shorter side, CenterCrop(crop)."""

    resize: int = RESIZE_SHORTER_SIDE  # [px]
    crop: int = CROP_SIZE  # [px]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (B, C, H, W) -> (B, C, crop, crop)."""
        return center_crop(resize_shorter_side(images, self.resize), self.crop)

    def describe(self) -> str:
        return f"resize{self.resize}-antialias-bilinear/centercrop{self.crop}"


@dataclass(frozen=True)
class SquareCropResize:
    """MVP's geometry: the centred min(H, W) square, resized to size x size (bilinear, no antialiasing).

    MVP's simulated camera renders H = size and crops the centred square (pixmc `compute_pixel_obs`); its
    real-robot data crops a square (`lower_center_crop`, bottom-aligned in its configs) and resizes it
    with cv2.INTER_LINEAR (mvp/bc/dataset.py `resize_crop`). The centred square is the camera-neutral case.
    """

    size: int = VIT_IMAGE_SIZE  # [px]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Float images (B, C, H, W) -> (B, C, size, size)."""
        return resize_square(center_crop(images, min(images.shape[-2:])), self.size)

    def describe(self) -> str:
        return f"centersquare/resize{self.size}-bilinear-noantialias"


class Encoder(torch.nn.Module):
    """Frozen image encoder: images with values in 0-255 -> embeddings.

    Input (B, 3, H, W) uint8 or float, or (B, H, W, 3) uint8; output (B, feature_dim) float32.
    BatchNorm always uses its running statistics (the module stays in eval mode) and no parameter
    requires a gradient.

    Attributes:
        name: Architecture name (one of `encoder_names()`, e.g. "resnet18" or "vit-b16").
        feature_dim: Embedding length.
        backbone: The ResNet or VisionTransformer, taking geometry-transformed, ImageNet-normalised images.
        geometry: Crop and resize of the frames before normalisation.
        weights: Checkpoint the weights came from, None for a seeded random initialisation.
        weights_sha256: SHA-256 of that file, None for random weights.
        init_seed: Seed of the random initialisation (only meaningful when weights is None).
    """

    mean: torch.Tensor  # (1, 3, 1, 1) ImageNet mean, non-persistent buffer
    std: torch.Tensor  # (1, 3, 1, 1) ImageNet std
    trainable = False  # the policy's optimiser never sees it

    def __init__(
        self,
        name: str,
        backbone: ResNet | VisionTransformer,
        weights: Path | None,
        weights_sha256: str | None,
        init_seed: int,
        geometry: ResizeCenterCrop | SquareCropResize | None = None,
    ) -> None:
        """`geometry` None: R3M's Resize(256) + CenterCrop(224)."""
        super().__init__()
        self.name = name
        self.feature_dim = encoder_feature_dim(name)
        self.weights = weights
        self.weights_sha256 = weights_sha256
        self.init_seed = init_seed
        self.geometry = ResizeCenterCrop() if geometry is None else geometry
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @property
    def convnet(self) -> ResNet:
        """The torchvision-layout ResNet of a ResNet encoder."""
        if not isinstance(self.backbone, ResNet):
            raise AttributeError(f"encoder {self.name} has no convnet: its backbone is {type(self.backbone).__name__}")
        return self.backbone

    def train(self, mode: bool = True) -> Encoder:
        """Stay in eval mode: the encoder is frozen, its BatchNorm statistics are the checkpoint's."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images 0-255 -> (B, 3, S, S) float32, cropped, resized and ImageNet-normalised (S = 224 mostly)."""
        x = _channels_first(images).to(self.mean.device).to(torch.float32) / 255.0  # move uint8, then convert
        return (self.geometry(x) - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.preprocess(images))

    @property
    def input_size(self) -> int:
        """Side of the square images the backbone takes [px]."""
        return self.geometry.crop if isinstance(self.geometry, ResizeCenterCrop) else self.geometry.size

    def preprocessing(self) -> str:
        """Everything between the pixels and the embedding besides the weights (part of the feature cache key)."""
        text = f"{self.geometry.describe()}/imagenet-norm"
        return f"{text}/{self.backbone.readout}" if isinstance(self.backbone, VisionTransformer) else text

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description for run configs and checkpoints."""
        return {
            "name": self.name,
            "feature_dim": self.feature_dim,
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_sha256,
            "init": "checkpoint"
            if self.weights is not None
            else f"random (seed {self.init_seed}), untrained",
            "init_seed": self.init_seed,
            "input_size": self.input_size,
            "preprocessing": self.preprocessing(),
        }


AnyEncoder = Encoder | KeypointEncoder  # what build_encoder returns: frozen, or trained with the policy


def _channels_first(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) or (B, H, W, 3) -> (B, 3, H, W); anything else is an error."""
    if images.ndim == 4 and images.shape[1] == 3:
        return images
    if images.ndim == 4 and images.shape[-1] == 3:
        return images.permute(0, 3, 1, 2)
    raise TeleopError(
        f"the encoder takes RGB images shaped (B, 3, H, W) or (B, H, W, 3), got {tuple(images.shape)}: "
        "add the batch axis or drop an alpha channel"
    )


def build_encoder(
    name: str = "resnet18",
    weights: Path | None = None,
    *,
    init_seed: int = 0,
    expected_sha256: str | None = None,
    image_size: int | None = None,
) -> AnyEncoder:
    """Build a frozen encoder, loading `weights` or, without weights, a random init seeded with `init_seed`.

    Args:
        name: One of `encoder_names()`: "resnet18", "resnet34", "resnet50", "vit-s16", "vit-b16",
            "vit-l16" (CLS token after the final norm, as MVP) or "vit-*-avgpool" (mean patch token after
            `fc_norm`, as MAE's fine-tuning); or "keypoints", a small convnet that the policy trains end to
            end unless frozen (teleop.train.keypoints).
        weights: ResNets: an R3M checkpoint (`{"r3m": {"module.convnet.*": ...}}`), a torchvision-layout
            state dict (`fc.*` ignored) or `{"state_dict": ...}` of either. ViTs: an MAE / MVP checkpoint
            (`{"model": {"cls_token": ..., ...}}`; decoder, `mask_token` and `head.*` ignored), the bare
            state dict or `{"state_dict": ...}`; the input size follows the checkpoint's `pos_embed`.
            keypoints: a `teleop pretrain --encoder keypoints` checkpoint. None: random weights.
        init_seed: Seed of the random initialisation; the global torch RNG is left untouched.
        expected_sha256: If given, the weights file must have this SHA-256 (that of a policy's training).
        image_size: ResNets: the input size [px] (R3M's geometry scaled, see `resnet_geometry`); None: the size
            a `teleop pretrain` checkpoint was trained at, else R3M's 224. ViTs: a random one is built at this
            size (a multiple of the patch size; None: 224); one from a checkpoint takes the checkpoint's, and
            another size is refused.

    Raises:
        UnknownNameError: Unknown architecture.
        TeleopError: Missing, unreadable or changed file, or keys/shapes that do not match the architecture.
    """
    arch = architecture(name)
    path = None if weights is None else Path(weights).expanduser().resolve()
    if isinstance(arch, KeypointArchitecture):
        return _build_keypoint_encoder(name, arch, path, init_seed, expected_sha256, image_size)
    if isinstance(arch, ViTArchitecture):
        encoder = _build_vit_encoder(name, arch, path, init_seed, expected_sha256, image_size)
        if image_size not in (None, encoder.input_size):
            raise TeleopError(
                f"{name} takes {encoder.input_size}-px images, the size of its position embeddings, not {image_size}: "
                "leave out the image size"
            )
        return encoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        convnet = build_resnet(name)
    if path is None:
        return Encoder(name, convnet, None, None, init_seed, resnet_geometry(image_size or CROP_SIZE))
    checkpoint = _read_torch_file(path, _R3M_FILES)
    state = convnet_state_dict(checkpoint, path)
    sha256 = _checked_sha256(path, expected_sha256)
    load_convnet_weights(convnet, name, state, path)
    size = image_size or trained_image_size(checkpoint) or CROP_SIZE
    return Encoder(name, convnet, path, sha256, init_seed, resnet_geometry(size))


_KEYPOINT_FILES = "a keypoints encoder of teleop pretrain --encoder keypoints ({'keypoints': {...}})"


def _build_keypoint_encoder(
    name: str, arch: KeypointArchitecture, path: Path | None, init_seed: int, expected_sha256: str | None,
    image_size: int | None,
) -> KeypointEncoder:
    """A random keypoints encoder, or one pretrained by `teleop pretrain` (its input size unless another is asked)."""
    if path is None:
        return KeypointEncoder(name, arch, init_seed, image_size)
    from teleop.train.keypoints import CHECKPOINT_KEY

    checkpoint = _read_torch_file(path, _KEYPOINT_FILES)
    state = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, Mapping) else None
    if state is None or not _is_state_dict(state):
        raise TeleopError(f"{path} holds no keypoints encoder (top level: {_top_level(checkpoint)}): expected "
                          f"{_KEYPOINT_FILES}; R3M and MAE checkpoints go with a ResNet or a ViT")
    sha256 = _checked_sha256(path, expected_sha256)
    encoder = KeypointEncoder(name, arch, init_seed, image_size or trained_image_size(checkpoint))
    encoder.load_weights(state, path, sha256)
    return encoder


def resnet_geometry(size: int) -> ResizeCenterCrop:
    """R3M's geometry scaled to a `size`-px input: Resize(size * 256 / 224) of the shorter side, CenterCrop(size)."""
    if not 32 <= size <= 1024:
        raise TeleopError(f"encoder input size {size} px is out of range: choose 32 to 1024 (R3M uses 224)")
    return ResizeCenterCrop(round(size * RESIZE_SHORTER_SIDE / CROP_SIZE), size)


def trained_image_size(checkpoint: Any) -> int | None:
    """The input size [px] a `teleop pretrain` checkpoint was trained at (its "teleop" entry), else None."""
    meta = checkpoint.get("teleop") if isinstance(checkpoint, Mapping) else None
    size = meta.get("image_size") if isinstance(meta, Mapping) else None
    return int(size) if isinstance(size, int) else None


def _build_vit_encoder(
    name: str, arch: ViTArchitecture, path: Path | None, init_seed: int, expected_sha256: str | None,
    image_size: int | None = None,
) -> Encoder:
    if path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            vit = VisionTransformer(arch, image_size or VIT_IMAGE_SIZE)
        return Encoder(name, vit, None, None, init_seed, SquareCropResize(vit.image_size))
    state = vit_state_dict(_read_torch_file(path, _VIT_FILES), path)
    sha256 = _checked_sha256(path, expected_sha256)
    with torch.device("meta"):  # no random init of weights that the checkpoint replaces
        vit = VisionTransformer(arch, vit_image_size(state, arch, path))
    load_vit_weights(vit, name, state, path)
    return Encoder(name, vit, path, sha256, init_seed, SquareCropResize(vit.image_size))


def _checked_sha256(path: Path, expected: str | None) -> str:
    sha256 = file_sha256(path)
    if expected is not None and sha256 != expected:
        raise TeleopError(
            f"encoder weights {path} changed since the policy was trained (sha256 {sha256[:12]}..., "
            f"expected {expected[:12]}...): restore the original file or train the policy again"
        )
    return sha256


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_torch_file(path: Path, accepted: str) -> Any:
    """torch.load of tensors and plain containers; `accepted` names the files that fit, for the errors."""
    if not path.is_file():
        raise TeleopError(
            f"encoder weights {path} not found: pass {accepted}, or no weights for a randomly initialised encoder"
        )
    # MAE's and MVP's training checkpoints carry their argparse.Namespace beside the weights; allow only it
    allow = getattr(torch.serialization, "safe_globals", None)
    try:
        with allow([argparse.Namespace]) if allow is not None else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor pickles
        raise TeleopError(
            f"cannot read encoder weights {path} ({type(exc).__name__}: {exc}): it must be a torch "
            f"checkpoint holding only tensors ({accepted})"
        ) from exc


def convnet_state_dict(checkpoint: Any, source: Path | str = "checkpoint") -> dict[str, torch.Tensor]:
    """Pick the ResNet weights out of an R3M, torchvision or `{"state_dict": ...}` checkpoint.

    R3M: keys `module.convnet.*` (or `convnet.*`) are kept with the prefix stripped; the language
    encoder and reward heads (`module.lang_enc*`, `module.lang_rew*`) and every other key are dropped.
    torchvision: everything but `fc.*` (the classifier) is kept.
    """
    state = checkpoint
    if isinstance(state, Mapping) and "r3m" in state:
        state = state["r3m"]
    elif isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not _is_state_dict(state):
        raise TeleopError(
            f"{source} is not a ResNet state dict (top level: {_top_level(state)}): expected an R3M checkpoint "
            "{'r3m': {'module.convnet.conv1.weight': ...}} or a torchvision state dict {'conv1.weight': ...}"
        )
    for prefix in _R3M_PREFIXES:
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def vit_state_dict(checkpoint: Any, source: Path | str = "checkpoint") -> dict[str, torch.Tensor]:
    """Pick the ViT encoder's weights out of an MAE / MVP checkpoint, `{"state_dict": ...}` or a bare state dict.

    MAE and MVP save `{"model": state_dict, ...}` (training checkpoints add "optimizer", "epoch", "args").
    MAE's decoder (`decoder_embed`, `decoder_pos_embed`, `decoder_blocks`, `decoder_norm`, `decoder_pred`),
    its `mask_token` and a fine-tuned classifier `head.*` are dropped; every other key must fit the ViT.
    """
    state = checkpoint
    for wrapper in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not _is_state_dict(state):
        raise TeleopError(
            f"{source} is not a ViT state dict (top level: {_top_level(state)}): expected {_VIT_FILES}"
        )
    return {k: v for k, v in state.items() if not k.startswith(_VIT_DROPPED_PREFIXES)}


def _is_state_dict(state: Any) -> bool:
    return isinstance(state, Mapping) and bool(state) and all(torch.is_tensor(v) for v in state.values())


def _top_level(state: Any) -> str:
    return str(list(state)[:5]) if isinstance(state, Mapping) else type(state).__name__


def vit_image_size(state: Mapping[str, torch.Tensor], arch: ViTArchitecture, source: Path | str) -> int:
    """The input side [px] that a checkpoint's `pos_embed` (1, 1 + n^2, D) was trained at: n * patch_size.

    MAE's and most of MVP's checkpoints hold 1 + 14^2 positions (224 px); MVP's ViT-L holds 1 + 16^2 (256 px).
    Without `pos_embed` this is the default 224 px, and loading names the missing key.
    """
    pos = state.get("pos_embed")
    if pos is None:
        return VIT_IMAGE_SIZE
    grid = math.isqrt(max(pos.shape[1] - 1, 0)) if pos.ndim == 3 else 0
    if pos.ndim != 3 or pos.shape[0] != 1 or grid == 0 or grid * grid != pos.shape[1] - 1:
        raise TeleopError(
            f"encoder weights {source} do not fit a ViT: pos_embed has shape {tuple(pos.shape)}, expected "
            f"(1, 1 + n * n, {arch.embed_dim}) with the CLS token's position first and an n x n grid of patches"
        )
    return grid * arch.patch_size


def load_convnet_weights(
    convnet: ResNet, name: str, state: Mapping[str, torch.Tensor], source: Path | str = "checkpoint"
) -> None:
    """Copy `state` into `convnet` with strict key and shape matching, or raise a TeleopError saying why."""
    _check_keys(convnet, name, state, source, _guess_architecture(state))
    convnet.load_state_dict(dict(state), strict=True)


def load_vit_weights(
    vit: VisionTransformer, name: str, state: Mapping[str, torch.Tensor], source: Path | str = "checkpoint"
) -> None:
    """Put `state` into `vit` (on any device, also "meta") with strict key and shape matching, as float32."""
    _check_keys(vit, name, state, source, _guess_vit(state))
    vit.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True, assign=True)


def _check_keys(
    module: torch.nn.Module, name: str, state: Mapping[str, torch.Tensor], source: Path | str, looks_like: str
) -> None:
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in {name}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or reshaped:
        raise TeleopError(
            f"encoder weights {source} do not fit {name}"
            + _key_problems(missing, unexpected, reshaped)
            + f"; the checkpoint looks like {looks_like}: pass the matching --encoder or another checkpoint"
        )


def _key_problems(missing: list[str], unexpected: list[str], reshaped: list[str]) -> str:
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", reshaped)):
        if keys:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            parts.append(f"{len(keys)} {label} ({', '.join(keys[:5])}{more})")
    return ": " + "; ".join(parts)


def _guess_architecture(state: Mapping[str, torch.Tensor]) -> str:
    """Which ResNet a state dict comes from, judged by its keys ("no ResNet" when it is none)."""
    if "conv1.weight" not in state:
        return "no ResNet (there is no conv1.weight)"
    deep = "layer3.5.conv1.weight" in state and "layer3.6.conv1.weight" not in state
    if "layer1.0.conv3.weight" in state:
        return "resnet50" if deep else "a Bottleneck ResNet other than resnet50"
    return "resnet34" if deep else "resnet18"


def _guess_vit(state: Mapping[str, torch.Tensor]) -> str:
    """Which ViT a state dict comes from, judged by the CLS token's width, the blocks and the final norm."""
    cls = state.get("cls_token")
    if cls is None or cls.ndim != 3:
        return "no ViT (there is no cls_token of shape (1, 1, D))"
    width = cls.shape[-1]
    indices = {k.split(".")[1] for k in state if k.startswith("blocks.")}
    depth = 1 + max((int(i) for i in indices if i.isdigit()), default=-1)
    pooling = "avg" if "fc_norm.weight" in state and "norm.weight" not in state else "cls"
    names = [
        n
        for n, a in ARCHITECTURES.items()
        if isinstance(a, ViTArchitecture) and (a.embed_dim, a.depth, a.pooling) == (width, depth, pooling)
    ]
    final = "fc_norm (fine-tuned with global pooling)" if pooling == "avg" else "norm"
    return names[0] if names else f"a ViT of width {width} with {depth} blocks and a final {final}"
