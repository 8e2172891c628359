"""Episode files of both backends: round trip, incremental and atomic writing, validation of damaged files,
listing. HDF5-specific checks run on .h5 files only; zarr-specific ones are in test_zarr.py."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from devices.base import DeviceSample
from recorder.backend import BACKENDS, create_writer, open_episode
from recorder.cameras import DepthFrame
from recorder.episodes import (
    EpisodeProblem,
    EpisodeSummary,
    format_episode_table,
    next_episode_path,
    scan_episodes,
)
from recorder.hdf5 import UNFINISHED, EpisodeReader, EpisodeWriter, partial_path
from recorder.repair import repair_partial
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop.errors import EpisodeError, UnknownNameError

FORMATS = ("hdf5", "zarr")

H, W = 48, 64
N_JOINTS, N_ACTIONS = 9, 8
CAMERAS = ("front", "wrist")


class FakeClock:
    """A monotonic clock that moves only when told [s]."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_meta() -> EpisodeMeta:
    K = np.array([[60.0, 0.0, W / 2], [0.0, 60.0, H / 2], [0.0, 0.0, 1.0]])
    T_world_wrist = np.eye(4)
    T_world_wrist[:3, 3] = [0.4, 0.0, 0.6]
    return EpisodeMeta(
        robot="panda",
        task="lift",
        instruction="lift the red cube",
        control_rate_hz=20.0,
        operator_device="scripted",
        joint_names=tuple(f"joint{i}" for i in range(N_JOINTS)),
        action_names=tuple(f"action{i}" for i in range(N_ACTIONS)),
        cameras={
            "front": CameraInfo(W, H, K, np.eye(4)),
            "wrist": CameraInfo(W, H, 0.9 * K, T_world_wrist, mount="panda_hand"),
        },
        start_time=1.7e9,
        seed=7,
        initial_state={"cube_xyz": [0.5, 0.1, 0.02], "joints": [0.0] * N_JOINTS},
    )


def make_step(i: int, rng: np.random.Generator) -> Step:
    t = 10.0 + 0.05 * i + 1e-4 * rng.random()
    hand = rng.normal(size=(21, 3)) if i % 2 else None  # missing parts are NaN in the record
    sample = DeviceSample(
        t=t - 0.01, engaged=i % 3 == 0, T_world_device=np.eye(4), keypoints=hand, gripper=0.1 * i
    )
    frames = {  # the front camera counts its frames, the wrist camera does not
        cam: CameraFrame(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8), t - 0.002 * k, i if k == 0 else -1)
        for k, cam in enumerate(CAMERAS)
    }
    return Step(
        t=t,
        joint_pos=rng.normal(size=N_JOINTS),
        joint_vel=rng.normal(size=N_JOINTS),
        ee_pose=rng.normal(size=7),
        action=rng.normal(size=N_ACTIONS),
        device=sample.to_record(),
        frames=frames,
        extras={"object_pose": rng.normal(size=7), "contact": np.array(i > 20)},
    )


def make_steps(n: int, seed: int = 0) -> list[Step]:
    rng = np.random.default_rng(seed)
    return [make_step(i, rng) for i in range(n)]


def episode_name(fmt: str, index: int = 0) -> str:
    return f"episode_{index:06d}{BACKENDS[fmt].suffix}"


def write_episode(path: Path, steps: list[Step], success: bool | None = True) -> Path:
    fmt = "zarr" if path.name.endswith(".zarr") else "hdf5"
    writer = create_writer(path, make_meta(), fmt)
    for step in steps:
        writer.append(step)
    return writer.close(success, {"achieved_rate_hz": 19.8, "late_ticks": 2})


@pytest.fixture
def steps() -> list[Step]:
    return make_steps(50)


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def episode(tmp_path: Path, steps: list[Step], fmt: str) -> Path:
    """The same 50 steps written by each backend."""
    return write_episode(tmp_path / episode_name(fmt), steps)


@pytest.fixture
def h5_episode(tmp_path: Path, steps: list[Step]) -> Path:
    return write_episode(tmp_path / episode_name("hdf5"), steps)


