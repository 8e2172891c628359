"""Episode files in HDF5: an incremental, crash-consistent, atomically finalised writer and a lazy reader.

Layout (format "teleop-episode", version 2). Every step-aligned dataset shares axis 0 = N control steps; a
camera's frame datasets share axis 0 = F distinct frames of that camera:

    /timestamp                 (N,)          float64  monotonic step time [s]
    /observation/joint_pos     (N, n)        measured joint positions [rad] or [m]
    /observation/joint_vel     (N, n)        measured joint velocities [rad/s] or [m/s]
    /observation/ee_pose       (N, 7)        end effector in the robot base: position [m], quaternion wxyz
    /action                    (N, A)        command sent each step
    /device/<key>              (N, ...)      the device sample (DeviceSample.to_record())
    /extras/<key>              (N, ...)      other per-step arrays
    /cameras/<cam>/timestamp   (N,)          float64  monotonic capture time of each step's frame [s]
    /cameras/<cam>/seq         (N,)          int64    the source's frame counter (CameraFrame.seq), -1 if none;
                                             absent in files written before it was stored
    /cameras/<cam>/frame_index (N,)          int64    row of each step's frame in the frame datasets below
                                             (non-decreasing; absent in version 1, where F = N)
    /cameras/<cam>/rgb         (F, H, W, 3)  uint8, one frame per chunk, lzf-compressed (image_codec lossless)
    /cameras/<cam>/rgb_jpeg    (F,)          variable-length uint8: one JPEG file per frame (image_codec jpeg)
    /cameras/<cam>/rgb_jpeg_crc32 (F,)       uint32   CRC-32 of each JPEG file (HDF5 refuses Fletcher-32 on
                                             variable-length data)
    /cameras/<cam>/depth       (F, H, W)     uint16   depth registered to rgb, in units of the camera's
                                             depth_scale_m, 0 = no reading; one frame per chunk, byte shuffle +
                                             lzf (lossless); only for cameras whose frames are DepthFrames

Camera groups carry the attributes width, height, K (3, 3), T_world_camera (4, 4), mount, image_codec
("lossless" or "jpeg", with jpeg_quality) and with depth depth_scale_m (metres per depth unit). Root attributes:
format, format_version, robot, task, instruction, control_rate_hz, operator_device, joint_names and
action_names (JSON lists), start_time (Unix time [s]), seed (-1 when not seeded), initial_state (JSON),
software_version; num_steps (rewritten at every flush); written at close: success (int8: 1 succeeded,
0 failed, -1 unknown), duration_s (last step time minus first, 0 for fewer than two steps) and any extra
attributes (a repaired episode has incomplete=True and repaired_from, see recorder.repair).

Every dataset but rgb_jpeg carries a Fletcher-32 checksum per chunk, and every JPEG file its CRC-32, so a
damaged chunk fails on read instead of returning wrong numbers.

Image compression, measured on 224x224 frames rendered by pybullet (table, Panda, tray) and on noisy
synthetic frames, one frame per chunk, cost per frame amortised over 100 frames including close:
none 0.29 ms and 150 656 B; lzf 0.83 ms and 66 527 B (rendered), 1.6 ms and 143 641 B (noisy);
gzip level 1 1.5 ms and 54 090 B (rendered), 3.3 ms and 122 678 B (noisy). lzf keeps the write near 1 ms
inside a 20 Hz loop and halves rendered frames; gzip saves another 18 % at twice the time. At 640x480 lzf
takes 2-4 ms a frame; a frame is stored once however many steps use it (a 30 fps camera in a 100 Hz loop
stores 3 frames per 10 steps). JPEG (recorder.jpeg) is the lossy choice: 0.8 ms and ~29 kB a 640x480 frame.

Depth compression (lossless; `python benchmarks/recording.py --depth-codecs`: 640x480 uint16 depth in mm of a
floor, a wall, a moving box and sphere, noise growing with z^2 from 1 mm at 0.6 m to 10 mm at 2 m, 5 % holes;
one frame per chunk with Fletcher-32, median of 3 runs of 60 frames, raw 614.4 kB): none 0.51 ms write and
614.4 kB; lzf 3.57 ms, 404.0 kB (1.52x); byte shuffle + lzf 4.09 ms, 303.5 kB (2.02x), read 2.04 ms; gzip 1
7.23 ms, 258.4 kB (2.38x); shuffle + gzip 1 7.53 ms, 247.3 kB (2.48x). Shuffle + lzf is the choice: a third
smaller than lzf alone for 15 % more time, and gzip's further 18 % costs 1.8x the time. HDF5 has no zstd
without the hdf5plugin package, which every reader would then need; lzf is h5py's, as for the colour frames.

Crash consistency. An HDF5 file is not crash-consistent in general: the library caches metadata (chunk
indices, dataset extents, attributes) and may write parts of it in any order between flushes, so a process
killed at the wrong moment can leave an index that points at nothing. Files here are therefore written in
SWMR mode (single writer / multiple readers, file format bounds v110): once the datasets exist, HDF5 orders
every metadata write so that the file on disk is consistent at every instant, which is exactly what a
SIGKILL leaves behind. Measured with h5py 3.16 / HDF5 2.0, recording two 120x160 lzf cameras and 22 small
datasets as fast as possible, flushing (with the row count) every second, SIGKILL 1-7 s in: 40 of 40 SWMR
files read back every flushed row exactly. 40 of 40 files in the default mode did too (and 28 of 28 with
fewer datasets), by grace of a metadata cache large enough not to evict between flushes rather than by
design; libver v110 without SWMR left 15 of 15 files unopenable ("file is already open for write": the
superblock's consistency flag needs h5clear). The price of SWMR: a killed partial file opens only in SWMR read
mode (recorder.repair does that); SWMR allows no new attributes, so close() writes the closing attributes after
reopening the file normally (a few ms); a file killed before its first step (datasets not yet created, SWMR
not yet on) cannot be opened, and holds nothing to recover. Finished files are ordinary HDF5 1.10+ files.

A full disk: after a write fails with ENOSPC, HDF5 2.0 cannot close the file cleanly and the process crashes
(a segmentation fault in its exit handler). HDF5 must therefore never see a full disk. The writer stops a
recording while some space is still free (recorder.backend.MIN_FREE_BYTES, at most a 20th of the disk), and,
since another program can fill the disk between two checks, it keeps the file's disk space allocated
(posix_fallocate) ahead of HDF5's writes: the end of HDF5's allocation at the last flush (read from the
superblock) plus the raw bytes written since, the next steps and 1 MiB for metadata and finishing, with at
least 8 MiB of headroom. When no more can be allocated, the recording stops cleanly and close() finishes the
episode inside the space already allocated; the file is then cut back to HDF5's end of allocation. Finished
files are whole HDF5 files; a killed partial file may end in allocated zeros, which HDF5 ignores.

Integrity: Fletcher-32 covers chunks, but HDF5 keeps long attribute lists and variable-length strings in heaps
without checksums; the root attribute `integrity` (recorder.integrity) covers every attribute and every
dataset's shape and data type.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5s

from recorder import integrity
from recorder.backend import BackendClasses
from recorder.fsync import BackgroundFsync
from recorder.layout import (
    FORMAT,
    FORMAT_VERSION,
    PARTIAL_SUFFIX,
    ROW_BLOCK,
    SYNC_INTERVAL_S,
    UNFINISHED,
    decode_attr,
    fail,
    fsync_path,
    is_depth,
    is_disk_full,
    is_image,
    is_jpeg,
    meta_attrs,
    partial_path,
    rows_per_chunk,
)
from recorder.partial import PartialEpisode
from recorder.reader import EpisodeReader as _BaseReader
from recorder.writer import EpisodeWriter as _BaseWriter

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "IMAGE_COMPRESSION",
    "PARTIAL_SUFFIX",
    "UNFINISHED",
    "EpisodeReader",
    "EpisodeWriter",
    "Hdf5EpisodeReader",
    "Hdf5EpisodeWriter",
    "Hdf5PartialEpisode",
    "partial_path",
]

IMAGE_COMPRESSION = "lzf"
DEPTH_FILTERS: dict[str, Any] = {"compression": "lzf", "shuffle": True}  # lossless; see the module docstring
LIBVER = ("v110", "v110")  # SWMR needs the 1.10 format; pinned so files stay readable by HDF5 1.10 - 1.14
# Chunks a dataset being written keeps cached. HDF5 2.0 gives every open dataset an 8 MiB chunk cache (1 MiB
# before), and a dataset written row by row kept each chunk it wrote until its cache was full: up to 8 MiB per
# step array (an episode has 10-25), ~4 MB more a minute through the first ten minutes of a 100 Hz recording.
# Rows are appended in order, so the chunk being filled is all the writer touches again; room for two lets
# the one just filled leave after the next has come in.
WRITE_CHUNK_CACHE_CHUNKS = 2
VLEN_REFERENCE_BYTES = 16  # a variable-length element in a chunk: its length and a global-heap id
# Disk space is allocated ahead of HDF5's writes (see "A full disk" in the module docstring).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
SUPERBLOCK_EOA = slice(28, 36)  # superblock version 2/3: the end of the space HDF5 has allocated [bytes]
ROOM_SLACK = 1 << 20  # metadata written between flushes and when the file is finished [bytes]
MIN_HEADROOM = 8 << 20  # allocated past what is needed, so that allocation is rare [bytes]
NO_FALLOCATE = (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def end_of_allocation(fd: int) -> int:
    """The end of the space HDF5 has allocated in a file (its superblock's end-of-file address) [bytes], as
    of the last flush."""
    head = os.pread(fd, SUPERBLOCK_EOA.stop, 0)
    if head[:8] != HDF5_SIGNATURE or head[8] not in (2, 3):
        raise OSError(errno.EIO, f"not an HDF5 file with a version 2 or 3 superblock ({head[:9]!r})")
    return int.from_bytes(head[SUPERBLOCK_EOA], "little")


def describe(file: h5py.File) -> integrity.Description:
    """Every group's attributes and every dataset's shape and data type (see recorder.integrity)."""
    attrs: dict[str, Any] = {integrity.ROOT: dict(file.attrs)}
    arrays: dict[str, tuple[tuple[int, ...], str]] = {}

    def visit(name: str, obj: h5py.Group | h5py.Dataset) -> None:
        if isinstance(obj, h5py.Dataset):
            arrays[name] = (tuple(obj.shape), str(obj.dtype))
        else:
            attrs[name] = dict(obj.attrs)

    file.visititems(visit)
    return integrity.Description(attrs=attrs, arrays=arrays)


def seal(file: h5py.File) -> None:
    """Store the integrity record of a finished episode open for writing (after its last attribute)."""
    file.attrs[integrity.INTEGRITY_ATTR] = integrity.seal(describe(file))


def _create_dataset(group: h5py.Group, name: str, row: np.ndarray) -> h5py.Dataset:
    """A resizable, chunked, checksummed dataset for rows like `row`; images get one frame per chunk, JPEG
    files one variable-length uint8 row each. Its chunk cache holds only the chunk being filled (see
    WRITE_CHUNK_CACHE_CHUNKS)."""
    if is_jpeg(name):
        return group.create_dataset(
            name, shape=(0,), maxshape=(None,), dtype=h5py.vlen_dtype(np.uint8), chunks=(ROW_BLOCK,),
            **_write_chunk_cache(ROW_BLOCK * VLEN_REFERENCE_BYTES),
        )
    if is_image(name):
        filters = DEPTH_FILTERS if is_depth(name) else {"compression": IMAGE_COMPRESSION}
        return group.create_dataset(
            name,
            shape=(0, *row.shape),
            maxshape=(None, *row.shape),
            dtype=row.dtype,
            chunks=(1, *row.shape),
            fletcher32=True,
            rdcc_nbytes=0,  # a frame is a whole chunk, written once: straight to the filters and the file
            **filters,
        )
    rows = rows_per_chunk(row)
    return group.create_dataset(
        name,
        shape=(0, *row.shape),
        maxshape=(None, *row.shape),
        dtype=row.dtype,
        chunks=(rows, *row.shape),
        fletcher32=True,
        **_write_chunk_cache(rows * row.nbytes),
    )


def _write_chunk_cache(chunk_bytes: int) -> dict[str, Any]:
    """Chunk-cache settings of a dataset written row by row: room for the chunk being filled (rows are
    appended in order, so no other chunk is touched again), the full chunks evicted first."""
    return {"rdcc_nbytes": WRITE_CHUNK_CACHE_CHUNKS * chunk_bytes, "rdcc_nslots": 7, "rdcc_w0": 1.0}


class _RowWriter:
    """Writes rows of a dataset through h5py's low-level API, about 4x faster than `ds[i] = row`.

    A small dataset's rows (not frames: is_image false) are kept in memory until write_pending() writes them
    as one block, at each flush: a write costs ~17 us whatever its length, so at 100 Hz with 14 small
    datasets one write per row took 24 ms of every second, one block per flush (every 0.2 s) 1.2 ms.
    """

    def __init__(self, dataset: h5py.Dataset) -> None:
        self.dataset = dataset
        self.row_shape: tuple[int, ...] = dataset.shape[1:]
        self._memory = h5s.create_simple((1, *self.row_shape))
        self._file_space = dataset.id.get_space()
        self.buffered = not is_image(dataset.name.lstrip("/"))
        self._pending: list[np.ndarray] = []  # rows not yet written, the first one is row `_written`
        self._written = 0

    def resize(self, rows: int) -> None:
        """Grow or trim axis 0 to `rows`."""
        self.dataset.resize(rows, axis=0)
        self._file_space = self.dataset.id.get_space()

    def write(self, i: int, row: np.ndarray) -> None:
        """Write `row` (shape row_shape) at index i of axis 0; rows of a buffered dataset come in order and
        are kept until write_pending()."""
        if self.buffered:
            self._pending.append(row)
            return
        if self.dataset.dtype.kind == "O":  # variable-length: h5py converts the row itself
            self.dataset[i] = row
            return
        self._file_space.select_hyperslab((i, *(0,) * len(self.row_shape)), (1, *self.row_shape))
        data = np.ascontiguousarray(row, dtype=self.dataset.dtype).reshape(1, *self.row_shape)
        self.dataset.id.write(self._memory, self._file_space, data)
        # In SWMR mode HDF5 compresses and writes a frame only when the file is flushed: ~2.5 ms a 640x480
        # frame, so each flush (every 0.2 s) took 20-110 ms while steps queued up. Flushing the dataset
        # here costs the same in all, spread over the frames, and leaves the file's flush ~0 ms.
        self.dataset.id.flush()

    def write_pending(self) -> None:
        """Write the rows kept in memory, as one block."""
        n = len(self._pending)
        if n == 0:
            return
        block = np.ascontiguousarray(np.stack(self._pending), dtype=self.dataset.dtype).reshape(n, *self.row_shape)
        self._file_space.select_hyperslab((self._written, *(0,) * len(self.row_shape)), (n, *self.row_shape))
        self.dataset.id.write(h5s.create_simple(block.shape), self._file_space, block)
        self._written += n
        self._pending.clear()


class Hdf5EpisodeWriter(_BaseWriter):
    """Writes one episode to `<path>.partial` (HDF5, SWMR mode) and renames it to `path` at close.

    See recorder.backend.EpisodeWriter for the lifecycle. Frames are written as they come; the rows of the
    small datasets are kept in memory and written as one block per dataset at each flush. A flush hands
    everything to the operating system (what a killed process keeps) and, at most once a SYNC_INTERVAL_S,
    has it fsynced on another thread (what a power cut keeps; recorder.fsync), so close() has about a second
    of data left to make durable, whatever the episode's length.
    """

    suffix = ".h5"
    storage_errors = (OSError, RuntimeError)  # h5py reports some failed writes as RuntimeError

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._file: h5py.File | None = None
        self._datasets: dict[str, _RowWriter] = {}
        self._last_sync = 0.0
        self._fsync = BackgroundFsync(f"fsync {self.path.name}")
        self._flushed_end = 0  # end of HDF5's allocation at the last flush [bytes]
        self._unflushed = 0  # raw bytes written since [bytes]
        self._peak_unflushed = 0
        self._allocated = 0  # disk space allocated to the file [bytes]; -1: the file system cannot

    def _open_file(self) -> h5py.File:
        if self._file is None:
            raise fail(self.partial, "the episode file is not open")
        return self._file

    def _create_storage(self) -> None:
        file = h5py.File(self.partial, "x", libver=LIBVER)
        self._file = file
        file.attrs.update(meta_attrs(self.meta))
        file.attrs["num_steps"] = 0
        for cam, info in self.meta.cameras.items():
            file.create_group(f"cameras/{cam}").attrs.update(self.camera_group_attrs(info))
        file.flush()
        self._last_sync = self.clock()

    def _add_group_attrs(self, group: str, attrs: Mapping[str, Any]) -> None:
        self._open_file()[group].attrs.update(attrs)  # before SWMR mode, which allows no new attributes

    def _create_arrays(self, rows: Mapping[str, np.ndarray]) -> None:
        file = self._open_file()
        for name, row in rows.items():
            self._datasets[name] = _RowWriter(_create_dataset(file, name, row))
        file.swmr_mode = True  # from here on the file on disk is consistent at every instant
        file.flush()
        self._flushed_end = end_of_allocation(file.id.get_vfd_handle())

    def _grow(self, names: Collection[str], rows: int) -> None:
        for name in names:
            self._datasets[name].resize(rows)

    def _write_step(self, i: int, rows: Mapping[str, np.ndarray]) -> None:
        for name, row in rows.items():
            self._datasets[name].write(i, row)
            self._unflushed += row.nbytes

    def _write_frame(self, j: int, rows: Mapping[str, np.ndarray]) -> None:
        for name, row in rows.items():
            self._datasets[name].write(j, row)
            self._unflushed += row.nbytes

    def _write_pending(self) -> None:
        for dataset in self._datasets.values():
            dataset.write_pending()

    def _flush_storage(self, num_steps: int) -> None:
        file = self._open_file()
        self._write_pending()
        file.attrs.modify("num_steps", num_steps)  # in place: SWMR mode allows no new attributes
        file.flush()
        fd = file.id.get_vfd_handle()
        if self.clock() - self._last_sync >= SYNC_INTERVAL_S:
            self._fsync.submit(fds=[fd])  # on its own thread: the writer goes on (recorder.fsync)
            self._last_sync = self.clock()
        self._flushed_end = end_of_allocation(fd)
        self._peak_unflushed = max(self._peak_unflushed, self._unflushed)
        self._unflushed = 0

    def _reserve_room(self, next_bytes: int) -> bool:
        """Keep the file's disk space allocated ahead of HDF5's writes: the end of its allocation at the last
        flush, plus what was written since (compressed chunks are at most slightly larger than raw), the next
        `next_bytes` and ROOM_SLACK for metadata and finishing. A file system without fallocate is not
        protected (HDF5 then sees a full disk as a failed write)."""
        if self._allocated < 0 or self._file is None:
            return True
        needed = self._flushed_end + self._unflushed + self._unflushed // 16 + next_bytes + ROOM_SLACK
        if needed <= self._allocated:
            return True
        fd = self._file.id.get_vfd_handle()
        for size in (needed + max(MIN_HEADROOM, 4 * self._peak_unflushed), needed):
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno in NO_FALLOCATE:
                    self._allocated = -1
                    return True
                if not is_disk_full(exc):
                    raise
                continue
            self._allocated = size
            return True
        return False

    def _finish(self, lengths: Mapping[str, int], attrs: Mapping[str, Any]) -> None:
        self._write_pending()
        self._fsync.wait()  # before HDF5 closes the file descriptor it fsyncs
        self._fsync.close()
        for name, rows in lengths.items():
            self._datasets[name].resize(rows)
        self._open_file().close()
        self._file = None
        with h5py.File(self.partial, "r+", libver=LIBVER) as file:  # out of SWMR mode: attributes may be added
            file.attrs.update(attrs)
            seal(file)
        with open(self.partial, "r+b") as raw:  # give back the space allocated ahead
            os.ftruncate(raw.fileno(), end_of_allocation(raw.fileno()))
            os.fsync(raw.fileno())

    def _close_storage(self) -> None:
        self._fsync.close()
        if self._file is not None:
            try:
                self._file.close()
            except (OSError, RuntimeError, ValueError):
                pass  # the storage already failed; what reached the disk stays as it is
            self._file = None


class Hdf5EpisodeReader(_BaseReader):
    """Reads a finished `.h5` episode; see recorder.backend.EpisodeReader for the API."""

    def _open(self) -> None:
        if self.path.is_dir():
            raise fail(self.path, "is a directory, not an HDF5 episode", "open it with recorder.backend.open_episode")
        if not self.path.is_file():
            raise fail(self.path, "no such episode file")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise fail(self.path, f"not a readable HDF5 file, truncated or damaged ({exc})") from exc

    def _root_attrs(self) -> Mapping[str, Any]:
        return self._file.attrs

    def _group_attrs(self, group: str) -> Mapping[str, Any]:
        return self._file[group].attrs

    def _members(self, group: str) -> list[str]:
        obj = self._file.get(group)
        return list(obj) if isinstance(obj, h5py.Group) else []

    def _length(self, name: str) -> int | None:
        obj = self._file.get(name)
        if not isinstance(obj, h5py.Dataset):
            return None
        return obj.shape[0] if obj.shape else 0

    def _read_array(self, name: str, selection: Any) -> np.ndarray:
        return self._file[name][selection]

    def _describe(self) -> integrity.Description:
        return describe(self._file)

    def close(self) -> None:
        """Close the file; safe to call twice."""
        if hasattr(self, "_file"):
            self._file.close()


def _open_partial_file(path: Path) -> h5py.File:
    """Open a partial file read-only: in SWMR read mode (how it was written), else normally."""
    try:
        return h5py.File(path, "r", libver=LIBVER, swmr=True)
    except OSError as swmr_error:
        try:
            return h5py.File(path, "r")
        except OSError:
            raise fail(
                path,
                f"the HDF5 file cannot be opened ({swmr_error}); a recording killed before its first step "
                "leaves such a file (it holds no step), and so does damage",
                "nothing in it can be read with h5py; delete it if you do not need it",
            ) from swmr_error


class Hdf5PartialEpisode(PartialEpisode):
    """A `.h5.partial` file opened read-only for repair; finish() copies the good rows to a new file."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        if not self.path.is_file():
            raise fail(self.path, "no such partial episode file")
        self._file = _open_partial_file(self.path)
        try:
            self._check()
        except BaseException:
            self.close()
            raise

    def _check(self) -> None:
        attrs = self._file.attrs
        if decode_attr(attrs.get("format")) != FORMAT:
            raise fail(self.path, f"not a {FORMAT!r} file")
        self.flushed_steps = int(attrs.get("num_steps", 0))
        self._names: list[str] = []
        self._file.visititems(lambda name, obj: self._names.append(name) if isinstance(obj, h5py.Dataset) else None)

    def array_names(self) -> list[str]:
        return list(self._names)

    def length(self, name: str) -> int:
        return int(self._file[name].shape[0])

    def chunk_rows(self, name: str) -> int:
        return int(self._file[name].chunks[0])

    def chunk_stored(self, name: str, index: int) -> bool:
        dataset = self._file[name]
        start = index * dataset.chunks[0]
        return dataset.id.get_chunk_info_by_coord((start, *(0,) * (dataset.ndim - 1))).byte_offset is not None

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._file[name][start:stop])

    def finish(self, lengths: Mapping[str, int], attrs: Mapping[str, Any], target: Path) -> None:
        """Copy every group and dataset (compressed chunks as they are), trim, then rename into place."""
        scratch = target.with_name(target.name + ".repairing")
        scratch.unlink(missing_ok=True)
        try:
            self._copy_to(scratch, lengths, attrs)
        except BaseException:
            scratch.unlink(missing_ok=True)
            raise
        os.replace(scratch, target)
        fsync_path(target.parent)
        self.close()
        self.path.unlink()
        fsync_path(target.parent)

    def _copy_to(self, scratch: Path, lengths: Mapping[str, int], attrs: Mapping[str, Any]) -> None:
        with h5py.File(scratch, "w", libver=LIBVER) as out:
            out.attrs.update(dict(self._file.attrs))
            for name in self._file:
                self._file.copy(self._file[name], out, name=name)
            for name in self._names:
                out[name].resize(lengths[name], axis=0)
            out.attrs.update(attrs)
            seal(out)
        fsync_path(scratch)

    def close(self) -> None:
        if hasattr(self, "_file"):
            self._file.close()


EpisodeWriter = Hdf5EpisodeWriter  # the names callers used before other backends existed
EpisodeReader = Hdf5EpisodeReader

BACKEND = BackendClasses(writer=Hdf5EpisodeWriter, reader=Hdf5EpisodeReader, partial=Hdf5PartialEpisode)
