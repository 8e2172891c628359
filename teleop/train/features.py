"""Frozen-encoder embeddings of every step of the training episodes, cached on disk.

An encoder that trains with the policy (`trainable`, teleop.train.keypoints) gets the frames instead, resized to
its input size and not cached: its embeddings change at every step.

One row per control step: the embedding of the chosen camera's frame, the joint positions (proprio) and
the action. A cache file per episode is keyed by the episode file (path, size, mtime) and the encoder
(architecture, weights SHA-256, preprocessing), so a second run on the same data skips the encoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from teleop.deps import require
from teleop.errors import EpisodeError, TeleopError

if TYPE_CHECKING:
    from recorder.episodes import EpisodeProblem, EpisodeSummary
    from recorder.reader import EpisodeReader
    from teleop.train.encoders import AnyEncoder
    from teleop.train.keypoints import KeypointEncoder

CACHE_VERSION = 2  # 2: .npz, whose zip members carry a CRC-32 checked on every read


@dataclass(frozen=True)
class FeatureSet:
    """Training arrays of all episodes, concatenated along axis 0 (one row per control step).

    Attributes:
        features: Encoder embeddings, (N, D) float32; for a trainable encoder the frames it takes, (N, cameras, 3,
            S, S) uint8.
        proprio: Joint positions, (N, n) float32, [rad] or [m].
        actions: Recorded actions, (N, A) float32.
        episode_index: Index into `episodes` of each row, (N,) int64.
        episodes: Episode files, in the order of their rows.
        robot, task, instruction: Shared by every episode.
        joint_names, action_names: Columns of proprio and actions.
        camera: Camera whose frames were encoded, or several, comma-separated (embeddings side by side).
        control_rate_hz: Control rate of the first episode [Hz] (a rollout must run at the same rate).
        image_size: (width, height) of that camera's frames [px].
        encoded_episodes: Episodes whose embeddings this call computed (the others came from the cache).
    """

    features: np.ndarray
    proprio: np.ndarray
    actions: np.ndarray
    episode_index: np.ndarray
    episodes: tuple[Path, ...]
    robot: str
    task: str
    instruction: str
    joint_names: tuple[str, ...]
    action_names: tuple[str, ...]
    camera: str
    encoded_episodes: int
    control_rate_hz: float = 20.0
    image_size: tuple[int, int] = (224, 224)

    @property
    def num_samples(self) -> int:
        return int(self.features.shape[0])


def select_episodes(
    directory: Path, include_failed: bool = False, log: Callable[[str], None] = print
) -> list[Path]:
    """Episode files in `directory` to train on: the successful ones, or every readable one; each is read
    and verified byte by byte (EpisodeReader.verify), and a damaged one is left out and named in the log.

    Raises:
        TeleopError: None qualifies; the message counts what was found and why each was left out.
    """
    from recorder.episodes import EpisodeProblem, EpisodeSummary, scan_episodes, verify_episode

    directory = Path(directory)
    if not directory.is_dir():
        raise TeleopError(f"episode directory {directory} does not exist: record episodes or fix the path")
    found = scan_episodes(directory)
    for i, item in enumerate(found):
        if isinstance(item, EpisodeSummary) and (include_failed or item.success is True):
            found[i] = verify_episode(item.path)
    for item in found:
        if isinstance(item, EpisodeProblem):
            log(f"skipping {item.name}: {item.message}")
    readable = [s for s in found if isinstance(s, EpisodeSummary)]
    chosen = [s.path for s in readable if include_failed or s.success is True]
    if not chosen:
        raise TeleopError(_no_episodes_message(directory, found, readable, include_failed))
    if len(chosen) < len(found):
        left_out = _left_out(found, readable, include_failed)
        log(f"using {len(chosen)} of {len(found)} episodes in {directory}; left out: {left_out}")
    return sorted(chosen)


def _left_out(
    found: list[EpisodeSummary | EpisodeProblem], readable: list[EpisodeSummary], include_failed: bool
) -> str:
    """Counts of the episodes left out, by reason."""
    failed = sum(1 for s in readable if s.success is False)
    unknown = sum(1 for s in readable if s.success is None)
    reasons = [f"{len(found) - len(readable)} unreadable or damaged"] if len(found) > len(readable) else []
    if not include_failed:
        reasons += [f"{failed} failed", f"{unknown} without a success flag"]
    return ", ".join(reasons)


def _no_episodes_message(
    directory: Path,
    found: list[EpisodeSummary | EpisodeProblem],
    readable: list[EpisodeSummary],
    include_failed: bool,
) -> str:
    reasons = _left_out(found, readable, include_failed)
    hint = (
        "record episodes there"
        if not found
        else "record successful demonstrations, or train on every episode with --include-failed"
    )
    why = f" ({reasons})" if found else ""
    return f"no episode to train on in {directory}: found {len(found)} episode files{why}: {hint}"


def load_features(
    episodes: Sequence[Path],
    encoder: AnyEncoder,
    camera: str = "front",
    cache_dir: Path | None = None,
    batch_size: int = 32,
    log: Callable[[str], None] = print,
) -> FeatureSet:
    """Embeddings, proprio and actions of every step of `episodes`, reading cached embeddings if present.

    Args:
        episodes: Episode files; all must share robot, task, joint and action names.
        encoder: The encoder; its device is used. A frozen one's embeddings are cached; a trainable one
            (teleop.train.keypoints) gets its prepared frames, (N, cameras, 3, S, S) uint8.
        camera: Camera whose frames are encoded, or several, comma-separated ("front,wrist"): each camera's
            embedding, side by side in that order.
        cache_dir: Where per-episode embeddings are stored; None disables the cache.
        batch_size: Frames per encoder forward pass.
        log: Progress messages.
    """
    from recorder.backend import open_episode
    from teleop.progress import progress_bar
    from teleop.train.keypoints import KeypointEncoder

    cameras = split_cameras(camera)
    speed = _Speed()
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    reference = None
    encoded = 0
    setup: dict[str, Any] = {}
    for i, path in enumerate(episodes):
        with open_episode(path) as reader:
            if reference is None:
                info = reader.camera_info(cameras[0]) if cameras[0] in reader.camera_names else None
                setup = {"control_rate_hz": float(reader.meta.control_rate_hz),
                         "image_size": (info.width, info.height) if info else (224, 224)}
            reference = reference or _identity(reader)
            _check_same_setup(reader, reference, cameras, path)
            per_camera, computed = [], False
            for name in cameras:
                if isinstance(encoder, KeypointEncoder) and encoder.trainable:  # its frames, not cached
                    per_camera.append(prepare_episode(reader, encoder, name, batch_size)[:, None])
                    continue
                cached = _cache_file(cache_dir, path, encoder, name)
                feats = _read_cache(cached, reader.num_steps)
                if feats is None:
                    feats = encode_episode(reader, encoder, name, batch_size)
                    _write_cache(cached, feats)
                    computed = True
                    speed.add(len(feats))
                    log(f"{progress_bar((i + 1) / len(episodes))} encoding episode {i + 1}/{len(episodes)}: "
                        f"{Path(path).name} {name}, {len(feats)} frames ({speed.rate:.0f} images/s, "
                        f"{speed.left(len(episodes) - i - 1, len(cameras)):.0f} s left)")
                per_camera.append(feats)
            encoded += computed
            rows.append((np.concatenate(per_camera, axis=1), *_proprio_actions(reader, path)))
    if reference is None or sum(len(f) for f, _, _ in rows) < 2:
        raise TeleopError(
            f"{len(rows)} episodes with {sum(len(f) for f, _, _ in rows)} steps in all are too little to "
            "train on: record more demonstrations"
        )
    data = _concatenate(rows, tuple(Path(p) for p in episodes), reference, camera, encoded)
    return dataclasses.replace(data, **setup)


class _Speed:
    """Frames encoded so far and how fast, for the progress log."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.frames = 0
        self.videos = 0

    def add(self, frames: int) -> None:
        self.frames += frames
        self.videos += 1

    @property
    def rate(self) -> float:
        """Images per second since the start."""
        return self.frames / max(time.perf_counter() - self.started, 1e-9)

    def left(self, episodes: int, cameras: int) -> float:
        """Seconds for `episodes` more episodes of `cameras` videos at the mean length and rate so far."""
        return episodes * cameras * self.frames / max(self.videos, 1) / max(self.rate, 1e-9)