def assert_meta_equal(a: EpisodeMeta, b: EpisodeMeta) -> None:
    for name in ("robot", "task", "instruction", "control_rate_hz", "operator_device", "joint_names"):
        assert getattr(a, name) == getattr(b, name)
    assert (a.action_names, a.start_time, a.seed, a.initial_state) == (
        b.action_names,
        b.start_time,
        b.seed,
        b.initial_state,
    )
    assert a.cameras.keys() == b.cameras.keys()
    for cam, info in a.cameras.items():
        other = b.cameras[cam]
        assert (info.width, info.height, info.mount) == (other.width, other.height, other.mount)
        np.testing.assert_array_equal(info.K, other.K)
        np.testing.assert_array_equal(info.T_world_camera, other.T_world_camera)


# ------------------------------------------------------------------------------------------ round trip


def test_round_trip_reads_back_every_array_exactly(episode: Path, steps: list[Step]) -> None:
    with open_episode(episode) as reader:
        assert reader.num_steps == len(steps)
        assert reader.success is True
        assert reader.duration_s == pytest.approx(steps[-1].t - steps[0].t)
        assert_meta_equal(reader.meta, make_meta())
        np.testing.assert_array_equal(reader.timestamps, [s.t for s in steps])
        np.testing.assert_array_equal(reader.joint_pos, np.stack([s.joint_pos for s in steps]))
        np.testing.assert_array_equal(reader.joint_vel, np.stack([s.joint_vel for s in steps]))
        np.testing.assert_array_equal(reader.ee_pose, np.stack([s.ee_pose for s in steps]))
        np.testing.assert_array_equal(reader.action, np.stack([s.action for s in steps]))
        assert reader.device_keys == sorted(steps[0].device)
        for key in steps[0].device:
            np.testing.assert_array_equal(reader.device(key), np.stack([s.device[key] for s in steps]))
        for key in steps[0].extras:
            np.testing.assert_array_equal(reader.extras(key), np.stack([s.extras[key] for s in steps]))
        assert reader.device("engaged").dtype == np.bool_
        assert np.isnan(reader.device("keypoints")[0]).all()  # no hand on even steps


def test_round_trip_cameras(episode: Path, steps: list[Step]) -> None:
    with open_episode(episode) as reader:
        assert reader.camera_names == sorted(CAMERAS)
        for cam in CAMERAS:
            expected = np.stack([s.frames[cam].rgb for s in steps])
            assert expected.std() > 0  # the images are not blank
            np.testing.assert_array_equal(reader.frames(cam), expected)
            np.testing.assert_array_equal(reader.frames(cam, 10, 20), expected[10:20])
            np.testing.assert_array_equal(reader.frame(cam, 7), expected[7])
            np.testing.assert_array_equal(reader.frame(cam, -1), expected[-1])
            np.testing.assert_array_equal(np.stack(list(reader.iter_frames(cam))), expected)
            np.testing.assert_array_equal(reader.camera_timestamps(cam), [s.frames[cam].t for s in steps])
            np.testing.assert_array_equal(reader.camera_seq(cam), [s.frames[cam].seq for s in steps])
            assert reader.camera_stats(cam) is None  # written without a session's counts
        with pytest.raises(IndexError):
            reader.frame("front", len(steps))


def test_timestamps_monotonic_and_step_aligned_lengths_equal(episode: Path) -> None:
    with open_episode(episode) as reader:
        assert np.all(np.diff(reader.timestamps) > 0)
        n = reader.num_steps
        lengths = [len(a) for a in (reader.timestamps, reader.joint_pos, reader.joint_vel, reader.ee_pose)]
        lengths += [len(reader.action)] + [len(reader.device(k)) for k in reader.device_keys]
        lengths += [len(reader.extras(k)) for k in reader.extras_keys]
        lengths += [len(reader.camera_timestamps(c)) for c in reader.camera_names]
        lengths += [len(reader.frames(c)) for c in reader.camera_names]
        assert lengths == [n] * len(lengths)


def test_root_attributes(episode: Path) -> None:
    with open_episode(episode) as reader:
        attrs = reader.attrs
    assert attrs["format"] == "teleop-episode" and attrs["format_version"] == 3
    assert attrs["joint_names"] == list(make_meta().joint_names)
    assert attrs["seed"] == 7 and attrs["success"] is True
    assert attrs["achieved_rate_hz"] == pytest.approx(19.8) and attrs["late_ticks"] == 2
    assert attrs["software_version"]


