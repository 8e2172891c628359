"""Which episodes of a folder an export takes: intact ones (each verified byte by byte), successful ones unless
all are asked for."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from recorder.episodes import EpisodeProblem, EpisodeSummary, scan_episodes, verify_episode
from recorder.export.errors import ExportError


@dataclass(frozen=True)
class Selection:
    """The episodes to export, in the folder's order, and (name, why) of each one left out."""

    episodes: tuple[EpisodeSummary, ...]
    skipped: tuple[tuple[str, str], ...]


def _left_out(item: EpisodeSummary, include_all: bool) -> str | None:
    """Why an intact episode is not exported, or None when it is."""
    if item.num_steps == 0:
        return "no steps"
    if include_all or item.success is True:
        return None
    if item.success is False:
        return "failed (--all exports it)"
    return "outcome unknown, " + ("incomplete recording " if item.incomplete else "") + "(--all exports it)"


def select_episodes(directory: Path, include_all: bool = False, workers: int = 1) -> Selection:
    """The episodes of `directory` to export: every intact episode with steps when `include_all`, else the
    successful ones; each is read and verified byte by byte (recorder.episodes.verify_episode, `workers`
    at a time) and a damaged or unfinished one is left out with what is wrong with it.

    Raises:
        EpisodeError: The directory does not exist.
        ExportError: No episode is left to export; the message counts why.
    """
    skipped: list[tuple[str, str]] = []
    candidates: list[EpisodeSummary] = []
    for item in scan_episodes(directory):
        if isinstance(item, EpisodeProblem):
            skipped.append((item.name, item.message))
        elif (why := _left_out(item, include_all)) is not None:
            skipped.append((item.name, why))
        else:
            candidates.append(item)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        verified = list(pool.map(verify_episode, [c.path for c in candidates]))
    episodes = []
    for item in verified:
        if isinstance(item, EpisodeProblem):
            skipped.append((item.name, item.message))
        else:
            episodes.append(item)
    if not episodes:
        raise ExportError(f"{directory}: no episode to export" + (
            f" ({'; '.join(f'{name}: {why}' for name, why in skipped)})" if skipped else " (the folder holds none)"))
    return Selection(tuple(episodes), tuple(sorted(skipped)))
