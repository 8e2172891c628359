"""Exports of episodes recorded in simulation (both storage formats, lossless and JPEG frames) read back and
compared value by value with the episodes, against the rules of each format's loader:

- robomimic 0.3.0 (SequenceDataset, FileUtils.get_*_from_dataset, scripts/get_dataset_info.py): demos
  `data/demo_<int>` with attribute num_samples, obs/<key> and next_obs/<key> rows, actions (N, A) in [-1, 1],
  rewards, dones, states, `data` attributes total and env_args (JSON: env_name, type, env_kwargs), masks as
  byte strings of demo names, images (N, H, W, 3) uint8.
- diffusion_policy (ReplayBuffer.copy_from_path, SequenceSampler; zarr-python 2): a zarr format 2 group
  (.zgroup, .zarray with zarr_format 2 and a compressor zarr 2 knows) holding data/<key> time-major arrays with
  shape[0] == meta/episode_ends[-1], episode_ends int64 cumulative, frames chunked one per chunk.
- lerobot 0.4.4 (LeRobotDataset with torchcodec): meta/info.json (codebase_version v3.0, whole fps, features,
  path templates, totals), tasks.parquet indexed by the task, the episodes' parquet (row ranges, video files
  and times, stats/*), data parquet files with the columns and types of datasets' features, and mp4 videos whose
  frame round(t × average_fps) lies within 1e-4 s of every step's time t.

benchmarks/export.py runs the real loaders on such exports (see BENCHMARKS.md).
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import SimulatedClock

from recorder.backend import create_writer, open_episode
from recorder.episodes import scan_episodes
from recorder.export import actions as act
from recorder.export.base import ExportOptions, ExportResult
from recorder.export.errors import ExportError, ExportOptionError
from recorder.export.frames import resize
from recorder.export.registry import EXPORTERS, export_directory, exporter_named
from recorder.export.split import valid_mask
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop.cli import main
from teleop.errors import UnknownNameError

zarr = pytest.importorskip("zarr")
pytest.importorskip("PIL")

STORAGE = [("hdf5", "lossless"), ("hdf5", "jpeg"), ("zarr", "lossless"), ("zarr", "jpeg")]
SIZE_WH = (64, 48)  # recorded frames [px]
FAILED_STEPS = 6


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Per (storage format, image codec) a folder with two successful episodes of the scripted operator and one
    stopped after a few steps (failed), two cameras of 64x48."""
    from teleop.recording import record_episode
    from teleop.rig import RigConfig, build_rig
    from teleop.session import SessionConfig
    from teleop.sim import SimConfig

    clock = SimulatedClock()
    config = RigConfig(robot="franka", task="franka-reach", sim=SimConfig(image_size=SIZE_WH),
                       session=SessionConfig(rate_hz=20.0, max_duration_s=5.0, stop_on_success_s=0.2))
    rig = build_rig(config, clock=clock, sleep=clock.sleep)
    folders = {}
    try:
        for fmt, codec in STORAGE:
            folder = tmp_path_factory.mktemp(f"{fmt}-{codec}")
            for seed in (0, 1):
                episode = record_episode(rig, folder, seed, format=fmt, image_codec=codec)
                assert episode.result.success
            calls = iter(range(10_000))
            failed = record_episode(rig, folder, 7, format=fmt, image_codec=codec,
                                    should_stop=lambda calls=calls: next(calls) >= FAILED_STEPS)
            assert failed.result.success is False
            folders[(fmt, codec)] = folder
    finally:
        rig.close()
    return folders


def _episodes(folder: Path, include_all: bool = False) -> list[Path]:
    return [item.path for item in scan_episodes(folder) if include_all or item.success]


def _bounds_tolerance(reference: np.ndarray) -> float:
    return 1e-12 * max(1.0, float(np.abs(reference).max()))


# ------------------------------------------------------------------------------------------------ robomimic


