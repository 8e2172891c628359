"""Kinematics benchmark: our arm IK against pybullet's and ikpy's, and our Allegro hand retargeting.

    python benchmarks/kinematics.py [--quick] [--seed S]

Progress goes to stderr; the last stdout line is one JSON object:
{"ik": {"panda": {"ours": {...}, "pybullet": {...}, "ikpy": {...}}, "xarm7": {...}},
 "retarget": {"allegro": {"ours": {...}}}}.

Arm IK. Every solver gets the same targets at the same rate (50 Hz), one call per tick, its output fed back
as the next tick's measured joints (a position-controlled arm that reaches each command):
* ours: ArmIK (differential, velocity- and position-limited, nullspace posture), default config;
* pybullet: `calculateInverseKinematics` in a DIRECT client on the same URDF, seeded with the current joints
  (`currentPositions`), null-space form (`lowerLimits`, `upperLimits`, `jointRanges`, `restPoses` = home),
  default `maxNumIterations` (20) and `residualThreshold` (1e-4); its raw answer is the command, as it is
  used in teleop loops, so it may jump and leave the limits: that is measured, not corrected. Nested
  variants: "plain" (no null-space arguments) and "iter100" (maxNumIterations 100, residualThreshold 1e-6),
  on the tracking and random scenarios;
* ikpy: IkpyIK (a full ikpy pose solve per tick, then the same speed scaling and limit clipping as ours).
pybullet frame: with `currentPositions`, pybullet reads the target in the base's inertial frame (the URDF's
base <inertial> origin, 65 mm from panda_link0 on the Panda; identity on the xArm7), not in the base link
frame. Targets are therefore given as T_inertial_target = inv(T_base_inertial) T_base_target, with
T_base_inertial from `getDynamicsInfo(body, -1)`; without this the Panda misses by ~65 mm.
Timing: a `time.perf_counter_ns` pair around each call gives p50_ms and p99_ms (wall); `time.thread_time_ns`
around that gives p99_cpu_ms, the call's own CPU time (wall minus the time the thread was preempted by other
jobs: when p99_ms is far above p99_cpu_ms, the tail is the machine's, not the solver's). For ours and ikpy
the clock covers `solve` (validation, solve, limits); the error report of their `JointTarget` (one forward
kinematics pass) is computed when first read, which a teleop loop does not do and neither does this loop
(pybullet reports no error either). For pybullet, the clock covers the call with its seeding and the
read-back of the joints, the target's frame change and quaternion being prepared before the clock (in
pybullet's favour).
Errors are measured afterwards with pinocchio FK of the returned joints, for every solver alike. Each solver
runs a whole sequence on its own, as a real loop runs one solver, and the solvers take turns (the first one
going round) so that load drift from other jobs is spread over all of them. (Interleaving them call by call
puts ikpy's 5 ms, allocation-heavy solves between the others' calls and slowed ours ~3x and pybullet's ~1.4x
here: cold caches, not the solvers.)

Scenarios (a solver's run on a held target ends early once it has settled: within 1 mm and 1 degree, or no
joint moving more than 1e-6 rad, for 10 ticks):
* tracking: a Lissajous path (12, 10, 8 cm at 0.2, 0.3, 0.25 Hz; peak ~0.3 m/s, a brisk hand) with
  5 degree rotation oscillations around the home pose, eased in over 1 s; errors against the target of the
  same tick after 10 settling ticks, mean / p99 / max. The top-level fields of each solver are this
  scenario's. A velocity-limited solver lags where the path asks a joint for more than its speed limit;
* random: reachable targets, FK of q = home + U(-1, 1) rad per joint inside the limits (less 0.05 rad),
  each held from home for up to 150 ticks (3 s); final errors (median, p90), converged fraction (< 1 mm
  and < 1 degree), median ticks to converge;
* random_full_range: the same with q uniform over the whole joint range, up to 500 ticks (10 s): far
  targets, some only reachable in another arm configuration;
* unreachable: targets 1.5-3 m from home with random orientations, up to 250 ticks; final distance and
  late motion (the largest step in the last 20 ticks: does the arm come to rest?);
* jump: from rest at home, the target jumps to a reachable pose 20-30 cm away (FK of a q near home);
  the largest first-tick step, ticks to within 1 mm / 1 degree.
Every scenario counts joint-limit violations (ticks with a joint outside the URDF limits), the largest joint
step per tick, and the ticks where a step exceeds the URDF velocity limit times dt.

Hand retargeting (Allegro, default HandRetargetConfig, 50 Hz stream):
* round trip: random smooth joint paths within the limits -> FK fingertips -> keypoints whose index, middle,
  ring and thumb tips sit at robot_to_human(tips) (palm from HumanHand, the joints between a finger's base
  and tip on the straight line), in a random rigid frame -> retarget. Fingertip error (mm) and joint error
  (rad) against the path, after 10 settling frames, over frames where no robot thumb-finger distance is below
  scale * pinch_far_m (there the retargeter asks for contact on purpose). Also without the output filter;
* human stream: HumanHand curl / spread sinusoids with 2 mm Gaussian keypoint noise; the residual of the
  fingertip terms of the objective (mm), since there is no ground truth.

OPENBLAS_NUM_THREADS is set to 1 (unless the environment sets it) before numpy is imported, as the app's CLI
does: the matrices are small, and the two cores are shared with other jobs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# Run as a script, this file's folder leads sys.path and its name would shadow the `kinematics` package.
_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "benchmarks":
    sys.path[0] = str(_ROOT)

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, NamedTuple, Protocol  # noqa: E402

import numpy as np  # noqa: E402
import pinocchio as pin  # noqa: E402

from benchmarks.common import c_stdout_to_stderr, log  # noqa: E402
from devices.human_hand import HumanHand  # noqa: E402
from kinematics.arm_ik import ArmIKConfig  # noqa: E402
from kinematics.hand_retarget import HUMAN_TIPS, HandRetargetConfig, HandRetargeter, to_hand_frame  # noqa: E402
from kinematics.ikpy_ik import IkpyIKConfig  # noqa: E402
from kinematics.robot_model import RobotModel, load_model  # noqa: E402

ARMS = {"panda": "franka", "xarm7": "xarm7"}
RATE_HZ = 50.0
DT = 1.0 / RATE_HZ
SETTLE_TICKS = 10
TIP_AND_BASE = ((8, 5), (12, 9), (16, 13), (4, 1))  # (tip, MCP/CMC) keypoints of index, middle, ring, thumb


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of the runs; `quick` shrinks them for a smoke test."""

    seed: int = 0
    tracking_s: float = 8.0
    tracking_rounds: int = 3
    random_targets: int = 30
    random_ticks: int = 150
    full_range_targets: int = 15
    full_range_ticks: int = 500
    unreachable_targets: int = 3
    unreachable_ticks: int = 250
    jump_targets: int = 8
    jump_ticks: int = 75
    hand_paths: int = 4
    hand_path_s: float = 6.0

    @classmethod
    def quick(cls, seed: int) -> BenchConfig:
        return cls(seed, 2.5, 1, 4, 100, 2, 150, 1, 60, 2, 50, 1, 2.0)






