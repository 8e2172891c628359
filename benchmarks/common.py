"""What every benchmark script shares: progress on stderr, and stdout kept for the one JSON line."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator


def log(message: str) -> None:
    """Progress for people, on stderr (stdout carries only the JSON result)."""
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def c_stdout_to_stderr() -> Iterator[None]:
    """Send what C libraries print on stdout (pybullet, MediaPipe, TFLite) to stderr, so that stdout holds
    only the JSON line; their buffered output is flushed before stdout is given back."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        ctypes.CDLL(None).fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
