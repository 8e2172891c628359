"""Recording benchmark: a 100 Hz control loop with two 640x480 cameras recorded to disk, against two peers.

    python benchmarks/recording.py [--seconds S] [--backend hdf5|zarr|both] [--quick] [--dir DIR] [--load N]
                                   [--noise-bits B] [diagnostics: --nice-others N, --switch-interval-ms MS,
                                    --no-gc-freeze, --skip-peers]
    python benchmarks/recording.py --kills K [--load N] [--baseline ROOT] [--seed S]
    python benchmarks/recording.py --writer-cost [--seconds S] [--baseline ROOT]
    python benchmarks/recording.py --depth-codecs [--quick]
    python benchmarks/recording.py --image-codecs [--quick] [--video PATH]

Progress goes to stderr; the last stdout line is one JSON object:
{"hdf5": {...}, "zarr": {...}, "baseline_no_recording": {...}, "inline_writer": {"hdf5": {...}, "zarr": {...}},
 "machine": {...}}.

Every configuration runs the same loop for S seconds (default 60; --quick 3): two SyntheticCamera sources
(640x480, 30 fps, moving content, each on its capture thread) started fresh, a FrameSynchronizer giving each
tick the newest frame of each camera captured at or before the tick, and a Step with a 30-d state (joint_pos
15 + joint_vel 15), a 7-d ee pose and a 15-d action, on a fixed 100 Hz grid kept with the app's
`precise_sleep` on time.monotonic (as teleop.session.Session does: a tick more than one period late is counted
and the grid skips ahead). What the loop does with the step:
* ours ("hdf5", "zarr"): BackgroundWriter(create_writer(DIR, meta, backend, image_codec=C)).append(step), with
  C from --image-codec (default lossless; jpeg stores quality-90 JPEG files);
* inline_writer (peer): the same backend's writer called in the loop, writer.append(step);
* baseline_no_recording (peer): nothing: the jitter that the machine, the cameras and the loop alone produce.

Figures per configuration:
* dropped_frames: frames a camera produced inside the episode (from the first stored seq to the last frame
  published before the last tick) whose seq is not among the stored seqs, read back from the finished episode
  (for the baseline, among the seqs the steps used); every camera logs each frame it publishes, so this is
  measured, not assumed. dropped_frames_sync is the synchronizer's own count (seq gaps). frame_errors counts
  stored frames whose pixels differ from the synthetic image of their seq (every distinct stored frame is
  read back and compared; with jpeg, against that image's JPEG file decoded);
* duplicated_steps: steps that reuse the previous step's frame (summed over cameras; expected ~70 % at
  100 Hz against 30 fps), duplicated_fraction = duplicated_steps / (steps x cameras);
* loop_jitter_p50/p99/max_ms: tick start lateness against the grid; late_ticks: ticks more than a period
  late; ticks_over_2ms; tick_work_p99_ms: the tick's own time (synchronizer, step, append);
* stop_to_readable_s: from the return of the last append to the episode being listed by scan_episodes as
  readable and opened by open_episode with every step (close_s: the close() call alone, which drains the
  queue and finalises);
* mb_per_minute: size on disk per minute of episode; write_mb_s: raw bytes handed to the writer per second
  of wall time (repeated frames included, as handed over); disk_mb_s: bytes on disk per second of wall time;
* memory, read every second in the loop (VmRSS / VmHWM; the peak reset at the start of each configuration
  through /proc/self/clear_refs): rss_mb / peak_rss_mb at 25, 50, 75 and 100 % of the run,
  rss_slope_second_half_mb_per_min (least-squares slope of RSS over the run's second half, after the warm-up;
  bounded memory: about 0), peak_rss_growth_second_half_mb, and rss_by_minute_mb for runs of 2 minutes or
  more. The benchmark keeps its own per-tick records in preallocated arrays, so the baseline stays flat;
  max_queued_steps of the background writer;
* cpu_s: CPU seconds of the main loop, the capture threads, the writer thread and other threads (zarr's I/O
  pool) during the loop, from /proc/self/task/*/stat; load_avg at the start and end of the configuration;
* where late ticks come from: wake_runqueue_p99_ms, the time the loop thread spent runnable but without a CPU
  across each sleep (/proc/self/task/<tid>/schedstat); late_share_waiting_for_cpu, that time as a share of
  the lateness of the ticks over 1 ms (near 1: no free core, the machine's load or our own threads; near 0:
  the loop's own work or waiting for the GIL, which is sleeping, not runnable); tick_work_max_ms; gc_passes,
  gc_gen2_passes, gc_max_ms (collector passes in any thread; a pass holds the GIL) and
  ticks_over_5ms_during_gc (ticks later than 5 ms whose lateness overlaps a pass).

--noise-bits B XORs the low B bits of every frame with one of 8 random patterns: sensor-like noise (3 bits is
about the entropy of Gaussian noise of 2 levels) that compresses like a real camera's frames (default 0: the
SyntheticCamera's clean gradient). Diagnostics, off by default: --nice-others N gives every thread but the
loop's the nice value N (capture, writer and zarr threads; threads started later inherit it);
--switch-interval-ms sets sys.setswitchinterval (Python's default is 5 ms); --no-gc-freeze skips the
gc.collect() + gc.freeze() each configuration starts with (as teleop.session.Session does for each episode,
so full collections skip the objects of the imports); --skip-peers runs only ours (long memory runs).

--load N runs N other processes that keep a CPU busy (`python -c 'while True: pass'`, nice 0) beside the
measurement, from its start to its end: the load of other programs (2 on the project's 2-core machine leaves
the recording no idle core). machine.busy_processes says how many ran.

--kills K measures what a SIGKILL costs instead: K times for each format and codec (hdf5 and zarr, lossless
and jpeg, interleaved round by round) a recording process (benchmarks/recording_child.py: the same cameras,
loop and steps, through BackgroundWriter) is killed at a random time 0.5-5 s after its first step (--seed S),
then the partial episode it left is repaired at once (recorder.repair, in another process) and the repaired
steps compared with the steps the child had appended: {"kills": {"ours": {"hdf5 lossless": {kills, recovered
(episodes repaired whose steps are exactly the first ones appended), nothing_recovered, wrong_steps,
self_stopped (recordings that had stopped themselves before the kill), lost_s_median / p90 / max / each
(appended minus recovered steps, in seconds at 100 Hz), queued_at_kill_max, recorded_s_median,
repair_s_max}, ...}}}. --baseline ROOT runs the same kills, interleaved with ours, with the packages of
another checkout (for example `git archive <commit> | tar -x -C ROOT`), reported as "baseline".

--writer-cost measures the episode writer alone instead (benchmarks/recording_child.py cost: S seconds of
the same steps, default 10, handed to create_writer's writer as fast as it takes them, on a clock advancing
10 ms a step), for each format and codec in a fresh process: {"writer_cost": {"ours": {"hdf5 lossless":
{cpu_s_per_s, wall_s_per_s, append_ms_p50 / p99 / max, flushes, flush_ms_mean / max, close_ms,
flush_interval_s}, ...}}}; with --baseline ROOT also that checkout's writer as it flushes by default
("baseline") and flushing every 0.2 s like ours ("baseline_flush_0.2s"), run interleaved.

--image-codecs measures colour codecs instead, on 640x480 frames of a real camera video (default: the hand
video of the shared data folder, --video to pick another; the SyntheticCamera's noisy frames where there is
none): lossless lzf (h5py) and zstd 1 (zarr) against JPEG through Pillow at quality 75 / 90 / 95 and, where
installed, OpenCV and simplejpeg at 90; encode and decode time, size and PSNR per frame, the median of 3
rounds of 60 frames (--quick: 1 round of 12): {"image_codecs": {codec: {encode_ms, decode_ms, kb, psnr_db}}}.

--depth-codecs measures lossless codecs for (H, W) uint16 depth instead, one 640x480 frame per chunk through
h5py and zarr, on a synthetic scene (a floor receding to a wall, a moving box and sphere) with noise growing
with z^2 (1 mm at 0.6 m, 10 mm at 2 m) and 5 % holes; it prints {"depth_codecs": {codec: {write_ms, read_ms,
kb, ratio}}}, the median of 3 rounds of 60 frames (--quick: 1 round of 12).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# Run as a script, this file's folder leads sys.path; the packages live in the repository root.
_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "benchmarks":
    sys.path[0] = str(_ROOT)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import InitVar, dataclass, field  # noqa: E402
from typing import Any, Literal  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import busy_processes, c_stdout_to_stderr, log  # noqa: E402
from recorder.backend import create_writer, open_episode  # noqa: E402
from recorder.background import WRITER_NICE, BackgroundWriter  # noqa: E402
from recorder.cameras import Capture, SyntheticCamera, synthetic_gradient, synthetic_image  # noqa: E402
from recorder.episodes import EpisodeSummary, scan_episodes  # noqa: E402
from recorder.jpeg import decode_jpeg, encode_jpeg  # noqa: E402
from recorder.layout import remove_episode_path, step_rows  # noqa: E402
from recorder.step import CameraFrame, EpisodeMeta, Step  # noqa: E402
from recorder.sync import FrameSynchronizer  # noqa: E402
from recorder.writer import EpisodeWriter  # noqa: E402

RATE_HZ = 100.0
PERIOD_S = 1.0 / RATE_HZ
WIDTH, HEIGHT, FPS = 640, 480, 30.0
CAMERAS = ("front", "wrist")
N_JOINTS = 15
CHECKPOINTS = (25, 50, 75, 100)  # per cent of the run at which memory is reported
MEMORY_PERIOD_S = 1.0  # memory is read this often (8 times in runs shorter than 8 s)
FIRST_FRAME_TIMEOUT_S = 5.0
Clock = Callable[[], float]


with c_stdout_to_stderr():
    from teleop.session import precise_sleep  # noqa: E402  the app's loop sleep


# ----------------------------------------------------------------------------------------------- process


def proc_status_mb(key: str) -> float:
    """A /proc/self/status memory field (VmRSS, VmHWM) [MB]."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def thread_cpu_s() -> dict[int, float]:
    """Thread id -> CPU seconds (user + system) of every thread of this process."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def thread_roles() -> dict[int, str]:
    """Thread id -> "loop", "cameras", "writer" for the Python threads this benchmark knows by name."""
    roles = {}
    for thread in threading.enumerate():
        if thread.native_id is None:
            continue
        if thread is threading.main_thread():
            roles[thread.native_id] = "loop"
        elif thread.name.startswith("capture"):
            roles[thread.native_id] = "cameras"
        elif thread.name.startswith("writer"):
            roles[thread.native_id] = "writer"
    return roles


def cpu_by_role(before: dict[int, float], after: dict[int, float], roles: dict[int, str]) -> dict[str, float]:
    """CPU seconds spent between two thread_cpu_s() snapshots, summed by role ("other" for the rest)."""
    out = {"loop": 0.0, "cameras": 0.0, "writer": 0.0, "other": 0.0}
    for tid, cpu in after.items():
        out[roles.get(tid, "other")] += cpu - before.get(tid, 0.0)
    return {role: round(seconds, 3) for role, seconds in out.items()}


class RunQueueClock:
    """Time the calling thread has spent runnable but waiting for a CPU [s] (/proc/.../schedstat, field 2).

    Waiting for the GIL is sleeping on a lock, not waiting for a CPU, so it does not count here.
    """

    def __init__(self) -> None:
        path = Path(f"/proc/self/task/{threading.get_native_id()}/schedstat")
        self._fd = os.open(path, os.O_RDONLY) if path.exists() else -1

    def __call__(self) -> float:
        if self._fd < 0:
            return float("nan")
        return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class GcPauses:
    """Garbage-collector passes in any thread while active: (start, end) monotonic [s] and generation."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, float, int]] = []
        self._started: dict[int, float] = {}

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._started[threading.get_ident()] = now
        else:
            self.passes.append((self._started.pop(threading.get_ident(), now), now, int(info["generation"])))

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def renice_other_threads(nice: int) -> int:
    """Set the nice value of every thread of this process but the calling one; how many were set.

    Diagnostic: a lower priority for the capture, writer and zarr threads shows whether the loop's late
    wake-ups come from competing for a CPU with them. Threads created later inherit their creator's value.
    """
    me = threading.get_native_id()
    done = 0
    for task in Path("/proc/self/task").iterdir():
        if int(task.name) != me:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, int(task.name), nice)
                done += 1
    return done