# ----------------------------------------------------------------------------------------------- arm solvers
class ArmSolver(Protocol):
    """One IK backend in the loop: prepare() is outside the clock, solve() inside."""

    name: str

    def prepare(self, T_base_target: np.ndarray) -> Any: ...

    def solve(self, q_current: np.ndarray, target: Any, dt: float) -> np.ndarray: ...


class OursSolver:
    name = "ours"

    def __init__(self, model: RobotModel) -> None:
        self.ik = ArmIKConfig().build(model)

    def prepare(self, T_base_target: np.ndarray) -> Any:
        return T_base_target

    def solve(self, q_current: np.ndarray, target: Any, dt: float) -> np.ndarray:
        return self.ik.solve(q_current, target, dt).q


class IkpySolver:
    name = "ikpy"

    def __init__(self, model: RobotModel) -> None:
        self.ik = IkpyIKConfig().build(model)

    def prepare(self, T_base_target: np.ndarray) -> Any:
        return T_base_target

    def solve(self, q_current: np.ndarray, target: Any, dt: float) -> np.ndarray:
        return self.ik.solve(q_current, target, dt).q


class PybulletSolver:
    """pybullet's calculateInverseKinematics, one call per tick, seeded with the current joints."""

    def __init__(self, model: RobotModel, variant: str = "nullspace") -> None:
        import pybullet as pb

        self.pb, self.name, self.variant = pb, "pybullet", variant
        self.client = pb.connect(pb.DIRECT)
        self.body = pb.loadURDF(str(model.spec.urdf_path), useFixedBase=True, physicsClientId=self.client)
        infos = [pb.getJointInfo(self.body, i, physicsClientId=self.client) for i in range(self._count())]
        self.ee_link = {info[12].decode(): info[0] for info in infos}[model.spec.ee_frame]
        dofs = [info for info in infos if info[2] != pb.JOINT_FIXED]  # pybullet's IK answers for these
        dof_names = [info[1].decode() for info in dofs]
        self.columns = [dof_names.index(j) for j in model.spec.joints]
        self.rest = [0.0] * len(dofs)
        for k, c in enumerate(self.columns):
            self.rest[c] = float(model.home[k])
        lower, upper = [info[8] for info in dofs], [info[9] for info in dofs]
        self.nullspace = {
            "lowerLimits": lower,
            "upperLimits": upper,
            "jointRanges": [u - lo for lo, u in zip(lower, upper, strict=True)],
            "restPoses": self.rest,
        }
        self.T_inertial_base = np.linalg.inv(self._T_base_inertial())

    def _count(self) -> int:
        return int(self.pb.getNumJoints(self.body, physicsClientId=self.client))

    def _T_base_inertial(self) -> np.ndarray:
        """The base's inertial frame in the base link frame: the frame pybullet's local IK targets are in."""
        pos, quat_xyzw = self.pb.getDynamicsInfo(self.body, -1, physicsClientId=self.client)[3:5]
        T = np.eye(4)
        T[:3, :3] = pin.Quaternion(quat_xyzw[3], *quat_xyzw[:3]).toRotationMatrix()
        T[:3, 3] = pos
        return T

    def prepare(self, T_base_target: np.ndarray) -> Any:
        T = self.T_inertial_base @ T_base_target
        quat = pin.Quaternion(T[:3, :3]).coeffs()  # x, y, z, w as pybullet wants
        return T[:3, 3].tolist(), quat.tolist()

    def solve(self, q_current: np.ndarray, target: Any, dt: float) -> np.ndarray:
        seed = list(self.rest)
        for c, value in zip(self.columns, q_current.tolist(), strict=True):
            seed[c] = value
        kwargs: dict[str, Any] = {"currentPositions": seed, "physicsClientId": self.client}
        if self.variant != "plain":
            kwargs.update(self.nullspace)
        if self.variant == "iter100":
            kwargs.update(maxNumIterations=100, residualThreshold=1e-6)
        out = self.pb.calculateInverseKinematics(self.body, self.ee_link, target[0], target[1], **kwargs)
        return np.array([out[c] for c in self.columns])

    def close(self) -> None:
        self.pb.disconnect(self.client)


