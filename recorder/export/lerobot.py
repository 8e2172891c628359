"""LeRobotDataset v3.0 (a folder), as lerobot 0.4.4's `LeRobotDataset(repo_id, root=PATH)` reads it.

What its loader reads (lerobot/datasets/lerobot_dataset.py, utils.py and video_utils.py), and what this
exporter writes for it:

- `meta/info.json` (load_info): codebase_version "v3.0" (check_version_compatibility refuses another major
  version), fps (a whole number), features {key: {dtype, shape, names[, info]}}, the path templates data_path and
  video_path (formatted with chunk_index, file_index and video_key), total_episodes, total_frames, total_tasks,
  chunks_size, the file size limits and splits.
- `meta/tasks.parquet` (load_tasks, through pandas): indexed by the task's text, one column task_index; an
  item's "task" is the index of row task_index.
- `meta/episodes/chunk-000/file-000.parquet` (load_episodes): one row per episode in episode_index order:
  tasks, length, dataset_from_index / dataset_to_index (rows of the data files), data/chunk_index and
  data/file_index, per camera videos/<key>/chunk_index, file_index, from_timestamp and to_timestamp, and the
  episode's statistics as stats/<feature>/<statistic>.
- `data/chunk-CCC/file-FFF.parquet` (datasets' Dataset.from_parquet with the features of info.json): one row
  per step; vectors are fixed-size lists of float32 (datasets' List(length=n)), timestamp float32, frame_index,
  episode_index, index and task_index int64.
- `videos/<key>/chunk-CCC/file-FFF.mp4`: one frame per step, the episodes one after another at fps, so that
  step i of an episode is the frame at from_timestamp + i / fps. torchcodec, the decoder lerobot picks, fetches
  frame round(t × average_fps) and refuses it unless its time lies within tolerance_s (1e-4 s) of t: every frame
  is given pts = its index in the file / fps, and the encoder neither drops nor repeats frames.
- `meta/stats.json` (load_stats): per feature min, max, mean, std, count and q01..q99 over all steps
  (recorder.stats); images per channel on [0, 1], shaped (3, 1, 1).

Features: observation.state (joint positions), observation.velocity (joint velocities), observation.ee_pose
(position, quaternion wxyz), action (in the chosen action space, not normalised: LeRobot normalises with
stats.json), observation.<extra> for each extra (flattened, float32), observation.images.<camera> (video).
Timestamps are LeRobot's nominal frame_index / fps: every control step is one row and one frame, late ticks
included. A task is the episode's instruction (its task name when it has none).

Videos are encoded with PyAV as LeRobot encodes them: AV1 by libsvtav1 (preset 12, crf 30, a keyframe every
2 frames, yuv420p), or H.264 by libx264 with the same crf and keyframe interval. Frames are resized and turned
into yuv420p on the frame encoder's threads; the codec runs threads of its own.

Episodes are ordered train first, then validation; info.json's splits give the two ranges ("train": "0:K",
"validation": "K:N"). info.json's "teleop" entry and the episodes' teleop/* columns record the provenance
(source episodes, success, action space and bounds, the split rule).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from recorder.backend import open_episode
from recorder.export.actions import ACTION_SPACES, EE_NAMES, ActionBounds
from recorder.export.base import Exporter, ExportJob, WriteStats
from recorder.export.errors import ExportError
from recorder.export.plan import DatasetPlan, EpisodeInfo, StepArrays, read_steps
from recorder.export.split import RULE
from recorder.stats import channel_histogram, feature_stats, histogram_stats
from teleop import __version__
from teleop.deps import require

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder
DATA_FILE_MB = 100  # a data file is closed once it is this large, a video file at VIDEO_FILE_MB
VIDEO_FILE_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
# ffmpeg encoder and options of each ExportOptions.video_codec: LeRobot's encode_video_frames defaults
ENCODERS = {
    "av1": ("libsvtav1", {"g": "2", "crf": "30", "preset": "12"}),
    "h264": ("libx264", {"g": "2", "crf": "30"}),
}
PIX_FMT = "yuv420p"
INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
PROGRESS_EVERY = 64  # frames


def _libraries() -> tuple[ModuleType, ModuleType, ModuleType, ModuleType]:
    purpose = "LeRobot datasets (parquet files and mp4 videos)"
    return (require("av", "export", purpose), require("pyarrow", "export", purpose),
            require("pyarrow.parquet", "export", purpose, package="pyarrow"),
            require("pandas", "export", purpose))


def whole_fps(rate_hz: float) -> int:
    """The control rate as LeRobot's fps, a whole number; ExportError when the episodes' rate is not one."""
    fps = round(rate_hz)
    if fps < 1 or abs(rate_hz - fps) > 1e-9:
        raise ExportError(f"the episodes were recorded at {rate_hz:g} Hz, and a LeRobot dataset needs a whole "
                          "number of frames per second: record at a whole rate (--rate) to export as lerobot")
    return fps


def vector_features(plan: DatasetPlan) -> dict[str, dict[str, Any]]:
    """info.json's features of the per-step vectors, in the column order of the data files."""
    features: dict[str, dict[str, Any]] = {
        "observation.state": {"dtype": "float32", "shape": [len(plan.joint_names)], "names": list(plan.joint_names)},
        "observation.velocity": {"dtype": "float32", "shape": [len(plan.joint_names)],
                                 "names": list(plan.joint_names)},
        "observation.ee_pose": {"dtype": "float32", "shape": [7], "names": list(EE_NAMES)},
        "action": {"dtype": "float32", "shape": [len(plan.action_names)], "names": list(plan.action_names)},
    }
    for key, shape in plan.extras.items():
        name = f"observation.{key}"
        if name in features or "/" in key:
            raise ExportError(f"the episodes' extra {key!r} cannot be a LeRobot feature ({name!r} is taken or has "
                              "a '/'): rename it in the task to export these episodes as lerobot")
        features[name] = {"dtype": "float32", "shape": [int(np.prod(shape))], "names": None}
    return features


