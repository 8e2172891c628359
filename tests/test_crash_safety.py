"""Crash safety: a killed recording is repaired up to its last flush, a full disk stops the recording cleanly,
a half-written episode is reported and kept, damaged zarr episodes are named while their neighbours stay
readable.

Run as a script, this module is the recording process that the tests kill or starve of disk space; it records
deterministic steps (crash_step) so that a test can regenerate exactly what it wrote:

    python tests/test_crash_safety.py record|open DIR FORMAT RATE_HZ SIZE NOISY MIN_FREE_BYTES
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from recorder.backend import BACKENDS, create_writer, open_episode
from recorder.background import BackgroundWriter
from recorder.episodes import EpisodeProblem, EpisodeSummary, scan_episodes
from recorder.jpeg import decode_jpeg, encode_jpeg
from recorder.layout import MIN_FREE_BYTES
from recorder.repair import RepairedEpisode, RepairProblem, format_repair_report, repair_directory, repair_partial
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop.errors import EpisodeError

FORMATS = ("hdf5", "zarr")
RATE_HZ = 50.0
MAX_LOSS_S = 0.5  # a killed recording loses at most this much: the 0.2 s flush interval, its queue, one step
N_JOINTS = 7


# ---------------------------------------------------------------------------- deterministic recording


def crash_meta(size: int) -> EpisodeMeta:
    K = np.array([[size, 0.0, size / 2], [0.0, size, size / 2], [0.0, 0.0, 1.0]])
    return EpisodeMeta(
        robot="panda", task="reach", instruction="reach the target", control_rate_hz=RATE_HZ,
        operator_device="scripted", joint_names=tuple(f"j{k}" for k in range(N_JOINTS)),
        action_names=tuple(f"a{k}" for k in range(N_JOINTS + 1)),
        cameras={"front": CameraInfo(size, size, K, np.eye(4)), "wrist": CameraInfo(size, size, K, np.eye(4))},
        start_time=1.7e9, seed=3,
    )


def frame_image(seq: int, cam: int, size: int, noisy: bool) -> np.ndarray:
    """Frame `seq` of camera `cam`: a moving gradient, or incompressible noise."""
    if noisy:
        return np.random.default_rng(2 * seq + cam).integers(0, 256, (size, size, 3), dtype=np.uint8)
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([(x + 3 * seq) % 256, (y + 5 * seq + 40 * cam) % 256, (x * y + seq) % 256], -1).astype(np.uint8)


def crash_step(i: int, rate_hz: float = RATE_HZ, size: int = 24, noisy: bool = False) -> Step:
    """Step i; the front camera runs at half the control rate, so each of its frames is stored twice."""
    t = 1000.0 + i / rate_hz
    front_seq = i // 2
    return Step(
        t=t,
        joint_pos=np.sin(0.01 * i + np.arange(N_JOINTS)),
        joint_vel=np.cos(0.01 * i + np.arange(N_JOINTS)),
        ee_pose=np.array([0.4, 0.0, 0.3 + 1e-3 * i, 1.0, 0.0, 0.0, 0.0]),
        action=np.linspace(0.0, 1.0, N_JOINTS + 1) * i,
        device={"engaged": np.array(i % 3 == 0), "gripper": np.array(0.01 * i)},
        frames={
            "front": CameraFrame(frame_image(front_seq, 0, size, noisy), 1000.0 + 2 * front_seq / rate_hz, front_seq),
            "wrist": CameraFrame(frame_image(i, 1, size, noisy), t - 0.001, i),
        },
        extras={"phase": np.array([i, -i], dtype=np.int32)},
    )


def _child(command: str, directory: Path, fmt: str, rate_hz: float, size: int, noisy: bool, min_free: int,
           codec: str) -> None:
    """The recording process: record crash steps at rate_hz until killed or stopped by an EpisodeError."""
    episode_writer = create_writer(directory, crash_meta(size), fmt, min_free_bytes=min_free, image_codec=codec)
    # Patient: these tests are about kills and full disks, and on a loaded machine the writer can fall 128 steps
    # behind noisy frames for a moment; test_background_writer.py tests the "cannot keep up" stop.
    writer = BackgroundWriter(episode_writer, put_timeout_s=10.0).open()
    print(f"partial {writer.partial}", flush=True)
    if command == "open":
        time.sleep(600)  # killed before its first step
    next_tick = time.monotonic()
    for i in range(10**7):
        try:
            writer.append(crash_step(i, rate_hz, size, noisy))
        except EpisodeError as exc:
            print(f"error: {exc}", flush=True)
            break
        print(f"step {i} {time.monotonic()!r} {writer.queued_steps}", flush=True)
        next_tick += 1.0 / rate_hz
        time.sleep(max(0.0, next_tick - time.monotonic()))
    try:
        print(f"closed {writer.close(None, {'incomplete': True})}", flush=True)
    except EpisodeError as exc:
        print(f"not closed: {exc}", flush=True)


def start_child(command: str, directory: Path, fmt: str, rate_hz: float = RATE_HZ, size: int = 24,
                noisy: bool = False, min_free: int = MIN_FREE_BYTES,
                preexec_fn: Callable[[], None] | None = None, codec: str = "lossless") -> subprocess.Popen[str]:
    args = [command, str(directory), fmt, str(rate_hz), str(size), str(int(noisy)), str(min_free), codec]
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True,
                            preexec_fn=preexec_fn)


def assert_steps_equal(path: Path, first: int, count: int, jpeg: bool = False, **step_args: object) -> None:
    """The episode at `path` holds exactly crash steps first..first+count-1 (frames as JPEG stores them)."""
    steps = [crash_step(i, **step_args) for i in range(first, first + count)]  # type: ignore[arg-type]

    def stored(rgb: np.ndarray) -> np.ndarray:
        return decode_jpeg(encode_jpeg(rgb), rgb.shape[:2]) if jpeg else rgb

    with open_episode(path) as episode:
        assert episode.num_steps == count
        np.testing.assert_array_equal(episode.timestamps, [s.t for s in steps])
        np.testing.assert_array_equal(episode.joint_pos, np.stack([s.joint_pos for s in steps]))
        np.testing.assert_array_equal(episode.joint_vel, np.stack([s.joint_vel for s in steps]))
        np.testing.assert_array_equal(episode.ee_pose, np.stack([s.ee_pose for s in steps]))
        np.testing.assert_array_equal(episode.action, np.stack([s.action for s in steps]))
        for key in ("engaged", "gripper"):
            np.testing.assert_array_equal(episode.device(key), np.stack([s.device[key] for s in steps]))
        np.testing.assert_array_equal(episode.extras("phase"), np.stack([s.extras["phase"] for s in steps]))
        for cam in ("front", "wrist"):
            np.testing.assert_array_equal(episode.frames(cam), np.stack([stored(s.frames[cam].rgb) for s in steps]))
            np.testing.assert_array_equal(episode.camera_timestamps(cam), [s.frames[cam].t for s in steps])
            np.testing.assert_array_equal(episode.camera_seq(cam), [s.frames[cam].seq for s in steps])


def write_crash_episode(directory: Path, fmt: str, count: int, size: int = 24, min_free: int = MIN_FREE_BYTES) -> Path:
    writer = create_writer(directory, crash_meta(size), fmt, min_free_bytes=min_free)
    for i in range(count):
        writer.append(crash_step(i, size=size))
    return writer.close(True)


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file of an episode (file or directory) by relative name."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return request.param


# --------------------------------------------------------------------------------------------- SIGKILL


@pytest.mark.parametrize("codec", ["lossless", "jpeg"])
@pytest.mark.parametrize("after_s", [0.7, 1.6])
def test_a_killed_recording_is_repaired_losing_at_most_half_a_second(tmp_path: Path, fmt: str, codec: str,
                                                                    after_s: float) -> None:
    """SIGKILL mid-episode: what the recording had appended is repaired at once but for at most MAX_LOSS_S of
    steps (the flush interval and the queue), also when killed in its first second."""
    from teleop.cli import main

    child = start_child("record", tmp_path, fmt, codec=codec)
    assert child.stdout is not None
    partial = Path(child.stdout.readline().split(" ", 1)[1].strip())
    read = 0
    while read < after_s * RATE_HZ:  # killed once that many steps were appended (later on a loaded machine)
        line = child.stdout.readline()
        assert line.startswith("step"), line
        read += 1
    child.kill()
    child.wait()
    rest = child.stdout.read().splitlines()  # steps appended before the kill that were not read yet
    appended = read + sum(line.startswith("step") for line in rest)
    assert partial.exists() and not list(tmp_path.glob(f"*{BACKENDS[fmt].suffix}"))

    assert main(["episodes", "repair", str(tmp_path)]) == 0
    path = tmp_path / partial.name.removesuffix(".partial")
    assert path.exists() and not partial.exists()
    with open_episode(path) as episode:
        n = episode.num_steps
        attrs = episode.attrs
    assert 0 < n <= appended
    assert (appended - n) / RATE_HZ <= MAX_LOSS_S, f"{appended - n} of {appended} steps lost"
    assert attrs["incomplete"] is True and attrs["repaired_from"] == partial.name and attrs["success"] is None
    assert attrs["duration_s"] == pytest.approx((n - 1) / RATE_HZ)
    assert_steps_equal(path, 0, n, jpeg=codec == "jpeg")


def test_a_recording_killed_before_its_first_step_is_left_untouched(tmp_path: Path, fmt: str) -> None:
    child = start_child("open", tmp_path, fmt)
    assert child.stdout is not None
    partial = Path(child.stdout.readline().split(" ", 1)[1].strip())
    child.kill()
    child.wait()
    before = snapshot(partial)
    [problem] = repair_directory(tmp_path)
    assert isinstance(problem, RepairProblem) and str(partial) in problem.message
    expected = "the HDF5 file cannot be opened" if fmt == "hdf5" else "no intact step to recover (0 flushed)"
    assert expected in problem.message
    assert format_repair_report([problem]).startswith(f"{partial.name}: not repaired, kept: {expected}")
    assert snapshot(partial) == before


def test_repair_removes_the_files_zarr_was_writing_when_the_recording_died(tmp_path: Path) -> None:
    writer = create_writer(tmp_path, crash_meta(24), "zarr")
    for i in range(30):
        writer.append(crash_step(i))
    writer.flush()
    writer._lock.release(remove=False)  # as the kernel does when the recording process dies
    partial = writer.partial
    # A kill while zarr wrote a new version of a chunk and of the root metadata leaves their temporary files.
    chunk_tmp = partial / "observation/joint_pos" / f"c.0.{'ab' * 16}.partial"
    meta_tmp = partial / f"zarr.{'0f' * 16}.partial"
    chunk_tmp.write_bytes(b"half a chunk")
    meta_tmp.write_bytes(b'{"half": ')
    [repaired] = repair_directory(tmp_path)
    assert isinstance(repaired, RepairedEpisode)
    assert not list(repaired.path.rglob("*.partial"))
    assert_steps_equal(repaired.path, 0, 30)


# ------------------------------------------------------------------------------------------ full disk


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path | None]]:
    """Mounts a RAM disk of the given size [MB] and gives its path; None where mounting is not permitted."""
    mounted: list[Path] = []

    def mount(size_mb: int) -> Path | None:
        disk = tmp_path / f"disk{len(mounted)}"
        disk.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(disk)],
                              capture_output=True)
        if done.returncode != 0:
            return None
        mounted.append(disk)
        return disk

    yield mount
    for disk in mounted:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_stops_the_recording_and_keeps_every_episode(tmpfs: Callable[[int], Path | None],
                                                                 fmt: str) -> None:
    disk = tmpfs(12)  # a small disk is usable: the free space a recording leaves is a share of the disk
    if disk is None:
        pytest.skip("needs `mount -t tmpfs` (root): the free-space check reads the real file system")
    earlier = [write_crash_episode(disk, fmt, 20), write_crash_episode(disk, fmt, 30)]
    child = start_child("record", disk, fmt, rate_hz=100.0, size=96, noisy=True)
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 0, out
    error = next(line for line in out.splitlines() if line.startswith("error:"))
    partial = next(line for line in out.splitlines() if line.startswith("partial")).split(" ", 1)[1]
    assert f"disk full while writing {partial}" in error and "earlier episodes are intact" in error
    closed = Path(next(line for line in out.splitlines() if line.startswith("closed")).split(" ", 1)[1])
    written = sum(1 for line in out.splitlines() if line.startswith("step"))
    with open_episode(closed) as episode:  # what was recorded became an episode marked incomplete
        n = episode.num_steps
        assert episode.attrs["incomplete"] is True and 0 < n <= written
    assert_steps_equal(closed, 0, n, rate_hz=100.0, size=96, noisy=True)
    used = sum(p.stat().st_size for p in disk.rglob("*") if p.is_file())
    assert used > 8e6  # most of the 12 MB
    for path, count in zip(earlier, (20, 30), strict=True):
        assert_steps_equal(path, 0, count)
    assert all(isinstance(item, EpisodeSummary) for item in scan_episodes(disk))


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))  # writes past it fail with EFBIG

    return apply


def test_a_disk_filled_behind_the_recordings_back_keeps_the_partial(tmp_path: Path,
                                                                   tmpfs: Callable[[int], Path | None],
                                                                   fmt: str) -> None:
    """The free-space check is off (another process filled the disk between checks): the storage fails."""
    disk = tmpfs(12)
    limit = None
    if disk is None:  # simulate the full disk with a file size limit on the recording process
        disk, limit = tmp_path, 8 << 20 if fmt == "hdf5" else 16 << 10  # zarr: under one frame chunk
    earlier = write_crash_episode(disk, fmt, 20, min_free=0)
    child = start_child("record", disk, fmt, rate_hz=100.0, size=96, noisy=True, min_free=0,
                        preexec_fn=None if limit is None else _limit_file_size(limit))
    out, _ = child.communicate(timeout=300)
    assert child.returncode == 0  # no crash at exit (HDF5 2.0 crashed there after a failed write)
    partial = Path(next(line for line in out.splitlines() if line.startswith("partial")).split(" ", 1)[1])
    error = next(line for line in out.splitlines() if line.startswith("error:"))
    assert f"disk full while writing {partial}" in error and "earlier episodes are intact" in error
    assert_steps_equal(earlier, 0, 20)
    if fmt == "hdf5":  # its disk space is allocated ahead of HDF5's writes: a clean stop, the episode finished
        assert f"steps so far are kept in {partial}" in error
        closed = Path(next(line for line in out.splitlines() if line.startswith("closed")).split(" ", 1)[1])
        with open_episode(closed) as episode:
            n = episode.num_steps
        assert n > 0 and not partial.exists()
        assert_steps_equal(closed, 0, n, rate_hz=100.0, size=96, noisy=True)
        return
    assert f"kept as {partial}" in error
    assert partial.exists()
    if limit is None:
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)  # free space appears
        [result] = repair_directory(disk)
        if isinstance(result, RepairedEpisode):
            assert_steps_equal(result.path, 0, result.num_steps, rate_hz=100.0, size=96, noisy=True)
        else:  # the disk filled before the first flush
            assert "no intact step" in result.message and partial.exists()


# ---------------------------------------------------------------------- next to a half-written episode


def test_a_new_recording_next_to_a_half_written_one_reports_it_and_keeps_it(tmp_path: Path, fmt: str,
                                                                            clock) -> None:  # noqa: ANN001
    from teleop.recording import UnfinishedRecordingWarning, record_episode, record_episodes
    from teleop.rig import RigConfig, build_rig
    from teleop.session import SessionConfig
    from teleop.sim import SimConfig

    suffix = BACKENDS[fmt].suffix
    partial = tmp_path / f"episode_000000{suffix}.partial"
    if fmt == "zarr":
        partial.mkdir()
        (partial / "zarr.json").write_text('{"left": "by a recording that was killed"}')
    else:
        partial.write_bytes(b"left by a recording that was killed")
    before = snapshot(partial)
    config = RigConfig(robot="franka", task="franka-reach", sim=SimConfig(cameras=()),
                       session=SessionConfig(rate_hz=20.0, max_duration_s=0.5, stop_on_success_s=None))
    rig = build_rig(config, clock=clock, sleep=clock.sleep)
    try:
        with pytest.warns(UnfinishedRecordingWarning, match=f"{partial.name}.*teleop episodes repair"):
            episode = record_episode(rig, tmp_path, seed=1, format=fmt)
        lines: list[str] = []
        more = record_episodes(rig, tmp_path, 2, seed=2, format=fmt, progress=lines.append)
    finally:
        rig.close()
    assert episode.path == tmp_path / f"episode_000001{suffix}"
    assert [e.path.name for e in more.episodes] == [f"episode_00000{i}{suffix}" for i in (2, 3)]
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1 and partial.name in warnings[0] and "teleop episodes repair" in warnings[0]
    assert snapshot(partial) == before
    with pytest.raises(EpisodeError, match="cannot be opened|not a 'teleop-episode'"):
        repair_partial(partial)
    assert snapshot(partial) == before


def test_repair_leaves_a_partial_whose_name_is_taken(tmp_path: Path, fmt: str) -> None:
    path = write_crash_episode(tmp_path, fmt, 5)
    partial = path.with_name(path.name + ".partial")
    shutil.copytree(path, partial) if path.is_dir() else shutil.copyfile(path, partial)
    [problem] = repair_directory(tmp_path)
    assert isinstance(problem, RepairProblem) and f"{path.name} already exists" in problem.message
    assert partial.exists()


# ---------------------------------------------------------------------------------- damaged zarr episodes


def _edit_root_json(path: Path, edit: Callable[[dict], None]) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    edit(meta["attributes"])
    (path / "zarr.json").write_text(json.dumps(meta))


def _halve(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing root zarr.json": (lambda p: (p / "zarr.json").unlink(), "zarr.json is missing"),
    "truncated root zarr.json": (lambda p: _halve(p / "zarr.json"), "not a readable zarr v3 episode"),
    "missing array zarr.json": (lambda p: (p / "action/zarr.json").unlink(), r"missing datasets \['action'\]"),
    "missing attribute": (lambda p: _edit_root_json(p, lambda a: a.pop("robot")), r"missing attributes \['robot'\]"),
    "bad JSON attribute": (lambda p: _edit_root_json(p, lambda a: a.update(joint_names="[j0,")), "damaged episode"),
    "other format": (lambda p: _edit_root_json(p, lambda a: a.update(format="robomimic")), "not a 'teleop-episode'"),
    "short num_steps": (lambda p: _edit_root_json(p, lambda a: a.update(num_steps=7)), "other lengths"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_zarr_episode_is_named_and_its_neighbours_stay_readable(tmp_path: Path, damage: str) -> None:
    paths = [write_crash_episode(tmp_path, "zarr", 10 + i) for i in range(3)]
    change, message = DAMAGES[damage]
    change(paths[1])
    with pytest.raises(EpisodeError, match=message) as err:
        open_episode(paths[1])
    assert str(paths[1]) in str(err.value)
    items = scan_episodes(tmp_path)
    assert [type(item) for item in items] == [EpisodeSummary, EpisodeProblem, EpisodeSummary]
    assert_steps_equal(paths[0], 0, 10)
    assert_steps_equal(paths[2], 0, 12)


@pytest.mark.parametrize(("array", "read"), [
    ("cameras/front/rgb", lambda episode: episode.frame("front", 3)),
    ("timestamp", lambda episode: episode.timestamps),
])
def test_a_truncated_zarr_chunk_fails_on_read_naming_file_and_array(tmp_path: Path, array: str,
                                                                    read: Callable) -> None:
    path = write_crash_episode(tmp_path, "zarr", 10)
    _halve(path / array / ("c.1.0.0.0" if array.endswith("rgb") else "c.0"))  # step 3 shows front frame 1
    with open_episode(path) as episode:  # the metadata is intact, so it opens
        np.testing.assert_array_equal(episode.frame("wrist", 3), crash_step(3).frames["wrist"].rgb)
        with pytest.raises(EpisodeError, match=array) as err:
            read(episode)
    assert str(path) in str(err.value)


if __name__ == "__main__":
    _command, _directory, _fmt, _rate, _size, _noisy, _min_free, _codec = sys.argv[1:9]
    _child(_command, Path(_directory), _fmt, float(_rate), int(_size), _noisy == "1", int(_min_free), _codec)
