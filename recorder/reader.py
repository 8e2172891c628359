"""Reading a finished episode, whatever the backend: validation on open, lazy arrays and frames."""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import numpy as np

from recorder import integrity, jpeg
from recorder.layout import (
    BASE_DATASETS,
    CAMERA_ATTRS,
    CLOSE_ATTRS,
    DEPTH_SCALE_ATTR,
    FORMAT,
    JSON_ATTRS,
    META_ATTRS,
    PARTIAL_SUFFIX,
    READABLE_VERSIONS,
    SEALED_VERSION,
    UNFINISHED,
    decode_attr,
    fail,
    is_frame_array,
    jpeg_crc,
)
from recorder.step import CameraInfo, EpisodeMeta
from recorder.sync import SyncStats
from teleop.errors import EpisodeError, UnknownNameError

R = TypeVar("R", bound="EpisodeReader")


def _rows_text(name: str, selection: Any) -> str:
    """" at step 7", " at frames 0-63" or "" for a read of rows `selection` of array `name`."""
    if not isinstance(selection, slice) or selection.start is None or selection.stop is None:
        return ""
    unit = "frame" if is_frame_array(name) else "step"
    if selection.stop - selection.start == 1:
        return f" at {unit} {selection.start}"
    return f" at {unit}s {selection.start}-{selection.stop - 1}"





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
