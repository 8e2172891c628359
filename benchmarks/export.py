"""Export benchmark: episodes recorded in simulation exported as robomimic HDF5, diffusion-policy zarr and
LeRobot v3.0, with the frame encoder on one thread and on one per core, against the storage libraries' own
compression paths (and LeRobot's own dataset writer); and the real loaders run on the exports.

    python benchmarks/export.py [--episodes N] [--seconds S] [--image-size WxH] [--rounds R] [--quick]
                                [--loaders-python PYTHON] [--lerobot-python PYTHON]

Progress goes to stderr; the last stdout line is one JSON object:
{"machine": {...}, "sources": {...}, "exports": [...], "encoder": {...}, "loaders": {...} | null,
 "lerobot": {...} | null}.

Sources: N episodes (default 6) of the scripted operator on franka-reach, S seconds each (default 10; the
episode runs its full length), 20 Hz in real time, two simulator cameras of WxH (default 224x224), recorded
twice: HDF5 with lossless frames and zarr with JPEG frames (quality 90). --quick: 2 episodes of 1.5 s at 64x48, 1 round.

exports: for each source, format and encoder thread count (1: everything on the calling thread, and one per
core), the median of R rounds (default 3, interleaved: each round exports every configuration once) of
`export_directory` with every episode (--all) and default options: wall_s (the export after the verification
pass), verify_s (the pass: every episode read and checked byte by byte, `workers` at a time), frames_per_s
(camera frames written per second of wall_s), cpu_s (process CPU time over the export, all threads), cores_used
(cpu_s / wall_s), busiest_thread_share (the share of the frame work's CPU time done on the busiest encoder
thread: 1.0 for one thread, 0.5 when two shared it evenly), encode_cpu_s and encoder_share (CPU time the encoder
threads spent compressing frames, and its share of cpu_s; for lerobot, the video encoder's own threads too),
resize_cpu_s, read_cpu_s and read_share (the encoder threads reading and decoding the episodes' frames), mb. One
more row per source and format resizes the frames to 96x128 (one encoder thread per core). lerobot rows encode
AV1 (the default); one more row per source encodes H.264.

encoder: the frames of the HDF5 source, decoded in memory, written once more without an episode to read
(median of 2R rounds, interleaved):
robomimic's chunks through h5py's gzip filter, one `dset[t] = frame` at a time (the library's own path, one
thread), against this exporter's path (zlib on the encoder's threads, 1 and one per core, chunks stored with
`write_direct_chunk`); diffusion-policy's chunks through zarr-python's `array[t] = frame`, against Blosc on the
encoder's threads with the chunk files written directly. frames_per_s of each.

loaders (with --loaders-python): the real loaders, in an interpreter that has them. Set it up once with

    python -m venv --system-site-packages /tmp/loaders      # numpy, h5py and the CPU torch of the train extra
    /tmp/loaders/bin/pip install 'zarr<3' tqdm termcolor   # zarr-python 2, as diffusion_policy uses
    /tmp/loaders/bin/pip install --no-deps robomimic==0.3.0

That interpreter runs this script with --check-loaders on one export of each format (from the zarr-JPEG
source): robomimic's `scripts/get_dataset_info.py` (as a script; it refuses actions outside [-1, 1]),
`FileUtils.get_env_metadata_from_dataset` and `get_shape_metadata_from_dataset`, and `SequenceDataset` with
each mask (train, valid) and cache mode (none, low_dim, all), seq_length 10, frame_stack 2, next_obs loaded,
each sample compared with the file's rows. robomimic's file_utils imports torchvision at module level for its
models, which reading a dataset never calls: a stand-in module takes its place (torchvision is a multi-GB
install). diffusion_policy is not on PyPI: the check makes the zarr-python 2 calls that
ReplayBuffer.copy_from_path makes (zarr.open(path, "r"), zarr.group(store), the arrays of meta and data read
to numpy; and, for a zarr backend, zarr.copy_store of /meta and of each /data array into a MemoryStore, whose
chunks and compressor must be kept), the constructor's checks (data, meta, meta/episode_ends, every array's
length == episode_ends[-1]), and slices every window SequenceSampler would (sequence_length 16, pad_before 1,
pad_after 7) from the copy, checking that it holds the rows of one episode.

lerobot (with --lerobot-python): lerobot 0.4.4's own LeRobotDataset on the LeRobot export of the zarr-JPEG
source, in an interpreter that has it. Set it up once with

    apt-get install ffmpeg                                  # torchcodec links the system's FFmpeg libraries
    python -m venv --system-site-packages /tmp/lerobot      # numpy, av, pyarrow and the CPU torch of the app
    /tmp/lerobot/bin/pip install --no-deps lerobot==0.4.4 torchcodec==0.13.0 accelerate
    /tmp/lerobot/bin/pip install 'datasets>=4,<5' 'huggingface-hub>=0.34.2,<0.36' jsonlines deepdiff \
        draccus einops safetensors pandas

(lerobot 0.4.4 pins torch<2.11, whose PyPI wheels carry CUDA; its dataset code runs on the CPU torch 2.13.
torchcodec 0.13 is the newest whose PyPI wheel works without CUDA's libraries. lerobot imports torchvision at
module level for image transforms and its older decoder, neither used on a video dataset read with torchcodec: a
stand-in module takes its place.) The check opens the export with `LeRobotDataset(repo_id, root=PATH)` and its
default checks (tolerance_s 1e-4), reads every item (every frame of every camera decoded by torchcodec at its
timestamp) and compares it with the export's parquet rows and with the frames PyAV decodes from the mp4 files;
reads items with delta_timestamps (two frames, three actions) at every episode's ends; and, as the peer, writes
the same episodes (the export's rows and decoded frames) through LeRobot's own recording path
(LeRobotDataset.create, add_frame, save_episode, finalize: PNG files, then libsvtav1 through PyAV) and reports
its frames per second beside this exporter's.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path; the packages live in the repository root (and
# benchmarks/devices.py would shadow the `devices` package).
_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "benchmarks":
    sys.path[0] = str(_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import c_stdout_to_stderr, log  # noqa: E402

LOADER_ROWS = 10  # robomimic sequence length in the loader check
WINDOW, PAD_BEFORE, PAD_AFTER = 16, 1, 7  # SequenceSampler window in the loader check


# ------------------------------------------------------------------------------------------------ sources


def record_sources(root: Path, episodes: int, seconds: float, size: tuple[int, int]) -> dict[str, Path]:
    """Episodes of the scripted operator, recorded as HDF5 with lossless frames and as zarr with JPEG frames."""
    from teleop.recording import record_episode
    from teleop.rig import RigConfig, build_rig
    from teleop.session import SessionConfig
    from teleop.sim import SimConfig

    config = RigConfig(robot="franka", task="franka-reach", sim=SimConfig(image_size=size),
                       session=SessionConfig(rate_hz=20.0, max_duration_s=seconds, stop_on_success_s=None))
    sources = {}
    with c_stdout_to_stderr():
        rig = build_rig(config)  # in real time: the background writer keeps pace with a real loop
        try:
            for fmt, codec in (("hdf5", "lossless"), ("zarr", "jpeg")):
                folder = root / f"{fmt}-{codec}"
                folder.mkdir()
                for seed in range(episodes):
                    record_episode(rig, folder, seed, format=fmt, image_codec=codec)
                sources[f"{fmt}-{codec}"] = folder
                log(f"recorded {episodes} episodes as {fmt} with {codec} frames")
        finally:
            rig.close()
    return sources


# ------------------------------------------------------------------------------------------------ exports


def export_rows(configs: list[dict[str, Any]], rounds: int, out_root: Path) -> list[dict[str, Any]]:
    """Median figures of `rounds` exports per configuration (source, folder, format, workers, image_size, keep);
    the rounds are interleaved (each round exports every configuration once), so a change in the machine's
    load falls on all of them alike."""
    from recorder.export.base import ExportOptions
    from recorder.export.registry import EXPORTERS, export_directory

    results: list[list[Any]] = [[] for _ in configs]
    for k in range(rounds):
        for c, config in enumerate(configs):
            suffix = EXPORTERS[config["format"]].load().suffix
            out = out_root / f"{c}-{k}{suffix}"
            options = ExportOptions(include_all=True, image_size=config["image_size"],
                                    video_codec=config.get("video_codec", "av1"))
            results[c].append(export_directory(config["folder"], config["format"], out, options,
                                               workers=config["workers"]))
            keep = config.get("keep")
            if keep is not None and not keep.exists():
                out.rename(keep)
            else:
                shutil.rmtree(out) if out.is_dir() else out.unlink()
        log(f"round {k + 1} of {rounds} done")
    rows = []
    for config, runs in zip(configs, results, strict=True):
        row: dict[str, Any] = {"source": config["source"], "format": config["format"], "workers": config["workers"],
                               "image_size": list(config["image_size"]) if config["image_size"] else None,
                               "episodes": len(runs[0].episodes), "frames": runs[0].frames}
        if config["format"] == "lerobot":
            row["video_codec"] = config.get("video_codec", "av1")
        figures = {
            "wall_s": [r.seconds for r in runs], "verify_s": [r.verify_s for r in runs],
            "frames_per_s": [r.frames_per_s for r in runs], "cpu_s": [r.cpu_s for r in runs],
            "cores_used": [r.cpu_s / r.seconds for r in runs], "encode_cpu_s": [r.encode_cpu_s for r in runs],
            "encoder_share": [r.encoder_share for r in runs], "resize_cpu_s": [r.resize_cpu_s for r in runs],
            "read_cpu_s": [r.read_cpu_s for r in runs], "read_share": [r.read_cpu_s / r.cpu_s for r in runs],
            "busiest_thread_share": [r.thread_cpu_s[0] / sum(r.thread_cpu_s) for r in runs],
            "mb": [r.bytes / 1e6 for r in runs],
        }
        row.update({key: round(statistics.median(values), 4) for key, values in figures.items()})
        rows.append(row)
        log(f"{row['source']} -> {row['format']}, {row['workers']} encoder threads"
            f"{', ' + str(row['image_size']) if row['image_size'] else ''}: {row['frames_per_s']:.0f} frames/s, "
            f"{row['cores_used']:.2f} cores, encoder {row['encoder_share']:.0%}, reading {row['read_share']:.0%}, "
            f"busiest thread {row['busiest_thread_share']:.0%} of the frame work")
    return rows


# ------------------------------------------------------------------------------------------------ encoder


def decoded_frames(folder: Path) -> list[np.ndarray]:
    """Every step's frame of every camera of the episodes of a folder, decoded."""
    from recorder.backend import open_episode

    frames: list[np.ndarray] = []
    for path in sorted(folder.iterdir()):
        with open_episode(path) as episode:
            for cam in episode.camera_names:
                frames.extend(episode.frames(cam))
    return frames


