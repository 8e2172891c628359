"""Writing an episode incrementally, whatever the backend: the contract and the shared mechanics."""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import numpy as np

from recorder import integrity, jpeg
from recorder.layout import (
    CLOSE_ATTRS,
    DEPTH_SCALE_ATTR,
    FLUSH_INTERVAL_S,
    IMAGE_CODECS,
    META_ATTRS,
    MIN_FREE_BYTES,
    MIN_FREE_SHARE,
    ROW_BLOCK,
    SUCCESS_CODES,
    Clock,
    camera_attrs,
    camera_of,
    check_first_step,
    depth_scales,
    empty_rows,
    fail,
    free_space_text,
    fsync_path,
    is_disk_full,
    is_frame_array,
    jpeg_crc,
    partial_path,
    remove_episode_path,
    step_rows,
    to_attr,
)
from recorder.lock import EpisodeLock
from recorder.step import CameraInfo, EpisodeMeta, Step
from teleop.errors import EpisodeError, UnknownNameError

W = TypeVar("W", bound="EpisodeWriter")




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
