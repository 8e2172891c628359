"""Episodes as zarr v3 directories: the HDF5 layout (recorder.hdf5) as a tree of groups and arrays.

    episode_000003.zarr/                    (episode_000003.zarr.partial while recording)
        zarr.json                           root group; its attributes are the HDF5 file's root attributes
        timestamp/ observation/* action/ device/* extras/*    step-aligned arrays, (N, ...)
        cameras/<cam>/                      group with the camera attributes (K and T_world_camera as lists)
        cameras/<cam>/timestamp, seq        (N,) float64 capture times [s], int64 source frame counters
        cameras/<cam>/frame_index           (N,) int64 row of each step's frame in the frame arrays below
        cameras/<cam>/rgb                   (F, H, W, 3) uint8, one frame per chunk (image_codec lossless)
        cameras/<cam>/rgb_jpeg              (F,) variable-length bytes, one JPEG file per chunk (image_codec
                                            jpeg; zarr-python's VariableLengthBytes data type, which has no
                                            zarr v3 specification yet), with rgb_jpeg_crc32 (F,) uint32
        cameras/<cam>/depth                 (F, H, W) uint16 depth in units of the group attribute depth_scale_m,
                                            one frame per chunk, Blosc zstd 1 bitshuffle (only with DepthFrames)

Chunk keys use "." (c.<row>.0.0.0), so each array is one flat directory. Every chunk ends in a CRC-32C
checksum, so a damaged or truncated chunk fails on read instead of returning wrong numbers.

Writing: a camera's new frames are encoded and stored as they arrive (a frame is stored once however many
steps use it); the small rows (per step, and the JPEG checksums per frame) are buffered and written at each
flush (every 0.2 s: recorder.backend.FLUSH_INTERVAL_S), followed by the root attribute `num_steps`. The writer
encodes each chunk with its array's codecs itself (_ChunkWriter: no hand-off to zarr's threads, the small
arrays' last chunk rewritten from memory) and, like zarr, writes every file to a temporary name and renames
it, so a killed recording leaves whole files only, and every row below `num_steps` is on disk. Arrays grow by
blocks of rows and are trimmed at close, which then renames the directory.

The small arrays are chunked by 1024 rows (at most 1 MiB a chunk), not by the 64 of the HDF5 backend: every
chunk is a file, and reading them back is what a trainer or an export does with every episode. Measured on
a 30 000-step episode (100 Hz, two cameras, 10 small arrays, a flush every 100 steps): with 64-row chunks
51 589 files, 2.37 s to read the small arrays, a flush 91 ms p50; with 1024-row chunks 45 443 files (nearly
all frames), 0.17 s to read (HDF5: 0.03 s) and a flush 65 ms p50, although the last chunk of each array is
rewritten whole at every flush.

Image compression, measured through zarr 3.1 (Array.__setitem__, one 640x480 frame per chunk, CRC-32C on,
single-threaded Blosc, median of 3 runs of 84 frames, 2 shared cores) on frames rendered by pybullet (Panda,
cube, checker floor; a static and a wrist camera) and on the same frames with camera-like noise (sigma 3
levels); write time and stored size per frame (raw 921.6 kB):

    codec                       rendered            noisy
    none                        1.10 ms  921.6 kB   0.90 ms  921.6 kB
    blosc lz4 5 noshuffle       1.20 ms   40.3 kB   2.04 ms  840.9 kB
    blosc lz4 5 bitshuffle      1.53 ms   77.7 kB   1.72 ms  539.8 kB
    blosc zstd 1 bitshuffle     2.06 ms   44.7 kB   3.73 ms  497.8 kB
    zstd 1                      1.68 ms   23.5 kB   3.21 ms  592.9 kB
    gzip 1                      2.45 ms   30.7 kB  13.95 ms  552.2 kB

zstd level 1 (lossless, the default here) stores rendered frames 1.7-3.3x smaller than every Blosc variant at
about the same write time, and noisy frames within 10 % of the smallest; its 3.2 ms on noisy frames is 20 %
of one core for two 30 fps cameras. Blosc lz4 with bitshuffle is the pick where write time matters more
than size (noisy frames in half the time, rendered ones 3.3x larger). Without `write_empty_chunks` zarr
compares every frame with the fill value first (about 6 ms a frame here), so arrays are created with it on.

Depth compression (lossless; `python benchmarks/recording.py --depth-codecs`: 640x480 uint16 depth in mm with
noise growing with z^2 and 5 % holes, one frame per chunk, CRC-32C on, median of 3 runs of 60 frames; write
time, stored size (raw 614.4 kB) and read time per frame):

    codec                       write     size      ratio   read
    none                        1.96 ms   614.4 kB  1.00    0.73 ms
    zstd 1                      4.19 ms   338.0 kB  1.82    1.59 ms
    zstd 3                      6.17 ms   272.1 kB  2.26    1.75 ms
    blosc zstd 1 noshuffle      5.44 ms   297.6 kB  2.06    2.09 ms
    blosc zstd 1 shuffle        4.00 ms   275.1 kB  2.23    1.57 ms
    blosc zstd 1 bitshuffle     3.30 ms   217.7 kB  2.82    1.44 ms
    blosc lz4 5 shuffle         2.84 ms   333.8 kB  1.84    0.83 ms
    blosc lz4 5 bitshuffle      2.56 ms   248.3 kB  2.47    0.96 ms

Blosc zstd 1 with bitshuffle (the depth codec here) is the smallest and, after lz4, the fastest: the high
bits of smooth depth change slowly, so bit planes compress far better than bytes. Blosc lz4 bitshuffle is
the pick where write time matters more (22 % faster, 14 % larger).
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.core.array_spec import ArrayConfig
from zarr.core.buffer import default_buffer_prototype
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding
from zarr.core.dtype import VariableLengthBytes
from zarr.core.metadata import ArrayV3Metadata
from zarr.errors import UnstableSpecificationWarning, ZarrUserWarning
from zarr.storage import LocalStore

from recorder import integrity
from recorder.backend import BackendClasses
from recorder.fsync import BackgroundFsync
from recorder.layout import (
    FORMAT,
    MAX_CHUNK_BYTES,
    SYNC_INTERVAL_S,
    decode_attr,
    fail,
    fsync_path,
    is_depth,
    is_image,
    is_jpeg,
    meta_attrs,
)
from recorder.partial import PartialEpisode
from recorder.reader import EpisodeReader as _BaseReader
from recorder.writer import EpisodeWriter as _BaseWriter

IMAGE_CODECS = (ZstdCodec(level=1), Crc32cCodec())
DEPTH_CODECS = (BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle"), Crc32cCodec())
DATA_CODECS = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())
CHUNK_KEYS = DefaultChunkKeyEncoding(separator=".")
ZARR_TEMPORARY = re.compile(r".+\.[0-9a-f]{32}\.partial")  # how zarr's LocalStore names a file it is writing
STEP_CHUNK_ROWS = 1024  # rows per chunk file of the small arrays (at most MAX_CHUNK_BYTES a chunk)
ROOT_METADATA = "zarr.json"
VLEN_WARNING = r"The data type \(VariableLengthBytes\(\)\) does not have a Zarr V3 specification"


def step_chunk_rows(row: np.ndarray) -> int:
    """Chunk length of a small array [rows]: long, because every chunk is a file (module docstring)."""
    return int(np.clip(MAX_CHUNK_BYTES // max(row.nbytes, 1), 1, STEP_CHUNK_ROWS))


# zarr warns each time it writes the metadata of a JPEG array; the module docstring states the caveat once.
warnings.filterwarnings("ignore", VLEN_WARNING, UnstableSpecificationWarning)


def _json_value(value: Any) -> Any:
    """An attribute value as JSON: arrays as nested lists, numpy scalars as Python numbers."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in attrs.items()}


