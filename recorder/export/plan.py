"""The episodes of one dataset, planned together: they must fit in one set of arrays (one robot, the same
joints, actions, control rate, cameras, frame sizes and extras), and the plan fixes what every format writes:
the cameras and their exported frame size, the action columns, the action bounds and the split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recorder.backend import open_episode
from recorder.episodes import EpisodeSummary
from recorder.export import actions as act
from recorder.export.errors import ExportError
from recorder.export.split import valid_mask
from recorder.reader import EpisodeReader

if TYPE_CHECKING:
    from recorder.export.base import ExportOptions

# Names of the per-step arrays every format writes beside the extras and the cameras ("<cam>_image").
STEP_ARRAYS = ("timestamp", "joint_pos", "joint_vel", "ee_pose", "action", "actions")
IMAGE_SUFFIX = "_image"
TIMESTAMP_SUFFIX = "_timestamp"  # a camera's capture times, where a format stores them beside the steps


@dataclass(frozen=True)
class EpisodeInfo:
    """What the plan read of one episode: its metadata, for the formats' per-episode attributes."""

    name: str
    path: Path
    num_steps: int
    task: str
    instruction: str
    success: bool | None
    seed: int | None


@dataclass(frozen=True)
class DatasetPlan:
    """What an exporter writes.

    Attributes:
        episodes: The episodes in dataset order (their folder's order).
        options: The export options.
        robot, tasks: The episodes' robot and their tasks (sorted, without repeats).
        control_rate_hz: The control rate all episodes were recorded at [Hz].
        joint_names: Names of the joint_pos / joint_vel columns.
        recorded_action_names: Names of the recorded action columns.
        action_names: Names of the exported action columns (in options.action_space).
        action_bounds: Minimum and maximum of every exported action column over all episodes.
        cameras: Exported cameras, in order.
        image_sizes: Exported frame size of each camera, (height, width) [px].
        extras: Extras of every step: name -> row shape.
        valid_mask: Which episodes are held out for validation, (episodes,) bool.
    """

    episodes: tuple[EpisodeInfo, ...]
    options: ExportOptions
    robot: str
    tasks: tuple[str, ...]
    control_rate_hz: float
    joint_names: tuple[str, ...]
    recorded_action_names: tuple[str, ...]
    action_names: tuple[str, ...]
    action_bounds: act.ActionBounds
    cameras: tuple[str, ...]
    image_sizes: dict[str, tuple[int, int]]
    extras: dict[str, tuple[int, ...]]
    valid_mask: np.ndarray

    @property
    def steps(self) -> int:
        """Control steps of all episodes."""
        return sum(e.num_steps for e in self.episodes)

    @property
    def work_units(self) -> int:
        """What progress counts: frames to write (steps × cameras), or steps without cameras."""
        return self.steps * max(1, len(self.cameras))

    @property
    def instructions(self) -> tuple[str, ...]:
        """The episodes' language instructions (sorted, without repeats)."""
        return tuple(sorted({e.instruction for e in self.episodes}))

    def image_key(self, cam: str) -> str:
        """Name of a camera's frames in the exported dataset."""
        return cam + IMAGE_SUFFIX


@dataclass(frozen=True)
class StepArrays:
    """One episode's per-step arrays as exported, each (N, ...).

    Attributes:
        timestamp: Step times [s] (monotonic clock).
        joint_pos, joint_vel, ee_pose: Observations as recorded.
        action: Actions in the plan's action space (not normalised).
        extras: Name -> per-step array.
        camera_timestamps: Camera -> capture time of each step's frame [s].
    """

    timestamp: np.ndarray
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    ee_pose: np.ndarray
    action: np.ndarray
    extras: dict[str, np.ndarray]
    camera_timestamps: dict[str, np.ndarray]


def read_steps(reader: EpisodeReader, plan: DatasetPlan) -> StepArrays:
    """An episode's per-step arrays, with its actions converted to the plan's action space."""
    joint_pos, ee_pose = reader.joint_pos, reader.ee_pose
    action = act.convert_actions(plan.options.action_space, reader.action, joint_pos, ee_pose,
                                 plan.recorded_action_names, plan.joint_names)
    return StepArrays(
        timestamp=reader.timestamps, joint_pos=joint_pos, joint_vel=reader.joint_vel, ee_pose=ee_pose,
        action=action, extras={key: reader.extras(key) for key in plan.extras},
        camera_timestamps={cam: reader.camera_timestamps(cam) for cam in plan.cameras},
    )


@dataclass(frozen=True)
class _Metadata:
    """What planning reads of one episode (one episode is open at a time)."""

    attrs: dict[str, Any]
    num_steps: int
    success: bool | None
    cameras: tuple[str, ...]
    camera_sizes: dict[str, tuple[int, int]]  # (height, width)
    extras: dict[str, tuple[int, ...]]
    action: np.ndarray
    joint_pos: np.ndarray
    ee_pose: np.ndarray


