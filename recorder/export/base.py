"""The exporter contract: options, progress, result, and the one abstract class every target format implements.

An exporter turns verified episodes (recorder.export.selection) into one dataset of its format. The shared
part lives here: the options are checked, the episodes planned together (recorder.export.plan: same robot,
cameras and image sizes, actions in the chosen space, the train/validation split), the dataset is written
under a temporary name beside `out` and renamed to `out` only once it is complete (recorder.export.output),
and camera frames are encoded on a pool of threads, one per core (recorder.export.frames). A format is one
subclass that implements `write`, plus one line in recorder.export.registry.EXPORTERS.
"""

from __future__ import annotations

import abc
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, NamedTuple

from recorder.episodes import EpisodeSummary
from recorder.export.actions import ACTION_SPACES
from recorder.export.errors import ExportOptionError
from recorder.export.frames import FrameEncoder, InlineExecutor
from recorder.export.output import check_free, publish, temporary_path
from recorder.export.plan import DatasetPlan, plan_dataset
from teleop.errors import UnknownNameError

VIDEO_CODECS = ("av1", "h264")  # ExportOptions.video_codec


@dataclass(frozen=True)
class ExportOptions:
    """What goes into an exported dataset.

    Attributes:
        cameras: Camera names to export, in this order; None exports every camera of the episodes, () none.
        image_size: Frames are resized to (height, width) [px] (Pillow's antialiased bilinear filter); None
            keeps each camera's recorded size.
        action_space: "joint" (the recorded action rows), "ee" (the next step's end-effector pose and the gripper
            command) or "delta" (joint targets minus the joint positions); see recorder.export.actions.
        include_all: Export failed episodes and those whose outcome is unknown too; False exports successful
            ones only.
        valid_fraction: Share of the episodes held out for validation, in [0, 1).
        seed: Seed of the train/validation split.
        video_codec: Codec of the formats that store camera frames as videos (lerobot): "av1" or "h264".
    """

    cameras: tuple[str, ...] | None = None
    image_size: tuple[int, int] | None = None
    action_space: str = "joint"
    include_all: bool = False
    valid_fraction: float = 0.1
    seed: int = 0
    video_codec: str = "av1"

    def __post_init__(self) -> None:
        if self.action_space not in ACTION_SPACES:
            raise UnknownNameError("action space", self.action_space, list(ACTION_SPACES))
        if self.image_size is not None and not (
            len(self.image_size) == 2 and all(isinstance(v, int) and v > 0 for v in self.image_size)
        ):
            raise ExportOptionError(f"image size (--image-size) {self.image_size} is not two positive pixel counts: "
                                    "give (height, width), e.g. 96x128")
        if not (isinstance(self.valid_fraction, (int, float)) and math.isfinite(self.valid_fraction)
                and 0 <= self.valid_fraction < 1):
            raise ExportOptionError(f"valid fraction (--valid-fraction) {self.valid_fraction} is outside [0, 1): give "
                                    "the share of episodes held out for validation, e.g. 0.1, or 0 for none")
        if self.video_codec not in VIDEO_CODECS:
            raise UnknownNameError("video codec", self.video_codec, list(VIDEO_CODECS))
        if self.cameras is not None:
            if any(not name for name in self.cameras) or len(set(self.cameras)) < len(self.cameras):
                raise ExportOptionError(f"cameras (--camera) {list(self.cameras)}: name each camera once")


class ExportProgress(NamedTuple):
    """How far an export is: `done` of `total` units, "frames" (camera frames written, steps × cameras) or
    "steps" when no camera is exported, and the episode being written."""

    done: int
    total: int
    episode: str
    unit: str = "frames"


