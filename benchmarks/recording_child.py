"""The recording process that `benchmarks/recording.py --kills` kills with SIGKILL, and the repair after it.

    python benchmarks/recording_child.py record ROOT DIR FORMAT CODEC
    python benchmarks/recording_child.py repair ROOT PARTIAL

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
    else:
        repair(Path(sys.argv[3]))