INDEX_FEATURES = {key: {"dtype": "float32" if key == "timestamp" else "int64", "shape": [1], "names": None}
                  for key in INDEX_COLUMNS}


def video_feature(size: tuple[int, int], codec: str, fps: int) -> dict[str, Any]:
    """info.json's entry of a camera, with the "info" LeRobot's get_video_info reads from its first file
    (codec: its canonical name, "av1" or "h264")."""
    height, width = size
    return {"dtype": "video", "shape": [height, width, 3], "names": ["height", "width", "channels"],
            "info": {"video.height": height, "video.width": width, "video.codec": codec, "video.pix_fmt": PIX_FMT,
                     "video.is_depth_map": False, "video.fps": fps, "video.channels": 3, "has_audio": False}}


def _hf_features(features: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The `datasets` features (4.x JSON) of the data files' columns, as LeRobot's files carry them."""
    out: dict[str, Any] = {}
    for key, ft in features.items():
        value = {"dtype": ft["dtype"], "_type": "Value"}
        out[key] = value if ft["shape"] == [1] else {"feature": value, "length": ft["shape"][0], "_type": "List"}
    return out


class _Prepared(NamedTuple):
    """A frame ready for the video encoder (yuv420p) and its pixel histogram for the statistics."""

    frame: Any  # av.VideoFrame
    histogram: np.ndarray


def _prepare(rgb: np.ndarray) -> _Prepared:
    """On a frame encoder thread: the resized frame in the encoder's pixel format, and its histogram."""
    import av

    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=PIX_FMT)
    return _Prepared(frame, channel_histogram(rgb))


class _FileIndex:
    """Numbers the files of one kind: file k is chunk k // CHUNKS_SIZE, file k % CHUNKS_SIZE."""

    def __init__(self) -> None:
        self.k = -1

    def next(self) -> tuple[int, int]:
        self.k += 1
        return divmod(self.k, CHUNKS_SIZE)


