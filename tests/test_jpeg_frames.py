"""JPEG colour frames (image_codec="jpeg"): stored once per frame in both backends, decoded on read, checked
by CRC-32, smaller than lossless, and refused clearly without Pillow or with a bad quality."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_recorder import CAMERAS, FORMATS, H, W, episode_name, make_meta, make_steps

from recorder.backend import create_writer, open_episode
from recorder.jpeg import decode_jpeg, encode_jpeg
from recorder.step import CameraFrame, Step
from teleop.errors import EpisodeError, MissingDependencyError, UnknownNameError


def smooth_image(seq: int, cam: int, h: int = H, w: int = W) -> np.ndarray:
    """A camera-like frame: smooth gradients that move with seq, and a little sensor noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([128 + 100 * np.sin((x + 4 * seq) / 17), 128 + 90 * np.cos((y + 3 * seq + 40 * cam) / 13),
                    64 + (x + y) * 0.8], -1)
    noise = np.random.default_rng(seq * 2 + cam).normal(0, 1.5, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def camera_steps(n: int, h: int = H, w: int = W) -> list[Step]:
    """Steps whose front camera delivers a new frame every other step (seq counted) and wrist every step."""
    steps = make_steps(n)
    out = []
    for i, step in enumerate(steps):
        seq = i // 2
        frames = {"front": CameraFrame(smooth_image(seq, 0, h, w), 10.0 + 0.1 * seq, seq),
                  "wrist": CameraFrame(smooth_image(i, 1, h, w), step.t - 0.004, -1)}
        out.append(Step(**{**step.__dict__, "frames": frames}))
    return out


def record(path: Path, steps: list[Step], **options: object) -> Path:
    fmt = "zarr" if path.name.endswith(".zarr") else "hdf5"
    meta = make_meta()
    if steps[0].frames["front"].rgb.shape[:2] != (H, W):
        h, w = steps[0].frames["front"].rgb.shape[:2]
        cams = {cam: dataclasses.replace(info, width=w, height=h) for cam, info in meta.cameras.items()}
        meta = dataclasses.replace(meta, cameras=cams)
    writer = create_writer(path, meta, fmt, **options)  # type: ignore[arg-type]
    for step in steps:
        writer.append(step)
    return writer.close(True)


def size_on_disk(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@pytest.fixture(params=FORMATS)
def fmt(request: pytest.FixtureRequest) -> str:
    return request.param


def test_jpeg_frames_read_back_as_the_decoded_jpeg_of_every_step(tmp_path: Path, fmt: str) -> None:
    steps = camera_steps(12)
    path = record(tmp_path / episode_name(fmt), steps, image_codec="jpeg", jpeg_quality=85)
    with open_episode(path) as episode:
        assert episode.is_jpeg("front") and episode.is_jpeg("wrist")
        assert episode.num_frames("front") == 6 and episode.num_frames("wrist") == 12
        for cam in CAMERAS:
            stored = np.stack([decode_jpeg(encode_jpeg(s.frames[cam].rgb, 85), (H, W)) for s in steps])
            np.testing.assert_array_equal(episode.frames(cam), stored)
            np.testing.assert_array_equal(np.stack(list(episode.iter_frames(cam))), stored)
            np.testing.assert_array_equal(episode.frame(cam, 7), stored[7])
            original = np.stack([s.frames[cam].rgb for s in steps]).astype(int)
            assert np.abs(episode.frames(cam).astype(int) - original).mean() < 3.0  # lossy, but close
        np.testing.assert_array_equal(episode.frames("front", 3, 9), episode.frames("front")[3:9])
        attrs = {k: v for k, v in episode._group_attrs("cameras/front").items() if k in ("image_codec", "jpeg_quality")}
        assert {k: v.item() if hasattr(v, "item") else v for k, v in attrs.items()} == {
            "image_codec": "jpeg", "jpeg_quality": 85}


def test_jpeg_stores_camera_frames_several_times_smaller_than_lossless(tmp_path: Path, fmt: str) -> None:
    steps = camera_steps(10, 240, 320)
    lossless = record(tmp_path / episode_name(fmt, 0), steps)
    lossy = record(tmp_path / episode_name(fmt, 1), steps, image_codec="jpeg")
    assert size_on_disk(lossy) * 3 < size_on_disk(lossless)
    with open_episode(lossless) as episode:
        assert not episode.is_jpeg("front")
        np.testing.assert_array_equal(episode.frames("wrist"), np.stack([s.frames["wrist"].rgb for s in steps]))


def test_a_damaged_jpeg_frame_fails_its_checksum_and_the_rest_reads(tmp_path: Path, fmt: str) -> None:
    steps = camera_steps(6)
    path = record(tmp_path / episode_name(fmt), steps, image_codec="jpeg")
    if fmt == "hdf5":
        with h5py.File(path, "r+") as f:
            data = f["cameras/front/rgb_jpeg"][1].copy()
            data[len(data) // 2] ^= 0x10
            f["cameras/front/rgb_jpeg"][1] = data
    else:
        import zarr

        array = zarr.open_array(path / "cameras/front/rgb_jpeg", mode="r+")
        data = bytearray(array[1:2][0])
        data[len(data) // 2] ^= 0x10
        value = np.empty(1, dtype=object)
        value[0] = bytes(data)
        array[1:2] = value
    with open_episode(path) as episode:
        with pytest.raises(EpisodeError, match="frame 1 of camera 'front' fails its CRC-32 check") as err:
            episode.frame("front", 2)  # steps 2 and 3 show front frame 1
        assert str(path) in str(err.value)
        episode.frame("front", 1)
        episode.frames("wrist")


def test_unknown_codec_bad_quality_and_missing_pillow_are_refused_before_recording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(UnknownNameError, match="image codec"):
        create_writer(tmp_path, make_meta(), image_codec="png")
    with pytest.raises(ValueError, match="JPEG quality must be an integer from 1 to 100"):
        create_writer(tmp_path, make_meta(), image_codec="jpeg", jpeg_quality=0)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)  # as if Pillow were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install 'teleop\[jpeg\]'"):
        create_writer(tmp_path, make_meta(), image_codec="jpeg")
    assert list(tmp_path.iterdir()) == []


def test_decode_jpeg_refuses_truncated_data_and_a_wrong_size() -> None:
    data = encode_jpeg(smooth_image(0, 0))
    with pytest.raises(ValueError, match="not a decodable JPEG image"):
        decode_jpeg(data[: len(data) // 2], (H, W))
    with pytest.raises(ValueError, match=f"the camera's frames {W + 1}x{H}"):
        decode_jpeg(data, (H, W + 1))