def _timed(write: Callable[[], None]) -> float:
    start = time.perf_counter()
    write()
    return time.perf_counter() - start


def encoder_figures(frames: list[np.ndarray], out_root: Path, rounds: int, cores: int) -> dict[str, Any]:
    """Frames per second of writing `frames` through each path (median of `rounds`)."""
    import h5py
    import numcodecs
    import zarr

    from recorder.export.diffusion_policy import compressor
    from recorder.export.robomimic import GZIP_LEVEL, gzip_chunk

    shape = (len(frames), *frames[0].shape)
    chunks = (1, *frames[0].shape)

    def h5_filter() -> None:
        with h5py.File(out_root / "filter.h5", "w") as f:
            dset = f.create_dataset("x", shape=shape, dtype=np.uint8, chunks=chunks, compression="gzip",
                                    compression_opts=GZIP_LEVEL)
            for t, frame in enumerate(frames):
                dset[t] = frame

    def h5_ours(workers: int) -> Callable[[], None]:
        def write() -> None:
            with h5py.File(out_root / "ours.h5", "w") as f, ThreadPoolExecutor(workers) as pool:
                dset = f.create_dataset("x", shape=shape, dtype=np.uint8, chunks=chunks, compression="gzip",
                                        compression_opts=GZIP_LEVEL)
                for t, data in enumerate(pool.map(gzip_chunk, frames)):
                    dset.id.write_direct_chunk((t, 0, 0, 0), data)
        return write

    codec = compressor(numcodecs)

    def zarr_api() -> None:
        shutil.rmtree(out_root / "api.zarr", ignore_errors=True)
        array = zarr.open_group(str(out_root / "api.zarr"), mode="w", zarr_format=2).create_array(
            "x", shape=shape, chunks=chunks, dtype=np.uint8, compressors=codec, fill_value=0)
        for t, frame in enumerate(frames):
            array[t] = frame

    def zarr_ours(workers: int) -> Callable[[], None]:
        def write() -> None:
            shutil.rmtree(out_root / "ours.zarr", ignore_errors=True)
            zarr.open_group(str(out_root / "ours.zarr"), mode="w", zarr_format=2).create_array(
                "x", shape=shape, chunks=chunks, dtype=np.uint8, compressors=codec, fill_value=0)
            folder = out_root / "ours.zarr" / "x"
            with ThreadPoolExecutor(workers) as pool:
                for t, data in enumerate(pool.map(codec.encode, frames)):
                    (folder / f"{t}.0.0.0").write_bytes(data)
        return write

    paths: dict[str, Callable[[], None]] = {
        "robomimic h5py gzip filter (1 thread)": h5_filter,
        "robomimic ours, 1 encoder thread": h5_ours(1),
        f"robomimic ours, {cores} encoder threads": h5_ours(cores),
        "diffusion-policy zarr array[t] = frame": zarr_api,
        "diffusion-policy ours, 1 encoder thread": zarr_ours(1),
        f"diffusion-policy ours, {cores} encoder threads": zarr_ours(cores),
    }
    figures: dict[str, Any] = {"frames": len(frames), "frame_shape": list(frames[0].shape), "rounds": rounds}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):  # interleaved, as the exports
        for name, write in paths.items():
            times[name].append(_timed(write))
    for name, seconds in times.items():
        figures[name] = {"frames_per_s": round(len(frames) / statistics.median(seconds), 1)}
        log(f"encoder: {name}: {figures[name]['frames_per_s']:.0f} frames/s")
    return figures


