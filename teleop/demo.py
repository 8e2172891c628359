"""`teleop demo`: record episodes headless with the scripted operator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from teleop.recording import RecordingSummary, record_episode
from teleop.rig import RigConfig, build_rig


def run_demo(config: RigConfig, out_dir: Path, episodes: int, seed: int = 0,
             progress: Callable[[str], None] = print) -> RecordingSummary:
    """Record `episodes` episodes with seeds seed, seed + 1, ... into `out_dir`."""
    rig = build_rig(config)
    summary = RecordingSummary()
    progress(f"{config.task_name} on {config.robot}: '{rig.task.instruction}', "
             f"{config.session.rate_hz:g} Hz, cameras {', '.join(rig.sim.cameras)} ({rig.sim.renderer_name})")
    try:
        for i in range(episodes):
            episode = record_episode(rig, out_dir, seed + i)
            summary.episodes.append(episode)
            r = episode.result
            progress(f"[{i + 1}/{episodes}] {episode.path.name}: {'success' if r.success else 'failure'}, "
                     f"{r.steps} steps in {r.duration_s:.1f} s ({r.achieved_rate_hz:.1f} Hz, "
                     f"{r.late_ticks} late)")
    finally:
        rig.close()
    return summary
