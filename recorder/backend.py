"""The episode contract every storage backend implements, the layout they share, and the backend registry.

An episode holds one row per control step in step-aligned arrays that share axis 0 (N steps), and per camera
the distinct frames it delivered in frame arrays (axis 0 = F frames, F <= N): a 30 fps camera in a 100 Hz loop
stores each frame once, and the step-aligned `cameras/<cam>/frame_index` names the frame of every step.
Colour frames are stored lossless (`rgb`) or, with image_codec="jpeg", as JPEG files (`rgb_jpeg`, one
variable-length byte string per frame, with its CRC-32 in `rgb_jpeg_crc32`; see recorder.jpeg). Layout in
recorder/hdf5.py; recorder/zarr_store.py stores the same names as a zarr v3 directory. Backends:

    "hdf5"  one file        episode_000003.h5     recorder.hdf5
    "zarr"  one directory   episode_000003.zarr   recorder.zarr_store (needs `pip install 'teleop[zarr]'`)

Both write to `<name>.partial` while recording, flush at least every `flush_interval_s` (storing the step
count `num_steps` with each flush, so a killed recording can be repaired up to its last flush, see
recorder.repair) and rename to `<name>` when closed. `create_writer` and `open_episode` pick the backend; a
new backend is one module with a `BACKEND` entry plus one line in `BACKENDS`. Episodes of format version 1
(one frame row per step, no frame_index) are still read.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import importlib
import json
import os
import re
import shutil
import time
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import numpy as np

from recorder import integrity, jpeg
from recorder.cameras import DepthFrame
from recorder.lock import LOCK_NAME, EpisodeLock
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from recorder.sync import SyncStats
from teleop import __version__
from teleop.deps import require
from teleop.errors import EpisodeError, UnknownNameError

Clock = Callable[[], float]
W = TypeVar("W", bound="EpisodeWriter")
R = TypeVar("R", bound="EpisodeReader")
P = TypeVar("P", bound="PartialEpisode")

FORMAT = "teleop-episode"
FORMAT_VERSION = 3
# version 1: frame arrays were step-aligned (one stored frame per step); version 2: no integrity record
READABLE_VERSIONS = (1, 2, 3)
SEALED_VERSION = 3  # from this version on an episode must carry its integrity record (recorder.integrity)
PARTIAL_SUFFIX = ".partial"
UNFINISHED = "unfinished recording (the recording process stopped before it finished)"
ROW_BLOCK = 64  # rows added per resize; arrays are trimmed to the step count at close
MAX_CHUNK_BYTES = 1 << 20
# A recording stops (cleanly) when less than this, at most a 20th of the disk, plus 4 steps' raw size is free.
MIN_FREE_BYTES = 32 << 20
FLUSH_INTERVAL_S = 0.2  # rows reach the OS this often: what a killed recording can lose, beside its queue [s]
SYNC_INTERVAL_S = 1.0  # ... and the disk (fsync) this often: what a power cut can lose [s]
MIN_FREE_SHARE = 20

JSON_ATTRS = ("joint_names", "action_names", "initial_state")
META_ATTRS = (
    "format",
    "format_version",
    "robot",
    "task",
    "instruction",
    "control_rate_hz",
    "operator_device",
    "joint_names",
    "action_names",
    "start_time",
    "seed",
    "initial_state",
    "software_version",
)
CLOSE_ATTRS = ("num_steps", "success", "duration_s")
CAMERA_ATTRS = ("width", "height", "K", "T_world_camera", "mount")
DEPTH_SCALE_ATTR = "depth_scale_m"  # camera group attribute of cameras recorded with depth [m per unit]
IMAGE_CODECS = ("lossless", "jpeg")
FRAME_ARRAYS = ("rgb", "rgb_jpeg", "rgb_jpeg_crc32", "depth")  # a camera's arrays with one row per frame
BASE_DATASETS = (
    "timestamp",
    "observation/joint_pos",
    "observation/joint_vel",
    "observation/ee_pose",
    "action",
)
SUCCESS_CODES = {True: 1, False: 0, None: -1}
TRASH_DIR = ".trash"  # deleted and replaced episodes (recorder.trash)
EPISODE_NAME = re.compile(r"^episode_(\d+)(\.h5|\.zarr)(\.partial)?$")
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def partial_path(path: Path) -> Path:
    """The name an episode has while it is being recorded: `<path>.partial`."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def final_path(partial: Path) -> Path:
    """The name a `.partial` episode gets once it is finished or repaired."""
    return partial.with_name(partial.name.removesuffix(PARTIAL_SUFFIX))


def fail(path: Path, problem: str, fix: str = "") -> EpisodeError:
    """An EpisodeError that names the file, the problem and, where there is one, the fix."""
    return EpisodeError(f"{path}: {problem}" + (f"; {fix}" if fix else ""))


def fsync_path(path: Path) -> None:
    """Flush a file or directory to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_episode_path(path: Path) -> None:
    """Delete an episode file or directory; a no-op when it does not exist."""
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError that means no space is left (h5py puts the errno only in its message)."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return True
    text = str(exc)
    return any(f"errno = {code}," in text or os.strerror(code) in text for code in DISK_FULL_ERRNOS)


def free_space_text(directory: Path) -> str:
    """Free space of the file system holding `directory`, e.g. "3.2 MB free"."""
    try:
        return f"{shutil.disk_usage(directory).free / 1e6:.1f} MB free"
    except OSError:
        return "free space unknown"


# ---------------------------------------------------------------------------------------------- rows


def meta_attrs(meta: EpisodeMeta) -> dict[str, Any]:
    """Root attributes known when recording starts."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "robot": meta.robot,
        "task": meta.task,
        "instruction": meta.instruction,
        "control_rate_hz": float(meta.control_rate_hz),
        "operator_device": meta.operator_device,
        "joint_names": json.dumps(list(meta.joint_names)),
        "action_names": json.dumps(list(meta.action_names)),
        "start_time": float(meta.start_time),
        "seed": -1 if meta.seed is None else int(meta.seed),
        "initial_state": json.dumps(meta.initial_state),
        "software_version": __version__,
    }


def camera_attrs(info: CameraInfo) -> dict[str, Any]:
    """Attributes of one camera group."""
    return {
        "width": int(info.width),
        "height": int(info.height),
        "K": np.asarray(info.K, dtype=np.float64).reshape(3, 3),
        "T_world_camera": np.asarray(info.T_world_camera, dtype=np.float64).reshape(4, 4),
        "mount": info.mount,
    }


def step_rows(step: Step) -> dict[str, np.ndarray]:
    """Array name -> this step's row, for every step-aligned array."""
    rows: dict[str, np.ndarray] = {
        "timestamp": np.asarray(step.t, dtype=np.float64),
        "observation/joint_pos": np.asarray(step.joint_pos),
        "observation/joint_vel": np.asarray(step.joint_vel),
        "observation/ee_pose": np.asarray(step.ee_pose),
        "action": np.asarray(step.action),
    }
    rows.update({f"device/{k}": np.asarray(v) for k, v in step.device.items()})
    rows.update({f"extras/{k}": np.asarray(v) for k, v in step.extras.items()})
    for cam, frame in step.frames.items():
        rows[f"cameras/{cam}/rgb"] = np.asarray(frame.rgb)
        rows[f"cameras/{cam}/timestamp"] = np.asarray(frame.t, dtype=np.float64)
        rows[f"cameras/{cam}/seq"] = np.asarray(frame.seq, dtype=np.int64)
        depth = frame_depth(frame)
        if depth is not None:
            rows[f"cameras/{cam}/depth"] = np.asarray(depth)
    return rows