def _array_from_json(value: Any) -> Any:
    """Lists back to arrays, as HDF5 returns array attributes."""
    return np.asarray(value) if isinstance(value, list) else value


def _write_file(path: Path, data: Any) -> None:
    """Write a whole file (bytes or a buffer) under a temporary name and rename it, as zarr's LocalStore does:
    a killed process leaves the previous version or the new one, and at worst a temporary file named like
    zarr's (ZARR_TEMPORARY), which repair removes."""
    scratch = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    with open(scratch, "wb") as file:
        file.write(data)
    os.replace(scratch, path)


def _sync_files(paths: set[Path]) -> None:
    """fsync files, then the directories that list them."""
    for path in paths:
        fsync_path(path)
    for directory in {path.parent for path in paths}:
        fsync_path(directory)


def _codecs(name: str) -> tuple[Any, ...]:
    """Compressors (and checksum) of an array: colour frames, depth frames or small rows."""
    if is_depth(name):
        return DEPTH_CODECS
    if is_jpeg(name):
        return (Crc32cCodec(),)  # JPEG files do not compress further
    return IMAGE_CODECS if is_image(name) else DATA_CODECS


def describe(root: zarr.Group, path: Path) -> integrity.Description:
    """Every group's attributes, every array's shape and data type, and every metadata document but the
    root's (which holds the integrity record), read from the files (see recorder.integrity)."""
    attrs: dict[str, Any] = {integrity.ROOT: dict(root.attrs)}
    arrays: dict[str, tuple[tuple[int, ...], str]] = {}
    with warnings.catch_warnings():  # zarr's temporary files are not members
        warnings.filterwarnings("ignore", "Object at .* is not recognized", ZarrUserWarning)
        members = root.members(max_depth=None)
    for name, node in members:
        if isinstance(node, zarr.Array):
            arrays[name] = (tuple(node.shape), str(node.dtype))
        else:
            attrs[name] = dict(node.attrs)
    documents = {f"{name}/{ROOT_METADATA}": (path / name / ROOT_METADATA).read_bytes() for name, _ in members}
    return integrity.Description(attrs=attrs, arrays=arrays, documents=documents)


