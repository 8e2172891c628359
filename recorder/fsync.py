"""Making written files durable (fsync) on a thread of its own, so that an episode writer never waits for the disk.

A killed process loses nothing the operating system already has; fsync is for a power cut, and it can take long:
it waits for the disk, and on a busy disk for everyone's writes before ours. The zarr writer makes ~90 files a
second durable (a file per frame, the small arrays' chunks, their directories) and spent a quarter of its time
in fsync (2.8 ms each on average, measured on the project's VM); the HDF5 writer's one fsync a second took
10 ms on average and up to 100 ms when other processes wrote. On the writer thread that time was lost to
writing: the queue grew, and a kill then lost the queued steps too.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from recorder.layout import fsync_path


def fsync_files(paths: Iterable[Path]) -> None:
    """fsync files, then the directories that list them; a file replaced or removed meanwhile is skipped (its
    directory's fsync covers the rename)."""
    paths = set(paths)
    for path in paths:
        try:
            fsync_path(path)
        except FileNotFoundError:
            pass
    for directory in {path.parent for path in paths}:
        fsync_path(directory)


@dataclass(frozen=True)
class _Batch:
    paths: frozenset[Path]
    fds: tuple[int, ...]


class BackgroundFsync:
    """fsyncs the files handed to it on its own thread, in the order handed over.

    submit() returns at once; wait() returns once everything submitted is durable. An fsync error is raised by
    the next submit() or wait() (in the caller's thread), once. The thread starts with the first submit() and
    ends at close().

    Args:
        name: The thread's name.
    """

    def __init__(self, name: str = "fsync") -> None:
        self.name = name
        self._queue: queue.Queue[_Batch | None] = queue.Queue()  # None ends the thread
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, paths: Iterable[Path] = (), fds: Iterable[int] = ()) -> None:
        """fsync these files (then their directories) and file descriptors on the fsync thread.

        Raises:
            OSError: An earlier fsync failed.
        """
        self._raise()
        batch = _Batch(frozenset(paths), tuple(fds))
        if not batch.paths and not batch.fds:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._queue.put(batch)

    def wait(self) -> None:
        """Until everything submitted is durable.

        Raises:
            OSError: An fsync failed.
        """
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Finish what was submitted and end the thread; errors are dropped (wait() raises them)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                if self._error is None:
                    for fd in batch.fds:
                        os.fsync(fd)
                    fsync_files(batch.paths)
            except OSError as exc:
                self._error = exc
            finally:
                self._queue.task_done()
