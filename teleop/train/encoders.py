"""Frozen image encoders: torchvision-layout ResNets with R3M's preprocessing built in.

The ResNets are defined here with torchvision's parameter and buffer names (`conv1`, `bn1`,
`layer1.0.conv1`, ..., `layer4.1.bn2`, `downsample.0/1`, Bottleneck `conv3`/`bn3`) and `fc` replaced by an
identity, so R3M checkpoints (`torch.load(p)["r3m"]`, keys `module.convnet.*`) and torchvision state dicts
load with strict key matching. The encoder takes images with values in 0-255 and does what R3M's
evaluation does: Resize(256) of the shorter side, CenterCrop(224), /255, ImageNet mean/std.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from teleop.deps import require
from teleop.errors import TeleopError, UnknownNameError

if TYPE_CHECKING:
    import torch
else:
    torch = require("torch", extra="train", purpose="an image encoder for behaviour cloning")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_SHORTER_SIDE = 256  # [px], R3M / torchvision Resize(256)
CROP_SIZE = 224  # [px], CenterCrop(224)
PREPROCESSING = "resize256-antialias-bilinear/centercrop224/imagenet-norm"  # part of the feature cache key

# name -> (block kind, blocks per stage, feature dim)
_ARCHITECTURES: dict[str, tuple[str, tuple[int, int, int, int], int]] = {
    "resnet18": ("basic", (2, 2, 2, 2), 512),
    "resnet34": ("basic", (3, 4, 6, 3), 512),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 2048),
}
_R3M_PREFIXES = ("module.convnet.", "convnet.")


def encoder_names() -> tuple[str, ...]:
    """Names accepted by build_encoder."""
    return tuple(_ARCHITECTURES)


def encoder_feature_dim(name: str) -> int:
    """Length of the embedding that encoder `name` returns (512 for ResNet-18/34, 2048 for ResNet-50)."""
    return _architecture(name)[2]


def _architecture(name: str) -> tuple[str, tuple[int, int, int, int], int]:
    if name not in _ARCHITECTURES:
        raise UnknownNameError("encoder", name, list(_ARCHITECTURES))
    return _ARCHITECTURES[name]


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
    kind, layers, _ = _architecture(name)
    return ResNet(BasicBlock if kind == "basic" else Bottleneck, layers)


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


class Encoder(torch.nn.Module):
    """Frozen image encoder: images with values in 0-255 -> embeddings.

    Input (B, 3, H, W) uint8 or float, or (B, H, W, 3) uint8; output (B, feature_dim) float32.
    BatchNorm always uses its running statistics (the module stays in eval mode) and no parameter
    requires a gradient.

    Attributes:
        name: Architecture name ("resnet18", "resnet34", "resnet50").
        feature_dim: Embedding length.
        weights: Checkpoint the weights came from, None for a seeded random initialisation.
        weights_sha256: SHA-256 of that file, None for random weights.
        init_seed: Seed of the random initialisation (only meaningful when weights is None).
    """

    mean: torch.Tensor  # (1, 3, 1, 1) ImageNet mean, non-persistent buffer
    std: torch.Tensor  # (1, 3, 1, 1) ImageNet std

    def __init__(
        self, name: str, convnet: ResNet, weights: Path | None, weights_sha256: str | None, init_seed: int
    ) -> None:
        super().__init__()
        self.name = name
        self.feature_dim = encoder_feature_dim(name)
        self.weights = weights
        self.weights_sha256 = weights_sha256
        self.init_seed = init_seed
        self.convnet = convnet
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Encoder:
        """Stay in eval mode: the encoder is frozen, its BatchNorm statistics are the checkpoint's."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images 0-255 -> (B, 3, 224, 224) float32, resized, cropped and ImageNet-normalised."""
        x = _channels_first(images).to(self.mean.device).to(torch.float32) / 255.0  # move uint8, then convert
        x = center_crop(resize_shorter_side(x, RESIZE_SHORTER_SIDE), CROP_SIZE)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.convnet(self.preprocess(images))

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
            "preprocessing": PREPROCESSING,
        }


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
) -> Encoder:
    """Build a frozen encoder, loading `weights` or, without weights, a random init seeded with `init_seed`.

    Args:
        name: "resnet18", "resnet34" or "resnet50".
        weights: An R3M checkpoint (`{"r3m": {"module.convnet.*": ...}}`), a torchvision-layout state
            dict (`fc.*` ignored) or `{"state_dict": ...}` of either. None: random weights.
        init_seed: Seed of the random initialisation; the global torch RNG is left untouched.
        expected_sha256: If given, the weights file must have this SHA-256 (that of a policy's training).

    Raises:
        UnknownNameError: Unknown architecture.
        TeleopError: Missing, unreadable or changed file, or keys/shapes that do not match the architecture.
    """
    _architecture(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        convnet = build_resnet(name)
    if weights is None:
        return Encoder(name, convnet, None, None, init_seed)
    weights = Path(weights).expanduser().resolve()
    state = read_convnet_state_dict(weights)
    sha256 = file_sha256(weights)
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise TeleopError(
            f"encoder weights {weights} changed since the policy was trained (sha256 {sha256[:12]}..., "
            f"expected {expected_sha256[:12]}...): restore the original file or train the policy again"
        )
    load_convnet_weights(convnet, name, state, weights)
    return Encoder(name, convnet, weights, sha256, init_seed)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_convnet_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint and return the ResNet's state dict in torchvision layout (no `fc`)."""
    if not path.is_file():
        raise TeleopError(
            f"encoder weights {path} not found: pass an R3M model.pt or a torchvision ResNet state dict, "
            "or no weights for a randomly initialised encoder"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-tensor pickles
        raise TeleopError(
            f"cannot read encoder weights {path} ({type(exc).__name__}: {exc}): it must be a torch "
            "checkpoint holding only tensors (an R3M model.pt or a ResNet state_dict)"
        ) from exc
    return convnet_state_dict(checkpoint, path)


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
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        keys = list(state)[:5] if isinstance(state, Mapping) else type(state).__name__
        raise TeleopError(
            f"{source} is not a ResNet state dict (top level: {keys}): expected an R3M checkpoint "
            "{'r3m': {'module.convnet.conv1.weight': ...}} or a torchvision state dict {'conv1.weight': ...}"
        )
    for prefix in _R3M_PREFIXES:
        picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if picked:
            return picked
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def load_convnet_weights(
    convnet: ResNet, name: str, state: Mapping[str, torch.Tensor], source: Path | str = "checkpoint"
) -> None:
    """Copy `state` into `convnet` with strict key and shape matching, or raise a TeleopError saying why."""
    expected = convnet.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or reshaped:
        raise TeleopError(
            f"encoder weights {source} do not fit {name}"
            + _key_problems(missing, unexpected, reshaped)
            + f"; the checkpoint looks like {_guess_architecture(state)}: pass the matching --encoder"
            " or another checkpoint"
        )
    convnet.load_state_dict(dict(state), strict=True)


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
