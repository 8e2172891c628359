"""The trash of a dataset folder: deleted and replaced episodes, kept byte for byte until it is emptied.

    episodes/.trash/episode_000003.h5        the episode as it was (a file or a zarr directory)
    episodes/.trash/episode_000003.h5~2      an earlier or later version of the same name

An episode goes to the trash by a rename within the folder (instant, whatever its size, and nothing is copied
or rewritten), when it is deleted or when a trim replaces it; restoring renames it back. New recordings never
take the number of an episode in the trash (recorder.backend.next_episode_path counts them), so a restore
never collides with a newer recording. A recording in progress (its lock is held, recorder.lock) cannot be
deleted.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from recorder.backend import check_directory
from recorder.layout import EPISODE_NAME, TRASH_DIR, fail, fsync_path, remove_episode_path
from recorder.lock import EpisodeLock

TRASH = TRASH_DIR
_VERSION = re.compile(r"^(?P<name>.+?)(~(?P<k>\d+))?$")


@dataclass(frozen=True)
class TrashEntry:
    """One episode in the trash.

    Attributes:
        path: Where it lies in the trash.
        name: The name it is restored to.
        deleted_at: When it went to the trash [Unix time, s].
    """

    path: Path
    name: str
    deleted_at: float


def trash_dir(directory: Path) -> Path:
    """The trash folder of a dataset folder (it may not exist yet)."""
    return Path(directory) / TRASH


def trash_entries(directory: Path) -> list[TrashEntry]:
    """The episodes in a folder's trash, oldest first."""
    folder = trash_dir(check_directory(directory))
    if not folder.is_dir():
        return []
    entries = []
    for path in folder.iterdir():
        name = _VERSION.match(path.name)
        if name is not None and EPISODE_NAME.match(name.group("name")):
            entries.append(TrashEntry(path, name.group("name"), path.lstat().st_ctime))
    return sorted(entries, key=lambda e: (e.deleted_at, e.path.name))


def move_to_trash(episode: Path) -> TrashEntry:
    """Move an episode (finished or `.partial`) into its folder's trash; returns where it went.

    Raises:
        EpisodeError: It does not exist, or it is being recorded.
    """
    episode = Path(episode)
    if not EPISODE_NAME.match(episode.name) or not (episode.exists() or episode.is_symlink()):
        raise fail(episode, "no such episode", "pass an episode file or folder (`teleop episodes list` shows them)")
    lock = EpisodeLock(episode.with_name(episode.name.removesuffix(".partial")))
    if not lock.acquire():
        raise fail(episode, "is being recorded", "stop the recording first")
    try:
        folder = trash_dir(episode.parent)
        folder.mkdir(exist_ok=True)
        target = _free_name(folder, episode.name)
        os.rename(episode, target)
        fsync_path(folder)
        fsync_path(episode.parent)
    finally:
        lock.release(remove=False)
    return TrashEntry(target, episode.name, target.lstat().st_ctime)


def _free_name(folder: Path, name: str) -> Path:
    target, k = folder / name, 1
    while target.exists() or target.is_symlink():
        k += 1
        target = folder / f"{name}~{k}"
    return target


def restore(directory: Path, name: str, replace: bool = False) -> Path:
    """Bring an episode back from the trash under its own name, byte for byte.

    Args:
        directory: The dataset folder.
        name: A trash entry's name (`NAME`, or `NAME~2` for a second entry of the same name), as
            trash_entries lists them; the episode's name when no entry has exactly that name (then its newest
            version).
        replace: When an episode of that name exists (e.g. the trimmed version), move it to the trash first.

    Returns:
        The restored episode.

    Raises:
        EpisodeError: No such entry, or the name is taken and replace is False.
    """
    directory = check_directory(directory)
    entries = trash_entries(directory)
    matching = [e for e in entries if e.path.name == name] or [e for e in entries if e.name == name]
    if not matching:
        available = ", ".join(e.path.name for e in entries) or "the trash is empty"
        raise fail(directory / TRASH / name, "is not in the trash", f"in the trash: {available}")
    entry = matching[-1]
    target = directory / entry.name
    if target.exists():
        if not replace:
            raise fail(target, "exists", "restore with --replace to move the current one to the trash first")
        move_to_trash(target)
    os.rename(entry.path, target)
    fsync_path(directory)
    fsync_path(trash_dir(directory))
    return target


def empty_trash(directory: Path) -> list[str]:
    """Delete everything in a folder's trash for good; returns the names deleted."""
    entries = trash_entries(directory)
    for entry in entries:
        remove_episode_path(entry.path)
    return [entry.path.name for entry in entries]