class _Video:
    """One camera's mp4 files: episodes are appended to the current file until it reaches VIDEO_FILE_MB."""

    def __init__(self, root: Path, key: str, size: tuple[int, int], codec: str, fps: int) -> None:
        self.root, self.key, self.size, self.codec, self.fps = root, key, size, codec, fps
        self.files = _FileIndex()
        self.container: Any = None
        self.stream: Any = None
        self.where = (0, 0)
        self.frames = 0  # frames in the current file
        self.bytes = 0  # bytes of its packets so far
        self.codec_main_s = 0.0  # CPU time of the calling thread inside the codec [s]

    def start_episode(self) -> tuple[int, int, int]:
        """(chunk, file, first frame) of the next episode; a new file when there is none or it is full."""
        if self.container is not None and self.bytes >= VIDEO_FILE_MB * 2**20:
            self.close()
        if self.container is None:
            self._open()
        return (*self.where, self.frames)

    def add(self, frame: Any) -> None:
        t0 = time.thread_time()
        frame.pts = self.frames  # the same frame object may come again for the next step: pts set each time
        self._mux(self.stream.encode(frame))
        self.frames += 1
        self.codec_main_s += time.thread_time() - t0

    def close(self) -> None:
        if self.container is None:
            return
        t0 = time.thread_time()
        self._mux(self.stream.encode(None))
        self.container.close()
        self.codec_main_s += time.thread_time() - t0
        self.container = self.stream = None

    def _open(self) -> None:
        av = require("av", "export", "LeRobot videos")
        os.environ.setdefault("SVT_LOG", "1")  # libsvtav1 prints its settings at every start otherwise
        self.where = self.files.next()
        path = self.root / VIDEO_PATH.format(video_key=self.key, chunk_index=self.where[0], file_index=self.where[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        encoder, options = ENCODERS[self.codec]
        self.container = av.open(str(path), "w", options={"movflags": "faststart"})
        self.stream = self.container.add_stream(encoder, rate=self.fps, options=dict(options))
        self.stream.height, self.stream.width = self.size
        self.stream.pix_fmt = PIX_FMT
        self.stream.codec_context.time_base = Fraction(1, self.fps)
        self.frames = self.bytes = 0

    def _mux(self, packets: Iterable[Any]) -> None:
        for packet in packets:
            self.bytes += packet.size
            self.container.mux(packet)


class _DataFiles:
    """The data parquet files: one row group per episode, a new file once one reaches DATA_FILE_MB."""

    def __init__(self, root: Path, schema: Any, pq: ModuleType) -> None:
        self.root, self.schema, self.pq = root, schema, pq
        self.files = _FileIndex()
        self.writer: Any = None
        self.path: Path | None = None
        self.where = (0, 0)

    def append(self, table: Any) -> tuple[int, int]:
        """Write one episode's rows; (chunk, file) they are in."""
        if self.writer is not None and self.path is not None and self.path.stat().st_size >= DATA_FILE_MB * 2**20:
            self.close()
        if self.writer is None:
            self.where = self.files.next()
            self.path = self.root / DATA_PATH.format(chunk_index=self.where[0], file_index=self.where[1])
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = self.pq.ParquetWriter(self.path, self.schema, compression="snappy")
        self.writer.write_table(table)
        return self.where

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _vector_columns(steps: StepArrays) -> dict[str, np.ndarray]:
    n = len(steps.timestamp)
    columns = {"observation.state": steps.joint_pos, "observation.velocity": steps.joint_vel,
               "observation.ee_pose": steps.ee_pose, "action": steps.action}
    columns.update({f"observation.{key}": value.reshape(n, -1) for key, value in steps.extras.items()})
    return {key: np.asarray(value, np.float32) for key, value in columns.items()}


def _index_columns(n: int, fps: int, episode_index: int, first: int, task_index: int) -> dict[str, np.ndarray]:
    frame_index = np.arange(n, dtype=np.int64)
    return {"timestamp": (frame_index / fps).astype(np.float32), "frame_index": frame_index,
            "episode_index": np.full(n, episode_index, np.int64), "index": first + frame_index,
            "task_index": np.full(n, task_index, np.int64)}


def _table(columns: dict[str, np.ndarray], schema: Any, pa: ModuleType) -> Any:
    arrays = []
    for field in schema:
        values = columns[field.name]
        if values.ndim == 1:
            arrays.append(pa.array(values, type=field.type))
        else:
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _schema(features: dict[str, dict[str, Any]], pa: ModuleType) -> Any:
    types = {"float32": pa.float32(), "int64": pa.int64()}
    fields = []
    for key, ft in features.items():
        value = types[ft["dtype"]]
        kind = value if ft["shape"] == [1] else pa.list_(pa.field("element", value), ft["shape"][0])
        fields.append(pa.field(key, kind))
    metadata = {"huggingface": json.dumps({"info": {"features": _hf_features(features)}})}
    return pa.schema(fields, metadata=metadata)


def _column_stats(values: np.ndarray) -> dict[str, Any]:
    return feature_stats(values.reshape(len(values), -1))


def episode_order(plan: DatasetPlan) -> tuple[int, ...]:
    """Indices into plan.episodes in dataset order: the training episodes, then the validation ones, each in
    the plan's order."""
    valid = np.asarray(plan.valid_mask, bool)
    return tuple(int(i) for i in np.concatenate([np.flatnonzero(~valid), np.flatnonzero(valid)]))


def task_text(episode: EpisodeInfo) -> str:
    """An episode's LeRobot task: its instruction, or its task name when it has none."""
    return episode.instruction.strip() or episode.task


class LeRobotExporter(Exporter):
    """LeRobotDataset v3.0: parquet files, one mp4 stream per camera and the metadata (see the module
    docstring)."""

    name = "lerobot"
    suffix = ""  # a folder named as the dataset

    def write(self, job: ExportJob, out: Path) -> WriteStats:
        _, pa, pq, pd = _libraries()
        plan = job.plan
        fps = whole_fps(plan.control_rate_hz)
        codec = plan.options.video_codec
        if codec == "h264" and any(h % 2 or w % 2 for h, w in plan.image_sizes.values()):
            raise ExportError(f"H.264 needs frames of an even height and width, and the frames are {plan.image_sizes}"
                              ": give an even --image-size, or use the default AV1")
        features = {**vector_features(plan), **INDEX_FEATURES}
        schema = _schema(features, pa)
        order = episode_order(plan)
        tasks: dict[str, int] = {}
        for i in order:
            tasks.setdefault(task_text(plan.episodes[i]), len(tasks))

        cpu0, main0, main_thread = time.process_time(), time.thread_time(), threading.get_ident()
        pool0 = _pool_cpu(job, main_thread)
        out.mkdir()
        videos = {cam: _Video(out, _video_key(cam), plan.image_sizes[cam], codec, fps) for cam in plan.cameras}
        data = _DataFiles(out, schema, pq)
        totals = _Totals()
        rows: list[dict[str, Any]] = []
        done = 0
        try:
            for e, i in enumerate(order):
                info = plan.episodes[i]
                with open_episode(info.path) as reader:
                    steps = read_steps(reader, plan)
                    n = len(steps.timestamp)
                    columns = {**_vector_columns(steps),
                               **_index_columns(n, fps, e, totals.steps, tasks[task_text(info)])}
                    chunk, file = data.append(_table(columns, schema, pa))
                    row: dict[str, Any] = {
                        "episode_index": e, "tasks": [task_text(info)], "length": n,
                        "data/chunk_index": chunk, "data/file_index": file,
                        "dataset_from_index": totals.steps, "dataset_to_index": totals.steps + n,
                    }
                    stats = {key: _column_stats(values) for key, values in columns.items()}
                    for cam in plan.cameras:
                        video = videos[cam]
                        v_chunk, v_file, first = video.start_episode()
                        histogram = np.zeros((3, 256), np.int64)
                        for prepared in job.frames.chunks(reader, cam, plan.image_sizes[cam], _prepare):
                            video.add(prepared.frame)
                            histogram += prepared.histogram
                            done += 1
                            if done % PROGRESS_EVERY == 0:
                                job.report(done, info.name)
                        key = _video_key(cam)
                        row |= {f"videos/{key}/chunk_index": v_chunk, f"videos/{key}/file_index": v_file,
                                f"videos/{key}/from_timestamp": first / fps,
                                f"videos/{key}/to_timestamp": (first + n) / fps}
                        stats[key] = histogram_stats(histogram, n)
                        totals.add_histogram(key, histogram, n)
                    if not plan.cameras:
                        done += n
                    job.report(done, info.name)
                row |= {f"stats/{key}/{stat}": value for key, values in stats.items() for stat, value in values.items()}
                row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                        "teleop/source_episode": info.name, "teleop/success": info.success,
                        "teleop/split": "validation" if plan.valid_mask[i] else "train"}
                rows.append(row)
                totals.add_columns(columns)
        finally:
            data.close()
            for video in videos.values():
                video.close()

        features |= {_video_key(cam): video_feature(plan.image_sizes[cam], codec, fps) for cam in plan.cameras}
        self._write_meta(out, plan, features, order, tasks, rows, totals, fps, pa, pq, pd)
        codec_main = sum(video.codec_main_s for video in videos.values())
        other = (time.thread_time() - main0 - codec_main) + (_pool_cpu(job, main_thread) - pool0)
        return WriteStats(steps=totals.steps, frames=totals.steps * len(plan.cameras),
                          codec_cpu_s=max(0.0, time.process_time() - cpu0 - other), order=order)

    def _write_meta(self, out: Path, plan: DatasetPlan, features: dict[str, Any], order: tuple[int, ...],
                    tasks: dict[str, int], rows: list[dict[str, Any]], totals: _Totals, fps: int,
                    pa: ModuleType, pq: ModuleType, pd: ModuleType) -> None:
        meta = out / "meta"
        (out / EPISODES_PATH).parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), out / EPISODES_PATH, compression="snappy")
        pd.DataFrame({"task_index": list(tasks.values())}, index=list(tasks)).to_parquet(meta / "tasks.parquet")
        (meta / "stats.json").write_text(json.dumps(totals.stats(), indent=4))
        train = int((~np.asarray(plan.valid_mask, bool)).sum())
        splits = {"train": f"0:{train}"} | ({"validation": f"{train}:{len(order)}"} if train < len(order) else {})
        bounds: ActionBounds = plan.action_bounds
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": plan.robot, "total_episodes": len(order),
            "total_frames": totals.steps, "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB, "fps": fps,
            "splits": splits, "data_path": DATA_PATH, "video_path": VIDEO_PATH if plan.cameras else None,
            "features": features,
            "teleop": {
                "software_version": __version__, "tasks": list(plan.tasks), "control_rate_hz": plan.control_rate_hz,
                "action_space": plan.options.action_space,
                "action_space_description": ACTION_SPACES[plan.options.action_space],
                "action_min": bounds.low.tolist(), "action_max": bounds.high.tolist(),
                "video_codec": plan.options.video_codec,
                "split": {"valid_fraction": plan.options.valid_fraction, "seed": plan.options.seed, "rule": RULE,
                          "order": "training episodes first, then validation episodes"},
            },
        }
        (meta / "info.json").write_text(json.dumps(info, indent=4))


