"""What every benchmark script shares: progress on stderr, stdout kept for the one JSON line, and busy
processes that stand for other programs' load."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
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


# `while True: pass`, ending when its parent is gone (a benchmark killed before its cleanup leaves no busy loop)
BUSY_LOOP = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    for _ in range(1000000): pass"


@contextlib.contextmanager
def busy_processes(n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`n` other processes that keep a CPU busy (`python -c 'while True: pass'`, nice 0) while the block runs:
    the load of other programs on the machine. Each is killed by its id when the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