def _check_robomimic(path: Path, sources: list[Path], result: ExportResult, options: ExportOptions) -> None:
    """Every rule of robomimic's loaders, and every value against the source episodes."""
    cams = result.cameras
    with h5py.File(path, "r", swmr=True, libver="latest") as f:  # as SequenceDataset opens it
        data = f["data"]
        demos = sorted(data.keys(), key=lambda name: int(name[5:]))
        assert demos == [f"demo_{i}" for i in range(len(sources))]
        env = json.loads(data.attrs["env_args"])
        assert env["env_name"] == "franka-reach" and isinstance(env["type"], int)
        assert isinstance(env["env_kwargs"], dict)
        assert data.attrs["total"] == sum(f[f"data/{d}"].attrs["num_samples"] for d in demos) == result.steps
        low, high = data.attrs["action_min"], data.attrs["action_max"]
        bounds = act.ActionBounds(low, high)
        masks = {k: [e.decode("utf-8") for e in np.array(f[f"mask/{k}"][:])] for k in ("train", "valid")}
        assert sorted(masks["train"] + masks["valid"], key=lambda n: int(n[5:])) == demos
        converted_all = []
        for demo_name, source in zip(demos, sources, strict=True):
            demo = data[demo_name]
            with open_episode(source) as episode:
                n = episode.num_steps
                assert demo.attrs["num_samples"] == n and demo.attrs["source_episode"] == source.name
                assert (demo_name in masks["valid"]) == (source.name in result.valid)
                actions = demo["actions"][()]
                assert actions.shape == (n, len(json.loads(data.attrs["action_names"])))
                assert actions.min() >= -1.0 and actions.max() <= 1.0
                expected = act.convert_actions(options.action_space, episode.action, episode.joint_pos,
                                               episode.ee_pose, episode.attrs["action_names"],
                                               episode.attrs["joint_names"])
                converted_all.append(expected)
                np.testing.assert_allclose(bounds.denormalise(actions), expected, rtol=0,
                                           atol=_bounds_tolerance(expected))
                rewards, dones = demo["rewards"][()], demo["dones"][()]
                assert rewards.shape == dones.shape == (n,)
                assert rewards[-1] == (1.0 if episode.success else 0.0) and not rewards[:-1].any()
                assert dones[-1] == 1 and not dones[:-1].any()
                states = demo["states"][()]
                np.testing.assert_array_equal(states[:, :9], episode.joint_pos)
                np.testing.assert_array_equal(states[:, 9:18], episode.joint_vel)
                np.testing.assert_array_equal(states[:, 18:], episode.extras("target_pos"))
                np.testing.assert_array_equal(demo["timestamps"][()], episode.timestamps)
                obs, next_obs = demo["obs"], demo["next_obs"]
                np.testing.assert_array_equal(obs["joint_pos"][()], episode.joint_pos)
                np.testing.assert_array_equal(obs["joint_vel"][()], episode.joint_vel)
                np.testing.assert_array_equal(obs["ee_pose"][()], episode.ee_pose)
                np.testing.assert_array_equal(obs["target_pos"][()], episode.extras("target_pos"))
                assert set(obs) == set(next_obs) == {"joint_pos", "joint_vel", "ee_pose", "target_pos",
                                                     *(f"{c}_image" for c in cams)}
                for key in obs:
                    rows = obs[key][()]
                    assert rows.ndim >= 2 and len(rows) == n
                    np.testing.assert_array_equal(next_obs[key][()], np.concatenate([rows[1:], rows[-1:]]))
                for cam in cams:
                    images = obs[f"{cam}_image"]
                    height, width = options.image_size or (SIZE_WH[1], SIZE_WH[0])
                    assert images.dtype == np.uint8 and images.shape == (n, height, width, 3)
                    assert images.chunks == (1, height, width, 3) and images.compression == "gzip"
                    np.testing.assert_array_equal(images[()], _expected_frames(episode, cam, options.image_size))
                    np.testing.assert_array_equal(demo[f"camera_timestamps/{cam}"][()],
                                                  episode.camera_timestamps(cam))
        np.testing.assert_array_equal(low, np.min([c.min(axis=0) for c in converted_all], axis=0))
        np.testing.assert_array_equal(high, np.max([c.max(axis=0) for c in converted_all], axis=0))


def _expected_frames(episode, cam: str, size: tuple[int, int] | None) -> np.ndarray:  # noqa: ANN001
    frames = episode.frames(cam)
    if size is None:
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((size[1], size[0]), Image.Resampling.BILINEAR))
                     for f in frames])


@pytest.mark.parametrize("storage", STORAGE, ids=[f"{f}-{c}" for f, c in STORAGE])
def test_robomimic_export_holds_the_successful_episodes_value_for_value(
    recorded: dict, storage: tuple[str, str], tmp_path: Path
) -> None:
    folder = recorded[storage]
    options = ExportOptions(valid_fraction=0.5, seed=1)
    out = tmp_path / "dataset.hdf5"
    result = export_directory(folder, "robomimic", out, options)
    sources = _episodes(folder)
    assert result.episodes == tuple(p.name for p in sources) and len(sources) == 2
    assert [name for name, _ in result.skipped] == [p.name for p in _episodes(folder, True) if p not in sources]
    assert result.frames == result.steps * 2 and result.cameras == ("front", "wrist")
    assert result.encoded_frames == result.frames  # the simulator renders a new frame every step
    assert len(result.valid) == 1 and result.bytes == out.stat().st_size
    _check_robomimic(out, sources, result, options)
    assert [p.name for p in tmp_path.iterdir()] == ["dataset.hdf5"]  # no temporary file left


# ----------------------------------------------------------------------------------------- diffusion policy


def _check_zarr_format_2(path: Path, arrays: list[str]) -> None:
    """The metadata files zarr-python 2 reads: .zgroup for the groups, .zarray for the arrays."""
    for group in ("", "data", "meta"):
        assert json.loads((path / group / ".zgroup").read_text()) == {"zarr_format": 2}
    for name in arrays:
        meta = json.loads((path / name / ".zarray").read_text())
        assert meta["zarr_format"] == 2 and meta["order"] == "C" and meta["filters"] is None
        assert meta["dimension_separator"] == "."
        assert meta["compressor"] is None or meta["compressor"]["id"] == "blosc"
    assert not list(path.rglob("zarr.json"))  # nothing of format 3


