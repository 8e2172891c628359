"""diffusion_policy replay buffers: zarr format 2, as its ReplayBuffer and SequenceSampler read them.

What its loaders read (diffusion_policy/common/replay_buffer.py and sampler.py, on zarr-python 2), and what
this exporter writes for it:

- `ReplayBuffer.copy_from_path(path)` opens the store with `zarr.open(path, "r")`, then `zarr.group(store)`:
  the root must be a zarr format 2 group (`.zgroup`) with groups `data` and `meta`; it reads every array of
  `meta` and the `data` arrays (all, or those named), each time-major with shape[0] == meta/episode_ends[-1].
  Copied into a zarr store, arrays keep their chunks and compressor, so these must be codecs zarr-python 2
  knows (Blosc here).
- `SequenceSampler` takes episode boundaries from `meta/episode_ends` (cumulative ends, int64) and slices
  `data/<key>[start:end]` for windows inside one episode.

Layout (T steps of all episodes, E episodes in the folder's order):

    .zattrs                  format, software_version, robot, tasks, instructions, control_rate_hz,
                             action_space, action_names, action_min / action_max (per column over the dataset),
                             joint_names, cameras {cam: [H, W]}, episodes [{name, task, instruction, success,
                             seed, steps}], split {valid_fraction, seed, rule}
    data/action              (T, A) float64   actions in the chosen space, not normalised
    data/timestamp           (T,) float64     step times [s]
    data/joint_pos, data/joint_vel (T, n), data/ee_pose (T, 7: position, quaternion wxyz), data/<extra> (T, ...)
    data/<cam>_image         (T, H, W, 3) uint8, one frame per chunk
    data/<cam>_timestamp     (T,) float64     capture time of each step's frame [s]
    meta/episode_ends        (E,) int64       cumulative ends: episode e is rows episode_ends[e-1]..episode_ends[e]
    meta/valid_mask          (E,) bool        episodes held out for validation (SequenceSampler's episode_mask
                                              for training is its negation)

Every array is compressed with ReplayBuffer's default compressor, Blosc lz4 level 5 without shuffle, except
meta (uncompressed, as ReplayBuffer creates episode_ends). The store is written with zarr-python 3 in format 2;
frames are compressed on the encoder's threads and stored as chunk files directly.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from recorder.backend import open_episode
from recorder.export.actions import ACTION_SPACES, ActionBounds
from recorder.export.base import Exporter, ExportJob, WriteStats
from recorder.export.plan import DatasetPlan, read_steps
from recorder.export.split import RULE
from recorder.reader import EpisodeReader
from teleop import __version__
from teleop.deps import require

FORMAT = "teleop diffusion-policy replay buffer"
CHUNK_BYTES = 1 << 20  # rows per chunk of the per-step arrays: about this many bytes
PROGRESS_EVERY = 64  # frames


def _zarr() -> tuple[ModuleType, ModuleType]:
    purpose = "diffusion-policy datasets (zarr format 2)"
    return require("zarr", "export", purpose), require("numcodecs", "export", purpose)


def compressor(numcodecs: ModuleType) -> Any:
    """ReplayBuffer's default compressor (resolve_compressor("default"))."""
    return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)


class _Rows:
    """Appends rows to a zarr array a whole chunk at a time, so that each chunk is written once."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.chunk = int(array.chunks[0])
        self.start = 0
        self.pending: list[np.ndarray] = []

    def append(self, rows: np.ndarray) -> None:
        self.pending.append(rows)
        if sum(len(p) for p in self.pending) >= self.chunk:
            self._write(final=False)

    def close(self) -> None:
        self._write(final=True)

    def _write(self, final: bool) -> None:
        if not self.pending:
            return
        rows = np.concatenate(self.pending)
        k = len(rows) if final else len(rows) // self.chunk * self.chunk
        if k:
            self.array[self.start:self.start + k] = rows[:k]
        self.start += k
        self.pending = [rows[k:]] if k < len(rows) else []


def attrs(plan: DatasetPlan) -> dict[str, Any]:
    """The root attributes: what the dataset holds and how it was made."""
    bounds: ActionBounds = plan.action_bounds
    return {
        "format": FORMAT, "software_version": __version__, "robot": plan.robot, "tasks": list(plan.tasks),
        "instructions": list(plan.instructions), "control_rate_hz": plan.control_rate_hz,
        "action_space": plan.options.action_space,
        "action_space_description": ACTION_SPACES[plan.options.action_space],
        "action_names": list(plan.action_names), "action_min": bounds.low.tolist(),
        "action_max": bounds.high.tolist(), "joint_names": list(plan.joint_names),
        "cameras": {cam: list(size) for cam, size in plan.image_sizes.items()},
        "episodes": [{"name": e.name, "task": e.task, "instruction": e.instruction, "success": e.success,
                      "seed": e.seed, "steps": e.num_steps} for e in plan.episodes],
        "split": {"valid_fraction": plan.options.valid_fraction, "seed": plan.options.seed, "rule": RULE},
    }


def step_shapes(plan: DatasetPlan, first: EpisodeReader) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Row shape and dtype of every per-step array except the frames."""
    shapes: dict[str, tuple[tuple[int, ...], np.dtype]] = {
        "action": ((len(plan.action_names),), np.dtype(np.float64)),
        "timestamp": ((), np.dtype(np.float64)),
        "joint_pos": ((len(plan.joint_names),), np.dtype(np.float64)),
        "joint_vel": ((len(plan.joint_names),), np.dtype(np.float64)),
        "ee_pose": ((7,), np.dtype(np.float64)),
    }
    for key, shape in plan.extras.items():
        shapes[key] = (shape, first.extras(key).dtype)
    for cam in plan.cameras:
        shapes[f"{cam}_timestamp"] = ((), np.dtype(np.float64))
    return shapes