@pytest.mark.parametrize("success", [True, False, None])
def test_success_true_false_or_unknown(tmp_path: Path, success: bool | None, fmt: str) -> None:
    path = write_episode(tmp_path / episode_name(fmt), make_steps(3), success)
    with open_episode(path) as reader:
        assert reader.success is success
        assert reader.attrs["success"] is success


def test_reader_is_lazy_about_frames(episode: Path) -> None:
    with open_episode(episode) as reader:
        frame = reader.frame("wrist", 3)
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8


def test_unknown_camera_or_key_lists_the_valid_names(episode: Path) -> None:
    with open_episode(episode) as reader:
        with pytest.raises(UnknownNameError, match="front"):
            reader.frame("top", 0)
        with pytest.raises(UnknownNameError, match="object_pose"):
            reader.extras("nope")


def test_zero_step_episode_is_a_valid_empty_file(tmp_path: Path, fmt: str) -> None:
    path = create_writer(tmp_path, make_meta(), fmt).close(None)
    with open_episode(path) as reader:
        assert reader.num_steps == 0 and reader.success is None and reader.duration_s == 0.0
        assert reader.joint_pos.shape == (0, N_JOINTS)
        assert reader.frames("front").shape == (0, H, W, 3)


# ------------------------------------------------------------------------ incremental, atomic writing


def test_only_the_partial_exists_until_close(tmp_path: Path, steps: list[Step], fmt: str) -> None:
    path = tmp_path / episode_name(fmt)
    writer = create_writer(path, make_meta(), fmt)
    assert not partial_path(path).exists()  # construction touches no file
    writer.open()
    for step in steps:
        writer.append(step)
        assert partial_path(path).exists() and not path.exists()
    assert writer.close(True) == path
    assert path.exists() and not partial_path(path).exists()
    assert writer.close(False) == path  # a second close is a no-op
    with open_episode(path) as reader:
        assert reader.success is True


def test_discard_removes_the_partial(tmp_path: Path, steps: list[Step], fmt: str) -> None:
    writer = create_writer(tmp_path, make_meta(), fmt)
    for step in steps[:5]:
        writer.append(step)
    writer.discard()
    writer.discard()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(EpisodeError, match="already closed"):
        writer.append(steps[5])


def test_context_manager_closes_or_discards(tmp_path: Path, steps: list[Step], fmt: str) -> None:
    with create_writer(tmp_path / episode_name(fmt), make_meta(), fmt) as writer:
        writer.append(steps[0])
    with open_episode(tmp_path / episode_name(fmt)) as reader:
        assert reader.num_steps == 1 and reader.success is None
    with pytest.raises(RuntimeError), create_writer(tmp_path / episode_name(fmt, 1), make_meta(), fmt) as writer:
        writer.append(steps[0])
        raise RuntimeError("operator aborted")
    assert sorted(p.name for p in tmp_path.iterdir()) == [episode_name(fmt)]


def test_datasets_grow_on_disk_at_the_flush_interval(tmp_path: Path, steps: list[Step]) -> None:
    clock = FakeClock()
    path = tmp_path / "episode_000000.h5"
    writer = EpisodeWriter(path, make_meta(), flush_interval_s=1.0, clock=clock)
    writer.open()
    sizes = [partial_path(path).stat().st_size]
    for k in range(3):
        for step in steps[k * 11 : k * 11 + 10]:  # 0.5 s: no flush yet
            writer.append(step)
            clock.now += 0.05
        clock.now += 1.0
        writer.append(steps[k * 11 + 10])  # the flush interval has passed: this append flushes
        sizes.append(partial_path(path).stat().st_size)
        snapshot = tmp_path / f"snapshot{k}.h5"
        shutil.copyfile(partial_path(path), snapshot)  # what a crash would leave on disk
        with h5py.File(snapshot, "r", swmr=True) as f:  # written in SWMR mode, see recorder.hdf5
            n = int(f.attrs["num_steps"])
            assert n == writer.num_steps == (k + 1) * 11
            np.testing.assert_array_equal(f["observation/joint_pos"][n - 1], steps[n - 1].joint_pos)
            np.testing.assert_array_equal(f["cameras/front/rgb"][n - 1], steps[n - 1].frames["front"].rgb)
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]
    writer.discard()


