"""Which action space a behaviour-cloning policy learns best from the scripted demonstrations, with vision
taken out: the policy is given the target's position (privileged), so only the action side is measured.

    python benchmarks/bc_actions.py [--demos 25] [--rollouts 30] [--steps 5000] [--seeds 2] [--rows 4,9,10]

Records --demos scripted demonstrations of franka-reach (seeds 0.., the simulator's clock: as fast as the CPU
allows), then for each configuration trains an MLP (2 x 256, ReLU, Adam 1e-3, batch 64, inputs and targets
standardised) from what the action space lets the policy see of the robot (teleop.train.actions: joint
positions for "joint", the end-effector pose and finger joints for "ee-delta") plus the target position, to
the action space's targets, and rolls it out on --rollouts held-out test scenes (seeds 100000..) through the
action space's run-time decoding (ee-delta: IK from the last command), with the task's own success check.
Inputs are standardised as the trainer does (teleop.train.policy.Normalization: the std of each input column
at least PROPRIO_STD_FLOOR), or to unit variance ("unit", every column by its own std). Configurations: joint
targets as recorded, with and without the idle start (recorder.trim.motion_range); ee-delta with horizon 1, 3,
6 and 10 without the idle start; horizon 6 with it; horizon 6 standardised to unit variance; then horizon 6 with
the trainer's cosine learning-rate decay, with ACT's chunks of 5 and 10 targets (teleop.train.actions: temporal
ensembling at run time), and with both. The learning rate is constant (1e-3) except where the row says cosine.
Each is trained with --seeds seeds; the success rate is over all their rollouts. --rows picks rows (1-based, in
this order).

Progress goes to stderr; the last stdout line is one JSON object {"demos", "rollouts", "results": [...]}.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "benchmarks":
    sys.path[0] = str(_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import c_stdout_to_stderr, log  # noqa: E402
from teleop.clock import SimulatedClock  # noqa: E402

TEST_SEED = 100_000


def record(folder: Path, demos: int) -> None:
    from teleop.recording import record_episode
    from teleop.rig import RigConfig, build_rig
    from teleop.session import SessionConfig
    from teleop.sim import SimConfig

    clock = SimulatedClock()
    config = RigConfig(robot="franka", task="franka-reach", sim=SimConfig(image_size=(32, 32)),
                       session=SessionConfig(rate_hz=20.0))
    with c_stdout_to_stderr():
        rig = build_rig(config, clock=clock, sleep=clock.sleep)
        try:
            for seed in range(demos):
                record_episode(rig, folder, seed)
        finally:
            rig.close()
    log(f"recorded {demos} demonstrations")


def dataset(folder: Path, space_name: str, horizon: int, trim: bool, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    from recorder.backend import open_episode
    from recorder.trim import motion_range
    from teleop.train.actions import make_action_space

    space = make_action_space(space_name, "franka", horizon, chunk)
    inputs, targets = [], []
    for path in sorted(folder.glob("episode_*.h5")):
        with open_episode(path) as episode:
            joint_pos, action, target = episode.joint_pos, episode.action, episode.extras("target_pos")
            rate = float(episode.meta.control_rate_hz)
        found = motion_range(action, rate) if trim else None
        start = found.start if found is not None else 0
        inputs.append(np.concatenate([space.proprio(joint_pos), target], axis=1)[start:])
        targets.append(space.targets(joint_pos, action)[start:])
    return np.concatenate(inputs), np.concatenate(targets)


def train(x: np.ndarray, y: np.ndarray, steps: int, seed: int, floor: bool, cosine: bool):  # noqa: ANN201
    import torch

    from teleop.train.policy import Normalization

    torch.manual_seed(seed)
    norm = Normalization.fit(x, y)
    stats = (norm.proprio_mean, norm.proprio_std if floor else x.std(0) + 1e-6, norm.action_mean, norm.action_std)
    xt = torch.from_numpy(((x - stats[0]) / stats[1]).astype(np.float32))
    yt = torch.from_numpy(((y - stats[2]) / stats[3]).astype(np.float32))
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                              torch.nn.ReLU(), torch.nn.Linear(256, y.shape[1]))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if cosine else None
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(xt), (64,), generator=generator)
        loss = torch.nn.functional.mse_loss(net(xt[idx]), yt[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
    return net.eval(), stats  # (net, (input mean, input std, target mean, target std))


def rollouts(net, stats, space_name: str, horizon: int, chunk: int, count: int) -> tuple[int, list[float]]:  # noqa: ANN001
    import torch

    from teleop.rig import RigConfig, build_rig
    from teleop.session import SessionConfig, apply_action
    from teleop.sim import SimConfig
    from teleop.train.actions import make_action_space

    space = make_action_space(space_name, "franka", horizon, chunk)
    with c_stdout_to_stderr():
        rig = build_rig(RigConfig(robot="franka", task="franka-reach", sim=SimConfig(image_size=(32, 32)),
                                  session=SessionConfig(rate_hz=20.0)))
    lower, upper = rig.controller.model.lower, rig.controller.model.upper
    successes, distances = 0, []
    try:
        for k in range(count):
            rig.session.reset(TEST_SEED + k)
            q = rig.sim.joint_state()[0]
            space.reset(q)
            for _ in range(int(rig.task.max_duration_s * 20)):
                q = rig.sim.joint_state()[0]
                x = np.concatenate([space.proprio(q[None])[0], rig.task.extras(rig.sim)["target_pos"]])
                with torch.no_grad():
                    out = net(torch.from_numpy(((x - stats[0]) / stats[1]).astype(np.float32))[None])[0].numpy()
                action = space.decode(out * stats[3] + stats[2], q, 0.05)
                action[:7] = np.clip(action[:7], lower, upper)
                apply_action(rig.sim, action)
                rig.sim.step(0.05)
                if rig.task.success(rig.sim):
                    successes += 1
                    break
            distances.append(float(np.linalg.norm(rig.sim.ee_pose()[:3, 3] - rig.task.extras(rig.sim)["target_pos"])))
    finally:
        rig.close()
    return successes, distances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demos", type=int, default=25)
    parser.add_argument("--rollouts", type=int, default=30)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rows", default=None, help="comma-separated row numbers to run (default: all)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    # (action space, horizon, idle start left out, std floor, cosine lr, chunk)
    configs = [("joint", 1, False, True, False, 1), ("joint", 1, True, True, False, 1),
               ("ee-delta", 1, True, True, False, 1), ("ee-delta", 3, True, True, False, 1),
               ("ee-delta", 6, True, True, False, 1), ("ee-delta", 10, True, True, False, 1),
               ("ee-delta", 6, False, True, False, 1), ("ee-delta", 6, True, False, False, 1),
               ("ee-delta", 6, True, True, True, 1), ("ee-delta", 6, True, True, False, 5),
               ("ee-delta", 6, True, True, False, 10), ("ee-delta", 6, True, True, True, 10)]
    if args.rows:
        configs = [configs[int(r) - 1] for r in args.rows.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bc-actions-") as tmp:
        folder = Path(tmp)
        record(folder, args.demos)
        for space_name, horizon, trim, floor, cosine, chunk in configs:
            x, y = dataset(folder, space_name, horizon, trim, chunk)
            successes, distances, started = 0, [], time.perf_counter()
            for seed in range(args.seeds):
                net, stats = train(x, y, args.steps, seed, floor, cosine)
                won, dist = rollouts(net, stats, space_name, horizon, chunk, args.rollouts)
                successes += won
                distances += dist
            total = args.rollouts * args.seeds
            row = {"action_space": space_name, "horizon": horizon, "idle_start_left_out": trim,
                   "inputs": "std floor" if floor else "unit", "lr": "cosine" if cosine else "constant",
                   "chunk": chunk, "samples": len(x),
                   "success_rate": round(successes / total, 4), "rollouts": total,
                   "median_final_distance_cm": round(100 * float(np.median(distances)), 2),
                   "seconds": round(time.perf_counter() - started, 1)}
            results.append(row)
            log(json.dumps(row))
    print(json.dumps({"demos": args.demos, "rollouts": args.rollouts, "seeds": args.seeds, "steps": args.steps,
                      "results": results}))


if __name__ == "__main__":
    main()