def _check_diffusion_policy(path: Path, sources: list[Path], result: ExportResult, options: ExportOptions) -> None:
    root = zarr.open_group(str(path), mode="r")
    assert root.metadata.zarr_format == 2
    data, meta = root["data"], root["meta"]
    ends = meta["episode_ends"][:]
    assert ends.dtype == np.int64 and len(ends) == len(sources) and np.all(np.diff(ends) > 0)
    _check_zarr_format_2(path, [f"data/{k}" for k in data.array_keys()] + ["meta/episode_ends", "meta/valid_mask"])
    for key in data.array_keys():
        assert data[key].shape[0] == ends[-1] == result.steps
    assert root.attrs["action_space"] == options.action_space
    valid = meta["valid_mask"][:]
    assert [s.name for s, v in zip(sources, valid, strict=True) if v] == list(result.valid)
    starts = np.concatenate([[0], ends[:-1]])
    for source, start, end in zip(sources, starts, ends, strict=True):
        with open_episode(source) as episode:
            assert end - start == episode.num_steps
            rows = slice(int(start), int(end))
            expected = act.convert_actions(options.action_space, episode.action, episode.joint_pos, episode.ee_pose,
                                           episode.attrs["action_names"], episode.attrs["joint_names"])
            np.testing.assert_array_equal(data["action"][rows], expected)
            np.testing.assert_array_equal(data["timestamp"][rows], episode.timestamps)
            np.testing.assert_array_equal(data["joint_pos"][rows], episode.joint_pos)
            np.testing.assert_array_equal(data["joint_vel"][rows], episode.joint_vel)
            np.testing.assert_array_equal(data["ee_pose"][rows], episode.ee_pose)
            np.testing.assert_array_equal(data["target_pos"][rows], episode.extras("target_pos"))
            for cam in result.cameras:
                images = data[f"{cam}_image"]
                height, width = options.image_size or (SIZE_WH[1], SIZE_WH[0])
                assert images.dtype == np.uint8 and images.chunks == (1, height, width, 3)
                np.testing.assert_array_equal(images[rows], _expected_frames(episode, cam, options.image_size))
                np.testing.assert_array_equal(data[f"{cam}_timestamp"][rows], episode.camera_timestamps(cam))


@pytest.mark.parametrize("storage", STORAGE, ids=[f"{f}-{c}" for f, c in STORAGE])
def test_diffusion_policy_export_holds_the_successful_episodes_value_for_value(
    recorded: dict, storage: tuple[str, str], tmp_path: Path
) -> None:
    folder = recorded[storage]
    options = ExportOptions(valid_fraction=0.5, seed=2)
    out = tmp_path / "replay.zarr"
    result = export_directory(folder, "diffusion-policy", out, options)
    sources = _episodes(folder)
    assert result.episodes == tuple(p.name for p in sources)
    _check_diffusion_policy(out, sources, result, options)
    assert [p.name for p in tmp_path.iterdir()] == ["replay.zarr"]


# ------------------------------------------------------------------------------------------------- lerobot

FPS = 20  # the recorded control rate


def _parquet(path: Path):  # noqa: ANN202 - a pyarrow Table
    import pyarrow.parquet as pq

    return pq.read_table(path)