def seal(root: zarr.Group, path: Path) -> None:
    """Store the integrity record of a finished episode (after its last metadata change)."""
    root.attrs[integrity.INTEGRITY_ATTR] = integrity.seal(describe(root, path))


def _encodes_synchronously(codecs: tuple[Any, ...]) -> bool:
    """True when every codec of an array can encode a chunk without zarr's event loop (zarr >= 3.1.6)."""
    return bool(codecs) and all(hasattr(codec, "_encode_sync") for codec in codecs)


class _ChunkWriter:
    """Stores whole chunks of one array, encoded with the array's own codecs on the calling thread.

    zarr's `array[rows] = data` costs ~0.5-1.5 ms of its own per call beside the encoding, in hand-offs to
    its event-loop thread and worker threads, and reads and decodes the last chunk again to add rows to it.
    On 2 cores beside busy processes each hand-off waits for a CPU, and that made a zarr recording fall
    behind. The chunk files written here are byte for byte the ones zarr writes (the codecs are the array's,
    and the file goes to a temporary name first, as zarr's LocalStore does). With a zarr whose codecs
    cannot encode synchronously (no `_encode_sync`, before 3.1.6) the chunk goes through zarr instead.

    Args:
        array: The array (zarr v3 metadata).
        directory: Its directory.
    """

    def __init__(self, array: zarr.Array, directory: Path) -> None:
        self.array = array
        self.directory = directory
        self.rows = int(array.chunks[0])
        metadata = array.metadata
        self._codecs: tuple[Any, ...] = tuple(metadata.codecs) if isinstance(metadata, ArrayV3Metadata) else ()
        self._direct = _encodes_synchronously(self._codecs)
        self._prototype = default_buffer_prototype()
        config = ArrayConfig.from_dict({"write_empty_chunks": True})
        self._spec = array.metadata.get_chunk_spec((0,) * array.ndim, config, self._prototype)

    def path(self, index: int) -> Path:
        """The file of chunk `index` (along axis 0)."""
        return self.directory / self.array.metadata.encode_chunk_key((index, *(0,) * (self.array.ndim - 1)))

    def write(self, index: int, chunk: np.ndarray, rows: int) -> Path:
        """Store chunk `index`: `chunk` is the whole chunk (chunk shape, the array's dtype), its first `rows`
        rows the array's; the file written."""
        if not self._direct:
            start = index * self.rows
            self.array[start : start + rows] = chunk[:rows]
            return self.path(index)
        data: Any = self._prototype.nd_buffer.from_numpy_array(chunk)
        for codec in self._codecs:
            data = codec._encode_sync(data, self._spec)
        path = self.path(index)
        _write_file(path, data.as_buffer_like())
        return path


