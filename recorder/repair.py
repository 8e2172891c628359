"""Repairing unfinished recordings: a `.partial` episode becomes a readable episode marked incomplete.

A recording that stops without close() (killed, crashed, power cut) leaves `episode_NNNNNN.<suffix>.partial`.
The writer stored the row count `num_steps` with every flush (at least once a second) after the rows it counts,
so the partial holds every step up to its last flush (camera frames are written before the steps that use
them). Repair keeps the first N steps, where N is that count lowered to the rows every array holds intact
(chunks present, checksums good) and to the steps whose camera frames are intact, then stores the episode under
its final name with `num_steps` = N, success unknown (-1), `duration_s`, `incomplete` = True and
`repaired_from` = the partial's name. HDF5 partials are copied (compressed chunks as they are) and removed
once the copy is durable; zarr partials are trimmed in place and renamed.

A partial that cannot be read at all, one that holds no flushed step, one whose final name is taken, and one
whose recording is still running (its process holds the episode's lock, recorder.lock) is left untouched and
reported; repair never deletes data it could not move. The lock is the kernel's, released the instant the
recording process dies, so a partial is repaired right after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recorder.backend import open_partial
from recorder.episodes import find_partials
from recorder.layout import BASE_DATASETS, camera_of, fail, final_path, is_frame_array
from recorder.lock import EpisodeLock
from recorder.partial import PartialEpisode
from teleop.errors import TeleopError

STORAGE_ERRORS = (OSError, RuntimeError, ValueError, KeyError)  # what h5py and zarr raise on damaged or full disks


@dataclass(frozen=True)
class RepairedEpisode:
    """A partial episode turned into an episode.

    Attributes:
        partial: The partial it came from (gone now).
        path: The repaired episode.
        num_steps: Steps kept.
        flushed_steps: Steps the last flush had counted (num_steps is lower when some were damaged).
    """

    partial: Path
    path: Path
    num_steps: int
    flushed_steps: int


@dataclass(frozen=True)
class RepairProblem:
    """A partial episode that was left untouched, with why (the message names the file)."""

    partial: Path
    message: str


def _intact_lengths(partial: Path, episode: PartialEpisode) -> dict[str, int]:
    """Rows to keep of every array: the flushed step count lowered to the steps whose rows, and whose camera
    frames, every array holds intact; EpisodeError when no step is.

    Frame arrays hold each camera's distinct frames, and a step's frame row is in its camera's frame_index
    (episodes of version 1 have none: there frame arrays are step-aligned)."""
    flushed = episode.flushed_steps
    names = episode.array_names()
    missing = [name for name in BASE_DATASETS if name not in names]
    if missing and flushed:
        raise fail(partial, f"missing arrays {missing}", "it is not a complete episode layout")
    n = 0 if missing else flushed
    for name in names:
        if not is_frame_array(name):
            n = episode.valid_rows(name, n)
    indices: dict[str, np.ndarray] = {}
    for cam in sorted({camera_of(name) for name in names if is_frame_array(name)}):
        frame_names = [name for name in names if is_frame_array(name) and camera_of(name) == cam]
        index_name = f"cameras/{cam}/frame_index"
        index = episode.read(index_name, 0, n) if index_name in names else np.arange(n)
        needed = int(index.max()) + 1 if n else 0
        good = min(episode.valid_rows(name, needed) for name in frame_names)
        if good < needed:
            n = int(np.argmax(index >= good))  # the first step whose frame is damaged or missing
        indices[cam] = index
    if n == 0:
        raise fail(
            partial,
            f"no intact step to recover ({flushed} flushed)",
            "delete it if you do not need it",
        )
    frames = {cam: int(index[:n].max()) + 1 for cam, index in indices.items()}
    return {name: frames[camera_of(name)] if is_frame_array(name) else n for name in names}


def repair_partial(partial: Path) -> RepairedEpisode:
    """Turn one `.partial` episode into an episode marked incomplete (see the module docstring).

    Args:
        partial: An `episode_NNNNNN.h5.partial` file or `episode_NNNNNN.zarr.partial` directory.

    Raises:
        EpisodeError: The partial was left untouched; the message says why and what to do.
    """
    partial = Path(partial)
    lock = EpisodeLock(final_path(partial))
    if not lock.acquire():
        raise fail(partial, "is being recorded: the recording process is running",
                   "repair it once the recording has stopped")
    try:
        repaired = _repair(partial)
    except BaseException:
        lock.release(remove=False)
        raise
    lock.release()
    return repaired


def _repair(partial: Path) -> RepairedEpisode:
    """repair_partial, with the episode's lock held."""
    target = final_path(partial)
    if not partial.exists():
        raise fail(partial, "no longer exists (its recording finished meanwhile)")
    if target.exists():
        raise fail(partial, f"{target.name} already exists", "rename one of them, then repair again")
    try:
        with open_partial(partial) as episode:
            lengths = _intact_lengths(partial, episode)
            n = lengths["timestamp"]
            t = episode.read("timestamp", 0, n)
            attrs = {
                "num_steps": n,
                "success": np.int8(-1),
                "duration_s": float(t[-1] - t[0]),
                "incomplete": True,
                "repaired_from": partial.name,
            }
            flushed = episode.flushed_steps
            episode.finish(lengths, attrs, target)
    except STORAGE_ERRORS as exc:
        raise fail(
            partial,
            f"could not be repaired ({type(exc).__name__}: {exc})",
            "check the free space and repair again",
        ) from exc
    return RepairedEpisode(partial=partial, path=target, num_steps=n, flushed_steps=flushed)


def repair_directory(directory: Path) -> list[RepairedEpisode | RepairProblem]:
    """Repair every `.partial` episode of a directory; the ones left untouched come back as problems.

    Raises:
        EpisodeError: The directory does not exist.
    """
    results: list[RepairedEpisode | RepairProblem] = []
    for partial in find_partials(directory):
        try:
            results.append(repair_partial(partial))
        except TeleopError as exc:
            results.append(RepairProblem(partial=partial, message=str(exc)))
    return results


def format_repair_report(results: list[RepairedEpisode | RepairProblem]) -> str:
    """One line per partial episode: what it became, or why it was left untouched."""
    if not results:
        return "no unfinished recordings"
    lines = []
    for item in results:
        if isinstance(item, RepairProblem):
            lines.append(f"{item.partial.name}: not repaired, kept: {item.message.removeprefix(f'{item.partial}: ')}")
        else:
            lost = item.flushed_steps - item.num_steps
            damaged = f", {lost} damaged steps dropped" if lost else ""
            lines.append(
                f"{item.partial.name} -> {item.path.name}: {item.num_steps} steps kept{damaged}, marked incomplete"
            )
    return "\n".join(lines)
