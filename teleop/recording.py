"""Recording episodes with a rig: one file per episode, the operator's result stored with it."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devices.trace import RecordingDevice, TraceRecorder
from recorder import jpeg
from recorder.backend import create_writer
from recorder.background import BackgroundWriter
from recorder.episodes import unfinished_warning
from recorder.step import EpisodeMeta, Step
from teleop.errors import EpisodeError
from teleop.progress import progress_bar, time_left
from teleop.rig import Rig
from teleop.session import ActionSource, EpisodeResult

QUEUE_S = 2.0  # the background writer may fall this far behind the control loop [s] before recording stops


class UnfinishedRecordingWarning(UserWarning):
    """The episode directory holds `.partial` episodes left by a recording that stopped early."""


def episode_meta(rig: Rig, seed: int, initial_state: dict, operator_device: str | None = None) -> EpisodeMeta:
    return EpisodeMeta(
        robot=rig.config.robot,
        task=rig.task.name,
        instruction=rig.task.language_instruction(),
        control_rate_hz=rig.config.session.rate_hz,
        operator_device=operator_device or rig.config.device,
        joint_names=rig.sim.joint_names,
        action_names=rig.sim.spec.action_names,
        cameras=rig.session.camera_infos(),
        start_time=time.time(),
        seed=seed,
        initial_state=initial_state,
    )


@dataclass
class RecordedEpisode:
    path: Path
    result: EpisodeResult


def _warn(message: str) -> None:
    warnings.warn(UnfinishedRecordingWarning(message), stacklevel=3)


def record_episode(rig: Rig, out_dir: Path, seed: int, should_stop: Callable[[], bool] | None = None,
                   on_step: Callable[[Step, EpisodeResult], None] | None = None, format: str = "hdf5",
                   warn: Callable[[str], None] = _warn, trace: bool = False, image_codec: str = "lossless",
                   jpeg_quality: int = jpeg.DEFAULT_QUALITY, policy: ActionSource | None = None) -> RecordedEpisode:
    """Reset the task with `seed`, run one episode with the rig's device (or `policy`, a trained policy driving
    the robot through the same loop and limits: its episode's operator_device is "policy") and write it to
    `out_dir`.

    The episode is written by a background thread (the control loop only queues each step) in `format`
    ("hdf5" or "zarr") with colour frames stored by `image_codec` ("lossless", or "jpeg" at `jpeg_quality`),
    flushed at least once a second. It appears under its final name only once it is
    complete; if the loop fails, what was recorded so far is kept, marked incomplete, and the error propagates
    (a full disk stops the recording with an EpisodeError that says so; the partial episode stays for
    `teleop episodes repair`). Unfinished recordings already in `out_dir` are reported through `warn`
    (an UnfinishedRecordingWarning by default) and never overwritten. With `trace`, every raw device sample
    is also written to `<episode name>.trace.jsonl` beside it (replayable with the `replay` device).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    message = unfinished_warning(out_dir)
    if message:
        warn(message)
    state = rig.session.reset(seed)
    meta = episode_meta(rig, seed, state, "policy" if policy is not None else None)
    queued = max(16, round(QUEUE_S * meta.control_rate_hz))
    episode_writer = create_writer(out_dir, meta, format, image_codec=image_codec, jpeg_quality=jpeg_quality)
    writer = BackgroundWriter(episode_writer, max_queued_steps=queued)
    recorder = TraceRecorder(trace_path(writer.path), rig.config.device) if trace else None
    rig.session.device = RecordingDevice(rig.device, recorder) if recorder else rig.device
    if policy is None:
        rig.session.device.connect()
    try:
        writer.open()  # creates the partial episode and starts the writer thread, before the first tick
        result = rig.session.run_episode(writer, should_stop=should_stop, on_step=on_step, policy=policy)
    except BaseException as exc:
        _keep_what_was_recorded(writer, exc)
        raise
    finally:
        if policy is None:
            rig.session.device.disconnect()
        rig.session.device = rig.device
        if recorder:
            recorder.close()
    path = writer.close(success=result.success, attrs=result.attrs())
    return RecordedEpisode(path, result)