# ------------------------------------------------------------------------------------------------ IK runs
class Trace(NamedTuple):
    """One solver on one target sequence: q (K+1, n) start included, call wall and thread CPU times (K,)
    [s], errors (K,)."""

    q: np.ndarray
    seconds: np.ndarray
    cpu_seconds: np.ndarray
    pos_err_m: np.ndarray
    rot_err_rad: np.ndarray


def timed_call(fn: Callable[..., Any], *args: Any) -> tuple[Any, int, int]:
    """fn(*args), its wall time and its thread CPU time [ns] (the CPU clock brackets the wall clock, so the
    wall time carries no clock overhead; CPU time leaves out the time the thread was preempted)."""
    c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
    out = fn(*args)
    w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
    return out, w1 - w0, c1 - c0


def run_solver(
    solver: ArmSolver,
    model: RobotModel,
    q_start: np.ndarray,
    targets: Sequence[np.ndarray],
    stop_when_settled: bool = False,
) -> Trace:
    """One solver through the targets, one call per tick, each output the next tick's measured joints.

    With stop_when_settled (a target held still), the run ends once the solver has settled.
    """
    prepared = [solver.prepare(T) for T in targets]
    qs = [q_start.copy()]
    ns = np.zeros((len(targets), 2))
    for k, target in enumerate(prepared):
        q_next, ns[k, 0], ns[k, 1] = timed_call(solver.solve, qs[-1], target, DT)
        qs.append(np.asarray(q_next, dtype=float))
        if stop_when_settled and (k + 1) % SETTLE_TICKS == 0 and _settled(model, qs, targets[k]):
            break
    ticks = len(qs) - 1
    return _trace(model, np.array(qs), 1e-9 * ns[:ticks], targets[:ticks])


def run_all(
    solvers: Sequence[ArmSolver],
    model: RobotModel,
    q_start: np.ndarray,
    targets: Sequence[np.ndarray],
    stop_when_settled: bool = False,
    first: int = 0,
) -> list[Trace]:
    """run_solver for each solver, starting with solvers[first] and going round (to spread load drift)."""
    traces: list[Trace | None] = [None] * len(solvers)
    for j in np.roll(np.arange(len(solvers)), -first).tolist():
        traces[j] = run_solver(solvers[j], model, q_start, targets, stop_when_settled)
    return [t for t in traces if t is not None]