def renice_after_start(nice: int) -> Callable[[], None]:
    """Renice the other threads now, and a callable that does it again (for threads started meanwhile)."""

    def renice() -> None:
        renice_other_threads(nice)

    renice()
    return renice


def disk_bytes(path: Path) -> int:
    """Bytes of an episode file, or of every file under an episode directory."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def percentile_ms(values_s: Sequence[float] | np.ndarray, q: float) -> float:
    return round(float(np.percentile(np.asarray(values_s), q)) * 1e3, 3) if len(values_s) else float("nan")


class Series:
    """A 1-d numeric record appended to in place: while its capacity lasts an append allocates nothing, so
    the benchmark's own records do not count as the recording's memory growth (a list of floats grows
    ~1.3 MB a minute at 100 Hz). Past its capacity it doubles."""

    def __init__(self, capacity: int, dtype: type = np.float64) -> None:
        self._data: np.ndarray = np.empty(max(int(capacity), 16), dtype)
        self._n = 0

    def append(self, value: float) -> None:
        if self._n == len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])
        self._data[self._n] = value
        self._n += 1

    def __len__(self) -> int:
        return self._n

    @property
    def values(self) -> np.ndarray:
        """What was appended, a view."""
        return self._data[: self._n]


# ----------------------------------------------------------------------------------------------- cameras


NOISE_PATTERNS = 8


def noise_patterns(bits: int, seed: int = 0) -> list[np.ndarray]:
    """NOISE_PATTERNS (H, W, 3) uint8 arrays of random values below 2**bits ([] for 0 bits)."""
    if bits <= 0:
        return []
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 1 << bits, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(NOISE_PATTERNS)]


class LoggedCamera(SyntheticCamera):
    """A SyntheticCamera that logs the seq and publish time [s] of every frame it publishes.

    With `noise` patterns, frame k has its low bits XORed with pattern k % len(noise): sensor-like noise
    (3 bits ~ Gaussian noise of 2 levels, by entropy) that compresses like a real camera's frames.
    """

    def __init__(self, noise: list[np.ndarray], log_capacity: int = 4096, clock: Clock = time.monotonic) -> None:
        super().__init__(WIDTH, HEIGHT, FPS, clock)
        self.noise = noise
        self.published_seq = Series(log_capacity, np.int64)
        self.published_at = Series(log_capacity)
        self._made = 0

    def _read(self) -> Capture | None:
        capture = super()._read()
        if capture is not None:
            if self.noise:
                np.bitwise_xor(capture.rgb, self.noise[self._made % len(self.noise)], out=capture.rgb)
            self._made += 1
        return capture

    def _publish(self, capture: Capture) -> None:
        super()._publish(capture)
        frame = self.latest()  # the frame just published: only this thread publishes
        if frame is not None:
            self.published_seq.append(frame.seq)
            self.published_at.append(self.clock())

    def expected_image(self, seq: int, gradient: np.ndarray) -> np.ndarray:
        """The image this camera published as frame `seq` (every frame made is published, so k == seq)."""
        rgb = synthetic_image(seq, gradient)
        return rgb ^ self.noise[seq % len(self.noise)] if self.noise else rgb


# ------------------------------------------------------------------------------------------------- steps


def bench_meta(cameras: dict[str, LoggedCamera]) -> EpisodeMeta:
    return EpisodeMeta(
        robot="benchmark", task="recording", instruction="record two cameras at 100 Hz",
        control_rate_hz=RATE_HZ, operator_device="synthetic",
        joint_names=tuple(f"j{k}" for k in range(N_JOINTS)), action_names=tuple(f"a{k}" for k in range(N_JOINTS)),
        cameras={name: cam.info() for name, cam in cameras.items()}, start_time=time.time(),
    )


def make_step(t: float, k: int, frames: dict[str, CameraFrame]) -> Step:
    """The tick's step: new arrays every tick, as the session builds them (the writer keeps references)."""
    phase = 0.01 * k + 0.3 * np.arange(N_JOINTS)
    return Step(
        t=t,
        joint_pos=np.sin(phase),
        joint_vel=np.cos(phase),
        ee_pose=np.array([0.4 + 0.1 * np.sin(0.01 * k), 0.0, 0.3, 1.0, 0.0, 0.0, 0.0]),
        action=np.sin(phase + 0.01),
        frames=frames,
    )