def trace_path(episode: Path) -> Path:
    """Where the device trace of an episode is kept: episode_000003.h5 -> episode_000003.trace.jsonl."""
    return episode.with_name(episode.name.split(".")[0] + ".trace.jsonl")


def _keep_what_was_recorded(writer: BackgroundWriter, exc: BaseException) -> None:
    """After a failed loop: close what was recorded as incomplete, or drop an empty recording.

    A storage failure leaves the partial episode as the error described; errors while closing are not
    raised over the loop's own error.
    """
    if writer.num_steps == 0 and not writer.failed:
        writer.discard()
        return
    with contextlib.suppress(EpisodeError):
        writer.close(success=None, attrs={"incomplete": True, "error": f"{type(exc).__name__}: {exc}"})


def record_episodes(rig: Rig, out_dir: Path, episodes: int, seed: int = 0, format: str = "hdf5",
                    progress: Callable[[str], None] = print, trace: bool = False, image_codec: str = "lossless",
                    jpeg_quality: int = jpeg.DEFAULT_QUALITY) -> RecordingSummary:
    """Record `episodes` episodes with seeds seed, seed + 1, ... into `out_dir`, one progress line each (a bar,
    the episode's outcome and rate, the time left).

    Unfinished recordings found in `out_dir` are reported once through `progress`. See record_episode for the
    storage arguments.
    """
    summary = RecordingSummary()
    reported: set[str] = set()

    def warn_once(message: str) -> None:
        if message not in reported:
            reported.add(message)
            progress(f"warning: {message}")

    started = time.monotonic()
    for i in range(episodes):
        episode = record_episode(rig, out_dir, seed + i, format=format, warn=warn_once, trace=trace,
                                 image_codec=image_codec, jpeg_quality=jpeg_quality)
        summary.episodes.append(episode)
        r = episode.result
        left = time_left(i + 1, episodes, time.monotonic() - started)
        progress(f"{progress_bar((i + 1) / episodes)} episode {i + 1}/{episodes} {episode.path.name}: "
                 f"{'success' if r.success else 'failure'}, {r.steps} steps in {r.duration_s:.1f} s "
                 f"({r.achieved_rate_hz:.1f} Hz, {r.late_ticks} late), {left:.0f} s left")
        for line in camera_report(r):
            progress(line)
        if r.malformed_samples:  # the device misbehaved: the operator should know which way
            progress(f"  warning: {r.device_problems[0]}; the robot held still on each")
        for problem in r.timing_problems(rig.session.config.rate_hz):
            progress(f"  warning: {problem}")
    return summary


def camera_report(result: EpisodeResult) -> list[str]:
    """One line per camera beside the simulator's (what the steps used), then one per camera that gave out."""
    lines = []
    for name, s in sorted(result.camera_stats.items()):
        if s.state == "sim":
            continue
        oldest = "" if s.max_age_ms is None else f", oldest {s.max_age_ms:.0f} ms"
        missing = f", {s.missing} steps without a frame" if s.missing else ""
        faster = " (it delivers more frames than the loop has steps)" if s.drops and s.frames > result.steps else ""
        lines.append(f"  camera {name}: {s.used} frames used, {s.drops} dropped{faster}, {s.duplicates} steps "
                     f"reused a frame, {s.stale} stale{oldest}, {s.timestamps} timestamps{missing}")
    lines += [f"  warning: {problem}; its last frame was repeated from then on" for problem in result.camera_problems]
    return lines


@dataclass
class RecordingSummary:
    episodes: list[RecordedEpisode] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(e.result.steps for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return sum(e.result.success for e in self.episodes) / max(1, len(self.episodes))

    @property
    def achieved_rate_hz(self) -> float:
        seconds = sum(e.result.duration_s for e in self.episodes)
        return sum(e.result.steps - 1 for e in self.episodes) / seconds if seconds else 0.0

    @property
    def late_ticks(self) -> int:
        return sum(e.result.late_ticks for e in self.episodes)
