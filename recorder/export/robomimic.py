"""robomimic HDF5 datasets, as robomimic 0.3.0 reads them.

What its loaders read, and what this exporter writes for it:

- `SequenceDataset` (robomimic/utils/dataset.py) lists `data/demo_<i>` (sorted by the number after "demo_"),
  or the names in `mask/<filter key>` (byte strings), takes each demo's length from its attribute
  `num_samples`, reads `obs/<key>` and, by default, `next_obs/<key>` (rows of the same length), and the
  dataset keys (`actions`, `rewards`, `dones`) as float32. It opens the file with swmr=True, libver="latest".
- `FileUtils.get_env_metadata_from_dataset` parses `data` attribute `env_args` (JSON: env_name, type,
  env_kwargs); `get_shape_metadata_from_dataset` takes the action size from the first demo's `actions` (N, A)
  and each observation's shape from its rows; images are rows of (H, W, 3) uint8 that robomimic turns into
  CHW floats in [0, 1].
- `scripts/get_dataset_info.py` reads `mask/*`, `env_args`, every demo's `actions` and `num_samples`, and
  refuses actions outside [-1, 1].

Layout (N steps of an episode, demos numbered 0.. in the folder's order):

    /data                    attrs total (steps of all demos), env_args (JSON), and this export's own:
                             action_space, action_names, action_min, action_max, action_normalization,
                             state_names, robot, tasks, control_rate_hz, cameras, software_version
    /data/demo_<i>           attrs num_samples, source_episode, task, instruction, success (1, 0, -1 unknown),
                             seed (-1 none)
        actions   (N, A) float64  in [-1, 1]: the actions in the chosen space scaled by the dataset's
                                  per-column bounds (recorder.export.actions.ActionBounds, stored above)
        rewards   (N,) float64    1 at the last step of a successful episode, else 0 (sparse task success)
        dones     (N,) int64      1 at the last step
        states    (N, S) float64  joint_pos, joint_vel, then each extra flattened (names: /data state_names)
        timestamps (N,) float64   step times [s]; camera_timestamps/<cam> (N,): each step's frame capture time
        obs/joint_pos, obs/joint_vel (N, n), obs/ee_pose (N, 7: position, quaternion wxyz), obs/<extra> (N, k)
        obs/<cam>_image (N, H, W, 3) uint8, gzip, one frame per chunk
        next_obs/<key>            obs/<key> of the next step, the last step repeating its own: HDF5 virtual
                                  datasets mapped onto obs/<key>, so frames are stored once
    /mask/train, /mask/valid  demo names (byte strings) of the train/validation split

env_args: env_name is the task (tasks joined by "," for a multi-task dataset), type 2 (robomimic's gym type: the
pybullet scene is no robomimic environment, so robomimic's own rollouts are not available; train with
experiment.rollout.enabled false), env_kwargs describe the robot, cameras and actions.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recorder.backend import open_episode
from recorder.export.actions import ACTION_SPACES, ActionBounds
from recorder.export.base import Exporter, ExportJob, WriteStats
from recorder.export.plan import DatasetPlan, EpisodeInfo, StepArrays, read_steps
from recorder.export.split import RULE
from recorder.reader import EpisodeReader
from teleop import __version__

# zlib level 1: at 320x240 on this project's machine 810 frames/s a core, 42 kB a frame; level 4 (h5py's
# default) 550 frames/s, 39 kB (benchmarks/export.py measures it).
GZIP_LEVEL = 1
GYM_ENV_TYPE = 2  # robomimic.envs.env_base.EnvType.GYM_TYPE
PROGRESS_EVERY = 64  # frames


def gzip_chunk(frame: np.ndarray) -> bytes:
    """A frame as the chunk HDF5's gzip (deflate) filter stores: a zlib stream of its bytes."""
    return zlib.compress(frame.data, GZIP_LEVEL)


def _names(names: list[str]) -> np.ndarray:
    """Byte strings as robomimic stores demo names; an empty list still has a string type."""
    return np.array([n.encode() for n in names], dtype=f"S{max([1, *map(len, names)])}")


def env_args(plan: DatasetPlan) -> dict[str, Any]:
    """robomimic's environment metadata for the dataset."""
    return {
        "env_name": ",".join(plan.tasks),
        "type": GYM_ENV_TYPE,
        "env_version": __version__,
        "env_kwargs": {
            "robot": plan.robot, "tasks": list(plan.tasks), "instructions": list(plan.instructions),
            "control_rate_hz": plan.control_rate_hz, "joint_names": list(plan.joint_names),
            "action_space": plan.options.action_space, "action_names": list(plan.action_names),
            "cameras": {cam: list(size) for cam, size in plan.image_sizes.items()},
            "simulator": "teleop (pybullet scene; not a robomimic environment)",
        },
    }


def state_names(plan: DatasetPlan) -> list[str]:
    """Names of the `states` columns: joint positions, joint velocities, then each extra's entries."""
    names = [f"joint_pos/{j}" for j in plan.joint_names] + [f"joint_vel/{j}" for j in plan.joint_names]
    for key, shape in plan.extras.items():
        names += [f"{key}/{k}" for k in range(int(np.prod(shape)))]
    return names


def _states(steps: StepArrays) -> np.ndarray:
    n = len(steps.timestamp)
    parts = [steps.joint_pos, steps.joint_vel] + [v.reshape(n, -1) for v in steps.extras.values()]
    return np.concatenate([np.asarray(p, np.float64) for p in parts], axis=1)