# ------------------------------------------------------------------------------------------------ the loop


@dataclass
class LoopRecord:
    """What one run of the loop measured: per tick, and memory every MEMORY_PERIOD_S."""

    ticks: InitVar[int]
    tick_t: Series = field(init=False)
    lateness_s: Series = field(init=False)
    wake_runqueue_s: Series = field(init=False)
    work_s: Series = field(init=False)
    used_seqs: dict[str, Series] = field(init=False)
    memory_t: Series = field(init=False)  # seconds since the first tick
    rss_mb: Series = field(init=False)
    peak_rss_mb: Series = field(init=False)
    late_ticks: int = 0
    steps: int = 0
    wall_s: float = 0.0
    last_tick_t: float = 0.0
    last_append_done: float = 0.0
    max_queued_steps: int = 0
    step_bytes: int = 0
    error: str = ""

    def __post_init__(self, ticks: int) -> None:
        self.tick_t, self.lateness_s, self.wake_runqueue_s, self.work_s = (Series(ticks) for _ in range(4))
        self.used_seqs = {cam: Series(ticks, np.int64) for cam in CAMERAS}
        samples = int(ticks / RATE_HZ / MEMORY_PERIOD_S) + 16
        self.memory_t, self.rss_mb, self.peak_rss_mb = (Series(samples) for _ in range(3))

    def sample_memory(self, t_s: float) -> None:
        self.memory_t.append(t_s)
        self.rss_mb.append(proc_status_mb("VmRSS"))
        self.peak_rss_mb.append(proc_status_mb("VmHWM"))


def run_loop(sync: FrameSynchronizer, append: Callable[[Step], None] | None, seconds: float,
             queued: Callable[[], int] | None = None, on_first_tick: Callable[[], None] | None = None) -> LoopRecord:
    """Tick at RATE_HZ for `seconds`, appending each step; memory is read every MEMORY_PERIOD_S.

    Around each sleep the loop thread's run-queue time is read too: how much of a late wake-up was spent
    waiting for a CPU (the machine's load, or our own threads on every core) rather than for the GIL.
    """
    rec = LoopRecord(int(seconds * RATE_HZ) + 16)
    memory_period, next_sample = min(MEMORY_PERIOD_S, seconds / 8), 0.0
    runqueue = RunQueueClock()
    t0 = next_tick = time.monotonic()
    before_sleep = runqueue()
    while (now := time.monotonic()) < t0 + seconds:
        rec.wake_runqueue_s.append(runqueue() - before_sleep)
        rec.lateness_s.append(now - next_tick)
        rec.tick_t.append(now)
        if now - next_tick > PERIOD_S:
            rec.late_ticks += 1
            next_tick += PERIOD_S * int((now - next_tick) / PERIOD_S)
        frames = sync.frames_for_tick(now)
        step = make_step(now, rec.steps, frames)
        if append is not None:
            try:
                append(step)
            except Exception as exc:  # a failed recording ends the configuration and is reported
                rec.error = f"{type(exc).__name__}: {exc}"
                break
        rec.last_append_done = time.monotonic()
        rec.work_s.append(rec.last_append_done - now)
        rec.last_tick_t = now
        rec.steps += 1
        for cam, frame in frames.items():
            rec.used_seqs[cam].append(frame.seq)
        if rec.steps == 1:
            rec.step_bytes = sum(row.nbytes for row in step_rows(step).values())
            if on_first_tick is not None:
                on_first_tick()
        if queued is not None:
            rec.max_queued_steps = max(rec.max_queued_steps, queued())
        if now - t0 >= next_sample:
            rec.sample_memory(now - t0)
            next_sample += memory_period
        next_tick += PERIOD_S
        before_sleep = runqueue()
        precise_sleep(next_tick - time.monotonic())
    rec.wall_s = time.monotonic() - t0
    rec.sample_memory(rec.wall_s)
    runqueue.close()
    return rec


# -------------------------------------------------------------------------------------------- verification


def produced_in_episode(camera: LoggedCamera, first_seq: int, last_tick_t: float) -> set[int]:
    """Seqs a camera published from `first_seq` up to the last tick (frames after it belong to no step)."""
    seqs = camera.published_seq.values
    return set(seqs[(seqs >= first_seq) & (camera.published_at.values <= last_tick_t)].tolist())