def _decoded(path: Path, codec: str = "av1") -> tuple[np.ndarray, np.ndarray, float]:
    """Every frame of an mp4 as RGB, its time [s] and the stream's average rate [frames/s], by PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name in {"av1": ("libdav1d", "av1", "libaom-av1"), "h264": ("h264",)}[codec]
        assert stream.codec_context.pix_fmt == "yuv420p"
        decoded = [(frame.to_ndarray(format="rgb24"), float(frame.pts * frame.time_base))
                   for frame in container.decode(stream)]
        rate = float(stream.average_rate)
    return np.stack([f for f, _ in decoded]), np.array([t for _, t in decoded]), rate


def _check_lerobot(path: Path, sources: list[Path], result: ExportResult, options: ExportOptions) -> None:
    """Every rule of lerobot 0.4.4's loader (see recorder/export/lerobot.py), and every value and frame
    against the source episodes."""
    import pandas as pd

    info = json.loads((path / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS and isinstance(info["fps"], int)
    assert info["total_episodes"] == len(sources) and info["total_frames"] == result.steps
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == ("videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
                                  if result.cameras else None)
    features = info["features"]
    assert not any("/" in key for key in features)
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert features[key]["shape"] == [1]
    video_keys = [f"observation.images.{cam}" for cam in result.cameras]
    assert [k for k, ft in features.items() if ft["dtype"] == "video"] == video_keys
    height, width = options.image_size or (SIZE_WH[1], SIZE_WH[0])
    for key in video_keys:
        assert features[key]["shape"] == [height, width, 3]
        assert features[key]["info"]["video.codec"] == options.video_codec and features[key]["info"]["video.fps"] == FPS
    n_train = len(sources) - len(result.valid)
    assert info["splits"] == {"train": f"0:{n_train}"} | ({"validation": f"{n_train}:{len(sources)}"}
                                                           if result.valid else {})
    assert list(result.episodes[n_train:]) == list(result.valid)  # training episodes first

    tasks = pd.read_parquet(path / "meta/tasks.parquet")
    by_name = {p.name: p for p in sources}
    episodes = _parquet(path / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["episode_index"] for e in episodes] == list(range(len(sources)))
    assert [e["teleop/source_episode"] for e in episodes] == list(result.episodes)

    data = _parquet(path / "data/chunk-000/file-000.parquet")
    hf = json.loads(data.schema.metadata[b"huggingface"])["info"]["features"]
    assert list(hf) == [k for k, ft in features.items() if ft["dtype"] != "video"] == data.column_names
    for key in data.column_names:
        kind = data.schema.field(key).type
        if features[key]["shape"] == [1]:
            assert str(kind) == {"float32": "float", "int64": "int64"}[features[key]["dtype"]]
        else:
            assert str(kind) == f"fixed_size_list<element: float>[{features[key]['shape'][0]}]"
    rows = {key: np.asarray(data.column(key).to_pylist()) for key in data.column_names}
    assert np.array_equal(rows["index"], np.arange(result.steps))
    assert rows["timestamp"].dtype == np.float64 and np.array_equal(
        rows["timestamp"].astype(np.float32), (rows["frame_index"] / FPS).astype(np.float32))

    videos = {key: _decoded(path / f"videos/{key}/chunk-000/file-000.mp4", options.video_codec) for key in video_keys}
    for e, ep in enumerate(episodes):
        start, end = ep["dataset_from_index"], ep["dataset_to_index"]
        assert ep["data/chunk_index"] == ep["data/file_index"] == 0 and end - start == ep["length"]
        assert start == (episodes[e - 1]["dataset_to_index"] if e else 0)
        with open_episode(by_name[ep["teleop/source_episode"]]) as episode:
            assert ep["length"] == episode.num_steps
            task = episode.attrs["instruction"] or episode.attrs["task"]
            assert ep["tasks"] == [task] and tasks.loc[task, "task_index"] == rows["task_index"][start]
            assert ep["teleop/success"] == episode.success
            assert ep["teleop/split"] == ("validation" if e >= n_train else "train")
            sl = slice(start, end)
            assert np.array_equal(rows["episode_index"][sl], np.full(end - start, e))
            assert np.array_equal(rows["frame_index"][sl], np.arange(end - start))
            expected = act.convert_actions(options.action_space, episode.action, episode.joint_pos, episode.ee_pose,
                                           episode.attrs["action_names"], episode.attrs["joint_names"])
            for key, values in (("action", expected), ("observation.state", episode.joint_pos),
                                ("observation.velocity", episode.joint_vel), ("observation.ee_pose", episode.ee_pose),
                                ("observation.target_pos", episode.extras("target_pos"))):
                np.testing.assert_array_equal(rows[key][sl], values.astype(np.float32))
                np.testing.assert_allclose(ep[f"stats/{key}/mean"], values.astype(np.float32).mean(axis=0),
                                           rtol=1e-6, atol=1e-9)
            for key, cam in zip(video_keys, result.cameras, strict=True):
                frames, times, rate = videos[key]
                assert rate == FPS and ep[f"videos/{key}/chunk_index"] == 0
                t0, t1 = ep[f"videos/{key}/from_timestamp"], ep[f"videos/{key}/to_timestamp"]
                assert t1 - t0 == pytest.approx(ep["length"] / FPS, abs=1e-9)
                # torchcodec's lookup: frame round(t × average_fps) must lie within 1e-4 s of t
                query = t0 + rows["timestamp"][sl].astype(np.float32)
                found = np.round(query * rate).astype(int)
                assert np.all(np.abs(times[found] - query) < 1e-4)
                expected_frames = _expected_frames(episode, cam, options.image_size).astype(int)
                error = np.abs(frames[found].astype(int) - expected_frames).mean()
                assert error < 8.0, f"{key}: mean absolute error {error:.2f} of 255"  # lossy, yet the same images
                image_stats = ep[f"stats/{key}/mean"]
                assert np.asarray(image_stats).shape == (3, 1, 1) and ep[f"stats/{key}/count"] == [ep["length"]]
    for frames, times, _ in videos.values():
        assert len(frames) == result.steps and np.allclose(times, np.arange(result.steps) / FPS, atol=1e-9, rtol=0)

    stats = json.loads((path / "meta/stats.json").read_text())
    assert set(stats) == set(features)
    np.testing.assert_allclose(stats["action"]["mean"], rows["action"].mean(axis=0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats["action"]["q99"], np.quantile(rows["action"], 0.99, axis=0), rtol=1e-6,
                               atol=1e-9)
    assert stats["index"]["count"] == [result.steps] and stats["index"]["max"] == [result.steps - 1]
    for key in video_keys:
        assert np.asarray(stats[key]["std"]).shape == (3, 1, 1) and stats[key]["count"] == [result.steps]


@pytest.mark.parametrize("storage", STORAGE, ids=[f"{f}-{c}" for f, c in STORAGE])
def test_lerobot_export_holds_the_successful_episodes_value_for_value_and_frame_for_frame(
    recorded: dict, storage: tuple[str, str], tmp_path: Path
) -> None:
    folder = recorded[storage]
    options = ExportOptions(valid_fraction=0.5, seed=0)
    out = tmp_path / "dataset"
    result = export_directory(folder, "lerobot", out, options)
    sources = _episodes(folder)
    assert sorted(result.episodes) == [p.name for p in sources] and len(result.valid) == 1
    assert result.frames == result.steps * 2 and result.encoder_share > 0
    _check_lerobot(out, sources, result, options)
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]


def test_lerobot_export_in_h264_with_one_resized_camera_or_no_camera(recorded: dict, tmp_path: Path) -> None:
    folder = recorded[("zarr", "lossless")]
    options = ExportOptions(cameras=("wrist",), image_size=(32, 40), video_codec="h264", action_space="delta",
                            valid_fraction=0)
    result = export_directory(folder, "lerobot", tmp_path / "h264", options)
    _check_lerobot(tmp_path / "h264", _episodes(folder), result, options)
    options = ExportOptions(cameras=(), include_all=True)
    result = export_directory(folder, "lerobot", tmp_path / "none", options)
    assert result.frames == 0 and not (tmp_path / "none/videos").exists()
    _check_lerobot(tmp_path / "none", _episodes(folder, include_all=True), result, options)
    with pytest.raises(ExportError, match="H.264 needs frames of an even height and width.*--image-size"):
        export_directory(folder, "lerobot", tmp_path / "odd", ExportOptions(image_size=(31, 40), video_codec="h264"))
    assert not (tmp_path / "odd").exists()


def test_lerobot_needs_a_whole_frame_rate(tmp_path: Path) -> None:
    from recorder.export.lerobot import whole_fps

    assert whole_fps(30.0) == 30
    with pytest.raises(ExportError, match="12.5 Hz.*whole number of frames per second"):
        whole_fps(12.5)


# ------------------------------------------------------------------------------- selection, split, spaces


def test_all_exports_failed_episodes_too_and_damaged_ones_never(recorded: dict, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(recorded[("hdf5", "jpeg")], folder)
    damaged = folder / "episode_000001.h5"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size * 2 // 3])  # cut off, as by a full disk
    everything = export_directory(folder, "diffusion-policy", tmp_path / "all.zarr", ExportOptions(include_all=True))
    assert everything.episodes == ("episode_000000.h5", "episode_000002.h5")
    assert [name for name, _ in everything.skipped] == ["episode_000001.h5"]
    successful = export_directory(folder, "diffusion-policy", tmp_path / "ok.zarr", ExportOptions())
    assert successful.episodes == ("episode_000000.h5",)
    why = dict(successful.skipped)
    assert "failed" in why["episode_000002.h5"] and "--all" in why["episode_000002.h5"]
    assert "damaged" in why["episode_000001.h5"]
    failed = zarr.open_group(str(tmp_path / "all.zarr"), mode="r")
    with open_episode(folder / "episode_000002.h5") as episode:
        assert failed["meta/episode_ends"][:][-1] - failed["meta/episode_ends"][:][-2] == episode.num_steps < 10
    assert [e["success"] for e in failed.attrs["episodes"]] == [True, False]


def test_no_episode_to_export_says_why(recorded: dict, tmp_path: Path) -> None:
    folder = tmp_path / "failed-only"
    folder.mkdir()
    shutil.copy(recorded[("hdf5", "lossless")] / "episode_000002.h5", folder)
    with pytest.raises(ExportError, match=r"no episode to export.*failed \(--all exports it\)"):
        export_directory(folder, "robomimic", tmp_path / "x.hdf5", ExportOptions())
    assert not (tmp_path / "x.hdf5").exists()


def test_split_is_deterministic_disjoint_and_complete() -> None:
    for n in (2, 3, 10, 57):
        for fraction in (0.1, 0.25, 0.5):
            mask = valid_mask(n, fraction, seed=4)
            assert mask.dtype == bool and mask.shape == (n,)
            assert mask.sum() == min(max(1, round(n * fraction)), n - 1)
            np.testing.assert_array_equal(mask, valid_mask(n, fraction, seed=4))
    assert not valid_mask(10, 0.0, 0).any() and not valid_mask(1, 0.5, 0).any()
    masks = {tuple(valid_mask(20, 0.2, seed)) for seed in range(10)}
    assert len(masks) > 1  # the seed picks the episodes


@pytest.mark.parametrize("space", ["ee", "delta"])
def test_action_spaces_are_computed_from_the_recorded_arrays(recorded: dict, space: str, tmp_path: Path) -> None:
    folder = recorded[("zarr", "lossless")]
    result = export_directory(folder, "diffusion-policy", tmp_path / "d.zarr",
                              ExportOptions(action_space=space, cameras=()))
    root = zarr.open_group(str(tmp_path / "d.zarr"), mode="r")
    assert result.frames == 0 and not any(k.endswith("_image") for k in root["data"].array_keys())
    ends = np.concatenate([[0], root["meta/episode_ends"][:]])
    for k, source in enumerate(_episodes(folder)):
        exported = root["data/action"][ends[k]:ends[k + 1]]
        with open_episode(source) as episode:
            action, names = episode.action, episode.attrs["action_names"]
            assert names[-1] == "gripper"
            if space == "ee":
                pose = episode.ee_pose
                np.testing.assert_array_equal(exported[:-1, :7], pose[1:])
                np.testing.assert_array_equal(exported[-1, :7], pose[-1])
                assert root.attrs["action_names"] == [*act.EE_NAMES, "gripper"]
            else:
                joints = episode.attrs["joint_names"]
                for column, name in enumerate(names[:-1]):
                    np.testing.assert_array_equal(exported[:, column],
                                                  action[:, column] - episode.joint_pos[:, joints.index(name)])
            np.testing.assert_array_equal(exported[:, -1], action[:, -1])  # the gripper stays absolute


def test_an_action_space_the_robot_cannot_give_is_refused() -> None:
    fingers = [f"joint_{i}.0" for i in range(16)]
    with pytest.raises(ExportError, match="'ee' needs an arm with a gripper.*--action-space joint or delta"):
        act.check_action_space("ee", fingers, fingers, "allegro")
    with pytest.raises(ExportError, match=r"'delta'.*\['j9'\]"):
        act.check_action_space("delta", ["j1", "j9", "gripper"], ["j1", "j2"], "arm")
    act.check_action_space("delta", fingers, fingers, "allegro")


def test_normalised_actions_span_minus_one_to_one_and_invert() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 4)) * [1.0, 100.0, 1e-3, 0.0] + [0, 5, -2, 0.3]
    bounds = act.ActionBounds.of([a[:20], a[20:]])
    unit = bounds.normalise(a)
    assert unit.min() == -1.0 and unit[:, :3].max() == 1.0 and not unit[:, 3].any()  # a constant column is 0
    np.testing.assert_allclose(bounds.denormalise(unit), a, rtol=0, atol=1e-12 * 100)


@pytest.mark.parametrize("format", ["robomimic", "diffusion-policy"])
def test_frames_are_resized_and_cameras_picked(recorded: dict, format: str, tmp_path: Path) -> None:
    folder = recorded[("hdf5", "lossless")]
    options = ExportOptions(cameras=("wrist",), image_size=(24, 40))
    out = tmp_path / ("d.hdf5" if format == "robomimic" else "d.zarr")
    result = export_directory(folder, format, out, options)
    assert result.cameras == ("wrist",) and result.frames == result.steps
    check = _check_robomimic if format == "robomimic" else _check_diffusion_policy
    check(out, _episodes(folder), result, options)


def test_resize_averages_and_keeps_flat_colour() -> None:
    flat = np.full((48, 64, 3), (10, 200, 77), np.uint8)
    assert np.array_equal(resize(flat, (12, 16)), np.full((12, 16, 3), (10, 200, 77), np.uint8))
    stripes = np.zeros((48, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes shrink to their mean, not to one of them
    assert np.all(np.abs(resize(stripes, (24, 32))[:, 1:-1].astype(int) - 128) <= 1)  # inside the border
    assert resize(flat, (48, 64)) is flat


# ----------------------------------------------------------------------------------- a camera slower than the loop


def _slow_camera_episode(folder: Path, fmt: str, steps: int = 70, size: tuple[int, int] = (8, 6),
                         robot: str = "arm", extras: tuple[str, ...] = (), shade: int = 3) -> Path:
    """An episode whose camera (size: width, height) delivers a new frame every third step (each frame stored
    once), frame k of colour shade × k: 70 steps span three of the encoder's blocks of 32 steps, and a frame
    spans each block boundary."""
    info = CameraInfo(size[0], size[1], np.eye(3), np.eye(4))
    meta = EpisodeMeta(robot=robot, task="slow", instruction="wait", control_rate_hz=30.0, operator_device="test",
                       joint_names=("j0", "j1"), action_names=("j0", "j1", "gripper"), cameras={"cam": info},
                       start_time=0.0)
    with create_writer(folder, meta, fmt) as writer:
        for i in range(steps):
            rgb = np.full((size[1], size[0], 3), shade * (i // 3), np.uint8)
            rgb[0, 0] = i // 3
            writer.append(Step(t=i / 30, joint_pos=np.array([i, -i], float), joint_vel=np.zeros(2),
                               ee_pose=np.array([0, 0, i, 1, 0, 0, 0], float), action=np.array([i, 1, 0.5]),
                               frames={"cam": CameraFrame(rgb, t=(i // 3) / 10, seq=i // 3)},
                               extras={key: np.array([float(i)]) for key in extras}))
        path = writer.path
    return path


@pytest.mark.parametrize("format", ["robomimic", "diffusion-policy", "lerobot"])
def test_a_frame_several_steps_share_is_encoded_once_and_written_for_each(format: str, tmp_path: Path) -> None:
    episodes = tmp_path / "episodes"
    episodes.mkdir()
    source = _slow_camera_episode(episodes, "hdf5", shade=10 if format == "lerobot" else 3)
    out = tmp_path / "out"
    result = export_directory(episodes, format, out, ExportOptions(include_all=True, valid_fraction=0))
    assert result.frames == 70 and result.encoded_frames == 24
    with open_episode(source) as episode:
        expected = episode.frames("cam")
    if format == "lerobot":  # lossy: each step's frame has the flat colour 10 × (step // 3), within 3 levels
        images, times, _ = _decoded(out / "videos/observation.images.cam/chunk-000/file-000.mp4")
        assert np.array_equal(times, np.arange(70) / 30)
        assert np.abs(np.median(images, axis=(1, 2, 3)) - expected[:, 3, 3, 0]).max() <= 3
        return
    if format == "robomimic":
        with h5py.File(out, "r") as f:
            images = f["data/demo_0/obs/cam_image"][()]
            assert f["mask/valid"].shape == (0,) and f["mask/train"][()].tolist() == [b"demo_0"]
    else:
        images = zarr.open_group(str(out), mode="r")["data/cam_image"][:]
    np.testing.assert_array_equal(images, expected)
    assert [int(img[0, 0, 0]) for img in images] == [i // 3 for i in range(70)]


def test_episodes_that_do_not_fit_in_one_dataset_are_named(tmp_path: Path) -> None:
    episodes = tmp_path / "episodes"
    episodes.mkdir()
    _slow_camera_episode(episodes, "hdf5", steps=4)
    _slow_camera_episode(episodes, "hdf5", steps=4, size=(16, 12))
    with pytest.raises(ExportError, match=r"episode_000000.h5 and episode_000001.h5 differ in the \(height, width\) "
                                          r"of camera 'cam' \(\(6, 8\) and \(12, 16\)\).*--image-size"):
        export_directory(episodes, "robomimic", tmp_path / "a.hdf5", ExportOptions(include_all=True))
    result = export_directory(episodes, "robomimic", tmp_path / "b.hdf5",
                              ExportOptions(include_all=True, image_size=(6, 8)))
    assert result.steps == 8
    _slow_camera_episode(episodes, "hdf5", steps=4, robot="other")
    with pytest.raises(ExportError, match="differ in robot.*separately"):
        export_directory(episodes, "diffusion-policy", tmp_path / "c.zarr", ExportOptions(include_all=True))
    clash = tmp_path / "clash"
    clash.mkdir()
    _slow_camera_episode(clash, "hdf5", steps=4, extras=("cam_timestamp",))
    with pytest.raises(ExportError, match=r"extras \['cam_timestamp'\] have the names of the exported arrays"):
        export_directory(clash, "diffusion-policy", tmp_path / "d.zarr", ExportOptions(include_all=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.hdf5", "clash", "episodes"]


# ------------------------------------------------------------------------------------- atomic, no overwrite


@pytest.mark.parametrize("format", list(EXPORTERS))
def test_an_existing_output_is_never_replaced(recorded: dict, format: str, tmp_path: Path) -> None:
    folder = recorded[("hdf5", "lossless")]
    for existing in (tmp_path / "file", tmp_path / "folder"):
        existing.mkdir() if existing.name == "folder" else existing.write_text("mine")
        with pytest.raises(ExportError, match="already exists.*never overwrite"):
            export_directory(folder, format, existing, ExportOptions())
    assert (tmp_path / "file").read_text() == "mine" and not list((tmp_path / "folder").iterdir())


@pytest.mark.parametrize("format", list(EXPORTERS))
def test_a_failed_export_leaves_nothing_behind(recorded: dict, format: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = recorded[("zarr", "jpeg")]
    cls = exporter_named(format)
    real_chunks = __import__("recorder.export.frames", fromlist=["FrameEncoder"]).FrameEncoder.chunks
    seen: list[Path] = []

    def failing_chunks(self, reader, cam, size, encode):  # noqa: ANN001, ANN202
        seen.extend(p for p in tmp_path.iterdir() if p.name.startswith("."))
        for k, chunk in enumerate(real_chunks(self, reader, cam, size, encode)):
            if k == 5:
                raise KeyboardInterrupt  # as Ctrl-C halfway through
            yield chunk

    monkeypatch.setattr("recorder.export.frames.FrameEncoder.chunks", failing_chunks)
    out = tmp_path / f"dataset{cls.suffix}"
    with pytest.raises(KeyboardInterrupt):
        export_directory(folder, format, out, ExportOptions())
    assert seen and seen[0].name.startswith(f".{out.name}.") and seen[0].name.endswith(".partial")
    assert list(tmp_path.iterdir()) == []


def test_bad_options_are_refused_with_what_to_give() -> None:
    with pytest.raises(ExportOptionError, match=r"--valid-fraction.*\[0, 1\)"):
        ExportOptions(valid_fraction=1.0)
    with pytest.raises(ExportOptionError, match="--valid-fraction"):
        ExportOptions(valid_fraction=float("nan"))
    with pytest.raises(ExportOptionError, match="--image-size.*96x128"):
        ExportOptions(image_size=(0, 10))
    with pytest.raises(ExportOptionError, match="--camera.*once"):
        ExportOptions(cameras=("front", "front"))
    with pytest.raises(UnknownNameError, match="action space 'joints'.*delta, ee, joint"):
        ExportOptions(action_space="joints")
    with pytest.raises(UnknownNameError, match="export format 'lerobot2'.*diffusion-policy, lerobot, robomimic"):
        exporter_named("lerobot2")
    with pytest.raises(ExportOptionError, match="workers"):
        exporter_named("robomimic")(workers=0)


def test_every_registered_format_is_an_exporter_with_a_suffix() -> None:
    from recorder.export.base import Exporter

    for name, entry in EXPORTERS.items():
        cls = entry.load()
        assert issubclass(cls, Exporter) and cls.name == name and (cls.suffix == "" or cls.suffix.startswith("."))


def test_a_script_without_a_main_guard_exports(recorded: dict, tmp_path: Path) -> None:
    """Verification runs in a child interpreter that never runs the calling script again (multiprocessing's
    spawn and forkserver would, and the script would start its export again inside the child)."""
    import subprocess
    import sys

    script = tmp_path / "export_mine.py"
    script.write_text("from pathlib import Path\n"
                      "from recorder.export.base import ExportOptions\n"
                      "from recorder.export.registry import export_directory\n"
                      f"print(export_directory(Path({str(recorded[('hdf5', 'jpeg')])!r}), 'lerobot', "
                      f"Path({str(tmp_path / 'out')!r}), ExportOptions()).summary())\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("exported 2 episodes") and (tmp_path / "out/meta/info.json").exists()


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_exports_with_a_progress_bar_and_a_summary(recorded: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    folder = recorded[("zarr", "jpeg")]
    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stderr", terminal)
    out = tmp_path / "d.hdf5"
    argv = ["export", str(folder), "--format", "robomimic", "--out", str(out), "--camera", "front",
            "--image-size", "24x32", "--action-space", "delta", "--valid-fraction", "0.5", "--seed", "3"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("not exported: episode_000002.zarr (failed")
    assert lines[-1].startswith("exported 2 episodes") and str(out) in lines[-1] and "1 train / 1 valid" in lines[-1]
    bar = terminal.getvalue()
    assert "\rexport [" in bar and "100%" in bar and bar.endswith("\n")
    with h5py.File(out, "r") as f:
        assert f["data/demo_0/obs/front_image"].shape[1:] == (24, 32, 3) and "wrist_image" not in f["data/demo_0/obs"]
        assert f["data"].attrs["action_space"] == "delta"
    assert main(argv) == 2  # never overwritten
    assert "already exists" in terminal.getvalue()


@pytest.mark.parametrize("bad", [
    ["--valid-fraction", "1.5"], ["--format", "parquet"], ["--camera", "front", "front"], ["--video-codec", "h264"],
])
def test_cli_refuses_bad_options_before_any_work(recorded: dict, bad: list[str], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    argv = ["export", str(recorded[("hdf5", "lossless")]), "--format", "robomimic", "--out", str(tmp_path / "x")]
    start = time.perf_counter()
    assert main(argv + bad) == 2
    assert time.perf_counter() - start < 2.0  # no episode was read
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert not (tmp_path / "x").exists()


def test_cli_exports_lerobot_with_the_codec_asked_for(recorded: dict, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "lerobot"
    assert main(["export", str(recorded[("hdf5", "lossless")]), "--format", "lerobot", "--out", str(out),
                 "--video-codec", "h264", "--camera", "front", "--image-size", "24x32"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("exported 2 episodes")
    info = json.loads((out / "meta/info.json").read_text())
    assert info["features"]["observation.images.front"]["info"]["video.codec"] == "h264"
    assert info["features"]["observation.images.front"]["shape"] == [24, 32, 3]


@pytest.mark.parametrize("bad", [["--image-size", "96"], ["--action-space", "cartesian"], ["--video-codec", "vp9"]])
def test_cli_rejects_malformed_values(recorded: dict, bad: list[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(recorded[("hdf5", "lossless")]), "--format", "robomimic", "--out", str(tmp_path / "x"),
              *bad])
    assert exit_info.value.code == 2