def _rows_text(name: str, selection: Any) -> str:
    """" at step 7", " at frames 0-63" or "" for a read of rows `selection` of array `name`."""
    if not isinstance(selection, slice) or selection.start is None or selection.stop is None:
        return ""
    unit = "frame" if is_frame_array(name) else "step"
    if selection.stop - selection.start == 1:
        return f" at {unit} {selection.start}"
    return f" at {unit}s {selection.start}-{selection.stop - 1}"


def frame_depth(frame: CameraFrame) -> np.ndarray | None:
    """The (H, W) depth image of a DepthFrame that carries one, else None."""
    return frame.depth if isinstance(frame, DepthFrame) else None


def depth_scales(step: Step) -> dict[str, float]:
    """Camera name -> metres per depth unit, for the cameras whose frame carries depth."""
    return {
        cam: float(frame.depth_scale_m)
        for cam, frame in step.frames.items()
        if isinstance(frame, DepthFrame) and frame.depth is not None
    }


def is_image(name: str) -> bool:
    """True for camera frame arrays (colour, JPEG and depth), which are stored one frame per chunk."""
    return name.startswith("cameras/") and name.endswith(("/rgb", "/rgb_jpeg", "/depth"))


def is_depth(name: str) -> bool:
    """True for camera depth arrays, (F, H, W) uint16."""
    return name.startswith("cameras/") and name.endswith("/depth")


def is_jpeg(name: str) -> bool:
    """True for JPEG frame arrays, (F,) variable-length uint8 byte strings."""
    return name.startswith("cameras/") and name.endswith("/rgb_jpeg")


def is_frame_array(name: str) -> bool:
    """True for a camera's frame arrays, whose axis 0 counts distinct frames rather than steps."""
    return name.startswith("cameras/") and name.rsplit("/", 1)[-1] in FRAME_ARRAYS


def camera_of(name: str) -> str:
    """The camera of an array named cameras/<cam>/..."""
    return name.split("/")[1]


def jpeg_crc(data: bytes | np.ndarray) -> np.uint32:
    """CRC-32 of a stored JPEG file (stored next to it: HDF5 has no checksum filter for variable-length data)."""
    return np.uint32(zlib.crc32(data.tobytes() if isinstance(data, np.ndarray) else data))