def test_datasets_are_trimmed_to_the_step_count(tmp_path: Path) -> None:
    path = write_episode(tmp_path / "episode_000000.h5", make_steps(70))
    with h5py.File(path, "r") as f:
        assert f["action"].shape == (70, N_ACTIONS)
        assert f["cameras/wrist/rgb"].chunks == (1, H, W, 3)
        assert f["cameras/wrist/rgb"].compression == "lzf"


def rss_mb() -> float:
    """This process's resident memory [MB] (Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def writer_memory_growth(directory: str, fmt: str) -> None:
    """Print how much RSS grows [MB] while a writer appends 10 000 steps after a warm-up of 2 000, then check
    the episode. Run in a fresh process: other tests' threads and heap would blur a few MB."""
    # 4 arrays of 128 floats a step fill 64 kB chunks; a chunk cache of HDF5 2.0's default size (8 MiB an
    # array) would keep every chunk of the first ~8000 steps, +32 MB here.
    clock = FakeClock()
    meta = dataclasses.replace(make_meta(), cameras={})
    wide = {f"wide{k}": np.linspace(0.0, 1.0, 128) + k for k in range(4)}
    step = Step(t=0.0, joint_pos=np.zeros(N_JOINTS), joint_vel=np.zeros(N_JOINTS), ee_pose=np.zeros(7),
                action=np.zeros(N_ACTIONS), extras=wide)
    writer = create_writer(Path(directory) / episode_name(fmt), meta, fmt, clock=clock)

    def record(n: int) -> None:
        for _ in range(n):
            clock.now += 0.01
            writer.append(dataclasses.replace(step, t=clock.now))

    record(2_000)
    before = rss_mb()
    record(10_000)
    grown = rss_mb() - before
    path = writer.close()
    with open_episode(path) as reader:
        assert reader.num_steps == 12_000
        np.testing.assert_array_equal(reader.extras("wide3")[-1], wide["wide3"])
    print(grown)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc/self/status")
def test_the_writers_memory_does_not_grow_with_the_episode(tmp_path: Path, fmt: str) -> None:
    code = f"from test_recorder import writer_memory_growth; writer_memory_growth({str(tmp_path)!r}, {fmt!r})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    grown = float(done.stdout.split()[-1])
    assert grown < 6.0, f"{grown:.1f} MB more after 10 000 steps"


def test_shape_change_raises(tmp_path: Path, steps: list[Step], fmt: str) -> None:
    writer = create_writer(tmp_path, make_meta(), fmt)
    writer.append(steps[0])
    bad = Step(**{**steps[1].__dict__, "extras": {**steps[1].extras, "object_pose": np.zeros(6)}})
    with pytest.raises(EpisodeError, match=r"extras/object_pose has shape \(6,\)") as err:
        writer.append(bad)
    assert str(writer.partial) in str(err.value)
    missing = Step(**{**steps[1].__dict__, "device": {}})
    with pytest.raises(EpisodeError, match="device/gripper"):
        writer.append(missing)
    float_frames = {cam: CameraFrame(f.rgb / 255.0, f.t) for cam, f in steps[1].frames.items()}
    with pytest.raises(EpisodeError, match="dtype float64"):
        writer.append(Step(**{**steps[1].__dict__, "frames": float_frames}))
    writer.append(steps[1])  # a rejected step leaves the episode as it was
    assert writer.num_steps == 2
    writer.discard()


def test_first_step_must_match_the_metadata(tmp_path: Path, steps: list[Step], fmt: str) -> None:
    writer = create_writer(tmp_path, make_meta(), fmt)
    short = Step(**{**steps[0].__dict__, "joint_pos": np.zeros(N_JOINTS - 1)})
    with pytest.raises(EpisodeError, match="joint_pos has shape"):
        writer.append(short)
    one_camera = Step(**{**steps[0].__dict__, "frames": {"front": steps[0].frames["front"]}})
    with pytest.raises(EpisodeError, match="cameras"):
        writer.append(one_camera)
    writer.discard()


def test_writer_refuses_to_overwrite(episode: Path, fmt: str) -> None:
    with pytest.raises(EpisodeError, match="already exists"):
        create_writer(episode, make_meta(), fmt).open()


def test_reserved_extra_attribute_raises(tmp_path: Path, steps: list[Step], fmt: str) -> None:
    writer = create_writer(tmp_path, make_meta(), fmt)
    writer.append(steps[0])
    with pytest.raises(EpisodeError, match="num_steps"):
        writer.close(True, {"num_steps": 3})
    assert writer.close(True).exists()