def _settled(model: RobotModel, qs: list[np.ndarray], T_target: np.ndarray) -> bool:
    """Over the last SETTLE_TICKS ticks: within 1 mm and 1 degree of the target, or no joint moving."""
    recent = np.array(qs[-SETTLE_TICKS - 1 :])
    if len(recent) <= SETTLE_TICKS or not np.isfinite(recent).all():
        return len(recent) > SETTLE_TICKS
    if np.abs(np.diff(recent, axis=0)).max() < 1e-6:
        return True
    for q in recent[1:]:
        T = model.fk(q)
        if np.linalg.norm(T_target[:3, 3] - T[:3, 3]) >= 1e-3:
            return False
        if np.linalg.norm(pin.log3(T_target[:3, :3] @ T[:3, :3].T)) >= np.deg2rad(1.0):
            return False
    return True


def _trace(model: RobotModel, q: np.ndarray, seconds: np.ndarray, targets: Sequence[np.ndarray]) -> Trace:
    """Trace with the errors at each tick; seconds (K, 2): wall and CPU time of each call."""
    pos, rot = np.empty(len(targets)), np.empty(len(targets))
    for k, T_target in enumerate(targets):
        if not np.isfinite(q[k + 1]).all():
            pos[k] = rot[k] = np.nan
            continue
        T = model.fk(q[k + 1])
        pos[k] = np.linalg.norm(T_target[:3, 3] - T[:3, 3])
        rot[k] = np.linalg.norm(pin.log3(T_target[:3, :3] @ T[:3, :3].T))
    return Trace(q, seconds[:, 0], seconds[:, 1], pos, rot)


def motion_stats(model: RobotModel, traces: Sequence[Trace]) -> dict[str, Any]:
    """Latency, joint-limit violations, steps and velocity-limit excesses over all ticks of the traces."""
    seconds = np.concatenate([t.seconds for t in traces])
    cpu_seconds = np.concatenate([t.cpu_seconds for t in traces])
    q_after = np.concatenate([t.q[1:] for t in traces])
    steps = np.abs(np.concatenate([np.diff(t.q, axis=0) for t in traces]))
    lower, upper = model.lower - 1e-9, model.upper + 1e-9
    over_speed = steps / (model.velocity_limit * DT)
    return {
        "p50_ms": 1e3 * float(np.percentile(seconds, 50)),
        "p99_ms": 1e3 * float(np.percentile(seconds, 99)),
        "p99_cpu_ms": 1e3 * float(np.percentile(cpu_seconds, 99)),
        "limit_violations": int(np.any((q_after < lower) | (q_after > upper), axis=1).sum()),
        "max_step_rad": float(np.nanmax(steps)),
        "max_step_over_velocity_limit": float(np.nanmax(over_speed)),
        "velocity_violations": int(np.any(over_speed > 1.0 + 1e-9, axis=1).sum()),
        "non_finite": int((~np.isfinite(q_after)).any(axis=1).sum()),
        "ticks": int(len(seconds)),
    }


def tracking_targets(model: RobotModel, seconds: float) -> list[np.ndarray]:
    """Lissajous poses around the home pose, eased in over the first second, one per tick."""
    T_home = model.fk(model.home)
    amplitude_m = np.array([0.12, 0.10, 0.08])
    freq_hz = np.array([0.2, 0.3, 0.25])
    rot_amplitude = np.deg2rad(5.0)
    rot_freq_hz = np.array([0.15, 0.25, 0.2])
    targets = []
    for t in np.arange(1, int(round(seconds * RATE_HZ)) + 1) * DT:
        ease = _smoothstep(min(1.0, t / 1.0))
        T = T_home.copy()
        T[:3, 3] += ease * amplitude_m * np.sin(2 * np.pi * freq_hz * t)
        T[:3, :3] = pin.exp3(ease * rot_amplitude * np.sin(2 * np.pi * rot_freq_hz * t + 0.5)) @ T_home[:3, :3]
        targets.append(T)
    return targets


def _smoothstep(x: float) -> float:
    return x * x * (3.0 - 2.0 * x)


def peak_speed(targets: Sequence[np.ndarray]) -> float:
    """Largest target speed [m/s] along a tick-by-tick pose sequence."""
    p = np.array([T[:3, 3] for T in targets])
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).max() / DT)


def bench_tracking(solvers: Sequence[ArmSolver], model: RobotModel, cfg: BenchConfig) -> list[dict[str, Any]]:
    """The Lissajous path, `tracking_rounds` times per solver (the order going round); latencies pooled."""
    targets = tracking_targets(model, cfg.tracking_s)
    log(f"    {len(targets)} ticks, peak target speed {peak_speed(targets):.3f} m/s, {cfg.tracking_rounds} rounds")
    rounds = [run_all(solvers, model, model.home, targets, first=r) for r in range(cfg.tracking_rounds)]
    out = []
    for j in range(len(solvers)):
        stats = _tracking_stats(model, rounds[0][j])  # the solvers are deterministic: errors are per round alike
        pooled = np.concatenate([r[j].seconds for r in rounds])
        pooled_cpu = np.concatenate([r[j].cpu_seconds for r in rounds])
        stats.update(
            p50_ms=1e3 * float(np.percentile(pooled, 50)),
            p99_ms=1e3 * float(np.percentile(pooled, 99)),
            p99_cpu_ms=1e3 * float(np.percentile(pooled_cpu, 99)),
        )
        out.append(stats)
    return out