def frame_errors(reader: Any, cam: str, seqs: np.ndarray, camera: LoggedCamera) -> int:
    """Distinct stored frames whose pixels differ from the image the camera published with their seq (as its
    JPEG file decodes, for JPEG frames)."""
    gradient = synthetic_gradient(WIDTH, HEIGHT)
    _, first_rows = np.unique(seqs, return_index=True)

    def expected(seq: int) -> np.ndarray:
        image = camera.expected_image(seq, gradient)
        return decode_jpeg(encode_jpeg(image), image.shape[:2]) if reader.is_jpeg(cam) else image

    return sum(int(not np.array_equal(reader.frame(cam, int(i)), expected(int(seqs[i])))) for i in first_rows)


def verify_frames(stored: dict[str, np.ndarray], cameras: dict[str, LoggedCamera],
                  last_tick_t: float) -> dict[str, int]:
    """Frames produced inside the episode against the stored seqs of every camera."""
    produced = dropped = distinct = invented = 0
    for cam, seqs in stored.items():
        if seqs.size == 0:
            continue
        expected = produced_in_episode(cameras[cam], int(seqs[0]), last_tick_t)
        kept = set(seqs.tolist())
        produced += len(expected)
        dropped += len(expected - kept)
        distinct += len(kept)
        invented += len(kept - set(cameras[cam].published_seq.values.tolist()))
    return {"frames_produced": produced, "frames_stored": distinct, "dropped_frames": dropped,
            "unknown_seqs": invented}


def wait_until_readable(directory: Path, path: Path, steps: int, timeout_s: float = 30.0) -> None:
    """Poll until scan_episodes lists `path` as readable and open_episode reads `steps` steps from it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = [item for item in scan_episodes(directory) if item.path == path]
        if listed and isinstance(listed[0], EpisodeSummary):
            with open_episode(path) as reader:
                if reader.num_steps == steps:
                    return
        time.sleep(0.001)
    raise RuntimeError(f"{path} was not readable {timeout_s} s after the recording stopped")


# -------------------------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """One configuration: mode "baseline", "background" or "inline"; backend "hdf5" or "zarr" (not baseline)."""

    mode: str
    backend: str = ""
    noise_bits: int = 0
    image_codec: str = "lossless"
    writer_nice: int = WRITER_NICE

    @property
    def label(self) -> str:
        nice = f" (writer nice {self.writer_nice})" if self.writer_nice != WRITER_NICE else ""
        return self.mode if not self.backend else f"{self.mode} {self.backend}{nice}"


def start_cameras(noise_bits: int, seconds: float) -> dict[str, LoggedCamera]:
    log_capacity = int((seconds + 60) * FPS)  # the run, and the time to start and to stop
    cameras = {name: LoggedCamera(noise_patterns(noise_bits, seed=k), log_capacity) for k, name in enumerate(CAMERAS)}
    for cam in cameras.values():
        cam.start()
    return cameras


def open_sink(cfg: Config, directory: Path, meta: EpisodeMeta) -> EpisodeWriter | BackgroundWriter | None:
    if cfg.mode == "baseline":
        return None
    writer = create_writer(directory, meta, cfg.backend, image_codec=cfg.image_codec)
    return BackgroundWriter(writer, nice=cfg.writer_nice).open() if cfg.mode == "background" else writer.open()


def queue_length(sink: EpisodeWriter | BackgroundWriter | None) -> Callable[[], int] | None:
    """Reads the background writer's queue length; None for the other sinks."""
    if not isinstance(sink, BackgroundWriter):
        return None
    background = sink
    return lambda: background.queued_steps


def loop_figures(rec: LoopRecord, sync: FrameSynchronizer) -> dict[str, Any]:
    stats = sync.stats()
    duplicates = sum(s.duplicates for s in stats.values())
    lateness = rec.lateness_s.values
    return {
        "steps": rec.steps,
        "achieved_rate_hz": round((rec.steps - 1) / rec.wall_s, 3) if rec.steps > 1 else 0.0,
        "loop_jitter_p50_ms": percentile_ms(lateness, 50),
        "loop_jitter_p99_ms": percentile_ms(lateness, 99),
        "loop_jitter_max_ms": round(float(lateness.max()) * 1e3, 3) if lateness.size else float("nan"),
        "late_ticks": rec.late_ticks,
        "ticks_over_2ms": int((lateness > 0.002).sum()),
        **lateness_causes(rec),
        "tick_work_p50_ms": percentile_ms(rec.work_s.values, 50),
        "tick_work_p99_ms": percentile_ms(rec.work_s.values, 99),
        "tick_work_max_ms": round(float(rec.work_s.values.max()) * 1e3, 3) if len(rec.work_s) else float("nan"),
        "dropped_frames_sync": sum(s.drops for s in stats.values()),
        "duplicated_steps": duplicates,
        "duplicated_fraction": round(duplicates / max(1, rec.steps * len(stats)), 4),
        "stale_steps": sum(s.stale for s in stats.values()),
    }


def lateness_causes(rec: LoopRecord, over_s: float = 0.001) -> dict[str, Any]:
    """How much of the lateness of ticks later than `over_s` the loop thread spent waiting for a CPU."""
    lateness, wait = rec.lateness_s.values, rec.wake_runqueue_s.values
    late = lateness > over_s
    total = float(lateness[late].sum())
    waited = float(np.minimum(wait[late], lateness[late]).sum())
    return {
        "wake_runqueue_p99_ms": percentile_ms(rec.wake_runqueue_s.values, 99),
        "ticks_over_1ms": int(late.sum()),
        "late_share_waiting_for_cpu": round(waited / total, 3) if total > 0 else None,
    }


def gc_figures(rec: LoopRecord, gc_passes: list[tuple[float, float, int]], stall_s: float = 0.005) -> dict[str, Any]:
    """Garbage-collector passes during the loop, and the ticks later than `stall_s` that one overlapped."""
    durations = [end - start for start, end, _ in gc_passes]
    t, lateness = rec.tick_t.values, rec.lateness_s.values
    late = lateness > stall_s
    stalls = list(zip((t - lateness)[late].tolist(), t[late].tolist(), strict=True))  # (due, started)
    with_gc = sum(any(start < t and end > due for start, end, _ in gc_passes) for due, t in stalls)
    return {
        "gc_passes": len(gc_passes),
        "gc_gen2_passes": sum(gen == 2 for _, _, gen in gc_passes),
        "gc_max_ms": round(max(durations) * 1e3, 3) if durations else 0.0,
        "ticks_over_5ms": len(stalls),
        "ticks_over_5ms_during_gc": with_gc,
    }


