"""The quality of a dataset: per episode and overall, what a person should look at before training on it.

Per episode: duration, achieved control rate and late ticks, per camera the frames dropped, steps that reused
a frame and stale steps, idle time at the start and end (no commanded motion, as recorder.trim finds it),
values that are not finite (observations, actions, extras), the ranges of the action and the joint positions,
the largest jump of the action in one step (as a share of the action's range over the whole dataset), and
success. Flags name what is unusual (the *_FLAG thresholds below); `plot_report` draws the distributions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recorder.backend import open_episode
from recorder.episodes import EpisodeProblem, EpisodeSummary, scan_episodes
from recorder.trim import auto_trim_range
from teleop.deps import require
from teleop.errors import EpisodeError

IDLE_FLAG_S = 2.0  # idle start or end longer than this is flagged [s]
JUMP_FLAG = 0.25  # an action jump above this share of the dataset's action range in one step is flagged
SHORT_FLAG = 0.3  # an episode shorter than this share of the median duration is flagged
DROP_FLAG = 0.05  # cameras dropping more than this share of their frames are flagged
LATE_FLAG = 0.05  # more than this share of late ticks is flagged


@dataclass
class EpisodeQuality:
    """What the report measured of one episode (see the module docstring for each field)."""

    name: str
    success: bool | None
    incomplete: bool
    num_steps: int
    duration_s: float
    rate_hz: float
    late_ticks: int
    dropped: dict[str, int]
    repeated: dict[str, int]
    stale: dict[str, int]
    idle_start_s: float
    idle_end_s: float
    non_finite: int
    action_min: np.ndarray
    action_max: np.ndarray
    state_min: np.ndarray
    state_max: np.ndarray
    max_step: np.ndarray  # largest change of each action component in one step [action units]
    max_jump: float = 0.0  # the largest of max_step as a share of that component's range over the dataset
    flags: list[str] = field(default_factory=list)


@dataclass
class DatasetReport:
    """Every episode's quality, the ones that could not be read, and the totals."""

    episodes: list[EpisodeQuality]
    problems: list[EpisodeProblem]

    @property
    def flagged(self) -> list[EpisodeQuality]:
        return [e for e in self.episodes if e.flags]


def episode_quality(path: Path) -> EpisodeQuality:
    """Measure one episode (flags are set by dataset_report, which knows the others)."""
    with open_episode(path) as reader:
        a = reader.attrs
        t, action, state = reader.timestamps, reader.action, reader.joint_pos
        dropped, repeated, stale = {}, {}, {}
        for cam in reader.camera_names:
            s = reader.camera_stats(cam)
            if s is not None:
                dropped[cam], repeated[cam], stale[cam] = s.drops, s.duplicates, s.stale
        # device/* is left out: a device field the device does not have is NaN there (e.g. keypoints of a pose)
        arrays = [t, action, state, reader.joint_vel, reader.ee_pose] + [reader.extras(k) for k in reader.extras_keys]
        non_finite = sum(int(np.size(x) - np.isfinite(x.astype(np.float64)).sum()) for x in arrays)
        idle_start = idle_end = 0.0
        try:
            auto = auto_trim_range(reader, margin_s=0.0)
            idle_start = float(t[auto.first_motion - 1] - t[0])
            idle_end = float(t[-1] - t[auto.last_motion])
        except EpisodeError:  # no motion at all (or a single step)
            idle_start = float(t[-1] - t[0]) if len(t) else 0.0
        steps = np.abs(np.diff(action, axis=0))
        return EpisodeQuality(
            name=path.name, success=reader.success, incomplete=bool(a.get("incomplete", False)),
            num_steps=reader.num_steps, duration_s=reader.duration_s,
            rate_hz=float(a.get("achieved_rate_hz", (len(t) - 1) / max(float(t[-1] - t[0]), 1e-9) if len(t) > 1
                                 else 0.0)),
            late_ticks=int(a.get("late_ticks", 0)), dropped=dropped, repeated=repeated, stale=stale,
            idle_start_s=idle_start, idle_end_s=idle_end, non_finite=non_finite,
            action_min=action.min(axis=0), action_max=action.max(axis=0),
            state_min=state.min(axis=0), state_max=state.max(axis=0),
            max_step=steps.max(axis=0) if len(steps) else np.zeros(action.shape[1:]),
        )


