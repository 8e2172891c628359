"""A fresh Python interpreter for work that must not run in this process (reading a file that may hang the
storage library, a rollout on another core): started with fork and exec, so it works from any thread and never
runs the caller's main script again, and it imports this project from where this process does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

ROOT = str(Path(__file__).resolve().parents[1])  # the folder that holds teleop/ and recorder/


def python_child(code: str, *args: str) -> subprocess.Popen[bytes]:
    """`python -c code args...` with stdout and stderr piped; PYTHONPATH leads with this project's root."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def result_stream(mode: str = "w") -> IO[Any]:
    """In a child: its original stdout, kept for the result, while file descriptor 1 now goes to stderr, so that
    nothing a library prints can mix into the result."""
    out = os.fdopen(os.dup(1), mode)
    os.dup2(2, 1)
    return out