def memory_figures(rec: LoopRecord) -> dict[str, Any]:
    """RSS and peak RSS at the CHECKPOINTS (the last sample at or before each), the RSS slope over the run's
    second half (warm-up excluded) and, for runs of two minutes or more, RSS at every whole minute."""
    t, rss, peak = rec.memory_t.values, rec.rss_mb.values, rec.peak_rss_mb.values
    if len(t) < 2:
        return {}

    def at(t_s: float) -> int:
        return max(int(np.searchsorted(t, t_s + 1e-6)) - 1, 0)

    end = t[-1]
    out: dict[str, Any] = {
        "rss_mb": {str(pc): round(float(rss[at(end * pc / 100)]), 1) for pc in CHECKPOINTS},
        "peak_rss_mb": {str(pc): round(float(peak[at(end * pc / 100)]), 1) for pc in CHECKPOINTS},
    }
    half = t >= end / 2
    if half.sum() >= 2:
        out["rss_slope_second_half_mb_per_min"] = round(float(np.polyfit(t[half] / 60.0, rss[half], 1)[0]), 2)
    out["peak_rss_growth_second_half_mb"] = round(float(peak[-1] - peak[at(end / 2)]), 1)
    if end >= 120:
        out["rss_by_minute_mb"] = {str(m): round(float(rss[at(60.0 * m)]), 1) for m in range(int(end // 60) + 1)}
    return out


def episode_figures(cfg: Config, sink: EpisodeWriter | BackgroundWriter, rec: LoopRecord, directory: Path,
                    cameras: dict[str, LoggedCamera]) -> dict[str, Any]:
    """Close the episode, time how soon it is readable, read it back and verify every stored frame."""
    path = sink.close(True)
    close_s = time.monotonic() - rec.last_append_done
    wait_until_readable(directory, path, rec.steps)
    readable_s = time.monotonic() - rec.last_append_done
    size = disk_bytes(path)
    with open_episode(path) as reader:
        stored = {cam: reader.camera_seq(cam) for cam in CAMERAS}
        errors = sum(frame_errors(reader, cam, seqs, cameras[cam]) for cam, seqs in stored.items())
        frames_on_disk = sum(reader.num_frames(cam) for cam in CAMERAS)
        episode_s = reader.duration_s + PERIOD_S
    remove_episode_path(path)  # a minute of noisy frames takes gigabytes
    figures: dict[str, Any] = {**verify_frames(stored, cameras, rec.last_tick_t)}
    figures.update({
        "frame_errors": errors,
        "frame_rows_stored": frames_on_disk,
        "close_s": round(close_s, 4),
        "stop_to_readable_s": round(readable_s, 4),
        "disk_mb": round(size / 1e6, 2),
        "mb_per_minute": round(size / 1e6 / (episode_s / 60.0), 1),
        "write_mb_s": round(rec.step_bytes * rec.steps / 1e6 / rec.wall_s, 1),
        "disk_mb_s": round(size / 1e6 / rec.wall_s, 2),
    })
    if cfg.mode == "background":
        figures["max_queued_steps"] = rec.max_queued_steps
    return figures


def baseline_frames(rec: LoopRecord, cameras: dict[str, LoggedCamera]) -> dict[str, Any]:
    stored = {cam: seqs.values for cam, seqs in rec.used_seqs.items()}
    return verify_frames(stored, cameras, rec.last_tick_t)


def run_config(cfg: Config, seconds: float, directory: Path, nice: int | None = None,
               gc_freeze: bool = True) -> dict[str, Any]:
    """Run one configuration with fresh cameras and a fresh episode; its figures."""
    log(f"{cfg.label}: {seconds:.0f} s ...")
    load_start = os.getloadavg()
    cameras = start_cameras(cfg.noise_bits, seconds)
    try:
        sync = FrameSynchronizer(cameras, max_age_s=0.1)
        sync.wait_for_first_frames(FIRST_FRAME_TIMEOUT_S)
        sink = open_sink(cfg, directory, bench_meta(cameras))
        renice = None if nice is None else renice_after_start(nice)
        if gc_freeze:
            gc.collect()
            gc.freeze()
        reset_peak_rss()
        cpu_before, usage_before = thread_cpu_s(), os.times()
        with GcPauses() as gc_pauses:
            rec = run_loop(sync, None if sink is None else sink.append, seconds, queue_length(sink), renice)
        cpu_after, usage_after, roles = thread_cpu_s(), os.times(), thread_roles()
        figures = {**loop_figures(rec, sync), **gc_figures(rec, gc_pauses.passes), **memory_figures(rec)}
        figures["cpu_s"] = cpu_by_role(cpu_before, cpu_after, roles)
        cpu_total = (usage_after.user - usage_before.user) + (usage_after.system - usage_before.system)
        figures["process_cpu_percent"] = round(100 * cpu_total / rec.wall_s, 1)
    finally:
        gc.unfreeze()
        for cam in cameras.values():
            cam.stop()
    if rec.error:
        figures["error"] = rec.error
    if sink is None:
        figures.update(baseline_frames(rec, cameras))
    else:
        figures.update(episode_figures(cfg, sink, rec, directory, cameras))
    figures["load_avg"] = [round(load_start[0], 2), round(os.getloadavg()[0], 2)]
    log(f"  {summary_line(figures)}")
    return figures


def summary_line(f: dict[str, Any]) -> str:
    keys = ("loop_jitter_p99_ms", "late_ticks", "dropped_frames", "duplicated_fraction", "stop_to_readable_s",
            "mb_per_minute", "rss_slope_second_half_mb_per_min", "process_cpu_percent", "load_avg")
    return ", ".join(f"{k} {f[k]}" for k in keys if k in f)


def run(seconds: float, backends: Sequence[str], directory: Path, noise_bits: int = 0,
        nice: int | None = None, peers: bool = True, image_codec: str = "lossless",
        gc_freeze: bool = True, writer_nice: Sequence[int] = (WRITER_NICE,)) -> dict[str, Any]:
    """Every configuration in turn: the baseline, then each backend through the background writer (with each
    writer nice value in turn), then inline."""
    configs = [Config("background", b, noise_bits, image_codec, n) for b in backends for n in writer_nice]
    if peers:
        inline = [Config("inline", b, noise_bits, image_codec) for b in backends]
        configs = [Config("baseline", "", noise_bits), *configs, *inline]
    result: dict[str, Any] = {"inline_writer": {}}
    for cfg in configs:
        figures = run_config(cfg, seconds, directory, nice, gc_freeze)
        if cfg.mode == "baseline":
            result["baseline_no_recording"] = figures
        elif cfg.mode == "background" and cfg.writer_nice != WRITER_NICE:
            result.setdefault("writer_nice", {}).setdefault(str(cfg.writer_nice), {})[cfg.backend] = figures
        elif cfg.mode == "background":
            result[cfg.backend] = figures
        else:
            result["inline_writer"][cfg.backend] = figures
    result["machine"] = {**machine(noise_bits), "other_threads_nice": nice, "gc_freeze": gc_freeze,
                         "image_codec": image_codec}
    return result


def machine(noise_bits: int) -> dict[str, Any]:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg_end": os.getloadavg()[0],
            "noise_bits": noise_bits,
            "switch_interval_ms": sys.getswitchinterval() * 1e3, "rate_hz": RATE_HZ,
            "cameras": f"{len(CAMERAS)} x {WIDTH}x{HEIGHT} @ {FPS:.0f} fps"}


# ------------------------------------------------------------------------------------------------ kills

CHILD = Path(__file__).resolve().parent / "recording_child.py"
KILL_WINDOW_S = (0.5, 5.0)  # a kill comes this long after the child's first step, uniformly at random [s]
CHILD_START_TIMEOUT_S = 60.0


@dataclass
class KillRecord:
    """One recording child killed with SIGKILL, and what repair made of its partial episode."""

    appended: int = 0  # steps whose append() had returned in the child before the kill
    recovered: int = 0  # steps of the repaired episode
    queued_at_kill: int = 0  # steps the child's writer thread still had queued at its last append
    self_stopped: bool = False  # the recording stopped itself ("the disk cannot keep up", ...)
    repair_s: float = 0.0
    problem: str = ""  # why nothing was recovered, or how the recovered steps differ from the appended ones


def read_lines(stream: Any, lines: list[str]) -> threading.Thread:
    """A thread appending every line of `stream` to `lines` until it ends."""

    def pump() -> None:
        for line in stream:
            lines.append(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def kill_once(root: Path, directory: Path, fmt: str, codec: str, after_s: float) -> KillRecord:
    """Start a recording child, SIGKILL it `after_s` after its first step, repair what it left (with ROOT's
    own repair), and compare the repaired steps with the steps the child had appended."""
    child = subprocess.Popen([sys.executable, str(CHILD), "record", str(root), str(directory), fmt, codec],
                             stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    pump = read_lines(child.stdout, lines)
    deadline = time.monotonic() + CHILD_START_TIMEOUT_S
    while not any(line.startswith("step") for line in lines[-3:]):
        if child.poll() is not None or time.monotonic() > deadline:
            child.kill()
            raise RuntimeError(f"the recording child did not start recording: {''.join(lines)[-2000:]}")
        time.sleep(0.001)
    time.sleep(after_s)
    child.kill()
    child.wait()
    pump.join()
    rec = KillRecord()
    partial = next(line for line in lines if line.startswith("partial")).split(" ", 1)[1].strip()
    steps = [line.split() for line in lines if line.startswith("step")]
    rec.appended = len(steps)
    rec.queued_at_kill = int(steps[-1][3])
    rec.self_stopped = any(line.startswith("error") for line in lines)
    done = subprocess.run([sys.executable, str(CHILD), "repair", str(root), partial], capture_output=True,
                          text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "error" in result:
        rec.problem = result["error"]
        remove_episode_path(Path(partial))
        return rec
    rec.recovered, rec.repair_s = int(result["num_steps"]), float(result["repair_s"])
    if rec.recovered > rec.appended or result["timestamps"] != [float(s[2]) for s in steps[: rec.recovered]]:
        rec.problem = "the repaired steps are not the first steps the recording appended"
    return rec


def kill_figures(records: list[KillRecord]) -> dict[str, Any]:
    """Steps lost per kill [s at RATE_HZ] and how many kills recovered an episode."""
    lost = np.array([(r.appended - r.recovered) / RATE_HZ for r in records])
    recovered = [r for r in records if r.recovered > 0 and not r.problem]
    return {
        "kills": len(records),
        "recovered": len(recovered),
        "nothing_recovered": sum(r.recovered == 0 for r in records),
        "wrong_steps": sum(bool(r.problem) and r.recovered > 0 for r in records),
        "self_stopped": sum(r.self_stopped for r in records),
        "lost_s_median": round(float(np.median(lost)), 3),
        "lost_s_p90": round(float(np.percentile(lost, 90)), 3),
        "lost_s_max": round(float(lost.max()), 3),
        "lost_s_each": [round(float(x), 2) for x in lost],
        "queued_at_kill_max": max(r.queued_at_kill for r in records),
        "recorded_s_median": round(float(np.median([r.appended for r in records])) / RATE_HZ, 2),
        "repair_s_max": round(max(r.repair_s for r in records), 3),
        "problems": sorted({r.problem for r in records if r.problem})[:3],
    }


KILL_CONFIGS = (("hdf5", "lossless"), ("zarr", "lossless"), ("hdf5", "jpeg"), ("zarr", "jpeg"))


def run_kills(kills: int, roots: dict[str, Path], directory: Path, seed: int = 0,
              configs: Sequence[tuple[str, str]] = KILL_CONFIGS) -> dict[str, Any]:
    """`kills` kills per format and codec for each code root, interleaved (round by round, so that the machine's
    load drifts alike for all), each at a random time in KILL_WINDOW_S after the child's first step."""
    rng = np.random.default_rng(seed)
    records: dict[str, dict[str, list[KillRecord]]] = {name: {} for name in roots}
    for k in range(kills):
        for fmt, codec in configs:
            for name, root in roots.items():
                after_s = float(rng.uniform(*KILL_WINDOW_S))
                rec = kill_once(root, directory, fmt, codec, after_s)
                records[name].setdefault(f"{fmt} {codec}", []).append(rec)
                log(f"kill {k + 1}/{kills} {name} {fmt} {codec} after {after_s:.2f} s: {rec.appended} steps "
                    f"appended, {rec.recovered} recovered, {rec.queued_at_kill} queued"
                    + (", the recording had stopped itself" if rec.self_stopped else "")
                    + (f"; {rec.problem[:200]}" if rec.problem else ""))
    return {name: {label: kill_figures(recs) for label, recs in by_config.items()}
            for name, by_config in records.items()}


def run_writer_cost(runs: dict[str, tuple[Path, float | None]], directory: Path,
                    seconds: float) -> dict[str, dict[str, Any]]:
    """The writer's own cost (recording_child.py cost) per run (code root, flush interval or its default) for
    each format and codec, each in a fresh process, the runs interleaved."""
    out: dict[str, dict[str, Any]] = {name: {} for name in runs}
    for fmt, codec in KILL_CONFIGS:
        for name, (root, flush_s) in runs.items():
            command = [sys.executable, str(CHILD), "cost", str(root), str(directory), fmt, codec, str(seconds)]
            done = subprocess.run(command + ([] if flush_s is None else [str(flush_s)]), capture_output=True,
                                  text=True, check=True)
            out[name][f"{fmt} {codec}"] = figures = json.loads(done.stdout.strip().splitlines()[-1])
            log(f"writer cost, {name}, {fmt} {codec}: {figures}")
    return out


# ------------------------------------------------------------------------------------------------ depth codecs


def depth_scene(k: int, rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """(H, W) uint16 depth [mm] of frame k: floor, wall, a moving box and sphere, z^2 noise and holes."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    z = np.minimum(0.6 + 1.9 * (1 - y / height) ** 1.5, 3.0)
    box = (abs(x - 200 - 3 * k) < 70) & (abs(y - 260) < 50)
    z[box] = 0.9 + 0.0005 * (x[box] - 200 - 3 * k)
    r2 = (x - 450) ** 2 + (y - 200 + 2 * k) ** 2
    ball = r2 < 80**2
    z[ball] = 1.2 - np.sqrt(80**2 - r2[ball]) / 600
    z += rng.normal(size=z.shape) * 0.0025 * z**2
    depth = np.round(z / 0.001).astype(np.uint16)
    blocks = rng.random((height // 8, width // 8)) < 0.04
    depth[np.kron(blocks, np.ones((8, 8))).astype(bool)] = 0
    depth[rng.random(depth.shape) < 0.01] = 0
    return depth


def time_hdf5(frames: list[np.ndarray], options: dict[str, Any], directory: Path) -> tuple[float, float, float]:
    """Write then read frames one per chunk through h5py: (write s, read s, bytes) per frame."""
    import h5py

    path = directory / "frames.h5"
    n, shape = len(frames), frames[0].shape
    start = time.perf_counter()
    with h5py.File(path, "w", libver=("v110", "v110")) as f:
        ds = f.create_dataset("d", shape=(n, *shape), dtype=frames[0].dtype, chunks=(1, *shape), fletcher32=True,
                              **options)
        for i, frame in enumerate(frames):
            ds[i] = frame
    write = (time.perf_counter() - start) / n
    start = time.perf_counter()
    with h5py.File(path, "r") as f:
        back = [f["d"][i] for i in range(n)]
    read = (time.perf_counter() - start) / n
    if not all(np.array_equal(a, b) for a, b in zip(back, frames, strict=True)):
        raise RuntimeError(f"hdf5 {options} is not lossless")
    return write, read, path.stat().st_size / n


def time_zarr(frames: list[np.ndarray], codecs: tuple[Any, ...], directory: Path) -> tuple[float, float, float]:
    """Write then read frames one per chunk through zarr v3: (write s, read s, bytes) per frame."""
    import zarr

    path = directory / "frames.zarr"
    n, shape = len(frames), frames[0].shape
    start = time.perf_counter()
    root = zarr.create_group(store=zarr.storage.LocalStore(path), zarr_format=3)
    array = root.create_array("d", shape=(n, *shape), chunks=(1, *shape), dtype=frames[0].dtype, compressors=codecs,
                              fill_value=0, config={"write_empty_chunks": True})
    for i, frame in enumerate(frames):
        array[i] = frame
    write = (time.perf_counter() - start) / n
    start = time.perf_counter()
    back = [array[i] for i in range(n)]
    read = (time.perf_counter() - start) / n
    if not all(np.array_equal(a, b) for a, b in zip(back, frames, strict=True)):
        raise RuntimeError(f"zarr {codecs} is not lossless")
    size = sum(p.stat().st_size for p in (path / "d").rglob("*") if p.is_file() and p.name != "zarr.json")
    return write, read, size / n


def depth_candidates() -> dict[str, tuple[str, Any]]:
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    def blosc(cname: Literal["zstd", "lz4"], level: int,
              shuffle: Literal["noshuffle", "shuffle", "bitshuffle"]) -> tuple[Any, ...]:
        return (BloscCodec(cname=cname, clevel=level, shuffle=shuffle), Crc32cCodec())

    return {
        "hdf5 none": ("hdf5", {}),
        "hdf5 lzf": ("hdf5", {"compression": "lzf"}),
        "hdf5 shuffle+lzf": ("hdf5", {"compression": "lzf", "shuffle": True}),
        "hdf5 gzip 1": ("hdf5", {"compression": "gzip", "compression_opts": 1}),
        "hdf5 shuffle+gzip 1": ("hdf5", {"compression": "gzip", "compression_opts": 1, "shuffle": True}),
        "zarr none": ("zarr", (Crc32cCodec(),)),
        "zarr zstd 1": ("zarr", (ZstdCodec(level=1), Crc32cCodec())),
        "zarr zstd 3": ("zarr", (ZstdCodec(level=3), Crc32cCodec())),
        "zarr blosc zstd 1 noshuffle": ("zarr", blosc("zstd", 1, "noshuffle")),
        "zarr blosc zstd 1 shuffle": ("zarr", blosc("zstd", 1, "shuffle")),
        "zarr blosc zstd 1 bitshuffle": ("zarr", blosc("zstd", 1, "bitshuffle")),
        "zarr blosc lz4 5 shuffle": ("zarr", blosc("lz4", 5, "shuffle")),
        "zarr blosc lz4 5 bitshuffle": ("zarr", blosc("lz4", 5, "bitshuffle")),
    }


def run_depth_codecs(frames_n: int, rounds: int) -> dict[str, Any]:
    """Median over `rounds` of each codec's write / read time and size per 640x480 depth frame."""
    rng = np.random.default_rng(0)
    frames = [depth_scene(k, rng) for k in range(frames_n)]
    raw = frames[0].nbytes
    runs: dict[str, list[tuple[float, float, float]]] = {}
    for r in range(rounds):
        log(f"depth codecs: round {r + 1} of {rounds}")
        for name, (kind, options) in depth_candidates().items():
            with tempfile.TemporaryDirectory(prefix="depth-codecs-") as tmp:
                timer = time_hdf5 if kind == "hdf5" else time_zarr
                runs.setdefault(name, []).append(timer(frames, options, Path(tmp)))
    out = {}
    for name, values in runs.items():
        write, read, size = np.median(np.array(values), axis=0)
        out[name] = {"write_ms": round(write * 1e3, 2), "read_ms": round(read * 1e3, 2),
                     "kb": round(size / 1e3, 1), "ratio": round(raw / size, 2)}
    return {"depth_codecs": out, "frames": frames_n, "rounds": rounds, "raw_kb": raw / 1e3}


# ------------------------------------------------------------------------------------------------ image codecs

SHARED_VIDEO = _ROOT.parent / "shared" / "data" / "hands" / "human_hand_video.mp4"


def camera_frames(n: int, video: Path | None) -> tuple[list[np.ndarray], str]:
    """n 640x480 RGB frames of a camera video (every frame, from the start), or noisy synthetic ones."""
    source = video or SHARED_VIDEO
    cv2: Any = None
    with contextlib.suppress(ImportError):
        import cv2
    frames: list[np.ndarray] = []
    if cv2 is not None and source.is_file():
        capture = cv2.VideoCapture(str(source))
        while len(frames) < n:
            ok, bgr = capture.read()
            if not ok:
                break
            small = cv2.resize(bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
            frames.append(np.ascontiguousarray(small[..., ::-1]))
        capture.release()
    if len(frames) == n:
        return frames, str(source)
    if video is not None:
        raise SystemExit(f"{video}: cannot read {n} frames (needs pip install 'teleop[cameras]')")
    gradient, noise = synthetic_gradient(WIDTH, HEIGHT), noise_patterns(3)
    return [synthetic_image(k, gradient) ^ noise[k % len(noise)] for k in range(n)], "synthetic, 3 noise bits"


def jpeg_candidates() -> dict[str, tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]]:
    """name -> (encode, decode) for the JPEG libraries installed."""
    shape = (HEIGHT, WIDTH)
    def pillow(quality: int) -> tuple[Callable[[np.ndarray], bytes], Callable[[bytes], np.ndarray]]:
        return lambda rgb: encode_jpeg(rgb, quality), lambda data: decode_jpeg(data, shape)

    out = {f"pillow q{q}": pillow(q) for q in (75, 90, 95)}
    with contextlib.suppress(ImportError):
        import cv2

        out["opencv q90"] = (
            lambda rgb: cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(),
            lambda data: np.asarray(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))[..., ::-1],
        )
    with contextlib.suppress(ImportError):
        import simplejpeg

        out["simplejpeg q90"] = (
            lambda rgb: simplejpeg.encode_jpeg(rgb, quality=90, colorspace="RGB"),
            lambda data: simplejpeg.decode_jpeg(data, colorspace="RGB"),
        )
    return out


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def time_jpeg(frames: list[np.ndarray], encode: Callable[[np.ndarray], bytes],
              decode: Callable[[bytes], np.ndarray]) -> tuple[float, float, float, float]:
    """(encode s, decode s, bytes, PSNR dB) per frame, after one untimed frame (the library's first call)."""
    decode(encode(frames[0]))
    start = time.perf_counter()
    files = [encode(frame) for frame in frames]
    encode_s = (time.perf_counter() - start) / len(frames)
    start = time.perf_counter()
    back = [decode(data) for data in files]
    decode_s = (time.perf_counter() - start) / len(frames)
    psnr = float(np.mean([psnr_db(a, b) for a, b in zip(frames, back, strict=True)]))
    return encode_s, decode_s, float(np.mean([len(data) for data in files])), psnr


def run_image_codecs(frames_n: int, rounds: int, video: Path | None) -> dict[str, Any]:
    """Median over `rounds` of each colour codec's encode / decode time, size and PSNR per 640x480 frame."""
    from zarr.codecs import Crc32cCodec, ZstdCodec

    frames, source = camera_frames(frames_n, video)
    runs: dict[str, list[tuple[float, float, float, float]]] = {}
    for r in range(rounds):
        log(f"image codecs: round {r + 1} of {rounds}")
        with tempfile.TemporaryDirectory(prefix="image-codecs-") as tmp:
            write, read, size = time_hdf5(frames, {"compression": "lzf"}, Path(tmp))
            runs.setdefault("lossless hdf5 lzf", []).append((write, read, size, float("inf")))
            write, read, size = time_zarr(frames, (ZstdCodec(level=1), Crc32cCodec()), Path(tmp))
            runs.setdefault("lossless zarr zstd 1", []).append((write, read, size, float("inf")))
        for name, (encode, decode) in jpeg_candidates().items():
            runs.setdefault(name, []).append(time_jpeg(frames, encode, decode))
    out = {}
    for name, values in runs.items():
        encode_s, decode_s, size, psnr = np.median(np.array(values), axis=0)
        out[name] = {"encode_ms": round(encode_s * 1e3, 2), "decode_ms": round(decode_s * 1e3, 2),
                     "kb": round(size / 1e3, 1), "psnr_db": round(psnr, 1) if np.isfinite(psnr) else None}
    return {"image_codecs": out, "frames": frames_n, "rounds": rounds, "source": source,
            "raw_kb": frames[0].nbytes / 1e3}


# ---------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None, emit: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="seconds per configuration (default 60)")
    parser.add_argument("--backend", choices=("hdf5", "zarr", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="3 s per configuration (a smoke test, not for figures)")
    parser.add_argument("--dir", type=Path, default=None, help="where episodes are written (default: a temp dir)")
    parser.add_argument("--depth-codecs", action="store_true", help="measure lossless depth codecs instead")
    parser.add_argument("--image-codecs", action="store_true", help="measure colour frame codecs instead")
    parser.add_argument("--video", type=Path, default=None, help="camera video for --image-codecs")
    parser.add_argument("--image-codec", choices=("lossless", "jpeg"), default="lossless",
                        help="how the recordings store colour frames (default lossless)")
    parser.add_argument("--noise-bits", type=int, default=0, choices=range(0, 9), metavar="0..8",
                        help="XOR the frames' low bits with random patterns (sensor-like noise; default 0)")
    parser.add_argument("--switch-interval-ms", type=float, default=None,
                        help="sys.setswitchinterval for a diagnostic run (default: Python's 5 ms)")
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="diagnostic: skip the gc.freeze() that, as in the app's session, moves the startup heap "
                             "out of full collections before the runs")
    parser.add_argument("--skip-peers", action="store_true",
                        help="diagnostic: run only ours (e.g. a long run for the memory slope)")
    parser.add_argument("--nice-others", type=int, default=None, metavar="N",
                        help="diagnostic: nice value for every thread but the control loop's (default: unchanged)")
    parser.add_argument("--writer-nice", type=int, nargs="+", default=[WRITER_NICE], metavar="N",
                        help="nice value(s) of the background writer's thread; each one is a configuration "
                             f"(default {WRITER_NICE}; others are reported under writer_nice)")
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="run N busy processes (python -c 'while True: pass') beside the measurement (default 0)")
    parser.add_argument("--kills", type=int, default=0, metavar="K",
                        help="measure K kills (SIGKILL) of a recording per format and codec instead")
    parser.add_argument("--baseline", type=Path, default=None, metavar="ROOT",
                        help="with --kills or --writer-cost: the same measurement, interleaved, with the packages "
                             "of another checkout (e.g. `git archive` of an earlier commit unpacked in ROOT)")
    parser.add_argument("--writer-cost", action="store_true",
                        help="measure the episode writer's own cost per second of recording instead")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times (default 0)")
    args = parser.parse_args(argv)
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1e3)
    if args.depth_codecs:
        emit(json.dumps(run_depth_codecs(12 if args.quick else 60, 1 if args.quick else 3)))
        return
    if args.image_codecs:
        emit(json.dumps(run_image_codecs(12 if args.quick else 60, 1 if args.quick else 3, args.video)))
        return
    if args.writer_cost:
        runs: dict[str, tuple[Path, float | None]] = {"ours": (_ROOT, None)}
        if args.baseline:
            runs.update({"baseline": (args.baseline.resolve(), None),
                         "baseline_flush_0.2s": (args.baseline.resolve(), 0.2)})
        directory = Path(tempfile.mkdtemp(prefix="writer-cost-", dir=args.dir))
        try:
            with busy_processes(args.load):
                cost = run_writer_cost(runs, directory, args.seconds or 10.0)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        emit(json.dumps({"writer_cost": cost, "seconds": args.seconds or 10.0,
                         "machine": {**machine(0), "busy_processes": args.load}}))
        return
    if args.kills:
        roots = {"ours": _ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
        directory = Path(tempfile.mkdtemp(prefix="recording-kills-", dir=args.dir))
        try:
            with busy_processes(args.load):
                kills = run_kills(args.kills, roots, directory, args.seed)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        emit(json.dumps({"kills": kills, "kill_window_s": KILL_WINDOW_S, "roots": {k: str(v) for k, v in roots.items()},
                         "machine": {**machine(0), "busy_processes": args.load}}))
        return
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 60.0)
    backends = ("hdf5", "zarr") if args.backend == "both" else (args.backend,)
    directory = Path(tempfile.mkdtemp(prefix="recording-bench-", dir=args.dir))
    try:
        with busy_processes(args.load):
            result = run(seconds, backends, directory, args.noise_bits, args.nice_others, not args.skip_peers,
                         args.image_codec, not args.no_gc_freeze, args.writer_nice)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    result["machine"]["busy_processes"] = args.load
    emit(json.dumps(result))


if __name__ == "__main__":
    main()
