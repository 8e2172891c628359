"""Reading episodes back, as a trainer or an export does with every episode: HDF5 against zarr.

    python benchmarks/episode_read.py [--steps N] [--rounds R] [--quick]

One episode of N steps (default 30 000: five minutes at 100 Hz) is written in each configuration through the
app's writer, flushed every 100 steps as the background writer does once a second at 100 Hz. Each step has
15 joint positions, velocities and actions, an end-effector pose, a device sample (a flag, a 4x4 pose and a
gripper value) and a task phase, and two 96x72 cameras at 30 fps, whose frames are stored once each (~3 steps
share a frame). Configurations:

- hdf5: h5py, the small arrays in 64-row chunks;
- zarr: the small arrays in 1024-row chunks (the app's layout);
- zarr, 64-row chunks: the layout before, for the ratio.

Then, median of R rounds (files are in the page cache: this is the libraries' per-chunk cost, not the disk's):
open the episode, read every small array through the reader API, read every frame of one camera, and read
200 frames at random steps. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import log

import recorder.zarr_store as zarr_store
from recorder.backend import create_writer, open_episode
from recorder.cameras import synthetic_gradient, synthetic_image
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step

RATE_HZ, CAMERA_FPS, N_JOINTS, WIDTH, HEIGHT = 100.0, 30.0, 15, 96, 72
FLUSH_EVERY = 100  # steps: once a second at 100 Hz
CAMERAS = ("front", "wrist")


def meta() -> EpisodeMeta:
    info = CameraInfo(WIDTH, HEIGHT, np.eye(3), np.eye(4))
    return EpisodeMeta(
        robot="benchmark", task="read", instruction="read an episode back", control_rate_hz=RATE_HZ,
        operator_device="synthetic", joint_names=tuple(f"j{k}" for k in range(N_JOINTS)),
        action_names=tuple(f"a{k}" for k in range(N_JOINTS)), cameras=dict.fromkeys(CAMERAS, info),
        start_time=time.time(),
    )


def make_steps(n: int) -> list[Step]:
    gradient = synthetic_gradient(WIDTH, HEIGHT)
    frames: dict[str, CameraFrame] = {}
    steps = []
    for i in range(n):
        t = i / RATE_HZ
        seq = int(t * CAMERA_FPS)
        if not frames or frames[CAMERAS[0]].seq != seq:  # a new frame of each camera, shared by ~3 steps
            frames = {cam: CameraFrame(synthetic_image(seq + 1000 * c, gradient), seq / CAMERA_FPS, seq)
                      for c, cam in enumerate(CAMERAS)}
        phase = 0.01 * i + 0.3 * np.arange(N_JOINTS)
        steps.append(Step(
            t=t, joint_pos=np.sin(phase), joint_vel=np.cos(phase), ee_pose=np.r_[0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0],
            action=np.sin(phase + 0.01), frames=frames,
            device={"engaged": np.bool_(True), "T_world_device": np.eye(4), "gripper": np.float64(0.5)},
            extras={"phase": np.int64(i // 500)},
        ))
    return steps


def write(directory: Path, fmt: str, steps: list[Step]) -> tuple[Path, float]:
    directory.mkdir()
    t0 = time.perf_counter()
    writer = create_writer(directory, meta(), fmt)
    for i, step in enumerate(steps):
        writer.append(step)
        if i % FLUSH_EVERY == FLUSH_EVERY - 1:
            writer.flush()
    path = writer.close(True)
    return path, time.perf_counter() - t0


def files_in(path: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(path)) if path.is_dir() else 1


def read_small(path: Path) -> int:
    with open_episode(path) as episode:
        arrays = [episode.timestamps, episode.joint_pos, episode.joint_vel, episode.ee_pose, episode.action]
        arrays += [episode.device(key) for key in episode.device_keys]
        arrays += [episode.extras(key) for key in episode.extras_keys]
        for cam in episode.camera_names:
            arrays += [episode.camera_timestamps(cam), episode.camera_seq(cam), episode.frame_indices(cam)]
    return sum(a.nbytes for a in arrays)


def read_frames(path: Path) -> int:
    with open_episode(path) as episode:
        return episode.frames(CAMERAS[0]).nbytes


def read_random(path: Path, picks: np.ndarray) -> int:
    with open_episode(path) as episode:
        return sum(episode.frame(CAMERAS[1], int(i)).nbytes for i in picks)


def open_only(path: Path) -> int:
    with open_episode(path) as episode:
        return episode.num_steps


def median_s(fn: Callable[[], Any], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_config(name: str, fmt: str, chunk_rows: int, steps: list[Step], directory: Path, rounds: int) -> dict:
    zarr_store.STEP_CHUNK_ROWS = chunk_rows  # read by step_chunk_rows() when the writer creates its arrays
    path, write_s = write(directory / name, fmt, steps)
    picks = np.random.default_rng(0).integers(0, len(steps), 200)
    figures = {
        "write_s": round(write_s, 2),
        "files": files_in(path),
        "open_ms": round(1e3 * median_s(lambda: open_only(path), rounds), 2),
        "read_small_arrays_s": round(median_s(lambda: read_small(path), rounds), 4),
        "read_all_frames_one_camera_s": round(median_s(lambda: read_frames(path), rounds), 3),
        "random_frame_ms": round(1e3 * median_s(lambda: read_random(path, picks), rounds) / len(picks), 3),
    }
    log(f"{name}: {figures}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 000 steps, 1 round (a smoke test, not for figures)")
    args = parser.parse_args()
    steps_n, rounds = (2_000, 1) if args.quick else (args.steps, args.rounds)
    default_rows = zarr_store.STEP_CHUNK_ROWS
    steps = make_steps(steps_n)
    log(f"{steps_n} steps, {rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        results = {
            "hdf5": run_config("hdf5", "hdf5", default_rows, steps, Path(tmp), rounds),
            "zarr": run_config("zarr", "zarr", default_rows, steps, Path(tmp), rounds),
            "zarr_64_row_chunks": run_config("zarr_64", "zarr", 64, steps, Path(tmp), rounds),
        }
    old, new = results["zarr_64_row_chunks"], results["zarr"]
    results["ratios"] = {
        "zarr_small_arrays_speedup_vs_64_row_chunks": round(old["read_small_arrays_s"] / new["read_small_arrays_s"], 1),
        "zarr_vs_hdf5_small_arrays": round(new["read_small_arrays_s"] / results["hdf5"]["read_small_arrays_s"], 1),
        "zarr_vs_hdf5_all_frames": round(
            new["read_all_frames_one_camera_s"] / results["hdf5"]["read_all_frames_one_camera_s"], 2),
    }
    results["machine"] = {"steps": steps_n, "rounds": rounds, "cpus": os.cpu_count(), "load_avg": os.getloadavg()}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