# -------------------------------------------------------------------------------------- damaged files


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage_header(path: Path) -> None:
    with path.open("r+b") as f:
        f.write(np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes())


def _drop_attribute(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f.attrs["robot"]


def _shorten_action(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f["action"].resize(len(f["action"]) - 3, axis=0)


def _other_format(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        f.attrs["format"] = "robomimic"


def _drop_dataset(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        del f["observation/joint_vel"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_truncate, "truncated or damaged"),
        (_garbage_header, "not a readable HDF5 file"),
        (_drop_attribute, r"missing attributes \['robot'\]"),
        (_shorten_action, "other lengths"),
        (_other_format, "not a 'teleop-episode' episode"),
        (_drop_dataset, "missing datasets"),
    ],
)
def test_damaged_files_raise_episode_error_naming_the_file(h5_episode: Path, damage, message: str) -> None:
    damage(h5_episode)
    with pytest.raises(EpisodeError, match=message) as err:
        EpisodeReader(h5_episode)
    assert str(h5_episode) in str(err.value)


def test_partial_file_is_an_unfinished_recording(tmp_path: Path, steps: list[Step]) -> None:
    writer = EpisodeWriter(tmp_path / "episode_000000.h5", make_meta())
    writer.append(steps[0])
    writer.flush()
    with pytest.raises(EpisodeError, match="unfinished recording") as err:
        EpisodeReader(writer.partial)
    assert str(writer.partial) in str(err.value)
    writer.discard()


def test_files_written_before_the_frame_counter_still_open(h5_episode: Path, steps: list[Step]) -> None:
    with h5py.File(h5_episode, "r+") as f:  # version 2 files have no integrity record
        f.attrs["format_version"] = 2
        del f.attrs["integrity"]
        for cam in CAMERAS:
            del f[f"cameras/{cam}/seq"]
    with EpisodeReader(h5_episode) as reader:
        np.testing.assert_array_equal(reader.camera_seq("front"), [-1] * len(steps))
        np.testing.assert_array_equal(reader.frame("front", 3), steps[3].frames["front"].rgb)


def test_a_repeated_frame_is_stored_once_and_read_back_for_every_step(
    tmp_path: Path, steps: list[Step], fmt: str
) -> None:
    slow = CameraFrame(steps[0].frames["front"].rgb, steps[0].frames["front"].t, 0)  # a camera slower than the loop
    repeated = [Step(**{**s.__dict__, "frames": {**s.frames, "front": slow}}) for s in steps[:4]]
    path = write_episode(tmp_path / episode_name(fmt), repeated + steps[4:6])
    with open_episode(path) as reader:
        expected = [slow.rgb] * 4 + [s.frames["front"].rgb for s in steps[4:6]]
        np.testing.assert_array_equal(reader.frames("front"), np.stack(expected))
        np.testing.assert_array_equal(reader.frames("front", 2, 5), np.stack(expected[2:5]))
        np.testing.assert_array_equal(np.stack(list(reader.iter_frames("front"))), np.stack(expected))
        np.testing.assert_array_equal(reader.frame("front", -3), expected[-3])
        np.testing.assert_array_equal(reader.camera_seq("front"), [0, 0, 0, 0, 4, 5])
        np.testing.assert_array_equal(reader.frame_indices("front"), [0, 0, 0, 0, 1, 2])
        assert reader.num_frames("front") == 3 and reader.num_frames("wrist") == 6
    if fmt == "hdf5":
        with h5py.File(path, "r") as f:
            assert f["cameras/front/rgb"].shape[0] == 3 and f["cameras/front/frame_index"].shape == (6,)


def test_a_version_1_episode_with_one_frame_per_step_still_reads(tmp_path: Path, steps: list[Step]) -> None:
    path = write_episode(tmp_path / episode_name("hdf5"), steps[:5])
    with h5py.File(path, "r+") as f:  # the layout version 1 wrote: no frame_index, frames step-aligned
        f.attrs["format_version"] = 1
        del f.attrs["integrity"]
        for cam in CAMERAS:
            del f[f"cameras/{cam}/frame_index"]
    with EpisodeReader(path) as reader:
        np.testing.assert_array_equal(reader.frame_indices("front"), np.arange(5))
        np.testing.assert_array_equal(reader.frames("wrist"), np.stack([s.frames["wrist"].rgb for s in steps[:5]]))


def test_a_frame_index_pointing_past_the_stored_frames_is_damage(tmp_path: Path, steps: list[Step]) -> None:
    path = write_episode(tmp_path / episode_name("hdf5"), steps[:5])
    with h5py.File(path, "r+") as f:
        f["cameras/front/frame_index"][4] = 5
    with pytest.raises(EpisodeError, match="frame_index points outside the 5 stored frames"):
        EpisodeReader(path)


def test_a_bad_frame_index_inside_the_episode_is_found_when_frames_are_read(tmp_path: Path, steps: list[Step]) -> None:
    # Opening checks the first and last rows only (it takes as long for an hour as for a minute); the rest
    # is checked when the index is first read.
    path = write_episode(tmp_path / episode_name("hdf5"), steps[:5])
    with h5py.File(path, "r+") as f:
        f["cameras/front/frame_index"][2] = -1
    with EpisodeReader(path) as reader:
        np.testing.assert_array_equal(reader.frame("wrist", 2), steps[2].frames["wrist"].rgb)
        reads = (lambda: reader.frame("front", 0), lambda: reader.frames("front"),
                 lambda: next(reader.iter_frames("front")))
        for read in reads:
            with pytest.raises(EpisodeError, match="frame_index points outside the 5 stored frames"):
                read()


def test_open_episode_picks_the_backend_by_name(tmp_path: Path) -> None:
    with pytest.raises(EpisodeError, match=r"not an episode name; episodes end in one of \.h5, \.zarr"):
        open_episode(tmp_path / "episode_000000.mp4")
    with pytest.raises(EpisodeError, match="unfinished recording"):
        open_episode(tmp_path / "episode_000000.zarr.partial")
    with pytest.raises(EpisodeError, match="no such episode directory"):
        open_episode(tmp_path / "episode_000000.zarr")
    with pytest.raises(EpisodeError, match="must be named"):
        create_writer(tmp_path / "episode_000000.h5", make_meta(), "zarr")
    with pytest.raises(UnknownNameError, match="hdf5, zarr"):
        create_writer(tmp_path, make_meta(), "parquet")


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(EpisodeError, match="no such episode file"):
        EpisodeReader(tmp_path / "episode_000009.h5")


def test_corrupt_image_chunk_raises_on_read_naming_file_and_dataset(h5_episode: Path, steps: list[Step]) -> None:
    episode = h5_episode
    with h5py.File(episode, "r") as f:
        info = f["cameras/front/rgb"].id.get_chunk_info(10)
    with episode.open("r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        f.write(b"\xde\xad\xbe\xef" * 16)
    with open_episode(episode) as reader:  # the metadata is intact, so the file opens
        np.testing.assert_array_equal(reader.frame("front", 9), steps[9].frames["front"].rgb)
        with pytest.raises(EpisodeError, match="cameras/front/rgb") as err:
            reader.frame("front", 10)
        assert str(episode) in str(err.value)
        with pytest.raises(EpisodeError, match="cameras/front/rgb"):
            list(reader.iter_frames("front"))


# ---------------------------------------------------------------------------------------- listing


def test_next_episode_path_counts_up_and_skips_partials(tmp_path: Path) -> None:
    assert next_episode_path(tmp_path) == tmp_path / "episode_000000.h5"
    write_episode(tmp_path / "episode_000000.h5", make_steps(2))
    assert next_episode_path(tmp_path) == tmp_path / "episode_000001.h5"
    (tmp_path / "episode_000001.h5.partial").write_bytes(b"left by a crash")
    assert next_episode_path(tmp_path) == tmp_path / "episode_000002.h5"
    (tmp_path / "notes.txt").write_text("not an episode")
    assert next_episode_path(tmp_path) == tmp_path / "episode_000002.h5"


def test_episode_numbers_count_across_formats(tmp_path: Path) -> None:
    write_episode(tmp_path / "episode_000000.h5", make_steps(2))
    assert next_episode_path(tmp_path, "zarr") == tmp_path / "episode_000001.zarr"
    write_episode(tmp_path / "episode_000001.zarr", make_steps(2))
    (tmp_path / "episode_000002.zarr.partial").mkdir()
    assert next_episode_path(tmp_path) == tmp_path / "episode_000003.h5"
    assert create_writer(tmp_path, make_meta(), "zarr").path == tmp_path / "episode_000003.zarr"


def test_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(EpisodeError, match="does not exist"):
        scan_episodes(tmp_path / "nope")
    with pytest.raises(EpisodeError, match="does not exist"):
        next_episode_path(tmp_path / "nope")


def test_scan_lists_good_episodes_beside_bad_ones(tmp_path: Path) -> None:
    for i in range(4):
        write_episode(tmp_path / f"episode_{i:06d}.h5", make_steps(5 + i, seed=i), success=i != 1)
    _truncate(tmp_path / "episode_000001.h5")
    shutil.copyfile(tmp_path / "episode_000002.h5", tmp_path / "episode_000004.h5.partial")
    items = scan_episodes(tmp_path)
    assert [item.name for item in items] == [
        "episode_000000.h5",
        "episode_000001.h5",
        "episode_000002.h5",
        "episode_000003.h5",
        "episode_000004.h5.partial",
    ]
    kinds = [EpisodeSummary, EpisodeProblem, EpisodeSummary, EpisodeSummary, EpisodeProblem]
    assert [type(item) for item in items] == kinds
    good = items[3]
    assert isinstance(good, EpisodeSummary)
    assert (good.robot, good.task, good.num_steps, good.success) == ("panda", "lift", 8, True)
    assert isinstance(items[4], EpisodeProblem) and items[4].message.startswith(UNFINISHED)
    table = format_episode_table(items).splitlines()
    assert len(table) == 1 + len(items)
    assert "ERROR:" in table[2] and "ERROR: unfinished recording" in table[5]
    assert "panda" in table[4] and " 8 " in table[4] and "ERROR" not in table[4]
    assert next_episode_path(tmp_path) == tmp_path / "episode_000005.h5"


def test_scan_lists_zarr_episodes_and_marks_incomplete_ones(tmp_path: Path) -> None:
    write_episode(tmp_path / "episode_000000.h5", make_steps(3))
    writer = create_writer(tmp_path, make_meta(), "zarr")
    for step in make_steps(4):
        writer.append(step)
    writer.close(None, {"incomplete": True})
    (tmp_path / "episode_000002.zarr.partial").mkdir()
    items = scan_episodes(tmp_path)
    assert [item.name for item in items] == ["episode_000000.h5", "episode_000001.zarr", "episode_000002.zarr.partial"]
    zarr_item = items[1]
    assert isinstance(zarr_item, EpisodeSummary) and zarr_item.num_steps == 4 and zarr_item.incomplete
    assert isinstance(items[2], EpisodeProblem) and items[2].message.startswith(UNFINISHED)
    assert "teleop episodes repair" in items[2].message
    table = format_episode_table(items).splitlines()
    assert table[2].endswith("? (incomplete)") and table[1].endswith("yes")


# ------------------------------------------------------------------------------------------------ depth

DEPTH_SCALE_M = 0.001
ROOT = Path(__file__).resolve().parent.parent


def depth_image(seq: int) -> np.ndarray:
    """(H, W) uint16 depth [mm]: a receding floor, a box that moves with `seq`, sensor noise and holes."""
    rng = np.random.default_rng(seq)
    y, x = np.mgrid[0:H, 0:W]
    z = 600.0 + 1900.0 * (1.0 - y / H) ** 1.5
    z[(abs(x - 10 - seq) < 8) & (abs(y - 24) < 6)] = 900.0
    z += rng.normal(size=z.shape) * 2.5e-6 * z**2
    depth = np.round(z).astype(np.uint16)
    depth[rng.random(depth.shape) < 0.02] = 0
    return depth


def depth_steps(n: int) -> list[Step]:
    """Steps whose front camera also gives depth, at half the control rate (each depth frame stored twice)."""
    steps = make_steps(n)
    out = []
    for i, step in enumerate(steps):
        seq = i // 2
        rgb = steps[2 * seq].frames["front"].rgb
        front = DepthFrame(rgb, steps[2 * seq].t - 0.002, seq, depth_image(seq), DEPTH_SCALE_M)
        out.append(Step(**{**step.__dict__, "frames": {**step.frames, "front": front}}))
    return out


def assert_depth_round_trip(path: Path, steps: list[Step]) -> None:
    expected = np.stack([s.frames["front"].depth for s in steps])  # type: ignore[attr-defined]
    with open_episode(path) as reader:
        assert reader.has_depth("front") and not reader.has_depth("wrist")
        assert reader.depth_scale_m("front") == DEPTH_SCALE_M
        depths = reader.depths("front")
        assert depths.dtype == np.uint16 and depths.shape == (len(steps), H, W)
        np.testing.assert_array_equal(depths, expected)  # lossless, repeats included
        np.testing.assert_array_equal(reader.depths("front", 3, 7), expected[3:7])
        np.testing.assert_array_equal(reader.camera_depth("front", 5), expected[5])
        np.testing.assert_array_equal(reader.camera_depth("front", -1), expected[-1])
        np.testing.assert_array_equal(reader.frames("front"), np.stack([s.frames["front"].rgb for s in steps]))
        np.testing.assert_array_equal(reader.camera_seq("front"), [s.frames["front"].seq for s in steps])
        with pytest.raises(EpisodeError, match="'wrist' was recorded without depth"):
            reader.camera_depth("wrist", 0)
        with pytest.raises(IndexError):
            reader.camera_depth("front", len(steps))


def test_depth_round_trips_losslessly_with_its_scale(tmp_path: Path, fmt: str) -> None:
    steps = depth_steps(24)
    path = write_episode(tmp_path / episode_name(fmt), steps)
    assert_depth_round_trip(path, steps)
    if fmt == "hdf5":
        with h5py.File(path, "r") as f:
            depth = f["cameras/front/depth"]
            assert depth.chunks == (1, H, W) and depth.compression == "lzf" and depth.shuffle
            assert f["cameras/front"].attrs["depth_scale_m"] == DEPTH_SCALE_M


def test_episodes_without_depth_say_so(episode: Path) -> None:
    with open_episode(episode) as reader:
        assert not any(reader.has_depth(cam) for cam in CAMERAS)
        with pytest.raises(EpisodeError, match="recorded without depth"):
            reader.depths("front")


def test_depth_must_be_uint16_on_the_colour_grid_with_a_fixed_scale(tmp_path: Path, fmt: str) -> None:
    steps = depth_steps(4)
    front = steps[0].frames["front"]
    for bad, message in (
        (DepthFrame(front.rgb, front.t, 0, np.zeros((H, W), np.float32), DEPTH_SCALE_M), "depth is float32"),
        (DepthFrame(front.rgb, front.t, 0, np.zeros((H // 2, W), np.uint16), DEPTH_SCALE_M), "depth is uint16"),
        (DepthFrame(front.rgb, front.t, 0, np.zeros((H, W), np.uint16), 0.0), "depth_scale_m 0.0"),
    ):
        writer = create_writer(tmp_path / episode_name(fmt), make_meta(), fmt)
        with pytest.raises(EpisodeError, match=message):
            writer.append(Step(**{**steps[0].__dict__, "frames": {**steps[0].frames, "front": bad}}))
        writer.discard()
    writer = create_writer(tmp_path / episode_name(fmt), make_meta(), fmt)
    writer.append(steps[0])
    rescaled = DepthFrame(front.rgb, front.t + 1, 1, depth_image(1), 2 * DEPTH_SCALE_M)
    with pytest.raises(EpisodeError, match="depth scales"):
        writer.append(Step(**{**steps[1].__dict__, "frames": {**steps[1].frames, "front": rescaled}}))
    writer.discard()


def write_depth_partial(directory: Path, fmt: str, flushed: int, unflushed: int) -> None:
    """Record depth steps, flush after `flushed` of them, append `unflushed` more and die without closing."""
    writer = create_writer(directory, make_meta(), fmt, flush_interval_s=3600.0, min_free_bytes=0)
    steps = depth_steps(flushed + unflushed)
    for step in steps[:flushed]:
        writer.append(step)
    writer.flush()
    for step in steps[flushed:]:
        writer.append(step)
    os._exit(0)  # like a killed process: no close, no clean-up


def test_repair_keeps_depth(tmp_path: Path, fmt: str) -> None:
    code = f"from test_recorder import write_depth_partial; write_depth_partial({str(tmp_path)!r}, {fmt!r}, 16, 5)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)
    repaired = repair_partial(partial_path(tmp_path / episode_name(fmt)))
    assert repaired.num_steps == 16
    assert_depth_round_trip(repaired.path, depth_steps(16))
