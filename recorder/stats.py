"""Per-feature statistics of a set of episodes, in LeRobot's `meta/stats.json` layout.

Each feature gets min, max, mean, std, count and the quantiles q01, q10, q50, q90, q99 over every step of
every episode; vectors per component. Camera features are images on 0..1 with per-channel statistics shaped
(3, 1, 1), as LeRobot stores them, over the stored frames of each camera (every `image_stride`-th frame, each
subsampled to at most 64x64 pixels: statistics of a few million pixels do not change with more); their count is
the number of frames, as LeRobot counts images. Pixels are counted in per-channel histograms of their 256
values, so the image statistics (quantiles too) are exact for the pixels counted, and add up over episodes.

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


def channel_histogram(rgb: np.ndarray) -> np.ndarray:
    """(3, 256) int64: how many pixels of a (H, W, 3) uint8 frame, subsampled to at most IMAGE_PIXELS a side,
    have each value, per channel."""
    step = max(1, max(rgb.shape[0], rgb.shape[1]) // IMAGE_PIXELS)
    pixels = np.ascontiguousarray(rgb[::step, ::step]).reshape(-1, 3)
    return np.stack([np.bincount(pixels[:, c], minlength=256) for c in range(3)])


def histogram_stats(histogram: np.ndarray, frames: int) -> dict[str, Any]:
    """LeRobot's image statistics (per channel on 0..1, each shaped (3, 1, 1); count = frames) of the pixels
    counted in a (3, 256) histogram; quantiles as numpy's default (linear) method gives them over those pixels."""
    histogram = np.asarray(histogram, dtype=np.int64)
    values = np.arange(256) / 255.0
    n = histogram.sum(axis=1)
    if (n == 0).any():
        raise ValueError("no pixels counted")
    mean = histogram @ values / n
    out: dict[str, Any] = {
        "min": values[np.argmax(histogram > 0, axis=1)], "max": values[255 - np.argmax(histogram[:, ::-1] > 0, axis=1)],
        "mean": mean, "std": np.sqrt(np.maximum(histogram @ values**2 / n - mean**2, 0.0)),
    }
    cumulative = np.cumsum(histogram, axis=1)
    for key, q in QUANTILES.items():
        position = q * (n - 1)  # into each channel's pixels, sorted
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, n - 1)
        at_low = values[[np.searchsorted(cumulative[c], low[c], side="right") for c in range(3)]]
        at_high = values[[np.searchsorted(cumulative[c], high[c], side="right") for c in range(3)]]
        out[key] = at_low + (position - low) * (at_high - at_low)
    stats: dict[str, Any] = {key: np.asarray(value).reshape(3, 1, 1).tolist() for key, value in out.items()}
    stats["count"] = [int(frames)]
    return stats


def _image_histogram(reader: EpisodeReader, cam: str, image_stride: int) -> tuple[np.ndarray, int]:
    """Histogram (3, 256) of every image_stride-th stored frame of a camera, and how many frames it counts."""
    _, first_steps = np.unique(reader.frame_indices(cam), return_index=True)  # one step per stored frame
    steps = first_steps[::image_stride]
    histogram = np.zeros((3, 256), np.int64)
    for i in steps:
        histogram += channel_histogram(reader.frame(cam, int(i)))
    return histogram, len(steps)


def dataset_stats(episodes: Sequence[Path], image_stride: int = 10) -> dict[str, dict[str, Any]]:
    """Statistics of every feature over the given episodes (see the module docstring).

    Raises:
        EpisodeError: An episode is unreadable or damaged.
        ValueError: No episode given.
    """
    if not episodes:
        raise ValueError("no episodes to compute statistics of")
    columns: dict[str, list[np.ndarray]] = {"observation.state": [], "observation.ee_pose": [], "action": []}
    images: dict[str, list[tuple[np.ndarray, int]]] = {}
    for path in episodes:
        with open_episode(path) as reader:
            columns["observation.state"].append(reader.joint_pos)
            columns["observation.ee_pose"].append(reader.ee_pose)
            columns["action"].append(reader.action)
            for cam in reader.camera_names:
                images.setdefault(cam, []).append(_image_histogram(reader, cam, image_stride))
    stats = {name: feature_stats(np.concatenate(parts)) for name, parts in columns.items()}
    for cam, parts in images.items():
        stats[f"observation.images.{cam}"] = histogram_stats(np.sum([h for h, _ in parts], axis=0),
                                                             sum(n for _, n in parts))
    return stats


def write_stats(episodes: Sequence[Path], out: Path, image_stride: int = 10) -> dict[str, dict[str, Any]]:
    """Compute dataset_stats and write them as JSON to `out`; returns them."""
    stats = dataset_stats(episodes, image_stride)
    out = Path(out)
    scratch = out.with_name(f".{out.name}.writing")
    scratch.write_text(json.dumps(stats, indent=2))
    scratch.replace(out)
    return stats