# ------------------------------------------------------------------------------------------- loader checks


def run_loader_checks(python: str, robomimic_path: Path, zarr_path: Path) -> dict[str, Any]:
    """This script with --check-loaders in the interpreter that has the loaders; its JSON line."""
    done = subprocess.run([python, __file__, "--check-loaders", str(robomimic_path), str(zarr_path)],
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        log(done.stderr[-4000:])
        error = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        return {"check": {"ok": False, "error": error}}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stub_torchvision() -> None:
    """Stand-ins for the torchvision modules that robomimic's models and lerobot's image transforms import at
    module level (only code that reading a video dataset or an HDF5 file never runs calls into them)."""
    import importlib.machinery
    import types

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.models",
             "torchvision.transforms.v2", "torchvision.transforms.v2.functional", "torchvision.io")
    modules = {name: types.ModuleType(name) for name in names}
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # `datasets` looks for torchvision's spec
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(modules[parent], child, module)
    modules["torchvision.transforms"].Lambda = modules["torchvision.transforms"].Compose = object  # type: ignore
    modules["torchvision.transforms.v2"].Transform = object  # type: ignore[attr-defined]
    modules["torchvision"].set_video_backend = lambda backend: None  # type: ignore[attr-defined]
    for name, module in modules.items():
        sys.modules.setdefault(name, module)


