"""Recording episodes with a rig: one file per episode, the operator's result stored with it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from recorder.episodes import next_episode_path
from recorder.hdf5 import EpisodeWriter
from recorder.step import EpisodeMeta, Step
from teleop.rig import Rig
from teleop.session import EpisodeResult


def episode_meta(rig: Rig, seed: int, initial_state: dict) -> EpisodeMeta:
    return EpisodeMeta(
        robot=rig.config.robot,
        task=rig.task.name,
        instruction=rig.task.language_instruction(),
        control_rate_hz=rig.config.session.rate_hz,
        operator_device=rig.config.device,
        joint_names=rig.sim.joint_names,
        action_names=rig.sim.spec.action_names,
        cameras={name: rig.sim.camera_info(name) for name in rig.sim.cameras},
        start_time=time.time(),
        seed=seed,
        initial_state=initial_state,
    )


@dataclass
class RecordedEpisode:
    path: Path
    result: EpisodeResult


def record_episode(rig: Rig, out_dir: Path, seed: int, should_stop: Callable[[], bool] | None = None,
                   on_step: Callable[[Step, EpisodeResult], None] | None = None) -> RecordedEpisode:
    """Reset the task with `seed`, run one episode with the rig's device and write it to `out_dir`.

    The file appears under its final name only once the episode is complete; if the loop fails, what was
    recorded so far is kept, marked incomplete, and the error propagates.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    state = rig.session.reset(seed)
    writer = EpisodeWriter(next_episode_path(out_dir), episode_meta(rig, seed, state))
    rig.device.connect()
    try:
        result = rig.session.run_episode(writer, should_stop=should_stop, on_step=on_step)
    except BaseException as exc:
        if writer.num_steps:
            writer.close(success=None, attrs={"incomplete": True, "error": f"{type(exc).__name__}: {exc}"})
        else:
            writer.discard()
        raise
    finally:
        rig.device.disconnect()
    path = writer.close(success=result.success, attrs=result.attrs())
    return RecordedEpisode(path, result)


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