Progress = Callable[[ExportProgress], None]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        path: The dataset (a file or a folder).
        format: Registry name of the format ("robomimic", "diffusion-policy", ...).
        episodes: Names of the exported episodes, in dataset order.
        valid: Names of the episodes held out for validation (the rest are for training).
        steps: Control steps written (rows of the time-major arrays).
        frames: Camera frames written (steps × cameras).
        encoded_frames: Distinct frames encoded (a frame that several steps share is encoded once).
        cameras: Exported cameras.
        action_space: The action space of the actions written.
        seconds: Wall time of the export, from planning to the rename [s].
        cpu_s: CPU time of the process over the export, all threads [s].
        encode_cpu_s: CPU time spent compressing frames (the frame encoder threads, and a video encoder's own) [s].
        resize_cpu_s: CPU time the frame encoder threads spent resizing frames [s].
        read_cpu_s: CPU time they spent reading (and decoding) the episodes' frames [s].
        thread_cpu_s: CPU time of the frame work done on each encoder thread, largest first [s].
        bytes: Size of the dataset on disk [bytes].
        skipped: (episode name, why) of the episodes of the folder that were not exported.
        verify_s: Wall time spent verifying the episodes before the export (recorder.export.selection) [s].
    """

    path: Path
    format: str
    episodes: tuple[str, ...]
    valid: tuple[str, ...]
    steps: int
    frames: int
    encoded_frames: int
    cameras: tuple[str, ...]
    action_space: str
    seconds: float
    cpu_s: float
    encode_cpu_s: float
    resize_cpu_s: float
    read_cpu_s: float
    thread_cpu_s: tuple[float, ...]
    bytes: int
    skipped: tuple[tuple[str, str], ...] = field(default=())
    verify_s: float = 0.0

    @property
    def frames_per_s(self) -> float:
        """Camera frames written per second of wall time (steps per second when there is no camera)."""
        return (self.frames or self.steps) / self.seconds if self.seconds > 0 else 0.0

    @property
    def encoder_share(self) -> float:
        """Share of the export's CPU time spent compressing frames."""
        return self.encode_cpu_s / self.cpu_s if self.cpu_s > 0 else 0.0

    def summary(self) -> str:
        """One line: what was written where, the split, and the speed."""
        cams = f" from cameras {', '.join(self.cameras)}" if self.cameras else " (no cameras)"
        skipped = f"; {len(self.skipped)} episodes not exported" if self.skipped else ""
        verified = f" after {self.verify_s:.1f} s verifying them" if self.verify_s else ""
        return (f"exported {len(self.episodes)} episodes ({self.steps} steps, {self.frames} frames{cams}) as "
                f"{self.format} to {self.path}: {len(self.episodes) - len(self.valid)} train / {len(self.valid)} "
                f"valid, {self.action_space} actions, {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s{verified} "
                f"({self.frames_per_s:.0f} frames/s, encoder {self.encoder_share:.0%} of the CPU time){skipped}")


@dataclass
class ExportJob:
    """What `Exporter.write` works from: the plan, the frame encoder and where to report progress."""

    plan: DatasetPlan
    frames: FrameEncoder
    progress: Progress

    def report(self, done: int, episode: str) -> None:
        unit = "frames" if self.plan.cameras else "steps"
        self.progress(ExportProgress(done, self.plan.work_units, episode, unit))


@dataclass(frozen=True)
class WriteStats:
    """What `Exporter.write` reports back.

    Attributes:
        steps, frames: Steps and camera frames written.
        codec_cpu_s: CPU time spent compressing frames outside the frame encoder's tasks, e.g. by a video
            encoder's own threads [s]; added to ExportResult.encode_cpu_s.
        order: The plan's episodes in the order the dataset holds them (indices into plan.episodes); None
            keeps the plan's order.
    """

    steps: int
    frames: int
    codec_cpu_s: float = 0.0
    order: tuple[int, ...] | None = None


def _no_progress(progress: ExportProgress) -> None:
    return None


class Exporter(abc.ABC):
    """Writes one dataset of a target format from verified episodes.

    Args:
        workers: Threads that resize and compress camera frames; None uses one per core.
    """

    name: ClassVar[str]
    suffix: ClassVar[str]  # the usual name ending of its datasets, e.g. ".hdf5"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise ExportOptionError(f"workers is {workers}: give at least 1, or None for one per core")
        self.workers = workers or os.cpu_count() or 1

    @abc.abstractmethod
    def write(self, job: ExportJob, out: Path) -> WriteStats:
        """Write the dataset of `job.plan` to `out` (a path that does not exist yet: create a file or a folder
        there), reporting progress through `job.report`."""

    def export(self, episodes: Sequence[EpisodeSummary], out: Path, options: ExportOptions,
               progress: Progress | None = None) -> ExportResult:
        """Export `episodes` (already verified, see recorder.export.selection) to `out`, atomically.

        Raises:
            ExportError (a TeleopError): `out` exists, the episodes do not fit together in one dataset, or a
                camera or action space that they do not have; nothing is left at `out` then.
            EpisodeError: An episode cannot be read.
        """
        out = Path(out)
        check_free(out)
        start, cpu_start = time.perf_counter(), time.process_time()
        plan = plan_dataset(episodes, options)
        tmp = temporary_path(out)
        pool = ThreadPoolExecutor(self.workers, "export-encoder") if self.workers > 1 else InlineExecutor()
        frames = FrameEncoder(pool, self.workers)
        try:
            with pool:
                job = ExportJob(plan, frames, progress or _no_progress)
                with publish(tmp, out) as target:
                    stats = self.write(job, target)
        finally:
            frames.close()
        order = stats.order if stats.order is not None else range(len(plan.episodes))
        return ExportResult(
            path=out, format=self.name, episodes=tuple(plan.episodes[i].name for i in order),
            valid=tuple(plan.episodes[i].name for i in order if plan.valid_mask[i]),
            steps=stats.steps, frames=stats.frames, encoded_frames=job.frames.encoded,
            cameras=plan.cameras, action_space=options.action_space, seconds=time.perf_counter() - start,
            cpu_s=time.process_time() - cpu_start, encode_cpu_s=job.frames.encode_cpu_s + stats.codec_cpu_s,
            resize_cpu_s=job.frames.resize_cpu_s, read_cpu_s=job.frames.read_cpu_s,
            thread_cpu_s=tuple(sorted(job.frames.thread_cpu_s.values(), reverse=True)), bytes=_size(out),
        )


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
