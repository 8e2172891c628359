"""A trained policy at run time: one camera frame and the joint positions in, one action out.

Also the policy checkpoint format (`policy.pt`), so that writing and reading it live side by side.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from teleop.deps import require
from teleop.errors import TeleopError, UnsafeInputError

if TYPE_CHECKING:
    from types import ModuleType

    from teleop.train.encoders import AnyEncoder
    from teleop.train.policy import BCPolicy

CHECKPOINT_FORMAT = "teleop-bc-policy"
CHECKPOINT_VERSION = 2  # 2: PolicyInfo.action_space and horizon; BatchNorm over the embedding only
READABLE_VERSIONS = (1, 2)
POLICY_FILE = "policy.pt"
BEST_POLICY_FILE = "policy_best.pt"


def _torch() -> ModuleType:
    return require("torch", extra="train", purpose="running a behaviour-cloning policy")


def resolve_device(device: str) -> str:
    """ "auto" -> "cuda" when a GPU is usable, else "cpu"; other names are returned unchanged."""
    if device != "auto":
        return device
    return "cuda" if _torch().cuda.is_available() else "cpu"


@dataclass(frozen=True)
class PolicyInfo:
    """What a policy was trained on, so a rollout can feed it the same inputs.

    Attributes:
        robot, task, instruction: From the training episodes.
        camera: Camera whose frames the policy sees, or several, comma-separated ("front,wrist").
        joint_names: Columns of the proprio vector it takes (the episodes' joint_pos).
        action_names: Columns of the action it returns.
        control_rate_hz: Control rate of the demonstrations [Hz].
        image_size: (width, height) of the camera frames it was trained on [px].
        action_space: What the policy predicts (teleop.train.actions): "joint" or "ee-delta".
        horizon: Steps ahead of an ee-delta prediction.
        chunk: ee-delta predictions per step, ensembled (teleop.train.actions).
    """

    robot: str
    task: str
    instruction: str
    camera: str
    joint_names: tuple[str, ...]
    action_names: tuple[str, ...]
    control_rate_hz: float = 20.0
    image_size: tuple[int, int] = (224, 224)
    action_space: str = "joint"
    horizon: int = 1
    chunk: int = 1


class PolicyRunner:
    """Frozen encoder + BC policy in eval mode; `act` maps one observation to one action.

    Call `reset` with the measured joint positions at the start of every episode: an ee-delta policy's IK
    starts from them.
    """

    def __init__(self, encoder: AnyEncoder, policy: BCPolicy, info: PolicyInfo) -> None:
        from teleop.train.actions import make_action_space
        from teleop.train.features import split_cameras

        self._encoder = encoder
        self._policy = policy
        self.info = info
        self._device = next(policy.parameters()).device
        self._space = make_action_space(info.action_space, info.robot, info.horizon, info.chunk)
        self.cameras = split_cameras(info.camera)  # whose frames `act` takes, in the order of their embeddings

    def reset(self, proprio: np.ndarray) -> None:
        """Start an episode at the measured joint positions (n,)."""
        self._space.reset(np.asarray(proprio, dtype=np.float64))

    @property
    def robot(self) -> str:
        return self.info.robot

    @property
    def task(self) -> str:
        return self.info.task

    @property
    def camera(self) -> str:
        return self.info.camera

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.info.joint_names

    @property
    def action_names(self) -> tuple[str, ...]:
        return self.info.action_names

    @property
    def control_rate_hz(self) -> float:
        return self.info.control_rate_hz

    @property
    def image_size(self) -> tuple[int, int]:
        return self.info.image_size

    def act(self, rgb: np.ndarray | Mapping[str, np.ndarray], proprio: np.ndarray) -> np.ndarray:
        """Action (A,) float64 for the frames (H, W, 3) uint8 of `cameras` (camera name -> frame; a bare frame
        for a policy of one camera) and joint positions (n,).

        Raises:
            UnsafeInputError: A camera's frame missing, wrong shape or dtype, non-finite proprio, or a non-finite
                action.
        """
        torch = _torch()
        frames, joints = self._check_inputs(rgb, proprio)
        self._policy.eval()
        with torch.no_grad():
            embedding = self._encoder(torch.from_numpy(np.stack(frames)))
            embedding = embedding.reshape(1, -1)  # the cameras' embeddings side by side, as in training
            seen = torch.from_numpy(self._space.proprio(joints[None]))
            prediction = self._policy.predict(embedding, seen.to(self._device))[0].cpu().numpy()
        if not np.all(np.isfinite(prediction)):
            raise UnsafeInputError(f"the policy returned a non-finite action {prediction}: not sent to the robot")
        return self._space.decode(prediction, joints, 1.0 / self.control_rate_hz)

    def _check_inputs(
        self, rgb: np.ndarray | Mapping[str, np.ndarray], proprio: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        cameras = self.cameras
        if not isinstance(rgb, Mapping):
            if len(cameras) > 1:
                raise UnsafeInputError(f"act() takes a frame of each camera {', '.join(cameras)} "
                                       "(a mapping, camera name -> frame), got one frame")
            rgb = {cameras[0]: rgb}
        frames = []
        for name in cameras:
            if name not in rgb:
                raise UnsafeInputError(f"act() got no frame of camera {name!r} (got {', '.join(rgb) or 'none'})")
            frame = np.asarray(rgb[name])
            if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
                raise UnsafeInputError(
                    f"act() takes one RGB frame (H, W, 3) uint8 of camera {name!r}, got {frame.shape} {frame.dtype}"
                )
            frames.append(np.ascontiguousarray(frame))
        if len({f.shape for f in frames}) > 1:
            raise UnsafeInputError(f"the frames of cameras {', '.join(cameras)} differ in size: "
                                   f"{', '.join(str(f.shape) for f in frames)}")
        joints = np.asarray(proprio, dtype=np.float32)
        if joints.shape != (len(self.joint_names),) or not np.all(np.isfinite(joints)):
            raise UnsafeInputError(
                f"act() takes {len(self.joint_names)} finite joint positions "
                f"({', '.join(self.joint_names)}), got {np.asarray(proprio).tolist()}"
            )
        return frames, joints


def save_checkpoint(
    path: Path, policy: BCPolicy, encoder: AnyEncoder, info: PolicyInfo, extra: dict[str, Any]
) -> Path:
    """Write policy weights, normalisation buffers, encoder identity and `info` to `path` (atomically)."""
    from teleop.train.keypoints import KeypointEncoder

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()},
        "policy": {
            "embed_dim": policy.embed_dim,
            "proprio_dim": policy.proprio_dim,
            "action_dim": policy.action_dim,
            "hidden": list(policy.hidden),
            "bn_proprio": policy.bn_proprio,
        },
        "normalization": {k: v.tolist() for k, v in asdict(policy.normalization()).items()},
        "encoder": encoder.describe(),
        "info": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(info).items()},
        **extra,
    }
    if isinstance(encoder, KeypointEncoder):  # small, maybe trained with the policy: part of the policy
        payload["encoder_state_dict"] = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    save_torch_file(payload, path, "the policy checkpoint", "free disk space or choose another --out")
    return path


def save_torch_file(payload: Any, path: Path, what: str, remedy: str) -> None:
    """torch.save `payload` to `path` atomically (a temporary file, then a rename), creating its folder.

    Raises:
        TeleopError: The file cannot be written; names `what` and the path, and says `remedy`.
    """
    torch = _torch()
    path = Path(path)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TeleopError(f"cannot write {what} to {path} ({exc}): {remedy}") from exc


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a policy checkpoint (tensors on the CPU), or raise a TeleopError naming the file."""
    torch = _torch()
    if not path.is_file():
        raise TeleopError(
            f"no policy checkpoint at {path}: train one with `teleop train`, or pass the run directory that "
            f"holds {POLICY_FILE}"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, truncated file, foreign pickle: torch raises several types
        raise TeleopError(
            f"policy checkpoint {path} is corrupt or not a torch file ({type(exc).__name__}: {exc}): "
            "train the policy again or restore the file"
        ) from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TeleopError(
            f"{path} is not a policy checkpoint of `teleop train`: pass a training run directory"
        )
    if checkpoint.get("version") not in READABLE_VERSIONS:
        raise TeleopError(
            f"policy checkpoint {path} has format version {checkpoint.get('version')}, this version reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}: train the policy again"
        )
    return checkpoint


def load_policy(run_dir: Path, checkpoint: str = POLICY_FILE, device: str = "auto") -> PolicyRunner:
    """Rebuild encoder and policy of a training run for rollouts.

    Args:
        run_dir: The training run's directory, or a checkpoint file.
        checkpoint: File in run_dir: "policy.pt" (last step) or "policy_best.pt" (best evaluation).
        device: "cpu", "cuda" or "auto".

    Raises:
        TeleopError: Missing or corrupt checkpoint; encoder weights missing or changed since training.
    """
    run_dir = Path(run_dir)
    path = run_dir / checkpoint if run_dir.is_dir() else run_dir
    ckpt = read_checkpoint(path)
    try:
        encoder = _rebuild_encoder(ckpt["encoder"], path, ckpt.get("encoder_state_dict"))
        policy = _rebuild_policy(ckpt["policy"], ckpt["state_dict"], path)
        info = _policy_info(ckpt["info"])
    except (KeyError, TypeError) as exc:
        raise TeleopError(f"policy checkpoint {path} lacks {exc}: train the policy again") from exc
    device = resolve_device(device)
    return PolicyRunner(encoder.to(device), policy.to(device).eval(), info)


def _policy_info(d: dict[str, Any]) -> PolicyInfo:
    return PolicyInfo(
        robot=d["robot"],
        task=d["task"],
        instruction=d["instruction"],
        camera=d["camera"],
        joint_names=tuple(d["joint_names"]),
        action_names=tuple(d["action_names"]),
        control_rate_hz=float(d.get("control_rate_hz", 20.0)),
        image_size=tuple(d.get("image_size", (224, 224))),  # type: ignore[arg-type]
        action_space=d.get("action_space", "joint"),  # checkpoints of version 1 predict joint targets
        horizon=int(d.get("horizon", 1)),
        chunk=int(d.get("chunk", 1)),
    )


def _rebuild_encoder(desc: dict[str, Any], path: Path, trained: dict[str, Any] | None) -> AnyEncoder:
    from teleop.train.architectures import KeypointArchitecture, architecture
    from teleop.train.encoders import build_encoder
    from teleop.train.keypoints import KeypointEncoder

    size = desc.get("input_size")  # absent before the input size could be chosen: the default
    arch = architecture(desc["name"])
    if isinstance(arch, KeypointArchitecture):  # its weights are in the policy checkpoint
        if trained is None:
            raise TeleopError(f"policy checkpoint {path} lacks the weights of its {desc['name']} encoder: "
                              "train the policy again")
        encoder = KeypointEncoder(desc["name"], arch, desc["init_seed"], size)
        try:
            encoder.load_state_dict(trained, strict=True)
        except RuntimeError as exc:
            raise TeleopError(f"policy checkpoint {path}: its encoder weights do not match {desc['name']} ({exc}): "
                              "train the policy again") from exc
        return encoder.freeze()
    if desc["weights"] is None:
        return build_encoder(desc["name"], None, init_seed=desc["init_seed"], image_size=size)
    weights = Path(desc["weights"])
    if not weights.is_file():
        raise TeleopError(
            f"the encoder weights {weights} that the policy {path} was trained with are missing: "
            "put the file back at that path or train the policy again"
        )
    return build_encoder(desc["name"], weights, expected_sha256=desc["weights_sha256"], image_size=size)


def _rebuild_policy(arch: dict[str, Any], state_dict: dict[str, Any], path: Path) -> BCPolicy:
    from teleop.train.policy import BCPolicy

    policy = BCPolicy(arch["embed_dim"], arch["proprio_dim"], arch["action_dim"], tuple(arch["hidden"]),
                      bn_proprio=arch.get("bn_proprio", True))  # version 1: BatchNorm over both parts
    try:
        policy.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise TeleopError(f"policy checkpoint {path} does not match its own architecture ({exc})") from exc
    return policy
