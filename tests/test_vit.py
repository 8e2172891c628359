"""ViT encoders: MAE / MVP checkpoint layouts, the forward pass against a hand-written one, preprocessing, CLI.

Checkpoints are built here in the published layout (MAE's `{"model": ..., "optimizer", "epoch", "args"}` with
the decoder beside the encoder, MAE's fine-tuned layout with `fc_norm` and `head`, bare state dicts) from a
real ViT-S/16. ViT-B and ViT-L are checked for their parameter names and shapes on the meta device only.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from teleop.errors import TeleopError, UnknownNameError
from teleop.train.architectures import ARCHITECTURES, ViTArchitecture, encoder_feature_dim, encoder_names

if TYPE_CHECKING:
    from torch import Tensor

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

from teleop.train.encoders import IMAGENET_MEAN, IMAGENET_STD, build_encoder  # noqa: E402
from teleop.train.vit import Block, VisionTransformer  # noqa: E402

D_S = 384  # ViT-S/16 width


def _arch(name: str) -> ViTArchitecture:
    arch = ARCHITECTURES[name]
    assert isinstance(arch, ViTArchitecture)
    return arch


def _vit(encoder) -> VisionTransformer:  # noqa: ANN001 - an Encoder
    assert isinstance(encoder.backbone, VisionTransformer)
    return encoder.backbone


@pytest.fixture(scope="module")
def reference():
    """A seeded ViT-S/16 encoder and its state dict: the weights every checkpoint below carries."""
    encoder = build_encoder("vit-s16", init_seed=11)
    return encoder, {k: v.clone() for k, v in encoder.backbone.state_dict().items()}


def _decoder(state: dict, width: int = 512, patch_dim: int = 16 * 16 * 3) -> dict:
    """MAE's decoder keys beside the encoder (models_mae.py: decoder_embed, mask_token, decoder_*)."""
    out = dict(state)
    out["decoder_embed.weight"], out["decoder_embed.bias"] = torch.randn(width, D_S), torch.zeros(width)
    out["mask_token"] = torch.randn(1, 1, width)
    out["decoder_pos_embed"] = torch.randn(1, 197, width)
    for name, shape in (("norm1.weight", (width,)), ("attn.qkv.weight", (3 * width, width))):
        out[f"decoder_blocks.0.{name}"] = torch.randn(shape)
    out["decoder_norm.weight"], out["decoder_norm.bias"] = torch.ones(width), torch.zeros(width)
    out["decoder_pred.weight"], out["decoder_pred.bias"] = torch.randn(patch_dim, width), torch.zeros(patch_dim)
    return out


def _save_mae_training_checkpoint(state: dict, path: Path) -> Path:
    """As MAE's util/misc.py save_model writes it: weights under "model", optimizer, epoch, scaler and args."""
    param = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.AdamW([param], lr=1.5e-4)
    param.grad = torch.ones(3)
    optimizer.step()
    args = argparse.Namespace(model="mae_vit_small_patch16", mask_ratio=0.75, input_size=224, norm_pix_loss=True)
    torch.save(
        {"model": state, "optimizer": optimizer.state_dict(), "epoch": 399, "scaler": {"scale": 65536.0},
         "args": args},
        path,
    )
    return path


def _frames(n: int = 2, h: int = 224, w: int = 224, seed: int = 0) -> Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------ an independent forward pass


def _layer_norm(x: Tensor, state: dict, prefix: str) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6) * state[f"{prefix}.weight"] + state[f"{prefix}.bias"]


def _linear(x: Tensor, state: dict, prefix: str) -> Tensor:
    return x @ state[f"{prefix}.weight"].T + state[f"{prefix}.bias"]


