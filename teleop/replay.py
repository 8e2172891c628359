"""Replaying an episode's recorded actions in the simulator, from its recorded initial state."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recorder.backend import open_episode
from teleop.errors import TeleopError
from teleop.rig import RigConfig, build_rig
from teleop.session import SessionConfig, apply_action
from teleop.sim import SimConfig


def replay_joint_positions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Recorded joint positions (N, n) and those the simulator reaches replaying the actions (N, n).

    Row i of both is the state before action i is applied; the simulator starts from the episode's initial
    state (task.restore) and steps one control period per action.

    Raises:
        TeleopError: The episode was trimmed at its start (its initial state is the recording's).
    """
    with open_episode(path) as episode:
        meta, recorded, actions = episode.meta, episode.joint_pos, episode.action
        trim = episode.attrs.get("trim_range")
    if trim is not None and int(trim[0]) > 0:
        raise TeleopError(f"{path} was trimmed (it starts at step {int(trim[0])} of the recording), so its recorded "
                          "initial state is not where it starts: replay the original (teleop episodes restore)")
    rig = build_rig(RigConfig(robot=meta.robot, task=meta.task, sim=SimConfig(cameras=()),
                              session=SessionConfig(rate_hz=meta.control_rate_hz)))
    try:
        rig.task.restore(rig.sim, meta.initial_state)
        replayed = np.empty_like(recorded)
        for i, action in enumerate(actions):
            replayed[i] = rig.sim.joint_state()[0]
            apply_action(rig.sim, action)
            rig.sim.step(rig.session.period)
    finally:
        rig.close()
    return recorded, replayed