def check_robomimic(path: Path) -> dict[str, Any]:
    import h5py
    import robomimic
    import robomimic.utils.obs_utils as obs_utils
    from robomimic.utils.dataset import SequenceDataset

    info = subprocess.run([sys.executable, "-m", "robomimic.scripts.get_dataset_info", "--dataset", str(path)],
                          capture_output=True, text=True, check=False)
    if info.returncode != 0:
        raise RuntimeError(f"get_dataset_info failed: {info.stderr.strip().splitlines()[-1]}")
    stats = dict(line.split(": ", 1) for line in info.stdout.splitlines()
                 if line.startswith(("total transitions", "total trajectories", "action min", "action max")))
    with h5py.File(path, "r") as f:
        obs_keys = sorted(f["data/demo_0/obs"])
        demos = {k: [d.decode() for d in f[f"mask/{k}"][:]] for k in ("train", "valid")}
        lengths = {d: int(f[f"data/{d}"].attrs["num_samples"]) for d in f["data"]}
    images = [k for k in obs_keys if k.endswith("_image")]
    obs_utils.initialize_obs_utils_with_obs_specs(
        {"obs": {"low_dim": [k for k in obs_keys if k not in images], "rgb": images}})
    _stub_torchvision()
    import robomimic.utils.file_utils as file_utils

    env_meta = file_utils.get_env_metadata_from_dataset(str(path))
    shape_meta = file_utils.get_shape_metadata_from_dataset(str(path), all_obs_keys=obs_keys)
    samples = 0
    with h5py.File(path, "r", swmr=True, libver="latest") as f:  # as SequenceDataset opens it
        for mask, names in demos.items():
            for cache in (None, "low_dim", "all"):
                dataset = SequenceDataset(str(path), obs_keys=obs_keys, dataset_keys=("actions", "rewards", "dones"),
                                          frame_stack=2, seq_length=LOADER_ROWS, hdf5_cache_mode=cache,
                                          filter_by_attribute=mask, load_next_obs=True)
                if len(dataset) != sum(lengths[d] for d in names):
                    raise RuntimeError(f"{mask}/{cache}: {len(dataset)} samples for demos {names}")
                for index in range(0, len(dataset), 7):
                    samples += _compare_sample(f, dataset, index)
    return {"ok": True, "robomimic_version": robomimic.__version__, "get_dataset_info": stats,
            "env_name": env_meta["env_name"], "env_type": env_meta["type"], "ac_dim": shape_meta["ac_dim"],
            "shapes": {k: list(v) for k, v in shape_meta["all_shapes"].items()},
            "use_images": shape_meta["use_images"], "demos": {k: len(v) for k, v in demos.items()},
            "samples_compared": samples}