def _reference_vit(state: dict, images: Tensor, heads: int, pooling: str = "cls") -> Tensor:
    """ViT forward written from the published description with plain float64 tensor ops.

    images: (B, 3, S, S) normalised. Patches as matrix rows instead of a convolution, attention as explicit
    softmax(q k^T / sqrt(d)) v per head, LayerNorm and erf-GELU by formula.
    """
    state = {k: v.double() for k, v in state.items()}
    b, _, s, _ = images.shape
    p, g = 16, s // 16
    d = state["cls_token"].shape[-1]
    patches = images.double().reshape(b, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, 3 * p * p)
    x = patches @ state["patch_embed.proj.weight"].reshape(d, -1).T + state["patch_embed.proj.bias"]
    x = torch.cat([state["cls_token"].expand(b, 1, d), x], dim=1) + state["pos_embed"]
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    hd = d // heads
    for i in range(depth):
        pre = f"blocks.{i}"
        qkv = _linear(_layer_norm(x, state, f"{pre}.norm1"), state, f"{pre}.attn.qkv")
        q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
        outs = []
        for h in range(heads):
            sl = slice(h * hd, (h + 1) * hd)
            weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd), dim=-1)
            outs.append(weights @ v[..., sl])
        x = x + _linear(torch.cat(outs, dim=-1), state, f"{pre}.attn.proj")
        hidden = _linear(_layer_norm(x, state, f"{pre}.norm2"), state, f"{pre}.mlp.fc1")
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
        x = x + _linear(hidden, state, f"{pre}.mlp.fc2")
    if pooling == "cls":
        return _layer_norm(x, state, "norm")[:, 0]
    return _layer_norm(x[:, 1:].mean(dim=1), state, "fc_norm")


def _normalised(frames: Tensor) -> Tensor:
    """uint8 (B, S, S, 3) -> ImageNet-normalised (B, 3, S, S), written out by hand."""
    x = frames.permute(0, 3, 1, 2).double() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    return (x - mean) / std


# ------------------------------------------------------------------------------------------- checkpoints


def test_mae_training_checkpoint_loads_and_gives_the_hand_computed_features(reference, tmp_path: Path) -> None:
    encoder, state = reference
    path = _save_mae_training_checkpoint(_decoder(state), tmp_path / "mae_pretrain_vit_small.pth")
    loaded = build_encoder("vit-s16", path)
    assert loaded.weights == path.resolve() and len(loaded.weights_sha256 or "") == 64
    assert set(loaded.backbone.state_dict()) == set(state)  # decoder and mask_token left out
    frames = _frames(2)
    with torch.no_grad():
        first, again = loaded(frames), loaded(frames)
        assert first.shape == (2, D_S) and first.dtype == torch.float32
        assert torch.equal(first, again)
        assert torch.equal(first, encoder(frames))
        expected = _reference_vit(state, _normalised(frames), heads=12)
    np.testing.assert_allclose(first.double().numpy(), expected.numpy(), rtol=0, atol=2e-4)


def test_bare_and_wrapped_state_dicts_load_the_same(reference, tmp_path: Path) -> None:
    encoder, state = reference
    torch.save(state, tmp_path / "bare.pth")
    torch.save({"state_dict": state}, tmp_path / "wrapped.pth")
    torch.save({"model": _decoder(state)}, tmp_path / "mae_visualize.pth")
    frames = _frames(1, 160, 200, seed=4)
    with torch.no_grad():
        expected = encoder(frames)
        for name in ("bare.pth", "wrapped.pth", "mae_visualize.pth"):
            assert torch.equal(build_encoder("vit-s16", tmp_path / name)(frames), expected), name


def test_avgpool_reads_maes_fine_tuned_layout(reference, tmp_path: Path) -> None:
    """models_vit.py with global_pool: `norm` deleted, `fc_norm` after the mean patch token, a `head`."""
    _, state = reference
    tuned = {k: v for k, v in state.items() if not k.startswith("norm.")}
    tuned["fc_norm.weight"] = 1 + 0.1 * torch.randn(D_S, generator=torch.Generator().manual_seed(2))
    tuned["fc_norm.bias"] = 0.1 * torch.randn(D_S, generator=torch.Generator().manual_seed(3))
    tuned["head.weight"], tuned["head.bias"] = torch.zeros(1000, D_S), torch.zeros(1000)
    path = tmp_path / "mae_finetuned_vit_small.pth"
    torch.save({"model": tuned}, path)
    encoder = build_encoder("vit-s16-avgpool", path)
    frames = _frames(2, seed=5)
    with torch.no_grad():
        got = encoder(frames)
        expected = _reference_vit(tuned, _normalised(frames), heads=12, pooling="avg")
    np.testing.assert_allclose(got.double().numpy(), expected.numpy(), rtol=0, atol=2e-4)
    # the same file as a CLS-token encoder, and a pre-trained one as an average-pooled encoder, are refused
    with pytest.raises(TeleopError, match=r"missing \(norm\.weight.*unexpected \(fc_norm\.weight.*vit-s16-avgpool"):
        build_encoder("vit-s16", path)
    torch.save({"model": state}, tmp_path / "pretrained.pth")
    with pytest.raises(TeleopError, match=r"missing \(fc_norm\.weight.*looks like vit-s16:"):
        build_encoder("vit-s16-avgpool", tmp_path / "pretrained.pth")


