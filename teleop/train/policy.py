"""The behaviour-cloning head of the R3M protocol: BatchNorm1d -> MLP on (embedding, proprioception).

BatchNorm standardises the embedding by its batch statistics; the proprioception is standardised by its
training-set statistics with a floor on the std (PROPRIO_STD_FLOOR). Standardising a column that barely moves
in the demonstrations (the fingers of a gripper that stays open, an orientation the operator never changed)
by its own tiny spread blows its noise up, and a policy that leans on it leaves the demonstrations' states at
the first small difference: on franka-reach with the target given to the policy, end-effector pose and finger
inputs standardised to unit variance reached 55 % of the scenes, the same inputs with the floor 85 %
(RESULTS.md). Checkpoints of version 1 put BatchNorm over both parts (`bn_proprio`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from teleop.deps import require
from teleop.errors import TeleopError

if TYPE_CHECKING:
    import torch
else:
    torch = require("torch", extra="train", purpose="a behaviour-cloning policy")

MIN_STD = 1e-6  # an action column with a smaller std on the training set (e.g. a gripper never used) is not scaled
PROPRIO_STD_FLOOR = 0.05  # [rad, m, or quaternion units] proprio columns are scaled by at least this std


@dataclass(frozen=True)
class Normalization:
    """Per-column mean and std of proprioception and actions on the training set.

    Attributes:
        proprio_mean, proprio_std: (n,) float32, units of joint_pos ([rad] or [m]).
        action_mean, action_std: (A,) float32, units of the action columns.
    """

    proprio_mean: np.ndarray
    proprio_std: np.ndarray
    action_mean: np.ndarray
    action_std: np.ndarray

    @staticmethod
    def fit(proprio: np.ndarray, actions: np.ndarray) -> Normalization:
        """Mean and std of proprio (N, n), at least PROPRIO_STD_FLOOR, and of actions (N, A), where a std
        below MIN_STD becomes 1."""
        proprio_mean, proprio_std = _mean_std(proprio)
        return Normalization(proprio_mean, np.maximum(proprio_std, PROPRIO_STD_FLOOR).astype(np.float32),
                             *_mean_std(actions))


def _mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    std = x.std(axis=0)
    return x.mean(axis=0).astype(np.float32), np.where(std < MIN_STD, 1.0, std).astype(np.float32)


class BCPolicy(torch.nn.Module):
    """(embedding (B, D), proprio (B, n)) -> action (B, A).

    The network sees the embedding and the normalised proprioception through `BatchNorm1d`, then an MLP
    with ReLU; it predicts normalised actions (`forward`), which `predict` maps back to action units. The
    normalisation lives in buffers, so `state_dict()` saves it with the weights.
    """

    proprio_mean: torch.Tensor  # (n,) buffers, see Normalization
    proprio_std: torch.Tensor
    action_mean: torch.Tensor  # (A,)
    action_std: torch.Tensor

    def __init__(
        self, embed_dim: int, proprio_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256),
        bn_proprio: bool = False,
    ) -> None:
        super().__init__()
        if embed_dim < 0 or proprio_dim < 0 or embed_dim + proprio_dim == 0 or action_dim <= 0:
            raise TeleopError(
                f"a policy needs an input and an action: got embedding {embed_dim}, proprio {proprio_dim}, "
                f"action {action_dim} columns; check the episodes' joint_pos and action arrays"
            )
        if not hidden or any(h <= 0 for h in hidden):
            raise TeleopError(f"hidden layer sizes must be positive, got {hidden}: use e.g. (256, 256)")
        self.embed_dim, self.proprio_dim, self.action_dim = embed_dim, proprio_dim, action_dim
        self.hidden = tuple(hidden)
        self.bn_proprio = bn_proprio
        self.bn = torch.nn.BatchNorm1d(embed_dim + proprio_dim if bn_proprio else embed_dim)
        self.mlp = _mlp(embed_dim + proprio_dim, self.hidden, action_dim)
        self.register_buffer("proprio_mean", torch.zeros(proprio_dim))
        self.register_buffer("proprio_std", torch.ones(proprio_dim))
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))

    def set_normalization(self, norm: Normalization) -> None:
        """Copy the training-set statistics into the buffers."""
        for name in ("proprio_mean", "proprio_std", "action_mean", "action_std"):
            value = torch.as_tensor(np.asarray(getattr(norm, name), dtype=np.float32))
            buffer = getattr(self, name)
            if value.shape != buffer.shape:
                raise TeleopError(
                    f"{name} has shape {tuple(value.shape)}, the policy expects {tuple(buffer.shape)}"
                )
            buffer.copy_(value)

    def normalization(self) -> Normalization:
        """The statistics stored in the buffers, as numpy arrays."""
        names = ("proprio_mean", "proprio_std", "action_mean", "action_std")
        return Normalization(*(getattr(self, n).detach().cpu().numpy() for n in names))

    def normalize_action(self, action: torch.Tensor) -> torch.Tensor:
        """Actions in their units (B, A) -> the normalised targets the network is trained on."""
        return (action - self.action_mean) / self.action_std

    def forward(self, embedding: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Normalised action (B, A) for embeddings (B, D) and proprio (B, n) in their units."""
        proprio = (proprio - self.proprio_mean) / self.proprio_std
        if self.bn_proprio:
            return self.mlp(self.bn(torch.cat([embedding, proprio], dim=-1)))
        embedding = self.bn(embedding) if self.embed_dim else embedding
        return self.mlp(torch.cat([embedding, proprio], dim=-1))

    def predict(self, embedding: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Action (B, A) in its units for embeddings (B, D) and proprio (B, n)."""
        return self.forward(embedding, proprio) * self.action_std + self.action_mean


def _mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for size in hidden:
        layers += [torch.nn.Linear(in_dim, size), torch.nn.ReLU()]
        in_dim = size
    layers.append(torch.nn.Linear(in_dim, out_dim))
    return torch.nn.Sequential(*layers)