def _read_metadata(summary: EpisodeSummary) -> _Metadata:
    with open_episode(summary.path) as r:
        return _Metadata(
            attrs=r.attrs, num_steps=r.num_steps, success=r.success, cameras=tuple(r.camera_names),
            camera_sizes={cam: (r.camera_info(cam).height, r.camera_info(cam).width) for cam in r.camera_names},
            extras={key: tuple(r.extras(key).shape[1:]) for key in r.extras_keys},
            action=r.action, joint_pos=r.joint_pos, ee_pose=r.ee_pose,
        )


def _same(what: str, values: dict[str, Any], fix: str) -> Any:
    """The one value all episodes share, or ExportError naming two episodes that differ."""
    first_name, first = next(iter(values.items()))
    for name, value in values.items():
        if value != first:
            raise ExportError(f"episodes {first_name} and {name} differ in {what} ({first} and {value}): {fix}")
    return first


def _cameras(metas: dict[str, _Metadata], wanted: tuple[str, ...] | None) -> tuple[str, ...]:
    cameras = next(iter(metas.values())).cameras if wanted is None else wanted
    for name, meta in metas.items():
        missing = [cam for cam in cameras if cam not in meta.cameras]
        if missing:
            has = ", ".join(meta.cameras) or "none"
            how = "name the cameras to export with --camera" if wanted is None else "pick others with --camera"
            raise ExportError(f"episode {name} has no camera {', '.join(missing)} (its cameras: {has}): {how}")
    return cameras


def _image_sizes(metas: dict[str, _Metadata], cameras: tuple[str, ...],
                 size: tuple[int, int] | None) -> dict[str, tuple[int, int]]:
    if size is not None:
        return dict.fromkeys(cameras, (int(size[0]), int(size[1])))
    return {cam: _same(f"the (height, width) of camera {cam!r}", {n: m.camera_sizes[cam] for n, m in metas.items()},
                       "export them at one size with --image-size HxW")
            for cam in cameras}


def _check_names(extras: dict[str, tuple[int, ...]], cameras: tuple[str, ...]) -> None:
    taken = set(STEP_ARRAYS) | {cam + suffix for cam in cameras for suffix in (IMAGE_SUFFIX, TIMESTAMP_SUFFIX)}
    clash = sorted(taken & set(extras))
    if clash:
        raise ExportError(f"the episodes' extras {clash} have the names of the exported arrays "
                          f"{sorted(taken)}; rename them in the task to export these episodes")


def plan_dataset(episodes: Sequence[EpisodeSummary], options: ExportOptions) -> DatasetPlan:
    """Read the metadata (and the small per-step arrays) of every episode and check that they fit together.

    Raises:
        ExportError: No episodes, an episode without steps, episodes that differ in robot, joints, actions,
            control rate, extras or a camera's frame size (without options.image_size), a camera that one of
            them lacks, or an action space they cannot give.
        EpisodeError: An episode cannot be read.
    """
    if not episodes:
        raise ExportError("no episodes to export")
    metas = {summary.name: _read_metadata(summary) for summary in episodes}
    empty = [name for name, meta in metas.items() if meta.num_steps == 0]
    if empty:
        raise ExportError(f"episodes {', '.join(empty)} have no steps: leave them out")
    attrs = {name: meta.attrs for name, meta in metas.items()}
    robot = _same("robot", {n: a["robot"] for n, a in attrs.items()}, "export each robot's episodes separately")
    joint_names = _same("joint names", {n: tuple(a["joint_names"]) for n, a in attrs.items()},
                        "export episodes of one robot model together")
    recorded = _same("action names", {n: tuple(a["action_names"]) for n, a in attrs.items()},
                     "export episodes of one robot model together")
    rate = _same("control rate [Hz]", {n: float(a["control_rate_hz"]) for n, a in attrs.items()},
                 "export the episodes of each control rate separately")
    act.check_action_space(options.action_space, recorded, joint_names, robot)
    cameras = _cameras(metas, options.cameras)
    extras = _same("their extras (name: row shape)", {n: m.extras for n, m in metas.items()},
                   "export episodes of one task together")
    _check_names(extras, cameras)
    converted = [act.convert_actions(options.action_space, m.action, m.joint_pos, m.ee_pose, recorded, joint_names)
                 for m in metas.values()]
    infos = tuple(
        EpisodeInfo(name=s.name, path=s.path, num_steps=metas[s.name].num_steps, task=attrs[s.name]["task"],
                    instruction=attrs[s.name]["instruction"], success=metas[s.name].success,
                    seed=attrs[s.name]["seed"])
        for s in episodes
    )
    return DatasetPlan(
        episodes=infos, options=options, robot=robot, tasks=tuple(sorted({e.task for e in infos})),
        control_rate_hz=rate, joint_names=joint_names, recorded_action_names=recorded,
        action_names=act.action_names(options.action_space, recorded), action_bounds=act.ActionBounds.of(converted),
        cameras=tuple(cameras), image_sizes=_image_sizes(metas, cameras, options.image_size),
        extras=dict(sorted(extras.items())), valid_mask=valid_mask(len(infos), options.valid_fraction, options.seed),
    )