def _next_obs(demo: h5py.Group, key: str) -> None:
    """next_obs/<key>: rows 1.. of obs/<key>, then its last row again, without a copy (a virtual dataset
    whose source is this same file, ".")."""
    source_dset = demo[f"obs/{key}"]
    n = source_dset.shape[0]
    layout = h5py.VirtualLayout(shape=source_dset.shape, dtype=source_dset.dtype)
    source = h5py.VirtualSource(".", source_dset.name, shape=source_dset.shape)
    if n > 1:
        layout[: n - 1] = source[1:]
    layout[n - 1:] = source[n - 1:]
    demo["next_obs"].create_virtual_dataset(key, layout)


class RobomimicExporter(Exporter):
    """robomimic 0.3.0 HDF5: one file, demos under /data, the split under /mask (see the module docstring)."""

    name = "robomimic"
    suffix = ".hdf5"

    def write(self, job: ExportJob, out: Path) -> WriteStats:
        plan = job.plan
        done = 0
        with h5py.File(out, "w", libver=("v110", "latest")) as f:
            data = f.create_group("data")
            for i, episode in enumerate(plan.episodes):
                with open_episode(episode.path) as reader:
                    done = self._write_demo(job, data.create_group(f"demo_{i}"), reader, episode, done)
            self._write_attrs(data, plan)
            masks = f.create_group("mask")
            demos = [(f"demo_{i}", bool(valid)) for i, valid in enumerate(plan.valid_mask)]
            masks.create_dataset("train", data=_names([demo for demo, valid in demos if not valid]))
            masks.create_dataset("valid", data=_names([demo for demo, valid in demos if valid]))
        return WriteStats(steps=plan.steps, frames=plan.steps * len(plan.cameras))

    def _write_attrs(self, data: h5py.Group, plan: DatasetPlan) -> None:
        bounds: ActionBounds = plan.action_bounds
        data.attrs["total"] = plan.steps
        data.attrs["env_args"] = json.dumps(env_args(plan), indent=4)
        data.attrs["action_space"] = plan.options.action_space
        data.attrs["action_space_description"] = ACTION_SPACES[plan.options.action_space]
        data.attrs["action_names"] = json.dumps(list(plan.action_names))
        data.attrs["action_min"] = bounds.low
        data.attrs["action_max"] = bounds.high
        data.attrs["action_normalization"] = ActionBounds.DESCRIPTION
        data.attrs["state_names"] = json.dumps(state_names(plan))
        data.attrs["robot"] = plan.robot
        data.attrs["tasks"] = json.dumps(list(plan.tasks))
        data.attrs["control_rate_hz"] = plan.control_rate_hz
        data.attrs["cameras"] = json.dumps({cam: list(size) for cam, size in plan.image_sizes.items()})
        data.attrs["split"] = json.dumps({"valid_fraction": plan.options.valid_fraction,
                                          "seed": plan.options.seed, "rule": RULE})
        data.attrs["software_version"] = __version__

    def _write_demo(self, job: ExportJob, demo: h5py.Group, reader: EpisodeReader, episode: EpisodeInfo,
                    done: int) -> int:
        plan = job.plan
        steps = read_steps(reader, plan)
        n = len(steps.timestamp)
        demo.attrs["num_samples"] = n
        demo.attrs["source_episode"] = episode.name
        demo.attrs["task"] = episode.task
        demo.attrs["instruction"] = episode.instruction
        demo.attrs["success"] = np.int8({True: 1, False: 0, None: -1}[episode.success])
        demo.attrs["seed"] = -1 if episode.seed is None else episode.seed
        demo.create_dataset("actions", data=plan.action_bounds.normalise(steps.action))
        rewards = np.zeros(n)
        rewards[-1] = 1.0 if episode.success else 0.0
        demo.create_dataset("rewards", data=rewards)
        dones = np.zeros(n, dtype=np.int64)
        dones[-1] = 1
        demo.create_dataset("dones", data=dones)
        demo.create_dataset("states", data=_states(steps))
        demo.create_dataset("timestamps", data=steps.timestamp)
        for cam, stamps in steps.camera_timestamps.items():
            demo.create_dataset(f"camera_timestamps/{cam}", data=stamps)
        obs = demo.create_group("obs")
        low_dim = {"joint_pos": steps.joint_pos, "joint_vel": steps.joint_vel, "ee_pose": steps.ee_pose}
        low_dim.update({key: value.reshape(n, -1) for key, value in steps.extras.items()})
        for key, value in low_dim.items():
            obs.create_dataset(key, data=value)
        for cam in plan.cameras:
            done = self._write_frames(job, obs, reader, cam, n, episode.name, done)
        if not plan.cameras:
            done += n
            job.report(done, episode.name)
        demo.create_group("next_obs")
        for key in obs:
            _next_obs(demo, key)
        return done

    def _write_frames(self, job: ExportJob, obs: h5py.Group, reader: EpisodeReader, cam: str, n: int, episode: str,
                      done: int) -> int:
        height, width = job.plan.image_sizes[cam]
        dset = obs.create_dataset(job.plan.image_key(cam), shape=(n, height, width, 3), dtype=np.uint8,
                                  chunks=(1, height, width, 3), compression="gzip", compression_opts=GZIP_LEVEL)
        for t, chunk in enumerate(job.frames.chunks(reader, cam, (height, width), gzip_chunk)):
            dset.id.write_direct_chunk((t, 0, 0, 0), chunk)
            done += 1
            if done % PROGRESS_EVERY == 0 or t == n - 1:
                job.report(done, episode)
        return done
