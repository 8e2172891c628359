"""Rolling a trained policy out in the simulated task it was trained on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from teleop.rig import RigConfig, build_rig
from teleop.session import SessionConfig, apply_action
from teleop.sim import SimConfig
from teleop.train.runner import PolicyRunner

EVAL_SEED_OFFSET = 100_000  # test scenes (`teleop eval`) differ from the demonstration scenes (seeds 0, 1, ...)
VALID_SEED_OFFSET = 200_000  # validation scenes, which pick the best checkpoint while training


@dataclass
class EvalResult:
    successes: list[bool] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)

    @property
    def episodes(self) -> int:
        return len(self.successes)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes)) if self.successes else 0.0


def evaluate_runner(runner: PolicyRunner, episodes: int, seed: int = EVAL_SEED_OFFSET,
                    image_size: tuple[int, int] | None = None, max_duration_s: float | None = None,
                    progress: Callable[[str], None] | None = None) -> EvalResult:
    """Roll `runner` out for `episodes` seeded episodes; success is the task's own check.

    Runs as fast as the simulator allows (a policy needs no wall clock); the control period is the
    demonstrations' rate, so the policy sees the dynamics it was trained on.
    """
    rig = build_rig(RigConfig(
        robot=runner.robot, task=runner.task, sim=SimConfig(image_size=image_size or runner.image_size),
        session=SessionConfig(rate_hz=runner.control_rate_hz, max_duration_s=max_duration_s),
    ))
    result = EvalResult()
    lower, upper = rig.controller.model.lower, rig.controller.model.upper
    n = len(rig.sim.spec.joints)
    try:
        for i in range(episodes):
            rig.session.reset(seed + i)
            runner.reset(rig.sim.joint_state()[0])
            limit = max_duration_s or rig.task.max_duration_s
            steps, success = 0, False
            while steps * rig.session.period < limit and not success:
                q, _ = rig.sim.joint_state()
                rgb = rig.sim.render(runner.camera).rgb
                action = np.asarray(runner.act(rgb, q), dtype=float)
                action[:n] = np.clip(action[:n], lower, upper)  # a policy is no excuse to leave the limits
                apply_action(rig.sim, action)
                rig.sim.step(rig.session.period)
                success = rig.task.success(rig.sim)
                steps += 1
            result.successes.append(success)
            result.steps.append(steps)
            if progress:
                progress(f"eval episode {i + 1}/{episodes}: {'success' if success else 'failure'} in {steps} steps")
    finally:
        rig.close()
    return result
