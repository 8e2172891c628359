"""A directory of episodes: naming new ones, listing them, finding unfinished ones, a one-line-per-episode table.

Episodes of every backend are listed: `episode_NNNNNN.h5` files and `episode_NNNNNN.zarr` directories, and
the `.partial` ones that recordings in progress (or killed) left.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recorder.backend import check_directory, next_episode_path, open_episode
from recorder.layout import EPISODE_NAME, PARTIAL_SUFFIX
from teleop.child import python_child, result_stream
from teleop.errors import TeleopError

__all__ = [
    "EpisodeProblem",
    "EpisodeSummary",
    "check_episodes",
    "find_partials",
    "format_episode_table",
    "next_episode_path",
    "next_seed",
    "scan_episodes",
    "unfinished_warning",
    "verify_episode",
]


@dataclass(frozen=True)
class EpisodeSummary:
    """A readable episode.

    Attributes:
        duration_s: Last step time minus first step time [s].
        success: Task outcome; None when it was not known.
        incomplete: The recording stopped early (an error, or a repaired `.partial`).
        sealed: Its metadata carries checksums (episodes written before they existed do not).
        seed: Seed of the task's initial conditions, None if not seeded.
    """

    name: str
    path: Path
    robot: str
    task: str
    num_steps: int
    duration_s: float
    success: bool | None
    incomplete: bool = False
    sealed: bool = True
    seed: int | None = None


@dataclass(frozen=True)
class EpisodeProblem:
    """An episode file that cannot be read, with what is wrong (without the path, which `path` holds)."""

    name: str
    path: Path
    message: str


def _summarise(path: Path, verify: bool = False) -> EpisodeSummary | EpisodeProblem:
    """Read one episode's metadata (and with `verify` every stored byte), or say what is wrong with it."""
    try:
        with open_episode(path) as reader:
            if verify:
                reader.verify()
            attrs = reader.attrs
            return EpisodeSummary(
                name=path.name,
                path=path,
                robot=str(attrs["robot"]),
                task=str(attrs["task"]),
                num_steps=reader.num_steps,
                duration_s=reader.duration_s,
                success=reader.success,
                incomplete=bool(attrs.get("incomplete", False)),
                sealed=reader.sealed,
                seed=attrs["seed"],
            )
    except TeleopError as exc:  # EpisodeError, or MissingDependencyError for a format whose package is missing
        return EpisodeProblem(name=path.name, path=path, message=str(exc).removeprefix(f"{path}: "))


def _episode_paths(directory: Path) -> list[Path]:
    """Episode files and directories of every format, finished or partial, sorted by name."""
    return sorted((p for p in directory.iterdir() if EPISODE_NAME.match(p.name)), key=lambda p: p.name)


def scan_episodes(directory: Path) -> list[EpisodeSummary | EpisodeProblem]:
    """Every episode of a directory (`*.h5`, `*.zarr` and their `.partial`), sorted by name; unreadable ones
    as problems.

    Raises:
        EpisodeError: The directory does not exist.
    """
    return [_summarise(p) for p in _episode_paths(check_directory(directory))]


def next_seed(directory: Path) -> int:
    """One more than the largest seed of a directory's readable episodes (0 for none): the next recording's
    initial conditions differ from every earlier one's in the folder."""
    seeds = [s.seed for s in scan_episodes(directory) if isinstance(s, EpisodeSummary) and s.seed is not None]
    return max(seeds, default=-1) + 1


VERIFY_TIMEOUT_S = 60.0  # a verification may take this long, plus VERIFY_S_PER_MB per megabyte [s]
VERIFY_S_PER_MB = 0.5


def verify_episode(path: Path, timeout_s: float | None = None) -> EpisodeSummary | EpisodeProblem:
    """One episode read and verified byte by byte (EpisodeReader.verify), or what is wrong with it.

    The reading runs in a child interpreter (started with fork and exec, so it works from any thread and never
    runs the caller's main script again): some damage makes the storage library hang (HDF5 on a damaged heap of
    JPEG files) or crash instead of raising, and such an episode is reported as damaged once `timeout_s`
    (default VERIFY_TIMEOUT_S plus VERIFY_S_PER_MB per MB) has passed, or the child has died.
    """
    path = Path(path)
    limit = timeout_s if timeout_s is not None else VERIFY_TIMEOUT_S + VERIFY_S_PER_MB * _size_mb(path)
    child = python_child("from recorder.episodes import _verify_main; _verify_main()", str(path))
    try:
        out, err = child.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return EpisodeProblem(path.name, path, f"reading it did not finish within {limit:.0f} s: it is damaged in "
                              "a way the storage library does not report; restore it from a copy or delete it")
    if child.returncode == 0:
        result: EpisodeSummary | EpisodeProblem = pickle.loads(out)
        return result
    if child.returncode < 0:
        return EpisodeProblem(path.name, path, f"reading it crashed the reader (signal {-child.returncode}): it is "
                              "damaged; restore it from a copy or delete it")
    last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
    return EpisodeProblem(path.name, path, f"verifying it failed (exit status {child.returncode}): {last[0]}")


def _verify_main() -> None:
    """The child of verify_episode: the pickled result on the original stdout; anything the libraries print
    goes to stderr."""
    with result_stream("wb") as out:
        out.write(pickle.dumps(_summarise(Path(sys.argv[1]), verify=True)))


def _size_mb(path: Path) -> float:
    try:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        return sum(p.stat().st_size for p in files) / 1e6
    except OSError:
        return 0.0


def check_episodes(
    directory: Path, progress: Callable[[int, int, EpisodeSummary | EpisodeProblem], None] | None = None
) -> list[EpisodeSummary | EpisodeProblem]:
    """Every episode of a directory like scan_episodes, each read and verified byte by byte
    (EpisodeReader.verify): a damaged chunk anywhere is a problem naming the array and step or frame.

    Args:
        progress: Called with (episodes checked, episodes in all, the last one's result) as they are checked.

    Raises:
        EpisodeError: The directory does not exist.
    """
    results: list[EpisodeSummary | EpisodeProblem] = []
    paths = _episode_paths(check_directory(directory))
    for path in paths:
        results.append(verify_episode(path))
        if progress is not None:
            progress(len(results), len(paths), results[-1])
    return results


def find_partials(directory: Path) -> list[Path]:
    """The `.partial` episodes of a directory (recordings in progress or killed), sorted by name.

    Raises:
        EpisodeError: The directory does not exist.
    """
    return [p for p in _episode_paths(check_directory(directory)) if p.name.endswith(PARTIAL_SUFFIX)]


def unfinished_warning(directory: Path) -> str | None:
    """A warning naming the unfinished recordings of a directory, or None when there is none."""
    partials = find_partials(directory)
    if not partials:
        return None
    names = ", ".join(p.name for p in partials)
    return (
        f"{directory} holds {len(partials)} unfinished recording(s) ({names}), left by a recording that stopped "
        f"early or is still running; they are kept and new episodes get the next numbers; run "
        f"`teleop episodes repair {directory}` to turn them into episodes marked incomplete"
    )


def _success_text(item: EpisodeSummary) -> str:
    text = {True: "yes", False: "no", None: "?"}[item.success]
    return f"{text} (incomplete)" if item.incomplete else text


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
                f"{item.duration_s:>8.2f}s  {_success_text(item)}"
            )
    return "\n".join(lines)