def test_missing_renamed_and_reshaped_keys_are_refused_by_name(reference, tmp_path: Path) -> None:
    _, state = reference
    missing = {k: v for k, v in state.items() if k != "blocks.3.attn.qkv.weight"}
    torch.save({"model": missing}, tmp_path / "missing.pth")
    expected = r"missing\.pth do not fit vit-s16: 1 missing \(blocks\.3\.attn\.qkv\.weight\); the checkpoint looks"
    with pytest.raises(TeleopError, match=expected):
        build_encoder("vit-s16", tmp_path / "missing.pth")

    renamed = dict(state)  # torch.nn.MultiheadAttention's names instead of timm's
    renamed["blocks.0.attn.in_proj_weight"] = renamed.pop("blocks.0.attn.qkv.weight")
    torch.save({"model": renamed}, tmp_path / "renamed.pth")
    expected = r"missing \(blocks\.0\.attn\.qkv\.weight\); 1 unexpected \(blocks\.0\.attn\.in_proj_weight\)"
    with pytest.raises(TeleopError, match=expected):
        build_encoder("vit-s16", tmp_path / "renamed.pth")

    reshaped = dict(state)
    reshaped["blocks.5.mlp.fc1.weight"] = torch.zeros(1024, D_S)
    torch.save({"model": reshaped}, tmp_path / "reshaped.pth")
    expected = r"wrong shape \(blocks\.5\.mlp\.fc1\.weight \(1024, 384\) in the file, \(1536, 384\) in vit-s16\)"
    with pytest.raises(TeleopError, match=expected):
        build_encoder("vit-s16", tmp_path / "reshaped.pth")

    shallow = {k: v for k, v in state.items() if not k.startswith(tuple(f"blocks.{i}." for i in range(8, 12)))}
    torch.save({"model": shallow}, tmp_path / "shallow.pth")  # blocks 0-7 of a ViT-S
    with pytest.raises(TeleopError, match=r"and \d+ more.*looks like a ViT of width 384 with 8 blocks"):
        build_encoder("vit-s16", tmp_path / "shallow.pth")