def _tracking_stats(model: RobotModel, trace: Trace) -> dict[str, Any]:
    pos_mm, rot_deg = 1e3 * trace.pos_err_m[SETTLE_TICKS:], np.rad2deg(trace.rot_err_rad[SETTLE_TICKS:])
    return {
        **motion_stats(model, [trace]),
        "pos_err_mm": float(np.mean(pos_mm)),
        "pos_err_mm_p99": float(np.percentile(pos_mm, 99)),
        "pos_err_mm_max": float(np.max(pos_mm)),
        "rot_err_deg": float(np.mean(rot_deg)),
        "rot_err_deg_p99": float(np.percentile(rot_deg, 99)),
        "rot_err_deg_max": float(np.max(rot_deg)),
        "ticks_over_0_5mm": int((pos_mm > 0.5).sum()),
    }


def near_home_goal(model: RobotModel, rng: np.random.Generator, margin_rad: float = 0.05) -> np.ndarray:
    """Joints up to 1 rad from home, inside the limits: the workspace a teleoperator sweeps."""
    return np.clip(model.home + rng.uniform(-1.0, 1.0, model.n), model.lower + margin_rad, model.upper - margin_rad)


def full_range_goal(model: RobotModel, rng: np.random.Generator, margin_rad: float = 0.05) -> np.ndarray:
    """Joints uniform over the whole range inside the limits."""
    return rng.uniform(model.lower + margin_rad, model.upper - margin_rad)


def bench_random(
    solvers: Sequence[ArmSolver],
    model: RobotModel,
    rng: np.random.Generator,
    goal: Callable[[RobotModel, np.random.Generator], np.ndarray],
    count: int,
    ticks: int,
) -> list[dict[str, Any]]:
    """Reachable targets (FK of goal joints), each held from home for at most `ticks` ticks; final errors."""
    per_solver: list[list[Trace]] = [[] for _ in solvers]
    for i in range(count):
        T_goal = model.fk(goal(model, rng))
        for j, trace in enumerate(run_all(solvers, model, model.home, [T_goal] * ticks, True, i % len(solvers))):
            per_solver[j].append(trace)
    return [_final_error_stats(model, traces) for traces in per_solver]


def _final_error_stats(model: RobotModel, traces: Sequence[Trace]) -> dict[str, Any]:
    pos_mm = 1e3 * np.array([t.pos_err_m[-1] for t in traces])
    rot_deg = np.rad2deg([t.rot_err_rad[-1] for t in traces])
    converged = (pos_mm < 1.0) & (rot_deg < 1.0)
    return {
        **motion_stats(model, traces),
        "pos_err_mm": float(np.median(pos_mm)),
        "pos_err_mm_p90": float(np.percentile(pos_mm, 90)),
        "rot_err_deg": float(np.median(rot_deg)),
        "rot_err_deg_p90": float(np.percentile(rot_deg, 90)),
        "converged_fraction": float(converged.mean()),
        "ticks_to_converge_median": _median_ticks_to_converge(traces),
        "targets": len(traces),
    }


def _median_ticks_to_converge(traces: Sequence[Trace]) -> float | None:
    """Median over the traces that end within 1 mm / 1 degree of the first tick from which they stay there."""
    ticks = []
    for t in traces:
        inside = (t.pos_err_m < 1e-3) & (t.rot_err_rad < np.deg2rad(1.0))
        if inside[-1]:
            outside = np.flatnonzero(~inside)
            ticks.append(int(outside[-1]) + 2 if outside.size else 1)
    return float(np.median(ticks)) if ticks else None