class DiffusionPolicyExporter(Exporter):
    """diffusion_policy replay buffer: a zarr format 2 folder (see the module docstring)."""

    name = "diffusion-policy"
    suffix = ".zarr"

    def write(self, job: ExportJob, out: Path) -> WriteStats:
        zarr, numcodecs = _zarr()
        plan, codec = job.plan, compressor(numcodecs)
        total = plan.steps
        root = zarr.open_group(str(out), mode="w-", zarr_format=2)
        root.attrs.update(attrs(plan))
        data, meta = root.create_group("data"), root.create_group("meta")
        with open_episode(plan.episodes[0].path) as first:
            shapes = step_shapes(plan, first)
        rows = {}
        for key, (shape, dtype) in shapes.items():
            chunk = int(np.clip(CHUNK_BYTES // max(1, int(np.prod(shape)) * dtype.itemsize), 1, total))
            array = data.create_array(key, shape=(total, *shape), chunks=(chunk, *shape), dtype=dtype,
                                      compressors=codec, fill_value=0)
            rows[key] = _Rows(array)
        for cam in plan.cameras:
            height, width = plan.image_sizes[cam]
            data.create_array(plan.image_key(cam), shape=(total, height, width, 3), chunks=(1, height, width, 3),
                              dtype=np.uint8, compressors=codec, fill_value=0)
        ends, offset, done = [], 0, 0
        for episode in plan.episodes:
            with open_episode(episode.path) as reader:
                steps = read_steps(reader, plan)
                arrays = {"action": steps.action, "timestamp": steps.timestamp, "joint_pos": steps.joint_pos,
                          "joint_vel": steps.joint_vel, "ee_pose": steps.ee_pose, **steps.extras}
                arrays.update({f"{cam}_timestamp": t for cam, t in steps.camera_timestamps.items()})
                for key, writer in rows.items():
                    writer.append(np.asarray(arrays[key], dtype=shapes[key][1]))
                for cam in plan.cameras:
                    done = self._write_frames(job, out, reader, cam, offset, episode.name, done, codec)
            offset += episode.num_steps
            ends.append(offset)
            if not plan.cameras:
                done = offset
                job.report(done, episode.name)
        for writer in rows.values():
            writer.close()
        meta.create_array("episode_ends", data=np.asarray(ends, dtype=np.int64), chunks=(len(ends),),
                          compressors=None)
        meta.create_array("valid_mask", data=np.asarray(plan.valid_mask, dtype=bool), chunks=(len(ends),),
                          compressors=None)
        return WriteStats(steps=total, frames=total * len(plan.cameras))

    def _write_frames(self, job: ExportJob, out: Path, reader: EpisodeReader, cam: str, offset: int,
                      episode: str, done: int, codec: Any) -> int:
        """Store a camera's frames of one episode as chunk files `<offset + t>.0.0.0` of data/<cam>_image
        (zarr format 2 names a chunk by its indices joined by ".")."""
        folder = out / "data" / job.plan.image_key(cam)
        size = job.plan.image_sizes[cam]
        n = reader.num_steps
        for t, chunk in enumerate(job.frames.chunks(reader, cam, size, codec.encode)):
            (folder / f"{offset + t}.0.0.0").write_bytes(chunk)
            done += 1
            if done % PROGRESS_EVERY == 0 or t == n - 1:
                job.report(done, episode)
        return done