def test_a_file_that_is_no_checkpoint_gets_a_clear_error(reference, tmp_path: Path) -> None:
    _, state = reference
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 64)
    with pytest.raises(TeleopError, match=r"(?s)cannot read encoder weights .*junk\.pth.*MAE or MVP checkpoint"):
        build_encoder("vit-s16", tmp_path / "junk.pth")
    with pytest.raises(TeleopError, match=r"absent\.pth not found: pass an MAE or MVP checkpoint"):
        build_encoder("vit-s16", tmp_path / "absent.pth")
    torch.save({"model": "weights elsewhere", "epoch": 3}, tmp_path / "strings.pth")
    with pytest.raises(TeleopError, match=r"strings\.pth is not a ViT state dict \(top level: \['model', 'epoch'\]\)"):
        build_encoder("vit-s16", tmp_path / "strings.pth")
    torch.save([state["cls_token"]], tmp_path / "list.pth")
    with pytest.raises(TeleopError, match=r"not a ViT state dict \(top level: list\)"):
        build_encoder("vit-s16", tmp_path / "list.pth")
    torch.save({"r3m": {"module.convnet.conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "r3m.pt")
    with pytest.raises(TeleopError, match=r"not a ViT state dict \(top level: \['r3m'\]\)"):
        build_encoder("vit-s16", tmp_path / "r3m.pt")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.pth")
    with pytest.raises(TeleopError, match=r"unexpected \(conv1\.weight\).*looks like no ViT"):
        build_encoder("vit-s16", tmp_path / "resnet.pth")


def test_changed_weights_file_is_refused(reference, tmp_path: Path) -> None:
    _, state = reference
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(TeleopError, match="changed since the policy was trained"):
        build_encoder("vit-s16", tmp_path / "w.pth", expected_sha256="0" * 64)


def test_input_size_follows_the_checkpoints_pos_embed(tmp_path: Path) -> None:
    """MVP's ViT-L checkpoint is trained at 256 px (pos_embed 1 + 16^2 rows); a ViT-S here stands in for it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        vit256 = VisionTransformer(_arch("vit-s16"), image_size=256)
    state = vit256.state_dict()
    assert state["pos_embed"].shape == (1, 257, D_S)
    torch.save({"model": state}, tmp_path / "vits_256.pth")
    encoder = build_encoder("vit-s16", tmp_path / "vits_256.pth")
    assert encoder.backbone.image_size == 256
    assert "resize256" in encoder.describe()["preprocessing"]
    frames = _frames(1, 256, 256, seed=6)
    assert encoder.preprocess(frames).shape == (1, 3, 256, 256)
    with torch.no_grad():
        expected = _reference_vit(state, _normalised(frames), heads=12)
        np.testing.assert_allclose(encoder(frames).double().numpy(), expected.numpy(), rtol=0, atol=2e-4)

    state["pos_embed"] = torch.zeros(1, 200, D_S)  # 199 patch positions: no square grid
    torch.save({"model": state}, tmp_path / "odd.pth")
    with pytest.raises(TeleopError, match=r"pos_embed has shape \(1, 200, 384\), expected \(1, 1 \+ n \* n, 384\)"):
        build_encoder("vit-s16", tmp_path / "odd.pth")


# ---------------------------------------------------------------------------------------- architectures


@pytest.mark.parametrize(
    ("name", "width", "depth", "heads", "params"),
    # timm's vit_{small,base,large}_patch16_224 parameter counts minus the 1000-way head
    [
        ("vit-s16", 384, 12, 12, 22_050_664 - 385_000),
        ("vit-b16", 768, 12, 12, 86_567_656 - 769_000),
        ("vit-l16", 1024, 24, 16, 304_326_632 - 1_025_000),
    ],
)
def test_architectures_have_timms_names_and_shapes(name: str, width: int, depth: int, heads: int, params: int) -> None:
    with torch.device("meta"):  # shapes only: no memory, no time
        vit = VisionTransformer(_arch(name))
    shapes = {k: tuple(v.shape) for k, v in vit.state_dict().items()}
    assert sum(math.prod(s) for s in shapes.values()) == params
    expected = {
        "cls_token": (1, 1, width),
        "pos_embed": (1, 197, width),
        "patch_embed.proj.weight": (width, 3, 16, 16),
        "patch_embed.proj.bias": (width,),
        "norm.weight": (width,),
        "norm.bias": (width,),
    }
    for i in range(depth):
        for part, shape in (
            ("norm1", (width,)), ("attn.proj", (width, width)), ("norm2", (width,)),
            ("attn.qkv", (3 * width, width)), ("mlp.fc1", (4 * width, width)), ("mlp.fc2", (width, 4 * width)),
        ):
            expected[f"blocks.{i}.{part}.weight"] = shape
            expected[f"blocks.{i}.{part}.bias"] = (shape[0],)
    assert shapes == expected
    assert all(isinstance(b, Block) and b.attn.num_heads == heads for b in vit.blocks)
    assert encoder_feature_dim(name) == width == encoder_feature_dim(f"{name}-avgpool")
    with torch.device("meta"):
        pooled = VisionTransformer(_arch(f"{name}-avgpool"), image_size=256)
    pooled_shapes = {k: tuple(v.shape) for k, v in pooled.state_dict().items()}
    assert pooled_shapes["pos_embed"] == (1, 257, width)
    assert "norm.weight" not in pooled_shapes and pooled_shapes["fc_norm.weight"] == (width,)


def test_random_init_is_seeded_with_maes_sincos_positions() -> None:
    rng_state = torch.random.get_rng_state()
    a, b = build_encoder("vit-s16", init_seed=3), build_encoder("vit-s16", init_seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the global RNG is left alone
    assert a.backbone.state_dict().keys() == b.backbone.state_dict().keys()
    assert all(torch.equal(v, b.backbone.state_dict()[k]) for k, v in a.backbone.state_dict().items())
    assert not torch.equal(_vit(a).cls_token, _vit(build_encoder("vit-s16", init_seed=4)).cls_token)
    # util/pos_embed.py's recipe, written independently: first half of the channels from the column
    grid, quarter = 14, D_S // 4
    omega = 1.0 / 10000 ** (np.arange(quarter) / quarter)
    col, row = np.meshgrid(np.arange(grid), np.arange(grid))
    halves = [np.concatenate([np.sin(np.outer(c.ravel(), omega)), np.cos(np.outer(c.ravel(), omega))], 1)
              for c in (col, row)]
    table = np.concatenate([np.zeros((1, D_S)), np.concatenate(halves, 1)])
    np.testing.assert_allclose(_vit(a).pos_embed[0].numpy(), table, atol=1e-6)
    assert not any(p.requires_grad for p in a.parameters())
    a.train()
    assert not a.training


def test_unknown_name_lists_the_vits() -> None:
    with pytest.raises(UnknownNameError, match=r"vit-b16.*vit-l16.*vit-s16"):
        build_encoder("vit-h14")
    assert {"vit-s16", "vit-b16", "vit-l16", "vit-b16-avgpool", "resnet18"} <= set(encoder_names())


# ----------------------------------------------------------------------------------------- preprocessing


def test_preprocessing_is_mvps_square_crop_and_bilinear_resize() -> None:
    encoder = build_encoder("vit-s16")
    frames = _frames(2, 224, 224, seed=7)  # MVP's simulated camera: already 224 x 224, only normalised
    np.testing.assert_allclose(encoder.preprocess(frames).double().numpy(), _normalised(frames).numpy(), atol=1e-6)
    wide, tall = _frames(1, 120, 160, seed=8), _frames(1, 160, 120, seed=8)
    assert encoder.preprocess(wide).shape == encoder.preprocess(tall).shape == (1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(encoder(wide), encoder(wide.permute(0, 3, 1, 2).float()))  # HWC uint8 = CHW float
    # the centred square: pixels outside it do not change the embedding
    framed = wide.clone()
    framed[:, :, :20] = 0
    framed[:, :, 140:] = 255
    assert torch.equal(encoder.preprocess(framed), encoder.preprocess(wide))
    desc = encoder.describe()
    assert desc["preprocessing"] == "centersquare/resize224-bilinear-noantialias/imagenet-norm/cls-token/norm"
    assert desc["name"] == "vit-s16" and desc["feature_dim"] == D_S


def test_resize_matches_opencv_inter_linear_as_mvp_uses_it() -> None:
    cv2 = pytest.importorskip("cv2")
    encoder = build_encoder("vit-s16")
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    for (h, w), square in (((480, 640), np.s_[:, 80:560]), ((300, 200), np.s_[50:250, :])):
        frame = _frames(1, h, w, seed=h)[0].numpy()
        # mvp/bc/dataset.py: crop a square, cv2.resize(..., INTER_LINEAR) on float32, /255, ImageNet mean/std
        resized = cv2.resize(frame[square].astype(np.float32), (224, 224), interpolation=cv2.INTER_LINEAR)
        expected = ((resized / 255.0 - mean) / std).transpose(2, 0, 1)
        got = encoder.preprocess(torch.from_numpy(frame)[None])[0].numpy()
        np.testing.assert_allclose(got, expected, atol=5e-4)


def test_feature_cache_key_tells_pooling_and_input_size_apart(tmp_path: Path) -> None:
    from teleop.train.features import cache_key

    episode = tmp_path / "episode.hdf5"
    episode.write_bytes(b"x")
    cls, avg = build_encoder("vit-s16"), build_encoder("vit-s16-avgpool")
    assert cls.describe()["preprocessing"] != avg.describe()["preprocessing"]
    assert avg.describe()["preprocessing"].endswith("/patch-mean/fc_norm")
    assert cache_key(episode, cls, "front") != cache_key(episode, avg, "front")
    assert cache_key(episode, cls, "front") == cache_key(episode, build_encoder("vit-s16"), "front")
    assert build_encoder("resnet18").describe()["preprocessing"] == (
        "resize256-antialias-bilinear/centercrop224/imagenet-norm"  # unchanged: ResNet caches stay valid
    )


# ----------------------------------------------------------------------------------------------------- CLI


def test_cli_accepts_every_encoder_and_parses_without_torch() -> None:
    from teleop.cli import _parser

    for name in encoder_names():
        assert _parser().parse_args(["train", "eps", "--out", "run", "--encoder", name]).encoder == name
    with pytest.raises(SystemExit):
        _parser().parse_args(["train", "eps", "--out", "run", "--encoder", "vit-h14"])
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from teleop.cli import _parser\n"
        "print(_parser().parse_args(['train', 'eps', '--out', 'run', '--encoder', 'vit-s16']).encoder)\n"
        "from teleop.errors import MissingDependencyError\n"
        "try:\n    import teleop.train.vit\nexcept MissingDependencyError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("vit-s16\n") and "pip install 'teleop[train]'" in out