def _video_key(cam: str) -> str:
    return f"observation.images.{cam}"


def _pool_cpu(job: ExportJob, main_thread: int) -> float:
    """CPU time the frame encoder's own threads (not the calling one) spent on frame tasks so far [s]."""
    return sum(cpu for thread, cpu in job.frames.thread_cpu_s.items() if thread != main_thread)


class _Totals:
    """Every step's columns and every camera's pixel histogram, for meta/stats.json."""

    def __init__(self) -> None:
        self.steps = 0
        self.columns: dict[str, list[np.ndarray]] = {}
        self.histograms: dict[str, tuple[np.ndarray, int]] = {}

    def add_columns(self, columns: dict[str, np.ndarray]) -> None:
        for key, values in columns.items():
            self.columns.setdefault(key, []).append(values)
        self.steps += len(columns["timestamp"])

    def add_histogram(self, key: str, histogram: np.ndarray, frames: int) -> None:
        total, count = self.histograms.get(key, (np.zeros((3, 256), np.int64), 0))
        self.histograms[key] = (total + histogram, count + frames)

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {key: _column_stats(np.concatenate(parts)) for key, parts in self.columns.items()}
        out |= {key: histogram_stats(histogram, frames) for key, (histogram, frames) in self.histograms.items()}
        return out