def split_cameras(camera: str) -> tuple[str, ...]:
    """"front" -> ("front",); "front,wrist" -> ("front", "wrist"): the policy sees every listed camera, their
    embeddings side by side in this order."""
    cameras = tuple(c.strip() for c in camera.split(","))
    if not all(cameras) or len(set(cameras)) != len(cameras):
        raise TeleopError(f"camera {camera!r}: name one camera or several, comma-separated and each once "
                          "(e.g. front,wrist)")
    return cameras


def encode_episode(reader: EpisodeReader, encoder: AnyEncoder, camera: str, batch_size: int = 32) -> np.ndarray:
    """Embeddings (num_steps, D) float32 of one camera's frames, batched under no_grad."""
    return _map_frames(reader, camera, batch_size, encoder, (encoder.feature_dim,), np.float32)


def prepare_episode(reader: EpisodeReader, encoder: KeypointEncoder, camera: str, batch_size: int = 32) -> np.ndarray:
    """One camera's frames as a trainable encoder takes them: (num_steps, 3, S, S) uint8 (`encoder.prepare`)."""
    size = encoder.input_size
    return _map_frames(reader, camera, batch_size, encoder.prepare, (3, size, size), np.uint8)


def _map_frames(
    reader: EpisodeReader, camera: str, batch_size: int, fn: Callable[[Any], Any], shape: tuple[int, ...],
    dtype: type,
) -> np.ndarray:
    """fn applied to one camera's frames, batch by batch under no_grad, into one (num_steps, *shape) array."""
    torch = require("torch", extra="train", purpose="encoding camera frames")
    out: np.ndarray = np.empty((reader.num_steps, *shape), dtype=dtype)
    with torch.no_grad():
        for start in range(0, reader.num_steps, batch_size):
            stop = min(start + batch_size, reader.num_steps)
            frames = reader.frames(camera, start, stop)
            if frames.shape[0] != stop - start:
                raise EpisodeError(
                    f"{reader.path}: camera {camera!r} has {frames.shape[0]} frames for steps "
                    f"{start}-{stop - 1}; each control step needs one frame: re-record or drop the episode"
                )
            out[start:stop] = fn(torch.from_numpy(np.ascontiguousarray(frames))).cpu().numpy()
    return out


