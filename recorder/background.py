"""Episode writing on a thread of its own, so that the control loop only hands each step over."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import queue
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from recorder.step import Step
from recorder.writer import EpisodeWriter
from teleop.errors import EpisodeError

# The writer thread's nice value: 0, the process's own priority. At +10 (as it once was) it disturbed the loop
# less on an idle machine (the loop's p99 lateness 0.7-1.6 ms -> 0.1-0.2 ms), but beside other busy processes a
# +10 thread gets about a tenth of a core, and waits for it while holding the GIL, which the loop then waits
# for. `benchmarks/recording.py --load 2 --skip-peers --seconds 30 --writer-nice 0 10` (2 busy processes on
# 2 cores): at +10 three of the four recordings (hdf5 and zarr, lossless and JPEG) stopped themselves ("the
# disk cannot keep up") within 2.2-7.4 s, and the fourth dropped 135 frames in 489 late ticks (p99 44 ms); at
# 0 all four recorded their 30 s with no frame dropped, 0-4 late ticks and p99 2.3-5.4 ms. Without busy
# processes the writer of today made no difference at either value (p99 0.055-0.18 ms, no late tick).
WRITER_NICE = 0


@dataclass
class _Flush:
    """Asks the writer thread to flush; `done` is set once it has."""

    done: threading.Event = field(default_factory=threading.Event)


class _Stop:
    """Asks the writer thread to write what is queued and end."""


class BackgroundWriter:
    """Runs an episode writer (either backend) on one writer thread; append() only puts the step in a queue.

    The queue holds at most `max_queued_steps` steps. If the disk falls that far behind, append() waits at most
    `put_timeout_s` for room and then raises EpisodeError ("the disk cannot keep up"): the recording stops
    instead of the control loop stalling. The writer thread writes the steps in order, flushes the first step
    at once (a recording killed in its first moments still leaves an episode to repair) and then at least
    every `writer.flush_interval_s`, also while no step arrives. A killed process therefore loses the steps
    since the last flush plus those still queued. An exception on the writer thread (disk full, a step whose
    arrays differ from the first step's) is raised in the caller's thread, as EpisodeError, at the next
    append(), flush() or close().

    Lifecycle: construct (starts nothing) -> open() (or the first append) -> append(step) per tick ->
    close(success, attrs) (writes what is queued, then finishes the episode) or discard(). Steps are not
    copied: their arrays must not change after append() (the session builds new arrays every tick).

    Args:
        writer: The episode writer to drive; only the writer thread touches it until close() or discard().
        max_queued_steps: Queue length [steps]; memory is at most this many steps with their frames.
        put_timeout_s: Longest wait of append() for room in a full queue [s].
        nice: Nice value of the writer thread (Linux); 0 (WRITER_NICE, which says why) leaves it unchanged.
    """

    def __init__(self, writer: EpisodeWriter, max_queued_steps: int = 128, put_timeout_s: float = 0.05,
                 nice: int = WRITER_NICE) -> None:
        if max_queued_steps < 1:
            raise ValueError(f"max_queued_steps must be at least 1, got {max_queued_steps}")
        self.writer = writer
        self.max_queued_steps = int(max_queued_steps)
        self.put_timeout_s = float(put_timeout_s)
        self.nice = int(nice)
        self._queue: queue.Queue[Step | _Flush | _Stop] = queue.Queue(maxsize=self.max_queued_steps)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._error_raised = False
        self._dropping = False
        self._appended = 0
        self._stopped = False

    @property
    def path(self) -> Path:
        """The episode's final name."""
        return self.writer.path

    @property
    def partial(self) -> Path:
        """The episode's name while it is recorded."""
        return self.writer.partial

    @property
    def num_steps(self) -> int:
        """Steps appended so far (queued or written)."""
        return self._appended

    @property
    def queued_steps(self) -> int:
        """Steps waiting for the writer thread."""
        return self._queue.qsize()

    @property
    def failed(self) -> bool:
        """True once the writer thread or the storage failed."""
        return self._error is not None or self.writer.failed

    def open(self) -> BackgroundWriter:
        """Create the partial episode (errors raise here) and start the writer thread; a no-op when open."""
        if self._thread is None:
            self.writer.open()
            self._thread = threading.Thread(target=self._run, name=f"writer {self.writer.path.name}", daemon=True)
            self._thread.start()
        return self

    def append(self, step: Step) -> None:
        """Queue one step for writing; takes microseconds unless the queue is full.

        Raises:
            EpisodeError: The writer thread failed (its error, once), the writer is closed, or the queue stayed
                full for put_timeout_s.
        """
        self._raise_pending()
        if self._stopped:
            raise EpisodeError(f"{self.partial}: append after close() or discard(); start a new recording")
        self.open()
        try:
            self._queue.put(step, timeout=self.put_timeout_s)
        except queue.Full:
            raise EpisodeError(
                f"the disk cannot keep up: {self.max_queued_steps} steps are waiting to be written to "
                f"{self.partial} and none was written for {self.put_timeout_s * 1e3:.0f} ms, so the recording "
                "stops; record to a faster disk, or lower the control rate, the camera size or the number of "
                "cameras"
            ) from None
        self._appended += 1

    def flush(self) -> None:
        """Wait until everything appended so far is written and flushed."""
        self._raise_pending()
        if self._thread is None or self._stopped:
            return
        request = _Flush()
        self._queue.put(request)
        while not request.done.wait(0.1):
            if not self._thread.is_alive():
                break
        self._raise_pending()

    def close(self, success: bool | None = None, attrs: Mapping[str, Any] | None = None) -> Path:
        """Write every queued step, then finish the episode (see EpisodeWriter.close).

        After an error on the writer thread, the steps written before it are finished as an episode marked
        incomplete (success unknown, attribute `error`) where the storage still works.

        Raises:
            EpisodeError: The writer thread's error if it was not raised yet, or finishing failed.
        """
        self._stop_thread()
        exc = self._error or self.writer.failure
        if exc is None:
            return self.writer.close(success, attrs)
        unreported = self._unreported_error() is not None
        if self.writer.failed:
            return self.writer.close()  # raises the storage failure: the partial episode stays as it is
        path = self.writer.close(None, {**(attrs or {}), "incomplete": True, "error": str(exc)})
        if unreported:
            raise _as_episode_error(exc, self.partial) from exc
        return path

    def discard(self) -> None:
        """Drop what is queued and delete the partial episode (kept when the storage failed)."""
        self._dropping = True
        self._stop_thread()
        self.writer.discard()

    def __enter__(self) -> BackgroundWriter:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.discard()
        else:
            self.close()

    # ---- the writer thread

    def _run(self) -> None:
        if self.nice:
            _lower_thread_priority(self.nice)
        poll_s = max(0.01, self.writer.flush_interval_s / 10)
        trimmed = time.monotonic()
        while True:
            if time.monotonic() - trimmed >= RELEASE_INTERVAL_S:
                release_freed_memory()
                trimmed = time.monotonic()
            try:
                item = self._queue.get(timeout=poll_s)
            except queue.Empty:
                self._guarded(self.writer.flush_if_due)
                continue
            if isinstance(item, _Stop):
                return
            if isinstance(item, _Flush):
                self._guarded(self.writer.flush)
                item.done.set()
            elif not self._dropping and self._error is None:
                self._guarded(self.writer.append, item)
                if self.writer.num_steps == 1:
                    self._guarded(self.writer.flush)  # from now on a killed recording leaves an episode

    def _guarded(self, operation: Any, *args: Any) -> None:
        """Run a writer call; its exception is kept for the caller's thread and later steps are dropped."""
        if self._error is not None:
            return
        try:
            operation(*args)
        except BaseException as exc:  # every error must reach the caller's thread, not die with this one
            self._error = exc

    def _stop_thread(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._queue.put(_Stop())
            self._thread.join()

    def _unreported_error(self) -> BaseException | None:
        """The writer thread's error (or the storage failure it is still reporting), once."""
        exc = self._error or self.writer.failure
        if exc is None or self._error_raised:
            return None
        self._error_raised = True
        return exc

    def _raise_pending(self) -> None:
        """Raise the writer thread's error in the caller's thread, once."""
        exc = self._unreported_error()
        if exc is not None:
            raise _as_episode_error(exc, self.partial) from exc


def _as_episode_error(exc: BaseException, partial: Path) -> EpisodeError:
    """An error of the writer thread as an EpisodeError for the caller's thread."""
    if isinstance(exc, EpisodeError):
        return EpisodeError(str(exc))
    return EpisodeError(
        f"{partial}: writing the episode failed ({type(exc).__name__}: {exc}); the episode so far is kept as "
        f"{partial}, earlier episodes are intact"
    )


RELEASE_INTERVAL_S = 1.0


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, None where the C library has none (musl, macOS, Windows)."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except (OSError, TypeError):  # no C library to load by that name
        return None


def release_freed_memory() -> bool:
    """Give the pages of freed memory back to the OS (glibc's malloc_trim); False where it cannot.

    A recording's frames are ~1 MB each. When the writer falls behind, the queued frames take memory that
    the allocator keeps after they are written: without this, each burst raised the resident size for good
    (in steps of 2-6 MB on a loaded 2-core machine); trimmed once a second it returns to the level before the
    burst. Takes ~0.3 ms (3 ms at most measured), on the writer thread, with the GIL released.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _lower_thread_priority(niceness: int) -> None:
    """Give the calling thread a higher nice value, a smaller share of a busy CPU.

    Linux only, where a thread has its own nice value (os.setpriority with the thread's id); elsewhere the id
    would name a process, so nothing is done. Needs no privileges (raising niceness always is allowed; only a
    privileged thread can lower it again).
    """
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