def _compare_sample(f: Any, dataset: Any, index: int) -> int:
    """One SequenceDataset sample against the rows of its demo in the file (padding repeats the ends)."""
    demo = dataset._index_to_demo_id[index]
    start = index - dataset._demo_id_to_start_indices[demo]
    n = dataset._demo_id_to_demo_length[demo]
    sample = dataset[index]
    # frame_stack 2: one row before the sample's step, then seq_length rows; padding repeats the first / last row
    rows = np.clip(np.arange(start - 1, start + LOADER_ROWS), 0, n - 1)
    group = f[f"data/{demo}"]
    # float64 as stored without a cache, float32 from the caches
    if not np.array_equal(np.asarray(sample["actions"], np.float32), group["actions"][()][rows].astype(np.float32)):
        raise RuntimeError(f"{demo} step {start}: actions differ")
    if np.abs(sample["actions"]).max() > 1:
        raise RuntimeError(f"{demo} step {start}: actions outside [-1, 1]")
    for key, value in sample["obs"].items():
        if not np.array_equal(value, group[f"obs/{key}"][()][rows]):
            raise RuntimeError(f"{demo} step {start}: obs/{key} differs")
        following = np.minimum(rows + 1, n - 1)
        if not np.array_equal(sample["next_obs"][key], group[f"obs/{key}"][()][following]):
            raise RuntimeError(f"{demo} step {start}: next_obs/{key} is not the next step's obs")
    return 1


