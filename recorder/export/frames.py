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
from types import ModuleType

import numpy as np

from recorder.reader import EpisodeReader
from teleop.deps import require

Encode = Callable[[np.ndarray], bytes]  # one (H, W, 3) uint8 frame -> the bytes of its chunk
BLOCK_STEPS = 32  # steps read from an episode at a time
IN_FLIGHT = 64  # frames handed to the pool and not yet written, at most


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


def _process(rgb: np.ndarray, size: tuple[int, int], encode: Encode) -> tuple[bytes, float, float]:
    """Resize and compress one frame on a pool thread: its bytes and the thread's CPU time for each part [s]."""
    t0 = time.thread_time()
    rgb = resize(rgb, size)
    t1 = time.thread_time()
    data = encode(np.ascontiguousarray(rgb))
    return data, t1 - t0, time.thread_time() - t1


class FrameEncoder:
    """Turns an episode's camera frames into one compressed chunk per step, on the threads of `pool`.

    Attributes:
        encoded: Distinct frames resized and compressed so far.
        encode_cpu_s, resize_cpu_s: CPU time the pool's threads spent compressing and resizing them [s].
    """

    def __init__(self, pool: Executor) -> None:
        self.pool = pool
        self.encoded = 0
        self.encode_cpu_s = 0.0
        self.resize_cpu_s = 0.0

    def chunks(self, reader: EpisodeReader, cam: str, size: tuple[int, int], encode: Encode) -> Iterator[bytes]:
        """The compressed frame of every step of camera `cam`, in step order: `encode` of the frame resized
        to size = (height, width)."""
        index = reader.frame_indices(cam)
        pending: deque[tuple[Future[tuple[bytes, float, float]], bool]] = deque()
        current: Future[tuple[bytes, float, float]] | None = None
        current_row = -1
        for start in range(0, len(index), BLOCK_STEPS):
            stop = min(start + BLOCK_STEPS, len(index))
            frames = reader.frames(cam, start, stop)  # each stored frame read (and decoded) once
            for k, row in enumerate(index[start:stop]):
                if current is None or row != current_row:
                    current, current_row = self.pool.submit(_process, frames[k], size, encode), int(row)
                    pending.append((current, True))
                else:
                    pending.append((current, False))
            while len(pending) > IN_FLIGHT:
                yield self._collect(*pending.popleft())
        while pending:
            yield self._collect(*pending.popleft())

    def _collect(self, future: Future[tuple[bytes, float, float]], first: bool) -> bytes:
        data, resize_s, encode_s = future.result()
        if first:
            self.encoded += 1
            self.resize_cpu_s += resize_s
            self.encode_cpu_s += encode_s
        return data
