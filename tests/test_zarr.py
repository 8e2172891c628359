"""zarr episodes: the same episode as HDF5, the zarr layout on disk, flushing, repeated frames.

The round-trip tests of test_recorder.py run on both backends; damaged zarr episodes are in test_crash_safety.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_recorder import (
    CAMERAS,
    FakeClock,
    H,
    W,
    assert_depth_round_trip,
    depth_steps,
    make_meta,
    make_steps,
    write_episode,
)

from recorder.backend import open_episode
from recorder.layout import partial_path
from recorder.step import CameraFrame, Step
from recorder.zarr_store import DEPTH_CODECS, ZarrEpisodeWriter


def array(root: zarr.Group, name: str) -> zarr.Array:
    node = root[name]
    assert isinstance(node, zarr.Array), name
    return node


@pytest.fixture
def steps() -> list[Step]:
    return make_steps(70)


def test_zarr_and_hdf5_read_back_the_same_episode(tmp_path: Path, steps: list[Step]) -> None:
    h5 = write_episode(tmp_path / "episode_000000.h5", steps, success=False)
    zr = write_episode(tmp_path / "episode_000001.zarr", steps, success=False)
    with open_episode(h5) as a, open_episode(zr) as b:
        for key in (set(a.attrs) | set(b.attrs)) - {"integrity"}:  # zarr's also covers its metadata files
            np.testing.assert_array_equal(a.attrs[key], b.attrs[key], err_msg=key)
        assert a.meta.cameras.keys() == b.meta.cameras.keys()
        for name in ("timestamps", "joint_pos", "joint_vel", "ee_pose", "action"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)
        assert a.device_keys == b.device_keys and a.extras_keys == b.extras_keys
        for key in a.device_keys:
            np.testing.assert_array_equal(a.device(key), b.device(key))
            assert a.device(key).dtype == b.device(key).dtype
        for key in a.extras_keys:
            np.testing.assert_array_equal(a.extras(key), b.extras(key))
        for cam in CAMERAS:
            np.testing.assert_array_equal(a.frames(cam), b.frames(cam))
            np.testing.assert_array_equal(a.camera_timestamps(cam), b.camera_timestamps(cam))
            np.testing.assert_array_equal(a.camera_seq(cam), b.camera_seq(cam))
            np.testing.assert_array_equal(a.camera_info(cam).K, b.camera_info(cam).K)


def test_layout_on_disk_is_a_zarr_v3_group(tmp_path: Path, steps: list[Step]) -> None:
    path = write_episode(tmp_path / "episode_000000.zarr", steps)
    assert path.is_dir() and (path / "zarr.json").is_file()
    root = zarr.open_group(path, mode="r", zarr_format=3)
    assert root.attrs["format"] == "teleop-episode" and root.attrs["num_steps"] == len(steps)
    rgb = array(root, "cameras/front/rgb")
    assert rgb.shape == (len(steps), H, W, 3) and rgb.chunks == (1, H, W, 3) and rgb.dtype == np.uint8
    assert [type(c).__name__ for c in rgb.compressors] == ["ZstdCodec", "Crc32cCodec"]
    assert (path / "cameras/front/rgb/c.69.0.0.0").is_file()  # "." chunk keys: one flat directory per array
    assert array(root, "cameras/front/seq").dtype == np.int64
    assert array(root, "action").shape == (len(steps), len(make_meta().action_names))
    assert root["cameras/wrist"].attrs["mount"] == "panda_hand"


def test_rows_and_their_count_reach_the_disk_at_each_flush(tmp_path: Path, steps: list[Step]) -> None:
    clock = FakeClock()
    path = tmp_path / "episode_000000.zarr"
    writer = ZarrEpisodeWriter(path, make_meta(), flush_interval_s=1.0, clock=clock)
    for k in range(3):
        for step in steps[k * 11 : k * 11 + 10]:
            writer.append(step)
            clock.now += 0.05
        assert zarr.open_group(writer.partial, mode="r").attrs["num_steps"] == k * 11  # not flushed yet
        clock.now += 1.0
        writer.append(steps[k * 11 + 10])  # this append flushes
        snapshot = tmp_path / f"snapshot{k}.zarr"
        shutil.copytree(writer.partial, snapshot)  # what a crash would leave on disk
        root = zarr.open_group(snapshot, mode="r")
        n = int(np.asarray(root.attrs["num_steps"]))
        assert n == writer.num_steps == (k + 1) * 11
        joint_pos = array(root, "observation/joint_pos")[:n]
        np.testing.assert_array_equal(joint_pos, np.stack([s.joint_pos for s in steps[:n]]))
        np.testing.assert_array_equal(array(root, "cameras/front/rgb")[n - 1], steps[n - 1].frames["front"].rgb)
    path = writer.close(True)
    assert path.is_dir() and not partial_path(path).exists()


def test_small_arrays_are_few_files_and_rewriting_their_last_chunk_at_each_flush_keeps_every_row(
        tmp_path: Path) -> None:
    first = make_steps(1)[0]  # every step shows the same two frames: this test is about the small arrays
    steps = [Step(**{**step.__dict__, "frames": first.frames}) for step in make_steps(1100)]
    clock = FakeClock()
    path = tmp_path / "episode_000000.zarr"
    writer = ZarrEpisodeWriter(path, make_meta(), flush_interval_s=1.0, clock=clock)
    for step in steps:
        writer.append(step)
        clock.now += 0.04  # a flush every 25 steps: the last chunk is rewritten whole each time
    path = writer.close(True)
    assert sorted(p.name for p in (path / "observation/joint_pos").glob("c.*")) == ["c.0.0", "c.1.0"]
    assert len(list((path / "cameras/front/frame_index").glob("c.*"))) == 2
    with open_episode(path) as episode:
        np.testing.assert_array_equal(episode.joint_pos, np.stack([s.joint_pos for s in steps]))
        np.testing.assert_array_equal(episode.timestamps, [s.t for s in steps])
        np.testing.assert_array_equal(episode.frame_indices("front"), np.zeros(1100))


def test_a_repeated_frame_is_stored_once(tmp_path: Path, steps: list[Step]) -> None:
    def with_front(step: Step, frame: CameraFrame) -> Step:
        return Step(**{**step.__dict__, "frames": {**step.frames, "front": frame}})

    first = steps[0].frames["front"]
    repeated = [with_front(s, CameraFrame(first.rgb, first.t, 0)) for s in steps[:3]]  # a slow camera
    changed = with_front(steps[3], CameraFrame(first.rgb.copy(), first.t + 0.1, 1))
    same_pixels_new_frame = with_front(steps[4], CameraFrame(first.rgb.copy(), first.t + 0.2, 2))
    path = write_episode(tmp_path / "episode_000000.zarr", [*repeated, changed, same_pixels_new_frame])
    assert sorted(p.name for p in (path / "cameras/front/rgb").glob("c.*")) == [f"c.{i}.0.0.0" for i in range(3)]
    with open_episode(path) as episode:
        np.testing.assert_array_equal(episode.frames("front"), np.stack([first.rgb] * 5))
        np.testing.assert_array_equal(episode.frame_indices("front"), [0, 0, 0, 1, 2])
        np.testing.assert_array_equal(episode.camera_seq("front"), [0, 0, 0, 1, 2])
        np.testing.assert_array_equal(episode.camera_seq("wrist"), [-1] * 5)


def test_a_zero_step_zarr_episode_opens(tmp_path: Path) -> None:
    path = ZarrEpisodeWriter(tmp_path / "episode_000000.zarr", make_meta()).close(None)
    with open_episode(path) as episode:
        assert episode.num_steps == 0 and episode.frames("wrist").shape == (0, H, W, 3)
        assert episode.camera_seq("front").shape == (0,)


def test_depth_is_stored_one_frame_per_chunk_with_the_depth_codecs(tmp_path: Path) -> None:
    steps = depth_steps(10)
    path = write_episode(tmp_path / "episode_000000.zarr", steps)
    assert_depth_round_trip(path, steps)
    root = zarr.open_group(path, mode="r", zarr_format=3)
    depth = array(root, "cameras/front/depth")
    assert depth.chunks == (1, H, W) and depth.dtype == np.uint16
    assert [type(c) for c in depth.compressors] == [type(c) for c in DEPTH_CODECS]
    assert root["cameras/front"].attrs["depth_scale_m"] == 0.001
    assert not (path / "cameras/wrist/depth").exists()
    with open_episode(path) as episode:  # two steps per depth frame, each stored once
        np.testing.assert_array_equal(episode.frame_indices("front"), np.arange(10) // 2)
    assert sorted(p.name for p in (path / "cameras/front/depth").glob("c.*")) == [f"c.{i}.0.0" for i in range(5)]