def check_replay_buffer(path: Path) -> dict[str, Any]:
    import numcodecs
    import zarr

    if not zarr.__version__.startswith("2."):
        raise RuntimeError(f"zarr-python {zarr.__version__}: the check needs zarr-python 2, as diffusion_policy")
    group = zarr.open(str(path), "r")  # ReplayBuffer.copy_from_path
    src_store = group.store
    src_root = zarr.group(src_store)  # copy_from_store
    numpy_root = {"meta": {k: (np.array(v) if len(v.shape) == 0 else v[:]) for k, v in src_root["meta"].items()},
                  "data": {k: v[:] for k, v in src_root["data"].items()}}
    ends = numpy_root["meta"]["episode_ends"]
    if ends.dtype != np.int64:
        raise RuntimeError(f"episode_ends is {ends.dtype}")
    for key, value in numpy_root["data"].items():  # ReplayBuffer.__init__
        if value[: ends[-1]].shape[0] != ends[-1]:
            raise RuntimeError(f"data/{key} has {value.shape[0]} rows, episode_ends[-1] is {ends[-1]}")
    store = zarr.MemoryStore()  # the zarr backend: copied without recompression
    root = zarr.group(store=store)
    zarr.copy_store(source=src_store, dest=store, source_path="/meta", dest_path="/meta", if_exists="replace")
    root.create_group("data", overwrite=True)
    compressors = set()
    for key in src_root["data"].keys():
        value = src_root["data"][key]
        compressors.add(repr(value.compressor))
        if not isinstance(value.compressor, (numcodecs.Blosc, type(None))):
            raise RuntimeError(f"data/{key} has compressor {value.compressor}")
        zarr.copy_store(source=src_store, dest=store, source_path=f"/data/{key}", dest_path=f"/data/{key}",
                        if_exists="replace")
    windows = 0
    starts = np.concatenate([[0], ends[:-1]])
    for key in root["data"].keys():
        copy = root["data"][key]
        if not np.array_equal(copy[:], numpy_root["data"][key]):
            raise RuntimeError(f"data/{key} differs after zarr.copy_store")
        if key.endswith("_image") and copy.chunks != (1, *copy.shape[1:]):
            raise RuntimeError(f"data/{key} is chunked {copy.chunks}, not one frame per chunk")
        for start, end in zip(starts, ends, strict=True):
            for first in range(-PAD_BEFORE, end - start - WINDOW + PAD_AFTER + 1):  # create_indices' windows
                lo, hi = max(first, 0) + start, min(first + WINDOW, end - start) + start
                window = copy[lo:hi]
                if len(window) != hi - lo or not np.array_equal(window, numpy_root["data"][key][lo:hi]):
                    raise RuntimeError(f"data/{key} window {lo}:{hi} differs")
                windows += 1
    valid = numpy_root["meta"]["valid_mask"]
    return {"ok": True, "zarr_version": zarr.__version__, "episodes": len(ends), "steps": int(ends[-1]),
            "data_keys": sorted(numpy_root["data"]), "meta_keys": sorted(numpy_root["meta"]),
            "valid_episodes": int(valid.sum()), "compressors": sorted(compressors), "windows_sliced": windows}