_Identity = tuple[str, str, str, tuple[str, ...], tuple[str, ...]]


def _identity(reader: EpisodeReader) -> _Identity:
    meta = reader.meta
    return meta.robot, meta.task, meta.instruction, tuple(meta.joint_names), tuple(meta.action_names)


def _check_same_setup(reader: EpisodeReader, reference: _Identity, cameras: tuple[str, ...], path: Path) -> None:
    for camera in cameras:
        if camera not in reader.camera_names:
            raise TeleopError(
                f"{path} has no camera {camera!r}: choose one of {', '.join(sorted(reader.camera_names))}"
            )
    labels = ("robot", "task", "instruction", "joint names", "action names")
    for label, mine, theirs in zip(labels, _identity(reader), reference, strict=True):
        if label != "instruction" and mine != theirs:
            raise TeleopError(
                f"{path} has {label} {mine}, the first episode {theirs}: train on one robot and task at a "
                "time (move other episodes to another directory)"
            )


def _proprio_actions(reader: EpisodeReader, path: Path) -> tuple[np.ndarray, np.ndarray]:
    proprio = np.asarray(reader.joint_pos, dtype=np.float32)
    actions = np.asarray(reader.action, dtype=np.float32)
    n = reader.num_steps
    if proprio.shape[0] != n or actions.shape[0] != n:
        raise EpisodeError(
            f"{path}: joint_pos has {proprio.shape[0]} rows and action {actions.shape[0]} for {n} steps: "
            "the file is damaged, drop the episode"
        )
    if not (np.all(np.isfinite(proprio)) and np.all(np.isfinite(actions))):
        raise EpisodeError(f"{path} has NaN or inf in joint_pos or action: drop the episode or fix it")
    return proprio, actions


def _concatenate(
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    episodes: tuple[Path, ...],
    reference: _Identity,
    camera: str,
    encoded: int,
) -> FeatureSet:
    robot, task, instruction, joint_names, action_names = reference
    index = np.concatenate([np.full(len(f), i, dtype=np.int64) for i, (f, _, _) in enumerate(rows)])
    return FeatureSet(
        features=np.concatenate([f for f, _, _ in rows]),
        proprio=np.concatenate([p for _, p, _ in rows]),
        actions=np.concatenate([a for _, _, a in rows]),
        episode_index=index,
        episodes=episodes,
        robot=robot,
        task=task,
        instruction=instruction,
        joint_names=joint_names,
        action_names=action_names,
        camera=camera,
        encoded_episodes=encoded,
    )


def cache_key(path: Path, encoder: AnyEncoder, camera: str) -> str:
    """Hex digest naming one episode's embeddings: file identity + encoder identity + camera."""
    stat = os.stat(path)
    desc = encoder.describe()
    key = {
        "version": CACHE_VERSION,
        "episode": str(Path(path).resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "camera": camera,
        "encoder": desc["name"],
        "weights_sha256": desc["weights_sha256"],
        "init_seed": desc["init_seed"] if desc["weights_sha256"] is None else None,
        "preprocessing": desc["preprocessing"],
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _cache_file(cache_dir: Path | None, path: Path, encoder: AnyEncoder, camera: str) -> Path | None:
    return None if cache_dir is None else Path(cache_dir) / f"{cache_key(path, encoder, camera)}.npz"


def _read_cache(cached: Path | None, num_steps: int) -> np.ndarray | None:
    """Cached embeddings, or None when absent, damaged (the zip member's CRC-32 fails) or unusable (then they
    are computed again)."""
    if cached is None or not cached.is_file():
        return None
    try:
        with np.load(cached, allow_pickle=False) as stored:
            feats = stored["feats"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    return feats if feats.ndim == 2 and feats.shape[0] == num_steps and feats.dtype == np.float32 else None


def _write_cache(cached: Path | None, feats: np.ndarray) -> None:
    if cached is None:
        return
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, feats=feats)
    tmp.replace(cached)
