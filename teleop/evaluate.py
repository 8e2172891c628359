"""Rolling a trained policy out in the simulated task it was trained on.

`evaluate_runner` rolls out a policy held in memory, one scene after another. `evaluate_checkpoint` rolls out a
saved policy on `workers` processes at once, each loading it and taking an equal share of the scenes (a fresh
interpreter per worker, so it works from any script and thread); the results are the same as one process gives,
scene by scene.
"""

from __future__ import annotations

import json
import selectors
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from teleop.child import python_child, result_stream
from teleop.clock import SimulatedClock
from teleop.progress import progress_bar, time_left
from teleop.recording import record_episode
from teleop.rig import RigConfig, build_rig
from teleop.session import SessionConfig
from teleop.sim import SimConfig
from teleop.train.runner import PolicyRunner

EVAL_SEED_OFFSET = 100_000  # test scenes (`teleop eval`) differ from the demonstration scenes (seeds 0, 1, ...)
VALID_SEED_OFFSET = 200_000  # validation scenes, which pick the best checkpoint while training


@dataclass
class EvalResult:
    """Rollouts in scene order: success (the task's own check) and steps of each."""

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
                    progress: Callable[[str], None] | None = None,
                    on_rollout: Callable[[int, bool, int], None] | None = None,
                    record_dir: Path | None = None) -> EvalResult:
    """Roll `runner` out for `episodes` seeded episodes (scenes seed, seed + 1, ...); success is the task's own
    check, and an episode ends at its first success or at the length cap. `on_rollout(scene, success, steps)`
    is called after each.

    The policy drives the robot through the same Session loop and controller limits as a teleoperation device
    (Session.run_episode with `policy`), on a simulated clock: as fast as the simulator allows, with the
    demonstrations' control period, so the policy sees the dynamics it was trained on. With `record_dir`, each
    rollout is also recorded there as an episode (operator_device "policy", every camera), to review like a
    demonstration; otherwise only the policy's cameras are rendered.
    """
    clock = SimulatedClock()
    cameras = None if record_dir is not None else runner.cameras
    rig = build_rig(RigConfig(
        robot=runner.robot, task=runner.task,
        sim=SimConfig(image_size=image_size or runner.image_size, cameras=cameras),
        session=SessionConfig(rate_hz=runner.control_rate_hz, max_duration_s=max_duration_s, stop_on_success_s=0.0),
    ), clock=clock, sleep=clock.sleep)
    result = EvalResult()
    started = time.perf_counter()
    try:
        for i in range(episodes):
            if record_dir is not None:
                rollout = record_episode(rig, record_dir, seed + i, policy=runner).result
            else:
                rig.session.reset(seed + i)
                rollout = rig.session.run_episode(policy=runner)
            success, steps = bool(rollout.success), rollout.steps
            result.successes.append(success)
            result.steps.append(steps)
            if on_rollout:
                on_rollout(seed + i, success, steps)
            if progress:
                outcome = f"{'success' if success else 'failure'} in {steps} steps"
                progress(_progress_line(i + 1, episodes, result.successes, started, outcome))
    finally:
        rig.close()
    return result


def _progress_line(done: int, total: int, successes: list[bool], started: float, outcome: str) -> str:
    """`[####....] eval episode 3/30 (outcome): 67 % so far, 40 s left`."""
    elapsed = time.perf_counter() - started
    return (f"{progress_bar(done / total)} eval episode {done}/{total} ({outcome}): "
            f"{sum(successes) / max(len(successes), 1):.0%} so far, {time_left(done, total, elapsed):.0f} s left")


def evaluate_checkpoint(path: Path, episodes: int, seed: int = EVAL_SEED_OFFSET, workers: int = 1,
                        threads: int = 1, max_duration_s: float | None = None,
                        progress: Callable[[str], None] | None = None,
                        record_dir: Path | None = None) -> EvalResult:
    """Roll the policy saved at `path` (a run folder or a checkpoint file) out on scenes seed..seed+episodes-1,
    on `workers` processes with `threads` torch threads each; with `record_dir`, every rollout is recorded
    there as an episode (see evaluate_runner).

    Raises:
        TeleopError: The checkpoint cannot be loaded (raised here, before any worker starts).
        RuntimeError: A worker failed; its last error line is in the message.
    """
    from teleop.deps import require
    from teleop.train.runner import load_policy

    require("torch", extra="train", purpose="rolling a policy out").set_num_threads(threads)
    runner = load_policy(Path(path))  # here first: a bad checkpoint is one clear error, not one per worker
    workers = max(1, min(workers, episodes))
    if workers == 1:
        return evaluate_runner(runner, episodes, seed, max_duration_s=max_duration_s, progress=progress,
                               record_dir=record_dir)
    del runner
    shares = [s for s in np.array_split(np.arange(episodes), workers) if len(s)]
    children = [python_child(
        "from teleop.evaluate import _worker_main; _worker_main()", str(path), str(seed + int(share[0])),
        str(len(share)), str(threads), json.dumps(max_duration_s),
        json.dumps(None if record_dir is None else str(record_dir))) for share in shares]
    rows: dict[int, tuple[bool, int]] = {}
    started = time.perf_counter()
    with selectors.DefaultSelector() as selector:
        for child in children:
            assert child.stdout is not None
            selector.register(child.stdout, selectors.EVENT_READ)
        open_pipes = len(children)
        while open_pipes:
            for key, _ in selector.select():
                line = key.fileobj.readline()  # type: ignore[union-attr]
                if not line:
                    selector.unregister(key.fileobj)
                    open_pipes -= 1
                    continue
                row = json.loads(line)
                rows[row["seed"]] = (row["success"], row["steps"])
                if progress:
                    result_text = "success" if row["success"] else "failure"
                    outcome = f"scene {row['seed']}: {result_text} in {row['steps']} steps"
                    progress(_progress_line(len(rows), episodes, [s for s, _ in rows.values()], started, outcome))
    for child in children:
        _, err = child.communicate()
        if child.returncode != 0:
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise RuntimeError(f"an evaluation worker failed (exit status {child.returncode}): {last[0]}")
    result = EvalResult()
    for scene in sorted(rows):
        result.successes.append(rows[scene][0])
        result.steps.append(rows[scene][1])
    return result


def _worker_main() -> None:
    """A worker of evaluate_checkpoint: one JSON line per rollout on the original stdout; whatever the
    libraries print goes to stderr."""
    path, first, count, threads, max_duration, record_dir = sys.argv[1:7]
    out = result_stream()
    from teleop.deps import require
    from teleop.train.runner import load_policy

    require("torch", extra="train", purpose="rolling a policy out").set_num_threads(int(threads))
    runner = load_policy(Path(path))

    def report(scene: int, success: bool, steps: int) -> None:
        out.write(json.dumps({"seed": scene, "success": success, "steps": steps}) + "\n")
        out.flush()

    record = json.loads(record_dir)
    evaluate_runner(runner, int(count), int(first), max_duration_s=json.loads(max_duration), on_rollout=report,
                    record_dir=None if record is None else Path(record))
