"""Which episodes are being recorded: an OS lock per episode number, held by the recording process.

A recording holds an exclusive `flock` on `.episode_NNNNNN.lock` (hidden, beside the episode) from the moment
it picks its number until its episode is finished or discarded. The kernel releases the lock when the process
dies, however it dies, so:

- repair knows at once whether a `.partial` belongs to a live recording (lock held: leave it) or to a dead one
  (lock free: repair it now), without guessing from modification times;
- two recordings into one folder never pick the same number: a number whose lock is held, or whose episode
  exists, is skipped.

A lock file left by a killed recording is harmless (its lock is free) and is removed when its partial is
repaired. A lock file is only removed by the process that holds its lock, after the episode is in place, so a
process that opened the file a moment before finds, once it holds the lock, that the number is taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path
from types import TracebackType

LOCK_NAME = re.compile(r"^\.episode_(\d+)\.lock$")
_NUMBER = re.compile(r"^episode_(\d+)\.")


def lock_path(episode: Path) -> Path:
    """The lock file of an episode (any format, finished or `.partial`): `.episode_NNNNNN.lock` beside it."""
    match = _NUMBER.match(episode.name)
    if match is None:
        raise ValueError(f"{episode} is not an episode name (episode_NNNNNN.<suffix>)")
    return episode.with_name(f".episode_{match.group(1)}.lock")


class EpisodeLock:
    """The exclusive lock on one episode number; `acquire()` never waits.

    Also a context manager that acquires (raising BlockingIOError when another process holds it) and
    releases without removing the file.
    """

    def __init__(self, episode: Path) -> None:
        self._fd: int | None = None  # first: __del__ runs even when the name is refused below
        self.path = lock_path(Path(episode))

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; True when taken (or already held)."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self, remove: bool = True) -> None:
        """Give the lock up, removing the lock file first when `remove`; a no-op when not held."""
        if self._fd is None:
            return
        if remove:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None

    def __enter__(self) -> EpisodeLock:
        if not self.acquire():
            raise BlockingIOError(f"{self.path} is held by another process")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release(remove=False)

    def __del__(self) -> None:
        self.release()  # a writer dropped unopened gives its number back
