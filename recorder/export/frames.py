"""Camera frames of an episode, one per step, resized and compressed on a pool of threads.

The calling thread reads (and for JPEG episodes decodes) an episode's frames through its reader while the
pool's threads, one per core, resize and compress the frames read before: zlib, Blosc and Pillow release the
GIL while they work, so the cores work at once. A stored frame that several steps share (a camera slower than
the control loop) is resized and compressed once and its bytes written for each of those steps.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from recorder.reader import EpisodeReader
from teleop.deps import require

Encode = Callable[[np.ndarray], bytes]  # one (H, W, 3) uint8 frame -> the bytes of its chunk
BLOCK_STEPS = 32  # steps read from an episode at a time
BLOCKS_IN_FLIGHT = 2  # blocks handed to the pool and not yet written, at most
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


def _process(frames: list[np.ndarray], size: tuple[int, int], encode: Encode) -> list[tuple[bytes, float, float]]:
    """Resize and compress frames on a pool thread: each one's bytes and the thread's CPU time for each part [s]."""
    out = []
    for rgb in frames:
        t0 = time.thread_time()
        rgb = resize(rgb, size)
        t1 = time.thread_time()
        data = encode(np.ascontiguousarray(rgb))
        out.append((data, t1 - t0, time.thread_time() - t1))
    return out


class InlineExecutor(Executor):
    """An executor that runs each task at once in the calling thread (for one encoder thread: no hand-over)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to whoever asks for the result, as a pool would
            future.set_exception(exc)
        return future


@dataclass
class _Block:
    """A block of steps handed to the pool: its tasks (each a run of distinct frames), and for every step the
    index of its frame among them (-1: the last distinct frame of the block before)."""

    tasks: list[Future[list[tuple[bytes, float, float]]]]
    slots: np.ndarray


class FrameEncoder:
    """Turns an episode's camera frames into one compressed chunk per step, on the threads of `pool`.

    Steps are read BLOCK_STEPS at a time; a block's distinct frames are split into one task per worker, and
    up to BLOCKS_IN_FLIGHT blocks are being encoded while the next one is read.

    Attributes:
        encoded: Distinct frames resized and compressed so far.
        encode_cpu_s, resize_cpu_s: CPU time the pool's threads spent compressing and resizing them [s].
    """

    def __init__(self, pool: Executor, workers: int) -> None:
        self.pool = pool
        self.workers = max(1, workers)
        self.encoded = 0
        self.encode_cpu_s = 0.0
        self.resize_cpu_s = 0.0

    def chunks(self, reader: EpisodeReader, cam: str, size: tuple[int, int], encode: Encode) -> Iterator[bytes]:
        """The compressed frame of every step of camera `cam`, in step order: `encode` of the frame resized
        to size = (height, width)."""
        index = reader.frame_indices(cam)
        queue: deque[_Block] = deque()
        last_row = -1
        last: list[bytes] = []
        for start in range(0, len(index), BLOCK_STEPS):
            rows = index[start:start + BLOCK_STEPS]
            frames = reader.frames(cam, start, start + len(rows))  # each stored frame read (and decoded) once
            new = np.diff(rows, prepend=last_row) != 0
            last_row = int(rows[-1])
            distinct = [frames[k] for k in np.flatnonzero(new)]
            parts = np.array_split(np.arange(len(distinct)), max(1, min(self.workers, len(distinct))))
            tasks = [self.pool.submit(_process, [distinct[k] for k in part], size, encode)
                     for part in parts if len(part)]
            queue.append(_Block(tasks, np.cumsum(new) - 1))
            while len(queue) > BLOCKS_IN_FLIGHT:
                yield from self._collect(queue.popleft(), last)
        while queue:
            yield from self._collect(queue.popleft(), last)

    def _collect(self, block: _Block, last: list[bytes]) -> Iterator[bytes]:
        """The chunks of a block's steps, in order; `last` holds the last distinct chunk of the block before
        (and is updated to this block's)."""
        results = [item for task in block.tasks for item in task.result()]
        for _, resize_s, encode_s in results:
            self.resize_cpu_s += resize_s
            self.encode_cpu_s += encode_s
        self.encoded += len(results)
        chunks = [data for data, _, _ in results]
        for slot in block.slots:
            yield last[-1] if slot < 0 else chunks[slot]
        if chunks:
            last[:] = chunks[-1:]
