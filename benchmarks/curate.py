"""Trimming a long episode against reading it back, for each format and image codec.

    python benchmarks/curate.py [--minutes M] [--quick]

One episode of M minutes (default 5) at 20 Hz with two 224x224 cameras at 20 fps (a frame every step, as the
simulator renders them; synthetic moving images with sensor-like noise) is written in each configuration
through the app's writer. Then, each once (cold for the trim: it runs first):

- trim: `recorder.trim.trim_episode` keeps the middle 80 % (frames moved as stored, not decoded);
- read: open the original episode, read every step-aligned array and decode every frame of both cameras, as a trainer
  or an export does (the peer: a trim that decoded and re-encoded would cost at least this).

The ratio read / trim says how much cheaper a trim is than a read. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import log

from recorder.backend import create_writer, open_episode
from recorder.cameras import synthetic_gradient, synthetic_image
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from recorder.trim import trim_episode

RATE_HZ, SIZE, N_JOINTS = 20.0, 224, 7
CAMERAS = ("front", "wrist")
CONFIGS = (("hdf5", "lossless"), ("hdf5", "jpeg"), ("zarr", "lossless"), ("zarr", "jpeg"))


def meta() -> EpisodeMeta:
    info = CameraInfo(SIZE, SIZE, np.eye(3), np.eye(4))
    return EpisodeMeta(robot="benchmark", task="trim", instruction="trim an episode", control_rate_hz=RATE_HZ,
                       operator_device="synthetic", joint_names=tuple(f"j{k}" for k in range(N_JOINTS)),
                       action_names=tuple(f"a{k}" for k in range(N_JOINTS + 1)),
                       cameras=dict.fromkeys(CAMERAS, info), start_time=time.time())


def write(directory: Path, fmt: str, codec: str, steps: int) -> Path:
    gradient = synthetic_gradient(SIZE, SIZE)
    rng = np.random.default_rng(0)
    noise = rng.integers(-3, 4, (16, SIZE, SIZE, 3)).astype(np.int16)
    writer = create_writer(directory, meta(), fmt, image_codec=codec)
    for i in range(steps):
        frames = {}
        for c, cam in enumerate(CAMERAS):
            image = np.clip(synthetic_image(i + 7 * c, gradient).astype(np.int16) + noise[(i + c) % 16], 0, 255)
            frames[cam] = CameraFrame(image.astype(np.uint8), i / RATE_HZ, i)
        writer.append(Step(t=i / RATE_HZ, joint_pos=np.sin(0.01 * i + np.arange(N_JOINTS)),
                           joint_vel=np.cos(0.01 * i + np.arange(N_JOINTS)), ee_pose=np.zeros(7),
                           action=np.full(N_JOINTS + 1, 0.001 * i), device={"engaged": np.array(True)},
                           extras={}, frames=frames))
        if i % 1000 == 0:
            log(f"  {fmt}/{codec}: {i}/{steps} steps written")
    return writer.close(True)


def read_all(path: Path) -> int:
    with open_episode(path) as episode:
        n = len(episode.timestamps) + len(episode.joint_pos) + len(episode.action)
        for cam in episode.camera_names:
            for start in range(0, episode.num_steps, 256):
                n += len(episode.frames(cam, start, start + 256))
    return n


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="10 s episodes (a smoke test, not for figures)")
    args = parser.parse_args()
    steps = int((10 / 60 if args.quick else args.minutes) * 60 * RATE_HZ)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, codec in CONFIGS:
            folder = Path(tmp) / f"{fmt}-{codec}"
            folder.mkdir()
            log(f"{fmt}/{codec}: writing {steps} steps")
            path = write(folder, fmt, codec, steps)
            mb = size_of(path) / 1e6
            t0 = time.perf_counter()
            result = trim_episode(path, steps // 10, steps - steps // 10)
            trim_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            read_all(result.original.path)  # the original, now in the trash
            read_s = time.perf_counter() - t0
            results[f"{fmt}-{codec}"] = {"steps": steps, "episode_mb": round(mb, 1), "trim_s": round(trim_s, 3),
                                         "read_s": round(read_s, 3), "read_over_trim": round(read_s / trim_s, 1)}
            log(f"  {results[f'{fmt}-{codec}']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
