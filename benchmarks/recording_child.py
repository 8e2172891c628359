"""The recording process that `benchmarks/recording.py --kills` kills with SIGKILL, and the repair after it.

    python benchmarks/recording_child.py record ROOT DIR FORMAT CODEC
    python benchmarks/recording_child.py repair ROOT PARTIAL
    python benchmarks/recording_child.py cost ROOT DIR FORMAT CODEC SECONDS [FLUSH_S]

Records what the recording benchmark records (two 640x480 SyntheticCameras at 30 fps on their capture threads,
a FrameSynchronizer, a 30-d state, a 7-d pose and a 15-d action on a 100 Hz grid) through
BackgroundWriter(create_writer(DIR, meta, FORMAT, image_codec=CODEC)) until it is killed. ROOT is the
repository whose packages record: this one, or a checkout of an earlier version to compare with (its
`recorder` API must have the same names). On stdout, line-buffered: `partial PATH` once, then
`step I T QUEUED` after each append returned (T the step's time, repr of a float, QUEUED the steps still
waiting for the writer thread), and `error MESSAGE` if the recording stopped itself.

`repair` repairs the partial episode a killed recording left with ROOT's recorder.repair and prints one JSON
line: {"num_steps", "timestamps" (of the repaired steps), "repair_s"} or {"error"}; the repaired episode is
deleted after it was read.

`cost` measures what ROOT's episode writer itself costs, without a loop or threads of ours: SECONDS of steps
(100 Hz, two 640x480 cameras at 30 fps: each camera's frame is new every 10/3 steps, frames from the
SyntheticCamera's images) handed to create_writer(DIR, meta, FORMAT, image_codec=CODEC) as fast as it takes
them, on a clock that advances 10 ms a step (so it flushes as in a recording: every FLUSH_S, default the
writer's own), then close(). One JSON line: cpu_s_per_s (CPU seconds of the whole process, zarr's threads
included, per second of recording), wall_s_per_s, append_ms p50 / p99 / max (flushes included), flushes,
flush_ms mean / max (the appends that flushed), close_ms.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from pathlib import Path

RATE_HZ = 100.0
WIDTH, HEIGHT, FPS = 640, 480, 30.0
CAMERAS = ("front", "wrist")
N_JOINTS = 15


def record(directory: Path, fmt: str, codec: str) -> None:
    import numpy as np

    from recorder.backend import create_writer
    from recorder.background import BackgroundWriter
    from recorder.cameras import SyntheticCamera
    from recorder.step import EpisodeMeta, Step
    from recorder.sync import FrameSynchronizer
    from teleop.errors import EpisodeError

    cameras = {name: SyntheticCamera(WIDTH, HEIGHT, FPS) for name in CAMERAS}
    for camera in cameras.values():
        camera.start()
    sync = FrameSynchronizer(cameras, max_age_s=0.1)
    sync.wait_for_first_frames(10.0)
    meta = EpisodeMeta(
        robot="benchmark", task="recording", instruction="record two cameras at 100 Hz until killed",
        control_rate_hz=RATE_HZ, operator_device="synthetic",
        joint_names=tuple(f"j{k}" for k in range(N_JOINTS)), action_names=tuple(f"a{k}" for k in range(N_JOINTS)),
        cameras={name: camera.info() for name, camera in cameras.items()}, start_time=time.time(),
    )
    writer = BackgroundWriter(create_writer(directory, meta, fmt, image_codec=codec)).open()
    print(f"partial {writer.partial}", flush=True)
    next_tick = time.monotonic()
    for k in range(10**9):
        now = time.monotonic()
        if now - next_tick > 1.0 / RATE_HZ:  # the session's grid rule: a late tick skips ahead, no burst
            next_tick += int((now - next_tick) * RATE_HZ) / RATE_HZ
        phase = 0.01 * k + 0.3 * np.arange(N_JOINTS)
        step = Step(t=now, joint_pos=np.sin(phase), joint_vel=np.cos(phase),
                    ee_pose=np.array([0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0]), action=np.sin(phase + 0.01),
                    frames=sync.frames_for_tick(now))
        try:
            writer.append(step)
        except EpisodeError as exc:
            print(f"error {exc}", flush=True)
            time.sleep(600)  # wait for the kill, as a recording that stopped itself would wait for its operator
        print(f"step {k} {now!r} {writer.queued_steps}", flush=True)
        next_tick += 1.0 / RATE_HZ
        delay = next_tick - time.monotonic()
        if delay > 0.002:  # teleop.session.precise_sleep: sleep, then spin the last millisecond
            time.sleep(delay - 0.001)
        while time.monotonic() < next_tick:
            time.sleep(0)


def cost(directory: Path, fmt: str, codec: str, seconds: float, flush_s: float | None) -> None:
    import numpy as np

    from recorder.backend import create_writer
    from recorder.cameras import synthetic_gradient, synthetic_image
    from recorder.layout import remove_episode_path
    from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step

    K = np.array([[500.0, 0.0, WIDTH / 2], [0.0, 500.0, HEIGHT / 2], [0.0, 0.0, 1.0]])
    meta = EpisodeMeta(
        robot="benchmark", task="recording", instruction="writer cost", control_rate_hz=RATE_HZ,
        operator_device="synthetic", joint_names=tuple(f"j{k}" for k in range(N_JOINTS)),
        action_names=tuple(f"a{k}" for k in range(N_JOINTS)),
        cameras={name: CameraInfo(WIDTH, HEIGHT, K, np.eye(4)) for name in CAMERAS}, start_time=time.time(),
    )
    gradient = synthetic_gradient(WIDTH, HEIGHT)
    images = [synthetic_image(k, gradient) for k in range(64)]
    steps = []
    for k in range(int(seconds * RATE_HZ)):
        seq = int(k * FPS / RATE_HZ)
        phase = 0.01 * k + 0.3 * np.arange(N_JOINTS)
        frames = {name: CameraFrame(images[seq % len(images)], 1000.0 + seq / FPS, seq) for name in CAMERAS}
        steps.append(Step(t=1000.0 + k / RATE_HZ, joint_pos=np.sin(phase), joint_vel=np.cos(phase),
                          ee_pose=np.array([0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0]), action=np.sin(phase + 0.01),
                          frames=frames))
    now = [0.0]
    writer = create_writer(directory, meta, fmt, image_codec=codec, clock=lambda: now[0])
    if flush_s is not None:
        writer.flush_interval_s = flush_s
    times, flushes = [], []
    cpu, wall = time.process_time(), time.perf_counter()
    for k, step in enumerate(steps):
        now[0] = k / RATE_HZ
        flushed, start = writer._last_flush, time.perf_counter()
        writer.append(step)
        times.append(time.perf_counter() - start)
        if writer._last_flush != flushed:
            flushes.append(times[-1])
    start = time.perf_counter()
    path = writer.close(True)
    close_s = time.perf_counter() - start
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    ms = np.array(times) * 1e3
    print(json.dumps({
        "cpu_s_per_s": round(cpu / seconds, 4), "wall_s_per_s": round(wall / seconds, 4),
        "append_ms_p50": round(float(np.median(ms)), 3), "append_ms_p99": round(float(np.percentile(ms, 99)), 2),
        "append_ms_max": round(float(ms.max()), 1), "flushes": len(flushes),
        "flush_ms_mean": round(float(np.mean(flushes)) * 1e3, 2) if flushes else None,
        "flush_ms_max": round(float(np.max(flushes)) * 1e3, 1) if flushes else None,
        "close_ms": round(close_s * 1e3, 1), "flush_interval_s": writer.flush_interval_s,
    }), flush=True)
    remove_episode_path(path)


def repair(partial: Path) -> None:
    from recorder.backend import open_episode
    from recorder.layout import remove_episode_path
    from recorder.repair import repair_partial
    from teleop.errors import EpisodeError

    # Versions that guessed whether a recording still runs from the partial's age take min_age_s.
    now = {"min_age_s": 0.0} if "min_age_s" in inspect.signature(repair_partial).parameters else {}
    start = time.monotonic()
    try:
        repaired = repair_partial(partial, **now)
    except EpisodeError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return
    seconds = time.monotonic() - start
    with open_episode(repaired.path) as reader:
        times = [float(t) for t in reader.timestamps]
    remove_episode_path(repaired.path)
    print(json.dumps({"num_steps": repaired.num_steps, "timestamps": times, "repair_s": seconds}), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, sys.argv[2])  # the packages of ROOT
    if sys.argv[1] == "record":
        record(Path(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif sys.argv[1] == "cost":
        cost(Path(sys.argv[3]), sys.argv[4], sys.argv[5], float(sys.argv[6]),
             float(sys.argv[7]) if len(sys.argv) > 7 else None)
    else:
        repair(Path(sys.argv[3]))