def bench_unreachable(
    solvers: Sequence[ArmSolver], model: RobotModel, cfg: BenchConfig, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Targets far outside the workspace: no NaN, limits kept, and the arm should come to rest."""
    per_solver: list[list[Trace]] = [[] for _ in solvers]
    for i in range(cfg.unreachable_targets):
        T_goal = model.fk(model.home)
        direction = rng.normal(size=3)
        T_goal[:3, 3] += direction / np.linalg.norm(direction) * rng.uniform(1.5, 3.0)
        T_goal[:3, :3] = pin.exp3(rng.normal(size=3))
        hold = [T_goal] * cfg.unreachable_ticks
        for j, trace in enumerate(run_all(solvers, model, model.home, hold, True, i % len(solvers))):
            per_solver[j].append(trace)
    out = []
    for traces in per_solver:
        late = max(float(np.abs(np.diff(t.q[-21:], axis=0)).max()) for t in traces)
        final_mm = [1e3 * t.pos_err_m[-1] for t in traces]
        out.append(
            {
                **motion_stats(model, traces),
                "final_distance_mm": float(np.nanmedian(final_mm)),
                "late_max_step_rad": late,
            }
        )
    return out


def bench_jump(
    solvers: Sequence[ArmSolver], model: RobotModel, cfg: BenchConfig, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """A 20-30 cm jump of a reachable target, from rest at home."""
    per_solver: list[list[Trace]] = [[] for _ in solvers]
    p_home = model.fk(model.home)[:3, 3]
    done = 0
    while done < cfg.jump_targets:
        q_goal = np.clip(model.home + rng.uniform(-0.8, 0.8, model.n), model.lower + 0.05, model.upper - 0.05)
        T_goal = model.fk(q_goal)
        if not 0.2 <= np.linalg.norm(T_goal[:3, 3] - p_home) <= 0.3:
            continue
        done += 1
        hold = [T_goal] * cfg.jump_ticks
        for j, trace in enumerate(run_all(solvers, model, model.home, hold, True, done % len(solvers))):
            per_solver[j].append(trace)
    out = []
    for traces in per_solver:
        stats = _final_error_stats(model, traces)
        stats["first_tick_max_step_rad"] = max(float(np.abs(t.q[1] - t.q[0]).max()) for t in traces)
        out.append(stats)
    return out


def bench_arm(name: str, cfg: BenchConfig) -> dict[str, Any]:
    model = load_model(ARMS[name])
    rng = np.random.default_rng(cfg.seed)
    pybullet = PybulletSolver(model)
    solvers: list[ArmSolver] = [OursSolver(model), pybullet, IkpySolver(model)]
    variants = [PybulletSolver(model, "plain"), PybulletSolver(model, "iter100")]
    gc.collect()
    gc.freeze()  # the models, URDF parses and ikpy's sympy expressions: out of every later collection
    try:
        _warm_up([*solvers, *variants], model)
        log(f"  {name}: tracking")
        tracking = bench_tracking([*solvers, *variants], model, cfg)
        log(f"  {name}: random reachable targets near home")
        near = bench_random([*solvers, *variants], model, rng, near_home_goal, cfg.random_targets, cfg.random_ticks)
        log(f"  {name}: random reachable targets over the full joint range")
        full = bench_random(solvers, model, rng, full_range_goal, cfg.full_range_targets, cfg.full_range_ticks)
        log(f"  {name}: unreachable targets")
        unreachable = bench_unreachable(solvers, model, cfg, rng)
        log(f"  {name}: 20-30 cm jumps")
        jump = bench_jump(solvers, model, cfg, rng)
    finally:
        for s in (pybullet, *variants):
            s.close()
        gc.unfreeze()
    result: dict[str, Any] = {
        s.name: {
            **tracking[j],
            "random": near[j],
            "random_full_range": full[j],
            "unreachable": unreachable[j],
            "jump": jump[j],
        }
        for j, s in enumerate(solvers)
    }
    for j, variant in enumerate(variants, start=len(solvers)):
        result["pybullet"][variant.variant] = {**tracking[j], "random": near[j]}
    result["ours"].update(_ratios(result))
    return result


def _warm_up(solvers: Sequence[ArmSolver], model: RobotModel) -> None:
    """A few calls each, so first-call costs (imports, caches) stay out of the figures."""
    run_all(solvers, model, model.home, tracking_targets(model, 0.4))


def _ratios(result: dict[str, Any]) -> dict[str, float]:
    """How many times faster ours is per call (p50 and p99), and error ratios, on tracking."""
    ours = result["ours"]
    out = {}
    for peer, stats in (
        ("pybullet", result["pybullet"]),
        ("pybullet_plain", result["pybullet"]["plain"]),
        ("ikpy", result["ikpy"]),
    ):
        out[f"speedup_vs_{peer}"] = stats["p50_ms"] / ours["p50_ms"]
        out[f"speedup_p99_vs_{peer}"] = stats["p99_ms"] / ours["p99_ms"]
        if peer != "ikpy":  # ikpy's errors are ~0 where it is not speed-limited: a ratio would mean nothing
            out[f"pos_err_ratio_vs_{peer}"] = ours["pos_err_mm"] / stats["pos_err_mm"]
    return out


# ---------------------------------------------------------------------------------------- hand retargeting
def smooth_joint_path(model: RobotModel, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Random smooth joint path (K, 16) within 10% inside the limits: three sinusoids per joint."""
    t = np.arange(int(round(seconds * RATE_HZ)))[:, None] * DT
    freq = rng.uniform(0.1, 0.5, size=(3, model.n))
    phase = rng.uniform(0, 2 * np.pi, size=(3, model.n))
    wave = sum(np.sin(2 * np.pi * freq[i] * t + phase[i]) for i in range(3)) / 3.0
    mid, half = 0.5 * (model.lower + model.upper), 0.4 * (model.upper - model.lower)
    return mid + half * wave


def keypoints_with_tips(tips_hand: np.ndarray, R: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Human keypoints (21, 3) whose index, middle, ring and thumb tips sit at tips_hand (4, 3) (canonical
    frame), the palm from HumanHand, the joints between base and tip on the line; then seen in frame (R, offset)."""
    kp = HumanHand().keypoints(np.zeros(5))
    for (_tip, base), p_tip in zip(TIP_AND_BASE, tips_hand, strict=True):
        for j, f in enumerate((1 / 3, 2 / 3, 1.0)):
            kp[base + 1 + j] = kp[base] + f * (p_tip - kp[base])
    return kp @ R.T + offset


def _retarget_timed(rt: HandRetargeter, keypoints: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Retarget a stream; joint outputs (K, 16) and the wall and CPU time of each call (K, 2) [s]."""
    qs, ns = [], []
    for kp in keypoints:
        q, wall, cpu = timed_call(rt.retarget, kp, DT)
        qs.append(q)
        ns.append((wall, cpu))
    return np.array(qs), 1e-9 * np.array(ns)


def _latency(seconds: np.ndarray) -> dict[str, float]:
    """p50 and p99 of wall times and p99 of CPU times [ms] from (K, 2) seconds."""
    return {
        "p50_ms": 1e3 * float(np.percentile(seconds[:, 0], 50)),
        "p99_ms": 1e3 * float(np.percentile(seconds[:, 0], 99)),
        "p99_cpu_ms": 1e3 * float(np.percentile(seconds[:, 1], 99)),
    }


def bench_round_trip(model: RobotModel, cfg: BenchConfig, rng: np.random.Generator) -> dict[str, Any]:
    filtered, unfiltered = HandRetargetConfig().build(model), HandRetargetConfig(joint_filter=None).build(model)
    pinch_floor = filtered.config.scale * filtered.config.pinch_far_m
    seconds, tip_err, joint_err, raw_tip_err, excluded, frames = [], [], [], [], 0, 0
    for _ in range(cfg.hand_paths):
        path = smooth_joint_path(model, rng, cfg.hand_path_s)
        R, offset = pin.exp3(rng.normal(size=3)), rng.normal(size=3) * 0.2
        tips_true = np.array([model.fingertips(q) for q in path])
        keypoints = [keypoints_with_tips(filtered.robot_to_human(tips), R, offset) for tips in tips_true]
        for rt in (filtered, unfiltered):
            rt.reset(path[0])
        q_out, sec = _retarget_timed(filtered, keypoints)
        q_raw, _ = _retarget_timed(unfiltered, keypoints)
        keep = np.ones(len(path), dtype=bool)
        keep[:SETTLE_TICKS] = False
        pinching = np.array([np.linalg.norm(t[:3] - t[3], axis=1).min() < pinch_floor for t in tips_true])
        excluded += int((keep & pinching).sum())
        keep &= ~pinching
        frames += int(keep.sum())
        seconds.append(sec)
        tip_err.append(_tip_errors(model, q_out[keep], tips_true[keep]))
        raw_tip_err.append(_tip_errors(model, q_raw[keep], tips_true[keep]))
        joint_err.append(np.abs(q_out[keep] - path[keep]).ravel())
    tips_mm, raw_mm, joints = (
        1e3 * np.concatenate(tip_err),
        1e3 * np.concatenate(raw_tip_err),
        np.concatenate(joint_err),
    )
    return {
        **_latency(np.concatenate(seconds)),
        "tip_err_mm": float(np.mean(tips_mm)),
        "tip_err_mm_p99": float(np.percentile(tips_mm, 99)),
        "tip_err_mm_max": float(np.max(tips_mm)),
        "joint_err_rad": float(np.mean(joints)),
        "joint_err_rad_p99": float(np.percentile(joints, 99)),
        "unfiltered_tip_err_mm": float(np.mean(raw_mm)),
        "unfiltered_tip_err_mm_p99": float(np.percentile(raw_mm, 99)),
        "frames": frames,
        "pinch_frames_excluded": excluded,
    }


def _tip_errors(model: RobotModel, qs: np.ndarray, tips_true: np.ndarray) -> np.ndarray:
    """Distances (K*4,) [m] between the fingertips at qs and the true fingertips."""
    if len(qs) == 0:
        return np.zeros(0)
    tips = np.array([model.fingertips(q) for q in qs])
    return np.linalg.norm(tips - tips_true, axis=2).ravel()


def human_stream(rng: np.random.Generator, seconds: float, noise_m: float = 0.002) -> list[np.ndarray]:
    """HumanHand curl and spread sinusoids with Gaussian keypoint noise, one frame per tick."""
    hand = HumanHand()
    freq, phase = rng.uniform(0.2, 0.6, size=(2, 5)), rng.uniform(0, 2 * np.pi, size=(2, 5))
    frames = []
    for t in np.arange(int(round(seconds * RATE_HZ))) * DT:
        curl = 0.5 + 0.45 * np.sin(2 * np.pi * freq[0] * t + phase[0])
        spread = 0.15 * np.sin(2 * np.pi * freq[1] * t + phase[1])
        frames.append(hand.keypoints(curl, spread) + rng.normal(0.0, noise_m, size=(21, 3)))
    return frames


def bench_human_stream(model: RobotModel, cfg: BenchConfig, rng: np.random.Generator) -> dict[str, Any]:
    rt = HandRetargetConfig().build(model)
    keypoints = human_stream(rng, cfg.hand_paths * cfg.hand_path_s)
    qs, seconds = _retarget_timed(rt, keypoints)
    residual = []
    for q, kp in zip(qs, keypoints, strict=True):
        targets = rt.human_to_robot(to_hand_frame(kp)[list(HUMAN_TIPS)])
        residual.append(np.linalg.norm(model.fingertips(q) - targets, axis=1))
    residual_mm = 1e3 * np.concatenate(residual[SETTLE_TICKS:])
    return {
        **_latency(seconds),
        "residual_mm": float(np.mean(residual_mm)),
        "residual_mm_p99": float(np.percentile(residual_mm, 99)),
        "frames": len(keypoints),
    }


def bench_retarget(cfg: BenchConfig) -> dict[str, Any]:
    model = load_model("allegro")
    rng = np.random.default_rng(cfg.seed + 1)
    warm = HandRetargetConfig().build(model)
    for kp in human_stream(rng, 0.4):
        warm.retarget(kp, DT)
    log("  allegro: round trips")
    round_trip = bench_round_trip(model, cfg, rng)
    log("  allegro: human keypoint stream")
    return {**round_trip, "human_stream": bench_human_stream(model, cfg, rng)}


# ---------------------------------------------------------------------------------------------------- main
def run(cfg: BenchConfig) -> dict[str, Any]:
    log(f"kinematics benchmark (seed {cfg.seed}, {RATE_HZ:.0f} Hz, load average {os.getloadavg()[0]:.2f})")
    ik = {}
    for name in ARMS:
        ik[name] = bench_arm(name, cfg)
        _log_arm(name, ik[name])
    retarget = {"allegro": {"ours": bench_retarget(cfg)}}
    r = retarget["allegro"]["ours"]
    log(f"  allegro: p50 {r['p50_ms']:.3f} ms, p99 {r['p99_ms']:.3f} ms, tip error {r['tip_err_mm']:.2f} mm")
    log(f"done (load average {os.getloadavg()[0]:.2f})")
    return {"ik": ik, "retarget": retarget}


def _log_arm(name: str, result: dict[str, Any]) -> None:
    for solver in ("ours", "pybullet", "ikpy"):
        s = result[solver]
        log(
            f"  {name} {solver:8s} tracking p50 {s['p50_ms']:.3f} ms p99 {s['p99_ms']:.3f} ms, "
            f"error {s['pos_err_mm']:.3f} mm {s['rot_err_deg']:.3f} deg, limit violations "
            f"{s['limit_violations']}, max step {s['max_step_rad']:.3f} rad; random converged "
            f"{s['random']['converged_fraction']:.2f}"
        )


def main(argv: Sequence[str] | None = None, emit: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs (a smoke test, not for figures)")
    parser.add_argument("--seed", type=int, default=0, help="seed of targets, paths and noise")
    args = parser.parse_args(argv)
    cfg = BenchConfig.quick(args.seed) if args.quick else BenchConfig(seed=args.seed)
    with c_stdout_to_stderr():
        result = run(cfg)
    emit(json.dumps(result))


if __name__ == "__main__":
    main()
