"""A directory of episode files: naming new episodes, listing them, and a one-line-per-episode table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from recorder.hdf5 import PARTIAL_SUFFIX, EpisodeReader
from teleop.errors import EpisodeError

EPISODE_NAME = re.compile(r"^episode_(\d+)\.h5(\.partial)?$")


@dataclass(frozen=True)
class EpisodeSummary:
    """A readable episode.

    Attributes:
        duration_s: Last step time minus first step time [s].
        success: Task outcome; None when it was not known.
    """

    name: str
    path: Path
    robot: str
    task: str
    num_steps: int
    duration_s: float
    success: bool | None


@dataclass(frozen=True)
class EpisodeProblem:
    """An episode file that cannot be read, with what is wrong (without the path, which `path` holds)."""

    name: str
    path: Path
    message: str


def _check_directory(directory: Path) -> Path:
    directory = Path(directory)
    if not directory.is_dir():
        raise EpisodeError(f"{directory}: episode directory does not exist; create it or pick another one")
    return directory


def next_episode_path(directory: Path) -> Path:
    """The next free name episode_NNNNNN.h5: one past the highest index of any episode or partial file.

    Raises:
        EpisodeError: The directory does not exist.
    """
    directory = _check_directory(directory)
    indices = [int(m.group(1)) for p in directory.iterdir() if (m := EPISODE_NAME.match(p.name))]
    return directory / f"episode_{max(indices, default=-1) + 1:06d}.h5"


def _summarise(path: Path) -> EpisodeSummary | EpisodeProblem:
    """Read one file's attributes, or say what is wrong with it."""
    try:
        with EpisodeReader(path) as reader:
            attrs = reader.attrs
            return EpisodeSummary(
                name=path.name,
                path=path,
                robot=str(attrs["robot"]),
                task=str(attrs["task"]),
                num_steps=reader.num_steps,
                duration_s=reader.duration_s,
                success=reader.success,
            )
    except EpisodeError as exc:
        return EpisodeProblem(name=path.name, path=path, message=str(exc).removeprefix(f"{path}: "))


def scan_episodes(directory: Path) -> list[EpisodeSummary | EpisodeProblem]:
    """Every `*.h5` and `*.h5.partial` file of a directory, sorted by name; unreadable ones as problems.

    Raises:
        EpisodeError: The directory does not exist.
    """
    directory = _check_directory(directory)
    suffixes = (".h5", ".h5" + PARTIAL_SUFFIX)
    paths = [p for p in directory.iterdir() if p.name.endswith(suffixes) and p.is_file()]
    return [_summarise(p) for p in sorted(paths, key=lambda p: p.name)]


def _success_text(success: bool | None) -> str:
    return {True: "yes", False: "no", None: "?"}[success]


def format_episode_table(items: list[EpisodeSummary | EpisodeProblem]) -> str:
    """A text table, one line per episode: name, robot, task, frames, duration [s], success."""
    width = max([len("name"), *(len(item.name) for item in items)])
    lines = [f"{'name':<{width}}  {'robot':<12} {'task':<16} {'frames':>7} {'duration':>9}  success"]
    for item in items:
        if isinstance(item, EpisodeProblem):
            lines.append(f"{item.name:<{width}}  ERROR: {item.message}")
        else:
            lines.append(
                f"{item.name:<{width}}  {item.robot:<12} {item.task:<16} {item.num_steps:>7} "
                f"{item.duration_s:>8.2f}s  {_success_text(item.success)}"
            )
    return "\n".join(lines)