def _flags(e: EpisodeQuality, median_duration: float) -> list[str]:
    flags = []
    if e.success is not True:
        flags.append({False: "failed", None: "success unknown"}[e.success])
    if e.incomplete:
        flags.append("incomplete recording")
    if e.non_finite:
        flags.append(f"{e.non_finite} values not finite")
    if e.late_ticks > LATE_FLAG * max(e.num_steps, 1):
        flags.append(f"{e.late_ticks} late ticks")
    for cam, drops in e.dropped.items():
        if drops > DROP_FLAG * max(e.num_steps, 1):
            flags.append(f"camera {cam} dropped {drops} frames")
    for cam, stale in e.stale.items():
        if stale:
            flags.append(f"camera {cam} stale on {stale} steps")
    if e.idle_start_s > IDLE_FLAG_S or e.idle_end_s > IDLE_FLAG_S:
        flags.append(f"idle {e.idle_start_s:.1f} s at the start, {e.idle_end_s:.1f} s at the end (trim --auto)")
    if e.max_jump > JUMP_FLAG:
        flags.append(f"action jumps {e.max_jump:.0%} of the dataset's range in one step")
    if median_duration > 0 and e.duration_s < SHORT_FLAG * median_duration:
        flags.append(f"short: {e.duration_s:.1f} s against a median of {median_duration:.1f} s")
    return flags


def dataset_report(directory: Path) -> DatasetReport:
    """Measure and flag every readable episode of a folder; unreadable ones are listed as problems."""
    found = scan_episodes(directory)
    episodes, problems = [], [p for p in found if isinstance(p, EpisodeProblem)]
    for item in found:
        if isinstance(item, EpisodeSummary):
            try:
                episodes.append(episode_quality(item.path))
            except EpisodeError as exc:
                problems.append(EpisodeProblem(item.name, item.path, str(exc)))
    median = float(np.median([e.duration_s for e in episodes])) if episodes else 0.0
    if episodes and len({e.action_min.shape for e in episodes}) == 1:
        span = np.max([e.action_max for e in episodes], axis=0) - np.min([e.action_min for e in episodes], axis=0)
        for e in episodes:
            e.max_jump = float(np.max(e.max_step / np.where(span > 0, span, np.inf), initial=0.0))
    for e in episodes:
        e.flags = _flags(e, median)
    return DatasetReport(episodes, problems)


def format_report(report: DatasetReport) -> str:
    """A table, one line per episode, the flags under it, then the totals."""
    lines = [f"{'episode':<22} {'steps':>6} {'dur s':>6} {'Hz':>6} {'late':>5} {'drop':>5} {'rep':>5} "
             f"{'stale':>5} {'idle s':>11} {'jump':>5}  success"]
    for e in report.episodes:
        outcome = {True: "yes", False: "no", None: "?"}[e.success]
        lines.append(f"{e.name:<22} {e.num_steps:>6} {e.duration_s:>6.1f} {e.rate_hz:>6.1f} {e.late_ticks:>5} "
                     f"{sum(e.dropped.values()):>5} {sum(e.repeated.values()):>5} {sum(e.stale.values()):>5} "
                     f"{e.idle_start_s:>5.1f}/{e.idle_end_s:<5.1f} {e.max_jump:>5.0%}  {outcome}")
        lines += [f"    ! {flag}" for flag in e.flags]
    for p in report.problems:
        lines.append(f"{p.name:<22} ERROR: {p.message}")
    n = len(report.episodes)
    if n:
        succeeded = sum(e.success is True for e in report.episodes)
        total = sum(e.duration_s for e in report.episodes)
        lines.append(f"{n} episodes, {total / 60:.1f} min, {succeeded} succeeded ({succeeded / n:.0%}), "
                     f"median {np.median([e.duration_s for e in report.episodes]):.1f} s; "
                     f"{len(report.flagged)} flagged, {len(report.problems)} unreadable")
    if report.episodes:
        low = np.min([e.action_min for e in report.episodes], axis=0)
        high = np.max([e.action_max for e in report.episodes], axis=0)
        lines.append("action range: " + ", ".join(f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(low, high, strict=True)))
    return "\n".join(lines)


def plot_report(report: DatasetReport, out: Path) -> Path:
    """Draw the distributions (duration, idle time, achieved rate, largest action jump) as a PNG; flagged
    episodes in red."""
    require("matplotlib", extra="report", purpose="the quality report's plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes: Sequence[EpisodeQuality] = report.episodes
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [
        ("duration [s]", [e.duration_s for e in episodes]),
        ("idle at start + end [s]", [e.idle_start_s + e.idle_end_s for e in episodes]),
        ("achieved control rate [Hz]", [e.rate_hz for e in episodes]),
        ("largest action jump [share of range]", [e.max_jump for e in episodes]),
    ]
    colours = ["#c0392b" if e.flags else "#2c7fb8" for e in episodes]
    for ax, (title, values) in zip(axes.flat, panels, strict=True):
        ax.hist(values, bins=min(20, max(5, len(values))), color="#bbbbbb")
        ax.scatter(values, np.full(len(values), 0.0), c=colours, zorder=3, clip_on=False)
        ax.set_title(title)
        ax.set_ylabel("episodes")
        ax.ticklabel_format(axis="x", useOffset=False)
    fig.suptitle(f"{len(episodes)} episodes, {len(report.flagged)} flagged (red)")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