def check_loaders(robomimic_path: Path, zarr_path: Path) -> None:
    """Runs in the interpreter that has the loaders; prints one JSON line."""
    results: dict[str, Any] = {}
    for name, check, path in (("robomimic", check_robomimic, robomimic_path),
                              ("diffusion_policy", check_replay_buffer, zarr_path)):
        try:
            results[name] = check(path)
        except Exception as exc:  # the benchmark reports a failed check instead of stopping
            results[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        log(f"{name}: {results[name]}")
    print(json.dumps(results))


def run_lerobot_check(python: str, path: Path) -> dict[str, Any]:
    """This script with --check-lerobot in the interpreter that has lerobot; its JSON line."""
    done = subprocess.run([python, __file__, "--check-lerobot", str(path)], capture_output=True, text=True,
                          timeout=1800, check=False)
    if done.returncode != 0:
        log(done.stderr[-4000:])
        error = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output"
        return {"ok": False, "error": error}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mp4_frames(path: Path) -> dict[float, np.ndarray]:
    """Every frame of an mp4 by PyAV, by its time [s] rounded to 0.1 ms."""
    import av

    with av.open(str(path)) as container:
        return {round(float(f.pts * f.time_base), 4): f.to_ndarray(format="rgb24")
                for f in container.decode(container.streams.video[0])}


def check_lerobot(path: Path) -> dict[str, Any]:
    """Runs in the interpreter that has lerobot 0.4.4 (see the module docstring); prints one JSON line."""
    _stub_torchvision()
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from lerobot import __version__ as lerobot_version
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    torch.set_num_threads(os.cpu_count() or 1)
    dataset = LeRobotDataset("teleop/export", root=path)  # default checks, tolerance_s 1e-4
    meta = dataset.meta
    rows = pa.concat_tables([pq.read_table(f) for f in sorted((path / "data").glob("*/*.parquet"))]).to_pydict()
    episodes = pq.read_table(path / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    videos: dict[Path, dict[float, np.ndarray]] = {}
    largest = 0.0
    for idx in range(len(dataset)):
        item = dataset[idx]
        for key in rows:
            if not np.array_equal(item[key].numpy(), np.asarray(rows[key][idx], dtype=item[key].numpy().dtype)):
                raise RuntimeError(f"item {idx}: {key} differs from the data file")
        episode = episodes[rows["episode_index"][idx]]
        if item["task"] != episode["tasks"][0]:
            raise RuntimeError(f"item {idx}: task {item['task']!r}, the episode's is {episode['tasks'][0]!r}")
        for key in meta.video_keys:
            file = path / meta.get_video_file_path(rows["episode_index"][idx], key)
            frames = videos.setdefault(file, _mp4_frames(file))
            t = round(episode[f"videos/{key}/from_timestamp"] + rows["timestamp"][idx], 4)
            theirs = item[key].numpy().transpose(1, 2, 0) * 255.0  # torchcodec's frame, (C, H, W) on [0, 1]
            largest = max(largest, float(np.abs(theirs - frames[t]).mean()))
    if largest > 1.0:
        raise RuntimeError(f"torchcodec's frames differ from PyAV's by {largest:.2f} levels on average")
    fps = meta.fps
    deltas = {key: [-1 / fps, 0.0] for key in meta.video_keys} | {"action": [0.0, 1 / fps, 2 / fps]}
    windows = LeRobotDataset("teleop/export", root=path, delta_timestamps=deltas)
    for episode in episodes:
        first, last = episode["dataset_from_index"], episode["dataset_to_index"] - 1
        for key in meta.video_keys:
            if windows[first][f"{key}_is_pad"].tolist() != [True, False]:
                raise RuntimeError(f"{key}: the frame before an episode's first is not padding")
        if windows[last]["action_is_pad"].tolist() != [False, True, True]:
            raise RuntimeError("the actions after an episode's last are not padding")
    peer = _lerobot_writer(path, dataset, rows, episodes, videos)
    return {"ok": True, "lerobot_version": lerobot_version, "items": len(dataset), "episodes": meta.total_episodes,
            "video_keys": meta.video_keys, "codec": [meta.features[k]["info"]["video.codec"] for k in meta.video_keys],
            "frames_decoded": len(dataset) * len(meta.video_keys), "torchcodec_vs_pyav_mean_abs_levels": largest,
            "delta_timestamp_windows": 2 * len(episodes), "peer": peer}


def _lerobot_writer(path: Path, dataset: Any, rows: dict[str, list[Any]], episodes: list[dict[str, Any]],
                    videos: dict[Path, dict[float, np.ndarray]]) -> dict[str, Any]:
    """LeRobot's own recording path writing the same episodes (rows and decoded frames), timed: frames/s."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    meta = dataset.meta
    defaults = ("timestamp", "frame_index", "episode_index", "index", "task_index")
    features = {k: {key: v for key, v in ft.items() if key != "info"} for k, ft in meta.features.items()
                if k not in defaults}
    vector_keys = [k for k, ft in features.items() if ft["dtype"] != "video"]
    frames = {}  # (episode, step, key) -> frame, decoded before the clock starts
    for episode in episodes:
        for key in meta.video_keys:
            file = path / meta.get_video_file_path(episode["episode_index"], key)
            for i in range(episode["length"]):
                t = round(episode[f"videos/{key}/from_timestamp"] + i / meta.fps, 4)
                frames[episode["episode_index"], i, key] = videos[file][t]
    figures = {}
    for mode, streaming in (("png files, then encode (LeRobot's default)", False), ("streaming encoder", True)):
        with tempfile.TemporaryDirectory(prefix="lerobot-writer-") as tmp:
            start = time.perf_counter()
            peer = LeRobotDataset.create("teleop/peer", fps=meta.fps, features=features, root=Path(tmp) / "peer",
                                         robot_type=meta.robot_type, use_videos=True,
                                         image_writer_threads=4 * len(meta.video_keys), streaming_encoding=streaming)
            for episode in episodes:
                for i in range(episode["length"]):
                    row = episode["dataset_from_index"] + i
                    frame = {k: np.asarray(rows[k][row], np.float32) for k in vector_keys}
                    frame |= {k: frames[episode["episode_index"], i, k] for k in meta.video_keys}
                    peer.add_frame(frame | {"task": episode["tasks"][0]})
                peer.save_episode()
            peer.finalize()
            seconds = time.perf_counter() - start
            if len(LeRobotDataset("teleop/peer", root=Path(tmp) / "peer")) != len(dataset):
                raise RuntimeError(f"LeRobot's writer ({mode}) wrote another number of frames")
        count = len(dataset) * len(meta.video_keys)
        figures[mode] = {"seconds": round(seconds, 3), "frames_per_s": round(count / seconds, 1)}
        log(f"lerobot's writer, {mode}: {figures[mode]['frames_per_s']:.0f} frames/s")
    return figures


# --------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--image-size", default="224x224", help="recorded camera size WxH")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 short episodes of 64x48 frames, 1 round")
    parser.add_argument("--loaders-python", default=None, help="interpreter with robomimic 0.3.0 and zarr-python 2")
    parser.add_argument("--lerobot-python", default=None, help="interpreter with lerobot 0.4.4 and torchcodec")
    parser.add_argument("--check-loaders", nargs=2, type=Path, metavar=("HDF5", "ZARR"), help=argparse.SUPPRESS)
    parser.add_argument("--check-lerobot", type=Path, metavar="DATASET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check_loaders:
        check_loaders(*args.check_loaders)
        return
    if args.check_lerobot:
        try:
            result = check_lerobot(args.check_lerobot)
        except Exception as exc:  # the benchmark reports a failed check instead of stopping
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        log(f"lerobot: {result}")
        print(json.dumps(result))
        return
    if args.quick:
        args.episodes, args.seconds, args.image_size, args.rounds = 2, 1.5, "64x48", 1
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    cores = os.cpu_count() or 1
    load_start = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="export-benchmark-") as tmp:
        root = Path(tmp)
        sources = record_sources(root, args.episodes, args.seconds, (width, height))
        out_root = root / "out"
        out_root.mkdir()
        kept = {"robomimic": root / "kept.hdf5", "diffusion-policy": root / "kept.zarr",
                "lerobot": root / "kept-lerobot"}
        configs = []
        for source, folder in sources.items():
            for fmt in ("robomimic", "diffusion-policy", "lerobot"):
                for workers in sorted({1, cores}):
                    configs.append({"source": source, "folder": folder, "format": fmt, "workers": workers,
                                    "image_size": None, "keep": kept[fmt] if source == "zarr-jpeg" else None})
                configs.append({"source": source, "folder": folder, "format": fmt, "workers": cores,
                                "image_size": (96, 128)})
            configs.append({"source": source, "folder": folder, "format": "lerobot", "workers": cores,
                            "image_size": None, "video_codec": "h264"})
        rows = export_rows(configs, args.rounds, out_root)
        encoder = encoder_figures(decoded_frames(sources["hdf5-lossless"]), out_root, 2 * args.rounds, cores)
        loaders = lerobot = None
        if args.loaders_python:
            loaders = run_loader_checks(args.loaders_python, kept["robomimic"], kept["diffusion-policy"])
        if args.lerobot_python:
            lerobot = run_lerobot_check(args.lerobot_python, kept["lerobot"])
    result = {
        "machine": {"cpus": cores, "load_avg_start": [round(v, 2) for v in load_start],
                    "load_avg_end": [round(v, 2) for v in os.getloadavg()],
                    "wall_s": round(time.monotonic() - started, 1)},
        "sources": {"episodes": args.episodes, "seconds": args.seconds, "image_size_wh": [width, height],
                    "cameras": 2, "rate_hz": 20.0, "storage": sorted(sources)},
        "exports": rows, "encoder": encoder, "loaders": loaders, "lerobot": lerobot,
    }
    print(json.dumps(result))
    if loaders is not None and not all(check.get("ok") for check in loaders.values() if isinstance(check, dict)):
        sys.exit(1)  # a loader refused an export
    if lerobot is not None and not lerobot.get("ok"):
        sys.exit(1)


if __name__ == "__main__":
    main()
