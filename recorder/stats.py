"""Per-feature statistics of a set of episodes, in LeRobot's `meta/stats.json` layout.

Each feature gets min, max, mean, std, count and the quantiles q01, q10, q50, q90, q99 over every step of
every episode; vectors per component. Camera features are images on 0..1 with per-channel statistics shaped
(3, 1, 1), as LeRobot stores them, over the stored frames of each camera (every `image_stride`-th frame, and
each frame subsampled to at most 64x64 pixels: statistics of a few million pixels do not change with more).

    observation.state     joint positions (N, n)
    observation.ee_pose   end-effector pose (N, 7): position [m], quaternion wxyz
    action                commands (N, A)
    observation.images.<camera>
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recorder.backend import open_episode
from recorder.reader import EpisodeReader

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
IMAGE_PIXELS = 64  # frames are subsampled to at most this many pixels a side for image statistics


def feature_stats(values: np.ndarray) -> dict[str, Any]:
    """Statistics over axis 0 of (N, ...) values, as nested lists."""
    values = np.asarray(values, dtype=np.float64)
    out: dict[str, Any] = {
        "min": values.min(axis=0), "max": values.max(axis=0), "mean": values.mean(axis=0),
        "std": values.std(axis=0), "count": np.array([len(values)]),
    }
    out.update({key: np.quantile(values, q, axis=0) for key, q in QUANTILES.items()})
    return {key: np.asarray(value).tolist() for key, value in out.items()}


def _image_samples(reader: EpisodeReader, cam: str, image_stride: int) -> np.ndarray:
    """Pixels (P, 3) on 0..1 from every image_stride-th stored frame of a camera, subsampled."""
    _, first_steps = np.unique(reader.frame_indices(cam), return_index=True)  # one step per stored frame
    info = reader.camera_info(cam)
    step = max(1, max(info.height, info.width) // IMAGE_PIXELS)
    pixels = [reader.frame(cam, int(i))[::step, ::step].reshape(-1, 3) for i in first_steps[::image_stride]]
    return np.concatenate(pixels).astype(np.float64) / 255.0


def dataset_stats(episodes: Sequence[Path], image_stride: int = 10) -> dict[str, dict[str, Any]]:
    """Statistics of every feature over the given episodes (see the module docstring).

    Raises:
        EpisodeError: An episode is unreadable or damaged.
        ValueError: No episode given.
    """
    if not episodes:
        raise ValueError("no episodes to compute statistics of")
    columns: dict[str, list[np.ndarray]] = {"observation.state": [], "observation.ee_pose": [], "action": []}
    images: dict[str, list[np.ndarray]] = {}
    for path in episodes:
        with open_episode(path) as reader:
            columns["observation.state"].append(reader.joint_pos)
            columns["observation.ee_pose"].append(reader.ee_pose)
            columns["action"].append(reader.action)
            for cam in reader.camera_names:
                images.setdefault(cam, []).append(_image_samples(reader, cam, image_stride))
    stats = {name: feature_stats(np.concatenate(parts)) for name, parts in columns.items()}
    for cam, parts in images.items():
        per_channel = feature_stats(np.concatenate(parts))
        stats[f"observation.images.{cam}"] = {
            key: (np.asarray(value).reshape(3, 1, 1).tolist() if key != "count" else value)
            for key, value in per_channel.items()
        }
    return stats


def write_stats(episodes: Sequence[Path], out: Path, image_stride: int = 10) -> dict[str, dict[str, Any]]:
    """Compute dataset_stats and write them as JSON to `out`; returns them."""
    stats = dataset_stats(episodes, image_stride)
    out = Path(out)
    scratch = out.with_name(f".{out.name}.writing")
    scratch.write_text(json.dumps(stats, indent=2))
    scratch.replace(out)
    return stats
