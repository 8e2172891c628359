"""The registry of episode storage backends, and picking one by name or file suffix.

    "hdf5"  one file        episode_000003.h5     recorder.hdf5
    "zarr"  one directory   episode_000003.zarr   recorder.zarr_store (needs `pip install 'teleop[zarr]'`)

Each backend module provides a writer (recorder.writer.EpisodeWriter), a reader (recorder.reader.EpisodeReader)
and a partial-episode opener for repair (recorder.partial.PartialEpisode) as its `BACKEND`. Both write to
`<name>.partial` while recording, flush at least every `flush_interval_s` (storing the step count
`num_steps` with each flush, so a killed recording can be repaired up to its last flush, see recorder.repair)
and rename to `<name>` when closed. `create_writer` and `open_episode` pick the backend; a new backend is one
module with a `BACKEND` entry plus one line in `BACKENDS`.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path

from recorder import jpeg
from recorder.layout import (
    EPISODE_NAME,
    FLUSH_INTERVAL_S,
    MIN_FREE_BYTES,
    PARTIAL_SUFFIX,
    TRASH_DIR,
    Clock,
    fail,
    partial_path,
)
from recorder.lock import LOCK_NAME, EpisodeLock
from recorder.partial import PartialEpisode
from recorder.reader import EpisodeReader
from recorder.step import EpisodeMeta
from recorder.writer import EpisodeWriter
from teleop.deps import require
from teleop.errors import EpisodeError, UnknownNameError


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
    try:
        return classes.writer(path, meta, flush_interval_s=flush_interval_s, clock=clock,
                              min_free_bytes=min_free_bytes, image_codec=image_codec, jpeg_quality=jpeg_quality,
                              lock=lock)
    except BaseException:
        if lock is not None:
            lock.release()  # refused before anything was written: the number is free again
        raise


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
