"""Progress lines of long work (training, pretraining, encoding, evaluation): a bar, a rate, the time left."""

from __future__ import annotations


def progress_bar(fraction: float, width: int = 20) -> str:
    """`[#####...............]` for a fraction done in [0, 1]."""
    filled = int(round(min(max(fraction, 0.0), 1.0) * width))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def time_left(done: int, total: int, elapsed_s: float) -> float:
    """Seconds until `total` at the mean pace of the first `done` [s]."""
    return elapsed_s / max(done, 1) * (total - done)