def rows_per_chunk(row: np.ndarray) -> int:
    """Chunk length along axis 0 for rows like `row`: one frame per image chunk, up to 1 MiB otherwise."""
    return int(np.clip(MAX_CHUNK_BYTES // max(row.nbytes, 1), 1, ROW_BLOCK))


def _expected_shapes(meta: EpisodeMeta) -> dict[str, tuple[int, ...]]:
    """Row shapes that the episode's metadata fixes (empty name lists fix nothing)."""
    shapes: dict[str, tuple[int, ...]] = {"observation/ee_pose": (7,)}
    if meta.joint_names:
        shapes["observation/joint_pos"] = shapes["observation/joint_vel"] = (len(meta.joint_names),)
    if meta.action_names:
        shapes["action"] = (len(meta.action_names),)
    for cam, info in meta.cameras.items():
        shapes[f"cameras/{cam}/rgb"] = (int(info.height), int(info.width), 3)
    return shapes


def _check_names(path: Path, step: Step) -> None:
    """Device, extras and camera names become array names: non-empty, without '/', not '.'."""
    for kind, names in (("device", step.device), ("extras", step.extras), ("camera", step.frames)):
        bad = [name for name in names if not name or "/" in name or name.startswith((".", "__"))]
        if bad:
            raise fail(
                path, f"invalid {kind} names {bad}", "use non-empty names without '/', not starting with '.' or '__'"
            )


def check_first_step(path: Path, meta: EpisodeMeta, step: Step, rows: Mapping[str, np.ndarray]) -> None:
    """Check the first step against the metadata: names, cameras, shapes and dtypes."""
    _check_names(path, step)
    cams = {name.split("/")[1] for name in rows if name.startswith("cameras/")}
    if cams != set(meta.cameras):
        raise fail(
            path,
            f"the step has frames from cameras {sorted(cams)} but EpisodeMeta.cameras lists "
            f"{sorted(meta.cameras)}",
            "give every step one frame from each camera in EpisodeMeta.cameras",
        )
    for name, row in rows.items():
        if row.dtype.kind not in "biuf":
            raise fail(path, f"{name} has dtype {row.dtype}", "store numbers or booleans only")
    for name, shape in _expected_shapes(meta).items():
        if rows[name].shape != shape:
            raise fail(path, f"{name} has shape {rows[name].shape} but the metadata implies {shape}")
    for cam in cams:
        if rows[f"cameras/{cam}/rgb"].dtype != np.uint8:
            raise fail(path, f"camera {cam!r} frames are {rows[f'cameras/{cam}/rgb'].dtype}", "pass uint8 RGB")
    _check_depth(path, meta, step, rows)


def _check_depth(path: Path, meta: EpisodeMeta, step: Step, rows: Mapping[str, np.ndarray]) -> None:
    """Depth images: (H, W) uint16 on the colour image's grid, with a positive scale."""
    for cam, scale in depth_scales(step).items():
        depth = rows[f"cameras/{cam}/depth"]
        info = meta.cameras[cam]
        if depth.shape != (info.height, info.width) or depth.dtype != np.uint16:
            raise fail(
                path,
                f"camera {cam!r} depth is {depth.dtype} {depth.shape}",
                f"pass uint16 depth of shape {(info.height, info.width)}, registered to the colour image",
            )
        if not scale > 0:
            raise fail(path, f"camera {cam!r} depth has depth_scale_m {scale}", "pass the metres per depth unit")


def empty_rows(meta: EpisodeMeta) -> dict[str, np.ndarray]:
    """Rows that give a zero-step episode the required arrays with their metadata shapes."""
    rows = {"timestamp": np.zeros((), np.float64), "observation/ee_pose": np.zeros(7)}
    rows["observation/joint_pos"] = rows["observation/joint_vel"] = np.zeros(len(meta.joint_names))
    rows["action"] = np.zeros(len(meta.action_names))
    for cam, info in meta.cameras.items():
        rows[f"cameras/{cam}/rgb"] = np.zeros((info.height, info.width, 3), np.uint8)
        rows[f"cameras/{cam}/timestamp"] = np.zeros((), np.float64)
        rows[f"cameras/{cam}/seq"] = np.zeros((), np.int64)
    return rows


def to_attr(path: Path, key: str, value: Any) -> Any:
    """A value every backend can store as an attribute, or EpisodeError."""
    if isinstance(value, (str, bool, int, float, np.generic)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    raise fail(path, f"attribute {key!r} has type {type(value).__name__}", "pass str, bool, int, float or arrays")


def decode_attr(value: Any) -> Any:
    """An attribute as a plain Python value (str for bytes, int/float/bool for numpy scalars)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


# -------------------------------------------------------------------------------------------- writing


class EpisodeWriter(abc.ABC):
    """Writes one episode incrementally to `<path>.partial` and renames it to `path` at close.

    Lifecycle: construct (touches no file) -> open() (or the first append) -> append(step) per tick ->
    close(success) or discard(). Also a context manager: leaving the block normally closes with success
    unknown unless close() was called; leaving it on an exception discards the recording.

    Every `flush_interval_s` (checked at each append) the rows so far and their count `num_steps` reach the
    operating system, so a killed process loses at most that interval (recorder.repair recovers the rest).
    A camera frame is stored once: a frame whose source counter `seq` (>= 0) and time equal the previous
    step's of the same camera adds no frame row, its step's `frame_index` names the stored one.

    A full disk stops the recording before the storage library sees it: when less than `min_free_bytes`
    plus four steps' raw size is free, or the backend cannot reserve room for the next steps (the HDF5
    writer keeps the file's disk space allocated ahead of its writes, so a disk that someone else fills
    stops it the same way), append() flushes and raises EpisodeError ("disk full ..."), and every later
    append() does too, while close() still finishes the episode (with what was recorded) in the space left.
    A failure of the storage itself (an I/O error) raises EpisodeError and leaves the writer failed: the
    partial episode stays on disk as it was at the last flush, and every later call raises the same error.

    Args:
        path: Final name, e.g. episodes/episode_000003.h5.
        meta: Attributes known at the start.
        flush_interval_s: Longest time between flushes [s].
        clock: Monotonic clock [s] (inject one in tests).
        min_free_bytes: Free space a recording leaves on the disk [bytes], at most a MIN_FREE_SHARE-th of the
            disk; 0 turns the check off.
        image_codec: "lossless" (the backend's lossless compressor) or "jpeg" (lossy, needs
            `pip install 'teleop[jpeg]'`); depth is always lossless.
        jpeg_quality: JPEG quality, 1..100, for image_codec="jpeg".
        lock: The episode's lock (recorder.lock), already held; None: open() takes it, and fails when another
            process holds it. It is released (its file removed) when the episode is closed, discarded or fails.
    """

    suffix: ClassVar[str]
    row_block: ClassVar[int] = ROW_BLOCK
    frame_block: ClassVar[int] = ROW_BLOCK
    storage_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError,)

    def __init__(
        self, path: Path, meta: EpisodeMeta, flush_interval_s: float = FLUSH_INTERVAL_S, clock: Clock = time.monotonic,
        min_free_bytes: int = MIN_FREE_BYTES, image_codec: str = "lossless", jpeg_quality: int = jpeg.DEFAULT_QUALITY,
        lock: EpisodeLock | None = None,
    ) -> None:
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self._lock = lock if lock is not None else EpisodeLock(self.path)
        self.meta = meta
        self.flush_interval_s = float(flush_interval_s)
        self.clock = clock
        self.min_free_bytes = int(min_free_bytes)
        if image_codec not in IMAGE_CODECS:
            raise UnknownNameError("image codec", image_codec, list(IMAGE_CODECS))
        self.image_codec = image_codec
        self.jpeg_quality = jpeg.check_quality(jpeg_quality)
        if image_codec == "jpeg":
            jpeg.pillow()  # a missing Pillow fails here, before anything is recorded
        self._row_bytes = 0
        self._out_of_space: EpisodeError | None = None
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, np.dtype] = {}
        self._stored_arrays: list[str] = []
        self._num_steps = 0
        self._capacity = 0
        self._frames: dict[str, int] = {}  # camera -> distinct frames stored
        self._frame_capacity: dict[str, int] = {}
        self._first_t: float | None = None
        self._last_t: float | None = None
        self._last_frames: dict[str, tuple[int, float]] = {}
        self._depth_scales: dict[str, float] = {}
        self._last_flush = 0.0
        self._opened = False
        self._finished = False
        self._failure: EpisodeError | None = None

    # ---- storage, one subclass per backend

    @abc.abstractmethod
    def _create_storage(self) -> None:
        """Create the partial episode, write the metadata attributes and the camera groups with
        `camera_group_attrs`."""

    @abc.abstractmethod
    def _create_arrays(self, rows: Mapping[str, np.ndarray]) -> None:
        """Create one empty, growable array per row name, for rows like these; JPEG arrays (is_jpeg) hold
        variable-length uint8 rows (their template row is empty)."""

    def _add_group_attrs(self, group: str, attrs: Mapping[str, Any]) -> None:
        """Add attributes to an existing group (a camera's depth scale), before the arrays are created."""
        raise fail(self.partial, f"the {type(self).__name__} backend cannot store attributes of {group}",
                   "record without depth, or use the hdf5 or zarr format")

    @abc.abstractmethod
    def _grow(self, names: Collection[str], rows: int) -> None:
        """Make the named arrays `rows` long."""

    @abc.abstractmethod
    def _write_step(self, i: int, rows: Mapping[str, np.ndarray]) -> None:
        """Store row i of every step-aligned array."""

    @abc.abstractmethod
    def _write_frame(self, j: int, rows: Mapping[str, np.ndarray]) -> None:
        """Store row j of one camera's frame arrays (written before the step rows that refer to it)."""

    @abc.abstractmethod
    def _flush_storage(self, num_steps: int) -> None:
        """Write everything buffered and `num_steps` to the disk."""

    @abc.abstractmethod
    def _finish(self, lengths: Mapping[str, int], attrs: Mapping[str, Any]) -> None:
        """Trim every array to its length in `lengths`, write `attrs`, make the partial durable and close it."""

    @abc.abstractmethod
    def _close_storage(self) -> None:
        """Release the open partial without finishing it; must not raise."""

    def camera_group_attrs(self, info: CameraInfo) -> dict[str, Any]:
        """Attributes of a camera group: the camera's, and how its colour frames are stored."""
        attrs = {**camera_attrs(info), "image_codec": self.image_codec}
        if self.image_codec == "jpeg":
            attrs["jpeg_quality"] = self.jpeg_quality
        return attrs

    # ---- public API

    @property
    def num_steps(self) -> int:
        """Steps appended so far."""
        return self._num_steps

    @property
    def is_open(self) -> bool:
        """True between open() and close() / discard()."""
        return self._opened and not self._finished

    @property
    def failed(self) -> bool:
        """True once the storage failed (disk full, I/O error); the partial episode is then kept."""
        return self._failure is not None

    @property
    def failure(self) -> EpisodeError | None:
        """The storage failure, None while the storage works."""
        return self._failure

    def open(self: W) -> W:
        """Create `<path>.partial` and write the metadata attributes; a no-op when already open."""
        self._ensure_open()
        return self

    def append(self, step: Step) -> None:
        """Write one step (and the camera frames that are new); opens the episode on the first call.

        Raises:
            EpisodeError: The step's arrays or shapes differ from the first step's, the writer is closed, or
                the storage failed.
        """
        self._ensure_open()
        if self._out_of_space is not None:
            raise self._out_of_space
        rows = step_rows(step)
        if not self._shapes:
            check_first_step(self.partial, self.meta, step, rows)
            self._row_bytes = sum(row.nbytes for row in rows.values())
            self._check_space()
            self._depth_scales = depth_scales(step)
            for cam, scale in self._depth_scales.items():
                self._storage(self._add_group_attrs, f"cameras/{cam}", {DEPTH_SCALE_ATTR: scale})
            self._create_layout(rows)
        else:
            self._check_layout(rows)
            self._check_depth_scales(step)
            self._check_space()
        for cam, frame in step.frames.items():
            if frame.seq < 0 or self._last_frames.get(cam) != (frame.seq, frame.t):
                self._store_frame(cam, rows)
            rows[f"cameras/{cam}/frame_index"] = np.asarray(self._frames[cam] - 1, dtype=np.int64)
        if self._num_steps == self._capacity:
            self._storage(self._grow, self._step_arrays(), self._capacity + self.row_block)
            self._capacity += self.row_block
        self._storage(self._write_step, self._num_steps, {n: r for n, r in rows.items() if not is_frame_array(n)})
        self._num_steps += 1
        self._last_frames = {cam: (frame.seq, frame.t) for cam, frame in step.frames.items()}
        self._first_t = step.t if self._first_t is None else self._first_t
        self._last_t = step.t
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Flush when flush_interval_s has passed since the last flush."""
        if self.is_open and self.clock() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the rows so far and their count to the disk; a no-op before open()."""
        if not self.is_open:
            return
        self._raise_if_failed()
        self._storage(self._flush_storage, self._num_steps)
        self._last_flush = self.clock()

    def close(self, success: bool | None = None, attrs: Mapping[str, Any] | None = None) -> Path:
        """Finish the episode: write the closing attributes, trim, fsync, rename to `path`.

        Args:
            success: Task outcome; None when unknown (stored as -1).
            attrs: Extra root attributes (e.g. achieved control rate, late ticks): str, bool, int, float
                or numeric arrays; they may not replace the format's own attributes.

        Returns:
            The final path. A second call is a no-op that returns it again.
        """
        if self._finished and self._failure is None:
            return self.path
        self._raise_if_failed()
        extra = self._check_extra_attrs(attrs or {})
        self._ensure_open()
        if not self._shapes:
            self._create_layout(empty_rows(self.meta))
        lengths = {
            name: self._frames[camera_of(name)] if is_frame_array(name) else self._num_steps
            for name in self._stored_arrays
        }
        self._storage(self._finish, lengths, {**self._close_attrs(success), **extra})
        self._finished = True
        if self.path.exists():  # created by someone else while this episode was recorded
            raise fail(self.path, f"already exists; this episode is kept finished as {self.partial}", "rename it")
        self._storage(os.replace, self.partial, self.path)
        fsync_path(self.path.parent)
        self._lock.release()
        return self.path

    def discard(self) -> None:
        """Close and delete the partial episode; a no-op after close() or a first discard().

        After a storage failure the partial episode is kept (the error said so); delete it by hand.
        """
        if self.is_open:
            self._close_storage()
            if self._failure is None:
                remove_episode_path(self.partial)
        self._finished = True
        self._lock.release()

    def __enter__(self: W) -> W:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    # ---- shared mechanics

    def _ensure_open(self) -> None:
        """Create the partial episode on the first call."""
        self._raise_if_failed()
        if self._finished:
            raise fail(self.path, "this writer was already closed", "make a new writer")
        if self._opened:
            return
        if not self.path.parent.is_dir():
            raise fail(self.path, f"the directory {self.path.parent} does not exist", "create it first")
        if not self._lock.acquire():
            raise fail(self.path, "is being recorded by another process", "record to another name")
        try:
            self._check_free()
        except EpisodeError:
            self._lock.release()
            raise
        self._opened = True
        try:
            self._create_storage()
        except self.storage_errors as exc:
            self._close_storage()
            self._lock.release()
            self._finished = True
            with contextlib.suppress(OSError):
                remove_episode_path(self.partial)  # it holds no step yet
            problem = "disk full" if is_disk_full(exc) else "cannot create the episode"
            raise fail(
                self.partial,
                f"{problem} ({exc}); {free_space_text(self.path.parent)} on {self.path.parent}",
                "earlier episodes are intact; free some space or record to another disk",
            ) from exc
        self._last_flush = self.clock()

    def _create_layout(self, rows: Mapping[str, np.ndarray]) -> None:
        """Remember the first step's row shapes and create the stored arrays: for every camera its
        frame_index, and its colour frames as given (lossless) or as JPEG byte strings with their CRC-32."""
        self._shapes = {name: row.shape for name, row in rows.items()}
        self._dtypes = {name: row.dtype for name, row in rows.items()}
        arrays = {name: row for name, row in rows.items() if not name.endswith("/rgb")}
        for cam in self.meta.cameras:
            arrays[f"cameras/{cam}/frame_index"] = np.zeros((), np.int64)
            if self.image_codec == "jpeg":
                arrays[f"cameras/{cam}/rgb_jpeg"] = np.zeros(0, np.uint8)
                arrays[f"cameras/{cam}/rgb_jpeg_crc32"] = np.zeros((), np.uint32)
            else:
                arrays[f"cameras/{cam}/rgb"] = rows[f"cameras/{cam}/rgb"]
            self._frames[cam] = self._frame_capacity[cam] = 0
        self._storage(self._create_arrays, arrays)
        self._stored_arrays = list(arrays)

    def _step_arrays(self) -> list[str]:
        return [name for name in self._stored_arrays if not is_frame_array(name)]

    def _store_frame(self, cam: str, rows: Mapping[str, np.ndarray]) -> None:
        """Encode a camera's new frame and store it as that camera's next frame row."""
        prefix = f"cameras/{cam}/"
        frame: dict[str, np.ndarray] = {}
        rgb = rows[prefix + "rgb"]
        if self.image_codec == "jpeg":
            data = jpeg.encode_jpeg(rgb, self.jpeg_quality)
            frame[prefix + "rgb_jpeg"] = np.frombuffer(data, np.uint8)
            frame[prefix + "rgb_jpeg_crc32"] = np.asarray(jpeg_crc(data))
        else:
            frame[prefix + "rgb"] = rgb
        if prefix + "depth" in rows:
            frame[prefix + "depth"] = rows[prefix + "depth"]
        j = self._frames[cam]
        if j == self._frame_capacity[cam]:
            self._frame_capacity[cam] += self.frame_block
            names = [name for name in self._stored_arrays if name.startswith(prefix) and is_frame_array(name)]
            self._storage(self._grow, names, self._frame_capacity[cam])
        self._storage(self._write_frame, j, frame)
        self._frames[cam] = j + 1

    def _check_free(self) -> None:
        """Refuse to overwrite an episode or a recording in progress."""
        for p in (self.path, self.partial):
            if p.exists():
                raise fail(p, "already exists", "record to a new name (recorder.backend.next_episode_path)")

    def _check_space(self) -> None:
        """Stop the recording, flushed and still closable, while the disk has room for finishing it: the
        free space is above the reserve (min_free_bytes, at most a MIN_FREE_SHARE-th of the disk), and the
        backend could reserve room for the next steps (`_reserve_room`)."""
        directory = self.path.parent
        if self.min_free_bytes > 0:
            usage = shutil.disk_usage(directory)
            reserve = min(self.min_free_bytes, usage.total // MIN_FREE_SHARE) + 4 * self._row_bytes
            if usage.free < reserve:
                self._stop_for_space(f"{usage.free / 1e6:.1f} MB free on {directory}, less than the "
                                     f"{reserve / 1e6:.1f} MB a recording leaves free")
        if not self._storage(self._reserve_room, 4 * self._row_bytes):
            self._stop_for_space(f"no room left on {directory} for the next steps ({free_space_text(directory)})")

    def _stop_for_space(self, why: str) -> None:
        self.flush()
        self._out_of_space = EpisodeError(
            f"disk full while writing {self.partial}: {why}; the {self._num_steps} steps so far are kept in "
            f"{self.partial} and closing the recording finishes them as an episode; earlier episodes are "
            "intact; free some space or record to another disk"
        )
        raise self._out_of_space

    def _reserve_room(self, next_bytes: int) -> bool:
        """Make sure the storage can take `next_bytes` more raw bytes (and finishing the episode) without a
        failed write; False when the disk has no room for them. Backends whose library cannot survive a failed
        write reserve the space ahead (recorder.hdf5)."""
        return True

    def _storage(self, operation: Callable[..., Any], *args: Any) -> Any:
        """Run a storage operation; a storage error makes the writer failed and becomes an EpisodeError."""
        try:
            return operation(*args)
        except self.storage_errors as exc:
            self._failure = self._storage_error(exc)
            self._close_storage()
            self._lock.release()  # what reached the disk can be repaired at once
            raise self._failure from exc

    def _storage_error(self, exc: BaseException) -> EpisodeError:
        directory = self.path.parent
        kept = (
            f"the episode so far is kept as {self.partial} (repair it with `teleop episodes repair "
            f"{directory}`), earlier episodes are intact"
        )
        if is_disk_full(exc):
            return EpisodeError(
                f"disk full while writing {self.partial}: {free_space_text(directory)} on {directory}; {kept}; "
                "free some space or record to another disk"
            )
        return EpisodeError(f"{self.partial}: cannot write the episode ({exc}); {kept}; check the disk")

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _check_layout(self, rows: Mapping[str, np.ndarray]) -> None:
        """Every step must have the first step's arrays, row shapes and dtypes."""
        if rows.keys() != self._shapes.keys():
            missing, extra = sorted(self._shapes.keys() - rows.keys()), sorted(rows.keys() - self._shapes.keys())
            raise fail(
                self.partial,
                f"step {self._num_steps} lacks {missing} and adds {extra} compared with the first step",
                "every step must carry the same device, extras and camera keys",
            )
        for name, row in rows.items():
            if row.shape != self._shapes[name]:
                raise fail(
                    self.partial,
                    f"step {self._num_steps}: {name} has shape {row.shape} but the first step's was "
                    f"{self._shapes[name]}",
                    "every step must have the same shapes",
                )
            if row.dtype != self._dtypes[name] and not np.can_cast(row.dtype, self._dtypes[name], "same_kind"):
                raise fail(
                    self.partial,
                    f"step {self._num_steps}: {name} has dtype {row.dtype} but the first step's was "
                    f"{self._dtypes[name]}",
                    "every step must have the same dtypes",
                )

    def _check_depth_scales(self, step: Step) -> None:
        """Every step's depth must have the first step's scale (the layout check covers its presence)."""
        scales = depth_scales(step)
        if scales != self._depth_scales:
            raise fail(
                self.partial,
                f"step {self._num_steps} has depth scales {scales} but the first step's were {self._depth_scales}",
                "keep each camera's depth_scale_m fixed for the episode",
            )

    def _check_extra_attrs(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        reserved = sorted(set(attrs) & {*META_ATTRS, *CLOSE_ATTRS, integrity.INTEGRITY_ATTR})
        if reserved:
            raise fail(self.partial, f"extra attributes {reserved} would replace the format's own", "rename them")
        return {k: to_attr(self.partial, k, v) for k, v in attrs.items()}

    def _close_attrs(self, success: bool | None) -> dict[str, Any]:
        duration = 0.0 if self._first_t is None or self._last_t is None else self._last_t - self._first_t
        code = SUCCESS_CODES[None if success is None else bool(success)]
        return {"num_steps": self._num_steps, "success": np.int8(code), "duration_s": float(duration)}


# -------------------------------------------------------------------------------------------- reading


class EpisodeReader(abc.ABC):
    """Read-only, lazy access to one finished episode; validates it when it is opened.

    Arrays are read from disk on each access; frames only when asked for. Subclasses open the storage and
    give access to attributes, group members and arrays; validation and the public API live here.

    Raises:
        EpisodeError: The episode is missing, unfinished (.partial), damaged or truncated, of another format,
            lacks required attributes or arrays, or has step-aligned arrays of unequal length.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.name.endswith(PARTIAL_SUFFIX):
            raise fail(
                self.path,
                UNFINISHED,
                f"run `teleop episodes repair {self.path.parent}` to keep what it holds, or delete it",
            )
        self._frame_index: dict[str, np.ndarray] = {}
        self._frame_shape: dict[str, tuple[int, int]] = {}
        self._open()
        try:
            self._validate()
        except BaseException:
            self.close()
            raise

    # ---- storage, one subclass per backend

    @abc.abstractmethod
    def _open(self) -> None:
        """Open the storage; EpisodeError when it is missing or not readable at all."""

    @abc.abstractmethod
    def _root_attrs(self) -> Mapping[str, Any]:
        """The root attributes as stored."""

    @abc.abstractmethod
    def _group_attrs(self, group: str) -> Mapping[str, Any]:
        """The attributes of a group such as "cameras/front"."""

    @abc.abstractmethod
    def _members(self, group: str) -> list[str]:
        """Names of the children of a group such as "device"; [] when the group does not exist."""

    @abc.abstractmethod
    def _length(self, name: str) -> int | None:
        """Length of axis 0 of an array; None when there is no such array."""

    @abc.abstractmethod
    def _read_array(self, name: str, selection: Any) -> np.ndarray:
        """Read (a selection of) an array; may raise the backend's own errors."""

    @abc.abstractmethod
    def _describe(self) -> integrity.Description:
        """Every group's attributes, every array's shape and data type, and the metadata files to checksum."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the storage; safe to call twice."""

    # RuntimeError: HDF5 reports failed metadata checksums so
    damage_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, KeyError, ValueError, TypeError, RuntimeError)

    # ---- validation

    def _validate(self) -> None:
        try:
            self._validate_attrs()
            self._validate_arrays()
            self._validate_integrity()
        except self.damage_errors as exc:
            raise fail(self.path, f"damaged episode ({exc})") from exc

    def _validate_integrity(self) -> None:
        """Compare the metadata with the integrity record sealed at close (recorder.integrity)."""
        record = self._root_attrs().get(integrity.INTEGRITY_ATTR)
        self.sealed = record is not None
        if record is None:
            if self.format_version >= SEALED_VERSION:
                raise fail(self.path, "damaged episode: its integrity record is missing",
                           "restore it from a copy or delete it")
            return
        problems = integrity.damage(record, self._describe())
        if problems:
            raise fail(self.path, "damaged episode: " + "; ".join(problems), "restore it from a copy or delete it")

    def _validate_attrs(self) -> None:
        attrs = self._root_attrs()
        if "format" not in attrs or decode_attr(attrs["format"]) != FORMAT:
            raise fail(self.path, f"not a {FORMAT!r} episode (format attribute is {attrs.get('format')!r})")
        version = self.format_version = int(attrs.get("format_version", -1))
        if version not in READABLE_VERSIONS:
            raise fail(
                self.path,
                f"format_version {version}, this reader reads {list(READABLE_VERSIONS)}",
                "use the software version that wrote it",
            )
        missing = [k for k in META_ATTRS + CLOSE_ATTRS if k not in attrs]
        if missing:
            raise fail(self.path, f"missing attributes {missing}", "the episode is not complete")
        for cam in self.camera_names:
            wanted = CAMERA_ATTRS + ((DEPTH_SCALE_ATTR,) if self.has_depth(cam) else ())
            lacking = [k for k in wanted if k not in self._group_attrs(f"cameras/{cam}")]
            if lacking:
                raise fail(self.path, f"camera {cam!r} lacks attributes {lacking}")
        for key in JSON_ATTRS:
            json.loads(decode_attr(attrs[key]))  # a damaged JSON attribute fails here, not on first use

    def _step_array_names(self) -> list[str]:
        names = list(BASE_DATASETS)
        for group in ("device", "extras"):
            names += [f"{group}/{k}" for k in self._members(group)]
        for cam in self.camera_names:
            names.append(f"cameras/{cam}/timestamp")
            if self._length(f"cameras/{cam}/seq") is not None:  # absent in episodes of earlier versions
                names.append(f"cameras/{cam}/seq")
            if self.format_version >= 2:  # version 1 stored one frame per step
                names.append(f"cameras/{cam}/frame_index")
        return names

    def _frame_array_names(self, cam: str) -> list[str]:
        """A camera's frame arrays: lossless colour or JPEG with its checksums, and depth where recorded."""
        jpeg_names = [f"cameras/{cam}/rgb_jpeg", f"cameras/{cam}/rgb_jpeg_crc32"]
        names = jpeg_names if self.is_jpeg(cam) else [f"cameras/{cam}/rgb"]
        return names + ([f"cameras/{cam}/depth"] if self.has_depth(cam) else [])

    def _validate_arrays(self) -> None:
        n = self.num_steps
        lengths = {name: self._length(name) for name in self._step_array_names()}
        frame_lengths = {cam: {name: self._length(name) for name in self._frame_array_names(cam)}
                         for cam in self.camera_names}
        missing = [name for name, length in lengths.items() if length is None]
        missing += [name for cams in frame_lengths.values() for name, length in cams.items() if length is None]
        if missing:
            raise fail(self.path, f"missing datasets {missing}", "the episode is not complete")
        wrong = {name: length for name, length in lengths.items() if length != n}
        if wrong:
            raise fail(
                self.path,
                f"num_steps is {n} but these datasets have other lengths: {wrong}",
                "the episode was altered or damaged",
            )
        for cam, cam_lengths in frame_lengths.items():
            f = self.num_frames(cam)
            wrong = {name: length for name, length in cam_lengths.items() if length != f}
            if wrong:
                raise fail(self.path, f"camera {cam!r} has {f} frames but these datasets have other lengths: "
                           f"{wrong}", "the episode was altered or damaged")
            # The index is non-decreasing: its ends bound it, so opening takes as long for an hour as for a
            # minute. frame_indices() checks every row when frames are first read.
            if n:
                self._check_frame_index(cam, self._frame_index_ends(cam), f)

    # ---- lifecycle

    def __enter__(self: R) -> R:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- attributes

    @property
    def attrs(self) -> dict[str, Any]:
        """All root attributes, decoded: JSON ones parsed, success as bool | None, seed None if unset."""
        out = {k: decode_attr(v) for k, v in self._root_attrs().items()}
        for key in JSON_ATTRS:
            out[key] = json.loads(out[key])
        out["success"] = {1: True, 0: False}.get(int(out["success"]))
        out["seed"] = None if int(out["seed"]) == -1 else int(out["seed"])
        return out

    @property
    def meta(self) -> EpisodeMeta:
        """The metadata the episode was recorded with."""
        a = self.attrs
        return EpisodeMeta(
            robot=a["robot"],
            task=a["task"],
            instruction=a["instruction"],
            control_rate_hz=float(a["control_rate_hz"]),
            operator_device=a["operator_device"],
            joint_names=tuple(a["joint_names"]),
            action_names=tuple(a["action_names"]),
            cameras={cam: self.camera_info(cam) for cam in self.camera_names},
            start_time=float(a["start_time"]),
            seed=a["seed"],
            initial_state=a["initial_state"],
        )

    @property
    def num_steps(self) -> int:
        """Number of control steps N."""
        return int(self._root_attrs()["num_steps"])

    @property
    def success(self) -> bool | None:
        """Task outcome; None when it was not known."""
        return {1: True, 0: False}.get(int(self._root_attrs()["success"]))

    @property
    def duration_s(self) -> float:
        """Last step time minus first step time [s]."""
        return float(self._root_attrs()["duration_s"])

    # ---- step-aligned arrays

    def _read(self, name: str, selection: Any = ()) -> np.ndarray:
        """Read an array (or a slice of it); a damaged chunk becomes an EpisodeError naming the rows."""
        try:
            return np.asarray(self._read_array(name, selection))
        except self.damage_errors as exc:
            raise fail(
                self.path,
                f"dataset /{name} cannot be read{_rows_text(name, selection)}, the episode is damaged ({exc})",
                "restore it from a copy or delete it",
            ) from exc

    def verify(self, block_rows: int = 256) -> None:
        """Read every stored byte and check it: every step-aligned array, every camera frame (JPEG files
        decoded), every depth image and the frame indices.

        Raises:
            EpisodeError: Damage, naming the array and the first damaged step or frame.
        """
        for name in self._step_array_names():
            self._verify_rows(self._read, name, self.num_steps, block_rows)
        for cam in self.camera_names:
            self.frame_indices(cam)
            readers: list[Callable[[str, slice], np.ndarray]] = [self._read_frames]
            if self.has_depth(cam):
                readers.append(self._read_depths)
            for read in readers:
                self._verify_rows(read, cam, self.num_frames(cam), 16)

    @staticmethod
    def _verify_rows(read: Callable[[str, slice], Any], name: str, length: int, block: int) -> None:
        """Read rows of `name` in blocks; in a damaged block row by row, so the error names the first damaged
        row."""
        for start in range(0, length, block):
            stop = min(start + block, length)
            try:
                read(name, slice(start, stop))
            except EpisodeError:
                for row in range(start, stop):
                    read(name, slice(row, row + 1))
                raise

    @property
    def timestamps(self) -> np.ndarray:
        """Monotonic step times, (N,) [s]."""
        return self._read("timestamp")

    @property
    def joint_pos(self) -> np.ndarray:
        """Measured joint positions, (N, n) [rad] or [m]."""
        return self._read("observation/joint_pos")

    @property
    def joint_vel(self) -> np.ndarray:
        """Measured joint velocities, (N, n) [rad/s] or [m/s]."""
        return self._read("observation/joint_vel")

    @property
    def ee_pose(self) -> np.ndarray:
        """End-effector pose in the robot base, (N, 7): position [m], quaternion wxyz."""
        return self._read("observation/ee_pose")

    @property
    def action(self) -> np.ndarray:
        """Commands sent, (N, A)."""
        return self._read("action")

    @property
    def device_keys(self) -> list[str]:
        """Names of the recorded device fields."""
        return sorted(self._members("device"))

    @property
    def extras_keys(self) -> list[str]:
        """Names of the recorded extras."""
        return sorted(self._members("extras"))

    def device(self, key: str) -> np.ndarray:
        """One device field over the episode, (N, ...)."""
        if key not in self.device_keys:
            raise UnknownNameError("device field", key, self.device_keys)
        return self._read(f"device/{key}")

    def extras(self, key: str) -> np.ndarray:
        """One extra array over the episode, (N, ...)."""
        if key not in self.extras_keys:
            raise UnknownNameError("extras key", key, self.extras_keys)
        return self._read(f"extras/{key}")

    # ---- cameras

    @property
    def camera_names(self) -> list[str]:
        """Names of the recorded cameras."""
        return sorted(self._members("cameras"))

    def _camera(self, cam: str) -> None:
        if cam not in self.camera_names:
            raise UnknownNameError("camera", cam, self.camera_names)

    def camera_info(self, cam: str) -> CameraInfo:
        """Intrinsics and extrinsics of one camera."""
        self._camera(cam)
        a = {k: decode_attr(v) for k, v in self._group_attrs(f"cameras/{cam}").items()}
        return CameraInfo(
            width=int(a["width"]),
            height=int(a["height"]),
            K=np.asarray(a["K"], dtype=np.float64),
            T_world_camera=np.asarray(a["T_world_camera"], dtype=np.float64),
            mount=str(a["mount"]),
        )

    def camera_timestamps(self, cam: str) -> np.ndarray:
        """Monotonic capture time of each frame, (N,) [s]."""
        self._camera(cam)
        return self._read(f"cameras/{cam}/timestamp")

    def camera_seq(self, cam: str) -> np.ndarray:
        """The source's frame counter of each stored frame, (N,) int64; -1 where the source did not count.

        Equal neighbours are the same source frame stored twice; a jump of more than one is a dropped frame.
        Episodes written before the counter was stored give all -1.
        """
        self._camera(cam)
        if self._length(f"cameras/{cam}/seq") is None:
            return np.full(self.num_steps, -1, dtype=np.int64)
        return self._read(f"cameras/{cam}/seq")

    def camera_stats(self, cam: str) -> SyncStats | None:
        """What the steps used from a camera, as the recording counted it (recorder.sync.SyncStats: frames
        used, dropped and repeated, stale steps, the oldest frame's age, the source's state and last error, and
        what its times are); None for an episode recorded without these counts."""
        self._camera(cam)
        try:
            stored = json.loads(str(decode_attr(self._root_attrs()["camera_stats"])))[cam]
        except (KeyError, ValueError, TypeError):
            return None
        known = {f.name for f in fields(SyncStats)}
        return SyncStats(**{key: value for key, value in stored.items() if key in known})

    def is_jpeg(self, cam: str) -> bool:
        """Whether a camera's colour frames are stored as JPEG (lossy) rather than lossless."""
        return self._length(f"cameras/{cam}/rgb_jpeg") is not None

    def num_frames(self, cam: str) -> int:
        """Distinct frames stored for a camera (at most num_steps: a repeated frame is stored once)."""
        self._camera(cam)
        name = f"cameras/{cam}/rgb_jpeg" if self.is_jpeg(cam) else f"cameras/{cam}/rgb"
        return int(self._length(name) or 0)

    def frame_indices(self, cam: str) -> np.ndarray:
        """For every step the row of its frame among the camera's stored frames, (N,) int64, non-decreasing.

        Version 1 episodes stored one frame per step: there it is 0..N-1."""
        self._camera(cam)
        if cam not in self._frame_index:
            name = f"cameras/{cam}/frame_index"
            stored = self._length(name) is not None
            index = self._read(name).astype(np.int64) if stored else np.arange(self.num_steps, dtype=np.int64)
            self._check_frame_index(cam, index, self.num_frames(cam))
            self._frame_index[cam] = index
        return self._frame_index[cam]

    def _frame_index_ends(self, cam: str) -> np.ndarray:
        """The first and the last entry of a camera's frame index (of a non-empty episode)."""
        name, n = f"cameras/{cam}/frame_index", self.num_steps
        if self._length(name) is None:  # version 1: one frame per step
            return np.array([0, n - 1], dtype=np.int64)
        return np.concatenate([self._read(name, slice(0, 1)), self._read(name, slice(n - 1, n))]).astype(np.int64)

    def _check_frame_index(self, cam: str, index: np.ndarray, num_frames: int) -> None:
        if index.size and (index.min() < 0 or index.max() >= num_frames):
            raise fail(self.path, f"cameras/{cam}/frame_index points outside the {num_frames} stored frames",
                       "the episode was altered or damaged")

    def _step_index(self, what: str, cam: str, i: int) -> int:
        n = self.num_steps
        if not -n <= i < n:
            raise IndexError(f"{what} {i} is out of range for {n} steps of camera {cam!r} in {self.path}")
        return int(self.frame_indices(cam)[i % n])

    def _read_frames(self, cam: str, rows: slice) -> np.ndarray:
        """Stored colour frames rows.start..rows.stop-1 of a camera, decoded, (k, H, W, 3) uint8."""
        if not self.is_jpeg(cam):
            return self._read(f"cameras/{cam}/rgb", rows)
        if cam not in self._frame_shape:  # read once: iter_frames decodes frame by frame
            info = self.camera_info(cam)
            self._frame_shape[cam] = (info.height, info.width)
        shape = self._frame_shape[cam]
        data = self._read(f"cameras/{cam}/rgb_jpeg", rows)
        crcs = self._read(f"cameras/{cam}/rgb_jpeg_crc32", rows)
        out = np.empty((len(data), *shape, 3), np.uint8)
        for k, (blob, crc) in enumerate(zip(data, crcs, strict=True)):
            blob = np.frombuffer(blob, np.uint8) if isinstance(blob, bytes) else np.asarray(blob, np.uint8)
            j = rows.start + k
            if jpeg_crc(blob) != crc:
                raise fail(self.path, f"frame {j} of camera {cam!r} fails its CRC-32 check, the episode is damaged",
                           "restore it from a copy or delete it")
            try:
                out[k] = jpeg.decode_jpeg(blob, shape)
            except ValueError as exc:
                raise fail(self.path, f"frame {j} of camera {cam!r}: {exc}", "restore it from a copy") from exc
        return out

    def frame(self, cam: str, i: int) -> np.ndarray:
        """The colour frame of step i of a camera, (H, W, 3) uint8; negative i counts from the end."""
        self._camera(cam)
        j = self._step_index("frame", cam, i)
        return self._read_frames(cam, slice(j, j + 1))[0]

    def frames(self, cam: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The colour frames of steps start..stop-1 of a camera, (stop - start, H, W, 3) uint8; a frame
        that several steps share is read (and decoded) once."""
        return self._expand(cam, start, stop, self._read_frames)

    def _expand(self, cam: str, start: int, stop: int | None,
                read: Callable[[str, slice], np.ndarray]) -> np.ndarray:
        """Rows of a frame array for steps start..stop-1, reading each stored frame once."""
        self._camera(cam)
        index = self.frame_indices(cam)[start:stop]
        if len(index) == 0:
            return read(cam, slice(0, 0))
        lo, hi = int(index.min()), int(index.max()) + 1
        return read(cam, slice(lo, hi))[index - lo]

    def iter_frames(self, cam: str) -> Iterator[np.ndarray]:
        """Yield the colour frames of a camera step by step, (H, W, 3) uint8 each; each stored frame is read
        once."""
        self._camera(cam)
        last, rgb = -1, np.empty(0)
        for j in self.frame_indices(cam):
            if j != last:
                last, rgb = int(j), self._read_frames(cam, slice(int(j), int(j) + 1))[0]
            yield rgb

    def has_depth(self, cam: str) -> bool:
        """Whether a camera was recorded with depth (its frames were DepthFrames)."""
        return self._length(f"cameras/{cam}/depth") is not None

    def _depth_camera(self, cam: str) -> None:
        self._camera(cam)
        if not self.has_depth(cam):
            with_depth = [c for c in self.camera_names if self.has_depth(c)]
            raise fail(self.path, f"camera {cam!r} was recorded without depth",
                       f"cameras with depth: {with_depth}; check has_depth(cam) first")

    def depth_scale_m(self, cam: str) -> float:
        """Metres per depth unit of a camera recorded with depth."""
        self._depth_camera(cam)
        return float(decode_attr(self._group_attrs(f"cameras/{cam}")[DEPTH_SCALE_ATTR]))

    def _read_depths(self, cam: str, rows: slice) -> np.ndarray:
        return self._read(f"cameras/{cam}/depth", rows)

    def camera_depth(self, cam: str, i: int) -> np.ndarray:
        """The depth image of step i of a camera, (H, W) uint16 in units of depth_scale_m(cam), 0 = no
        reading; negative i counts from the end."""
        self._depth_camera(cam)
        j = self._step_index("depth image", cam, i)
        return self._read_depths(cam, slice(j, j + 1))[0]

    def depths(self, cam: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """The depth images of steps start..stop-1 of a camera, (stop - start, H, W) uint16 in units of
        depth_scale_m(cam)."""
        self._depth_camera(cam)
        return self._expand(cam, start, stop, self._read_depths)


# --------------------------------------------------------------------------------------------- repair


class PartialEpisode(abc.ABC):
    """A `.partial` episode left by a recording that stopped, opened for repair (see recorder.repair).

    Attributes:
        path: The partial file or directory.
        flushed_steps: The row count stored with the last flush.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.flushed_steps = 0

    @abc.abstractmethod
    def array_names(self) -> list[str]:
        """Every array of the partial episode (step-aligned and frame arrays)."""

    @abc.abstractmethod
    def length(self, name: str) -> int:
        """Rows allocated in an array (the writer grows arrays by blocks, so this may exceed the steps)."""

    @abc.abstractmethod
    def chunk_rows(self, name: str) -> int:
        """Rows per chunk of an array."""

    @abc.abstractmethod
    def chunk_stored(self, name: str, index: int) -> bool:
        """True when chunk `index` (along axis 0) of an array was written."""

    @abc.abstractmethod
    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows start..stop-1 of an array; may raise the backend's own errors for damaged chunks."""

    @abc.abstractmethod
    def finish(self, lengths: Mapping[str, int], attrs: Mapping[str, Any], target: Path) -> None:
        """Store the leading rows of every array (`lengths`: name -> rows) with the root attributes updated by
        `attrs` as episode `target`, atomically, and remove the partial episode once `target` is durable."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the storage; safe to call twice."""

    read_errors: ClassVar[tuple[type[BaseException], ...]] = (OSError, ValueError, RuntimeError, KeyError)

    def valid_rows(self, name: str, limit: int) -> int:
        """How many leading rows (at most `limit`) of an array were written and read back intact."""
        limit = min(limit, self.length(name))
        step = self.chunk_rows(name)
        for start in range(0, limit, step):
            if not self.chunk_stored(name, start // step):
                return start
            try:
                self.read(name, start, min(start + step, limit))
            except self.read_errors:
                return start
        return limit

    def __enter__(self: P) -> P:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class BackendClasses:
    """What one storage backend module provides."""

    writer: type[EpisodeWriter]
    reader: type[EpisodeReader]
    partial: type[PartialEpisode]


@dataclass(frozen=True)
class Backend:
    """A registered storage backend: its file suffix and the module (imported on first use) that holds it.

    Attributes:
        suffix: Name suffix of a finished episode (".h5").
        module: Module with a `BACKEND: BackendClasses` attribute.
        package, extra: The optional package the module needs and the pip extra that installs it.
    """

    suffix: str
    module: str
    package: str = ""
    extra: str = ""

    def load(self) -> BackendClasses:
        """The backend's classes; MissingDependencyError names the pip extra when its package is missing."""
        if self.package:
            require(self.package, self.extra, f"episodes in {self.suffix} format")
        return importlib.import_module(self.module).BACKEND


BACKENDS: dict[str, Backend] = {
    "hdf5": Backend(".h5", "recorder.hdf5"),
    "zarr": Backend(".zarr", "recorder.zarr_store", package="zarr", extra="zarr"),
}


def backend_named(format: str) -> Backend:
    """The registered backend called `format` ("hdf5", "zarr")."""
    if format not in BACKENDS:
        raise UnknownNameError("episode format", format, list(BACKENDS))
    return BACKENDS[format]


def backend_for(path: Path) -> Backend:
    """The backend that stores episodes named like `path` (a `.partial` suffix is ignored)."""
    name = Path(path).name.removesuffix(PARTIAL_SUFFIX)
    for backend in BACKENDS.values():
        if name.endswith(backend.suffix):
            return backend
    suffixes = ", ".join(b.suffix for b in BACKENDS.values())
    raise fail(Path(path), "not an episode name", f"episodes end in one of {suffixes}")


def check_directory(directory: Path) -> Path:
    """`directory` as a Path; EpisodeError when it does not exist."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EpisodeError(f"{directory}: episode directory does not exist; create it or pick another one")
    return directory


def next_episode_path(directory: Path, format: str = "hdf5") -> Path:
    """The next free name episode_NNNNNN.<suffix>: one past the highest index of any episode or partial, in
    the folder or its trash, or held by a recording's lock.

    Indices count across formats, so an .h5 and a .zarr episode never share a number.

    Raises:
        EpisodeError: The directory does not exist.
        UnknownNameError: No such format.
    """
    suffix = backend_named(format).suffix
    directory = check_directory(directory)
    names = [p.name for p in directory.iterdir()]
    if (directory / TRASH_DIR).is_dir():  # a restored episode must not collide with a newer one
        names += [p.name.split("~")[0] for p in (directory / TRASH_DIR).iterdir()]
    indices = [int(m.group(1)) for name in names if (m := EPISODE_NAME.match(name) or LOCK_NAME.match(name))]
    return directory / f"episode_{max(indices, default=-1) + 1:06d}{suffix}"


def reserve_episode_path(directory: Path, format: str = "hdf5") -> tuple[Path, EpisodeLock]:
    """The next free episode name with its lock held (recorder.lock): a number that another recording holds,
    or whose episode exists, is skipped, so recordings into one folder never collide."""
    while True:
        path = next_episode_path(directory, format)
        lock = EpisodeLock(path)
        if lock.acquire():
            if not any(p.exists() for p in (path, partial_path(path))):
                return path, lock
            lock.release(remove=False)  # taken by an episode that appeared meanwhile


def create_writer(
    path_or_dir: Path, meta: EpisodeMeta, format: str = "hdf5", flush_interval_s: float = FLUSH_INTERVAL_S,
    clock: Clock = time.monotonic, min_free_bytes: int = MIN_FREE_BYTES, image_codec: str = "lossless",
    jpeg_quality: int = jpeg.DEFAULT_QUALITY,
) -> EpisodeWriter:
    """A writer of the given format, for the next free episode name when given a directory.

    See EpisodeWriter for the arguments.

    Raises:
        EpisodeError: A file name whose suffix is not the format's.
        UnknownNameError: No such format.
    """
    backend = backend_named(format)
    classes = backend.load()
    path, lock = Path(path_or_dir), None
    if path.is_dir() and not path.name.endswith(backend.suffix):
        path, lock = reserve_episode_path(path, format)
    elif not path.name.endswith(backend.suffix):
        raise fail(path, f"a {format} episode must be named *{backend.suffix}", "rename it or pick another format")
    return classes.writer(path, meta, flush_interval_s=flush_interval_s, clock=clock, min_free_bytes=min_free_bytes,
                          image_codec=image_codec, jpeg_quality=jpeg_quality, lock=lock)


def open_episode(path: Path) -> EpisodeReader:
    """Open a finished episode with the reader its suffix names (.h5 or .zarr).

    Raises:
        EpisodeError: Not an episode name, unfinished, missing or damaged.
    """
    path = Path(path)
    backend = backend_for(path)
    return backend.load().reader(path)


def open_partial(path: Path) -> PartialEpisode:
    """Open a `.partial` episode for repair.

    Raises:
        EpisodeError: Not a partial episode, or one whose storage cannot be read at all.
    """
    path = Path(path)
    if not path.name.endswith(PARTIAL_SUFFIX):
        raise fail(path, "not an unfinished recording (no .partial suffix)", "only .partial episodes are repaired")
    return backend_for(path).load().partial(path)