class _RowChunks:
    """The small array's rows not yet stored, and the chunk they go to: each store() rewrites that chunk
    from memory (no read of the file), and a chunk is written once more when it fills."""

    def __init__(self, writer: _ChunkWriter) -> None:
        self.writer = writer
        array = writer.array
        self.pending: list[np.ndarray] = []
        self.stored = 0  # rows stored
        self._chunk = np.zeros((writer.rows, *array.shape[1:]), array.dtype)  # holds rows from the last chunk
        self._dtype = array.dtype

    def append(self, row: np.ndarray) -> None:
        self.pending.append(row)

    def store(self) -> list[Path]:
        """Write the pending rows; the files written."""
        if not self.pending:
            return []
        written, per_chunk = [], self.writer.rows
        for row in self.pending:
            k = self.stored % per_chunk
            self._chunk[k] = np.asarray(row, self._dtype)
            self.stored += 1
            if k == per_chunk - 1:  # the chunk is full: written once, then the next one starts
                written.append(self.writer.write(self.stored // per_chunk - 1, self._chunk, per_chunk))
                self._chunk[:] = 0
        self.pending.clear()
        if self.stored % per_chunk:
            written.append(self.writer.write(self.stored // per_chunk, self._chunk, self.stored % per_chunk))
        return written


class ZarrEpisodeWriter(_BaseWriter):
    """Writes one episode to the directory `<path>.partial` (zarr v3) and renames it to `path` at close.

    See recorder.backend.EpisodeWriter for the lifecycle. Zarr creates the arrays and grows them; the chunks
    are written by _ChunkWriter: frames as they come, the rows of the small arrays at each flush. A flush hands
    everything to the operating system (what a killed process keeps) and, at most once a SYNC_INTERVAL_S,
    has the files written since fsynced on another thread (what a power cut keeps; recorder.fsync), so close()
    has about a second of data left to make durable.
    """

    suffix = ".zarr"
    row_block = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._root: zarr.Group | None = None
        self._arrays: dict[str, zarr.Array] = {}
        self._chunks: dict[str, _ChunkWriter] = {}  # frame arrays
        self._rows: dict[str, _RowChunks] = {}  # small arrays
        self._unsynced: set[Path] = set()
        self._last_sync = 0.0
        self._fsync = BackgroundFsync(f"fsync {self.path.name}")

    def _group(self) -> zarr.Group:
        if self._root is None:
            raise fail(self.partial, "the episode directory is not open")
        return self._root

    def _create_storage(self) -> None:
        self.partial.mkdir()
        attrs = _json_attrs({**meta_attrs(self.meta), "num_steps": 0})
        root = zarr.create_group(store=LocalStore(self.partial), zarr_format=3, attributes=attrs)
        self._root = root
        for cam, info in self.meta.cameras.items():
            root.create_group(f"cameras/{cam}", attributes=_json_attrs(self.camera_group_attrs(info)))
        self._unsynced.add(self.partial / ROOT_METADATA)
        self._last_sync = self.clock()

    def _add_group_attrs(self, group: str, attrs: Mapping[str, Any]) -> None:
        node = self._group()[group]
        if not isinstance(node, zarr.Group):
            raise fail(self.partial, f"{group} is not a group")
        node.attrs.update(_json_attrs(attrs))
        self._unsynced.add(self.partial / group / ROOT_METADATA)

    def _create_arrays(self, rows: Mapping[str, np.ndarray]) -> None:
        root = self._group()
        for name, row in rows.items():
            image = is_image(name)
            shape = () if is_jpeg(name) else row.shape
            self._arrays[name] = root.create_array(
                name,
                shape=(0, *shape),
                chunks=(1 if image else step_chunk_rows(row), *shape),
                dtype=VariableLengthBytes() if is_jpeg(name) else row.dtype,
                compressors=_codecs(name),
                fill_value=b"" if is_jpeg(name) else 0,
                chunk_key_encoding=CHUNK_KEYS,
                config={"write_empty_chunks": True},  # skips a full-frame comparison with the fill value
            )
            chunks = _ChunkWriter(self._arrays[name], self.partial / name)
            if image:
                self._chunks[name] = chunks
            else:
                self._rows[name] = _RowChunks(chunks)
            self._unsynced.add(self.partial / name / ROOT_METADATA)

    def _grow(self, names: Collection[str], rows: int) -> None:
        for name in names:
            array = self._arrays[name]
            array.resize((rows, *array.shape[1:]))
            self._unsynced.add(self.partial / name / ROOT_METADATA)

    def _write_step(self, i: int, rows: Mapping[str, np.ndarray]) -> None:
        for name, row in rows.items():
            self._rows[name].append(row)

    def _write_frame(self, j: int, rows: Mapping[str, np.ndarray]) -> None:
        for name, row in rows.items():
            if name in self._rows:
                self._rows[name].append(row)
                continue
            if is_jpeg(name):
                chunk = np.empty(1, dtype=object)
                chunk[0] = row.tobytes()
            else:
                chunk = np.ascontiguousarray(row, dtype=self._arrays[name].dtype)[None]
            self._unsynced.add(self._chunks[name].write(j, chunk, 1))

    def _write_pending(self) -> None:
        """Store the buffered rows of the small arrays."""
        for rows in self._rows.values():
            self._unsynced.update(rows.store())

    def _flush_storage(self, num_steps: int) -> None:
        self._write_pending()
        self._group().attrs["num_steps"] = num_steps  # after the rows it counts
        self._unsynced.add(self.partial / ROOT_METADATA)
        if self.clock() - self._last_sync >= SYNC_INTERVAL_S:
            self._fsync.submit(self._unsynced)  # on its own thread: the writer goes on (recorder.fsync)
            self._unsynced = set()
            self._last_sync = self.clock()

    def _sync(self) -> None:
        """Make everything written durable; returns once it is."""
        self._fsync.submit(self._unsynced)
        self._unsynced = set()
        self._fsync.wait()

    def _finish(self, lengths: Mapping[str, int], attrs: Mapping[str, Any]) -> None:
        self._write_pending()
        for name, array in self._arrays.items():
            array.resize((lengths[name], *array.shape[1:]))
            self._unsynced.add(self.partial / name / ROOT_METADATA)
        self._group().attrs.update(_json_attrs(attrs))
        seal(self._group(), self.partial)
        self._unsynced.add(self.partial / ROOT_METADATA)
        self._sync()
        self._close_storage()

    def _close_storage(self) -> None:
        self._fsync.close()
        self._root = None
        self._arrays, self._chunks, self._rows = {}, {}, {}


def _open_group(path: Path, mode: Literal["r", "r+"]) -> zarr.Group:
    """The root group of an episode directory, or EpisodeError naming what is wrong."""
    if path.is_file():
        raise fail(path, "is a file, not a zarr episode directory", "open .h5 files with recorder.backend.open_episode")
    if not path.is_dir():
        raise fail(path, "no such episode directory")
    if not (path / ROOT_METADATA).is_file():
        raise fail(path, f"{ROOT_METADATA} is missing: not a zarr episode, or a damaged one")
    try:
        return zarr.open_group(LocalStore(path, read_only=mode == "r"), mode=mode, zarr_format=3)
    except (OSError, ValueError, TypeError, KeyError, zarr.errors.BaseZarrError) as exc:
        raise fail(path, f"not a readable zarr v3 episode, damaged ({type(exc).__name__}: {exc})") from exc


class ZarrEpisodeReader(_BaseReader):
    """Reads a finished `.zarr` episode; see recorder.backend.EpisodeReader for the API."""

    damage_errors = (*_BaseReader.damage_errors, zarr.errors.BaseZarrError)

    def _open(self) -> None:
        self._root = _open_group(self.path, "r")
        self._attrs = {key: _array_from_json(value) for key, value in self._root.attrs.items()}
        self._nodes: dict[str, zarr.Array | zarr.Group | None] = {}
        self._children: dict[str, list[str]] = {}
        self._listing: dict[str, set[str]] = {}  # array -> the files of its directory

    def _node(self, name: str) -> zarr.Array | zarr.Group | None:
        if name not in self._nodes:
            try:
                self._nodes[name] = self._root[name]
            except KeyError:
                self._nodes[name] = None
        return self._nodes[name]

    def _root_attrs(self) -> Mapping[str, Any]:
        return self._attrs

    def _group_attrs(self, group: str) -> Mapping[str, Any]:
        node = self._node(group)
        if not isinstance(node, zarr.Group):
            raise KeyError(f"no group {group!r}")
        return {key: _array_from_json(value) for key, value in node.attrs.items()}

    def _members(self, group: str) -> list[str]:
        if group not in self._children:  # listing a directory costs a system call; frame() asks every time
            node = self._node(group)
            self._children[group] = list(node.keys()) if isinstance(node, zarr.Group) else []
        return self._children[group]

    def _length(self, name: str) -> int | None:
        node = self._node(name)
        return int(node.shape[0]) if isinstance(node, zarr.Array) else None

    def _read_array(self, name: str, selection: Any) -> np.ndarray:
        node = self._node(name)
        if not isinstance(node, zarr.Array):
            raise KeyError(f"no array {name!r}")
        chunks = self._chunk_files(name, node, selection)
        try:
            return np.asarray(node[selection])
        except self.damage_errors as exc:
            raise ValueError(f"chunk file {self._damaged_chunk(node, chunks)} is damaged "
                             f"({type(exc).__name__}: {exc})") from exc

    def _damaged_chunk(self, node: zarr.Array, chunks: list[tuple[int, str]]) -> str:
        """The first of `chunks` (index, file) that does not decode; all of them when each does alone."""
        per_chunk = node.chunks[0]
        for index, file in chunks:
            try:
                node[index * per_chunk : (index + 1) * per_chunk]
            except self.damage_errors:
                return file
        return ", ".join(file for _, file in chunks)

    def _chunk_files(self, name: str, node: zarr.Array, selection: Any) -> list[tuple[int, str]]:
        """The chunks (index, file) a read of rows `selection` needs; FileNotFoundError naming the first one
        missing (zarr would read a missing chunk as its fill value)."""
        rows = range(node.shape[0])[selection] if isinstance(selection, slice) else range(node.shape[0])
        if not rows:
            return []
        if name not in self._listing:
            self._listing[name] = set(os.listdir(self.path / name))
        per_chunk = node.chunks[0]
        chunks = []
        for c in range(rows[0] // per_chunk, rows[-1] // per_chunk + 1):
            key = node.metadata.encode_chunk_key((c, *(0,) * (node.ndim - 1)))
            if key not in self._listing[name]:
                raise FileNotFoundError(f"chunk file {name}/{key} is missing")
            chunks.append((c, f"{name}/{key}"))
        return chunks

    def _describe(self) -> integrity.Description:
        return describe(self._root, self.path)

    def close(self) -> None:
        """Nothing to release: zarr keeps no file open between reads."""


class ZarrPartialEpisode(PartialEpisode):
    """A `.zarr.partial` directory opened for repair; finish() trims it in place and renames it."""

    read_errors = (*PartialEpisode.read_errors, zarr.errors.BaseZarrError)

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._root = _open_group(self.path, "r+")
        if decode_attr(self._root.attrs.get("format")) != FORMAT:
            raise fail(self.path, f"not a {FORMAT!r} episode")
        self.flushed_steps = int(np.asarray(self._root.attrs.get("num_steps", 0)))
        with warnings.catch_warnings():  # zarr's temporary files (finish() removes them) are not members
            warnings.filterwarnings("ignore", "Object at .* is not recognized", ZarrUserWarning)
            members = self._root.members(max_depth=None)
        self._arrays = {name: node for name, node in members if isinstance(node, zarr.Array)}

    def array_names(self) -> list[str]:
        return list(self._arrays)

    def length(self, name: str) -> int:
        return int(self._arrays[name].shape[0])

    def chunk_rows(self, name: str) -> int:
        return int(self._arrays[name].chunks[0])

    def chunk_stored(self, name: str, index: int) -> bool:
        array = self._arrays[name]
        return (self.path / name / array.metadata.encode_chunk_key((index, *(0,) * (array.ndim - 1)))).is_file()

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        return np.asarray(self._arrays[name][start:stop])

    def finish(self, lengths: Mapping[str, int], attrs: Mapping[str, Any], target: Path) -> None:
        """Trim every array to its length, update the attributes, fsync the tree and rename it to `target`.

        Files zarr was writing when the recording died (named `<key>.<32 hex digits>.partial`, to be renamed
        over the key once whole) are removed: the key still holds the last whole version.
        """
        for leftover in self.path.rglob("*.partial"):
            if ZARR_TEMPORARY.fullmatch(leftover.name) and leftover.is_file():
                leftover.unlink()
        for name, array in self._arrays.items():
            array.resize((lengths[name], *array.shape[1:]))
        self._root.attrs.update(_json_attrs(attrs))
        seal(self._root, self.path)
        _sync_files({Path(d) / f for d, _, files in os.walk(self.path) for f in files})
        os.replace(self.path, target)
        fsync_path(target.parent)

    def close(self) -> None:
        """Nothing to release."""


BACKEND = BackendClasses(writer=ZarrEpisodeWriter, reader=ZarrEpisodeReader, partial=ZarrPartialEpisode)
