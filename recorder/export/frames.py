"""Camera frames of an episode, one per step, read, resized and compressed (or otherwise prepared for the
format) on a pool of threads.

Each task of the pool takes a block of BLOCK_STEPS steps of one camera: it reads (and for JPEG episodes
decodes) their frames through a reader of its own thread, resizes and compresses each distinct frame; the
calling thread hands out the blocks in order, up to two per thread ahead, and writes the chunks as they come
back. Pillow, zlib and Blosc release the GIL while they work, so the threads work at once on as many cores
(HDF5 reads themselves take turns: h5py lets one thread into the library at a time). A stored frame that
several steps share (a camera slower than the control loop) is resized and compressed once and its bytes
written for each of those steps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from recorder.backend import open_episode
from recorder.reader import EpisodeReader
from teleop.deps import require

Encode = Callable[[np.ndarray], Any]  # one (H, W, 3) uint8 frame -> what is written for it (a chunk's bytes)
BLOCK_STEPS = 32  # steps of one task
BLOCKS_AHEAD = 2  # tasks handed out per thread and not yet written, at most
T = TypeVar("T")


def pillow() -> ModuleType:
    """PIL.Image; MissingDependencyError naming `pip install 'teleop[export]'` when Pillow is missing."""
    return require("PIL.Image", "export", "resizing camera frames for export", package="pillow")


def resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (H, W, 3) uint8 frame resized to size = (height, width) with Pillow's bilinear filter (which
    averages over the source pixels each output pixel covers when it shrinks); unchanged when already that size."""
    if rgb.shape[:2] == tuple(size):
        return rgb
    pil = pillow()
    image = pil.fromarray(np.ascontiguousarray(rgb)).resize((size[1], size[0]), pil.Resampling.BILINEAR)
    return np.asarray(image)


class InlineExecutor(Executor):
    """An executor that runs each task at once in the calling thread (for one encoder thread: no hand-over)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever asks for the result, as a pool would
            future.set_exception(exc)
        return future


@dataclass(frozen=True)
class _Encoded:
    """What one task returns: the chunk of each distinct frame of its block, for every step of the block the
    index of its frame among them (-1: the last distinct frame of the block before), and CPU times [s]."""

    chunks: list[Any]
    slots: np.ndarray
    read_s: float
    resize_s: float
    encode_s: float
    thread: int


class FrameEncoder:
    """Turns an episode's camera frames into one compressed chunk per step, on the threads of `pool`.

    Attributes:
        encoded: Distinct frames resized and compressed so far.
        read_cpu_s, encode_cpu_s, resize_cpu_s: CPU time the pool's threads spent reading (and decoding),
            compressing and resizing frames [s].
        thread_cpu_s: CPU time of each thread's tasks [s], by thread id.
    """

    def __init__(self, pool: Executor, workers: int) -> None:
        self.pool = pool
        self.workers = max(1, workers)
        self.encoded = 0
        self.read_cpu_s = self.encode_cpu_s = self.resize_cpu_s = 0.0
        self.thread_cpu_s: dict[int, float] = {}  # thread -> CPU time of its tasks [s]
        self._readers: dict[tuple[int, Path], EpisodeReader] = {}  # (thread, episode) -> the thread's reader
        self._lock = threading.Lock()

    def chunks(self, reader: EpisodeReader, cam: str, size: tuple[int, int], encode: Encode) -> Iterator[Any]:
        """The compressed frame of every step of camera `cam` of the episode `reader` reads, in step order:
        `encode` of the frame resized to size = (height, width)."""
        self._release(keep=reader.path)  # the tasks of earlier episodes are done: close their readers
        index = reader.frame_indices(cam)
        queue: deque[Future[_Encoded]] = deque()
        last: list[Any] = []
        for start in range(0, len(index), BLOCK_STEPS):
            before = int(index[start - 1]) if start else -1
            queue.append(self.pool.submit(self._encode, reader.path, cam, start, before, size, encode))
            while len(queue) > BLOCKS_AHEAD * self.workers:
                yield from self._collect(queue.popleft(), last)
        while queue:
            yield from self._collect(queue.popleft(), last)

    def close(self) -> None:
        """Close the readers the pool's threads opened."""
        self._release(keep=None)

    def _encode(self, path: Path, cam: str, start: int, before: int, size: tuple[int, int],
                encode: Encode) -> _Encoded:
        """On a pool thread: read a block of steps, resize and compress its distinct frames."""
        t0 = time.thread_time()
        reader = self._reader(path)
        rows = reader.frame_indices(cam)[start:start + BLOCK_STEPS]
        new = np.diff(rows, prepend=before) != 0
        frames = reader.frames(cam, start, start + len(rows))  # each stored frame read (and decoded) once
        read_s = time.thread_time() - t0
        resize_s = encode_s = 0.0
        chunks = []
        for k in np.flatnonzero(new):
            t1 = time.thread_time()
            rgb = resize(frames[k], size)
            t2 = time.thread_time()
            chunks.append(encode(np.ascontiguousarray(rgb)))
            resize_s += t2 - t1
            encode_s += time.thread_time() - t2
        return _Encoded(chunks, np.cumsum(new) - 1, read_s, resize_s, encode_s, threading.get_ident())

    def _collect(self, future: Future[_Encoded], last: list[Any]) -> Iterator[Any]:
        """The chunks of a block's steps, in order; `last` holds the last distinct chunk of the block before
        (and is updated to this block's)."""
        block = future.result()
        self.read_cpu_s += block.read_s
        self.resize_cpu_s += block.resize_s
        self.encode_cpu_s += block.encode_s
        self.encoded += len(block.chunks)
        busy = block.read_s + block.resize_s + block.encode_s
        self.thread_cpu_s[block.thread] = self.thread_cpu_s.get(block.thread, 0.0) + busy
        for slot in block.slots:
            yield last[-1] if slot < 0 else block.chunks[slot]
        if block.chunks:
            last[:] = block.chunks[-1:]

    def _reader(self, path: Path) -> EpisodeReader:
        key = (threading.get_ident(), path)
        with self._lock:
            reader = self._readers.get(key)
        if reader is None:
            reader = open_episode(path)
            with self._lock:
                self._readers[key] = reader
        return reader

    def _release(self, keep: Path | None) -> None:
        with self._lock:
            done = [key for key in self._readers if key[1] != keep]
            readers = [self._readers.pop(key) for key in done]
        for reader in readers:
            reader.close()
