"""Stored bytes are verified when read: a damaged episode raises EpisodeError naming the file, never returns
other numbers. A sweep damages copies of real episodes of both formats and both image codecs (missing,
truncated and bit-flipped chunks, bit flips anywhere in the file or tree, metadata included) and reads every
attribute, array and frame back."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recorder.backend import create_writer, open_episode
from recorder.episodes import EpisodeProblem, check_episodes
from recorder.step import CameraFrame, CameraInfo, EpisodeMeta, Step
from teleop.errors import EpisodeError

SIZE = 16
STEPS = 12
FLIPS = {"hdf5": 400, "zarr": 300}


def _meta() -> EpisodeMeta:
    K = np.array([[SIZE, 0.0, SIZE / 2], [0.0, SIZE, SIZE / 2], [0.0, 0.0, 1.0]])
    return EpisodeMeta(
        robot="panda", task="reach", instruction="reach the red cube", control_rate_hz=10.0,
        operator_device="scripted", joint_names=("j0", "j1", "j2"), action_names=("a0", "a1", "a2", "grip"),
        cameras={"front": CameraInfo(SIZE, SIZE, K, np.eye(4)), "wrist": CameraInfo(SIZE, SIZE, K, np.eye(4))},
        start_time=1.7e9, seed=5, initial_state={"target": [0.4, 0.1, 0.2]},
    )


def _image(seq: int, cam: int) -> np.ndarray:
    return np.random.default_rng(10 * seq + cam).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def _step(i: int) -> Step:
    t = 100.0 + 0.1 * i
    return Step(
        t=t, joint_pos=np.sin(i + np.arange(3.0)), joint_vel=np.cos(i + np.arange(3.0)),
        ee_pose=np.array([0.4, 0.0, 0.3 + 0.01 * i, 1.0, 0.0, 0.0, 0.0]), action=np.arange(4.0) * i,
        device={"engaged": np.array(i % 2 == 0), "pose": np.full((4, 4), 0.5 * i)},
        frames={"front": CameraFrame(_image(i // 2, 0), 100.0 + 0.2 * (i // 2), i // 2),
                "wrist": CameraFrame(_image(i, 1), t, i)},
        extras={"target": np.array([0.4, 0.1, 0.2 + i])},
    )


def record(directory: Path, fmt: str, codec: str, steps: int = STEPS) -> Path:
    """A finished episode of `steps` steps with two cameras (one at half the control rate)."""
    writer = create_writer(directory, _meta(), fmt, image_codec=codec, min_free_bytes=0)
    for i in range(steps):
        writer.append(_step(i))
    return writer.close(True, attrs={"camera_stats": '{"front": {"frames_used": 6}}'})


def everything(path: Path) -> dict[str, Any]:
    """Every attribute, array and frame the reader gives, by name."""
    with open_episode(path) as ep:
        out: dict[str, Any] = {"attrs": ep.attrs, "meta": repr(ep.meta), "n": ep.num_steps}
        out.update(t=ep.timestamps, q=ep.joint_pos, qd=ep.joint_vel, ee=ep.ee_pose, a=ep.action)
        out.update({f"device/{k}": ep.device(k) for k in ep.device_keys})
        out.update({f"extras/{k}": ep.extras(k) for k in ep.extras_keys})
        for cam in ep.camera_names:
            out[f"{cam}/info"] = repr(ep.camera_info(cam))
            out[f"{cam}/stats"] = ep.camera_stats(cam)
            out[f"{cam}/t"] = ep.camera_timestamps(cam)
            out[f"{cam}/seq"] = ep.camera_seq(cam)
            out[f"{cam}/index"] = ep.frame_indices(cam)
            out[f"{cam}/frames"] = ep.frames(cam)
        return out


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.dtype == y.dtype
                    and np.array_equal(x, y, equal_nan=True)):
                return False
        elif repr(x) != repr(y):
            return False
    return True


def outcome(path: Path, original: dict[str, Any]) -> str:
    """"error" (EpisodeError naming the file), "same" (the damage changed nothing read) or "WRONG"."""
    try:
        read = everything(path)
    except EpisodeError as exc:
        assert str(path) in str(exc), exc
        return "error"
    except Exception as exc:  # noqa: BLE001 - anything but EpisodeError escaped the reader
        return f"ESCAPED {type(exc).__name__}: {exc}"[:160]
    return "same" if same(read, original) else "WRONG"


def files_of(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def flip_bit(file: Path, rng: np.random.Generator) -> None:
    data = bytearray(file.read_bytes())
    if data:
        k = int(rng.integers(len(data) * 8))
        data[k // 8] ^= 1 << (k % 8)
        file.write_bytes(bytes(data))


@pytest.fixture(params=[("hdf5", "lossless"), ("hdf5", "jpeg"), ("zarr", "lossless"), ("zarr", "jpeg")],
                ids=lambda p: "-".join(p))
def episode(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    fmt, codec = request.param
    if codec == "jpeg":
        pytest.importorskip("PIL")
    (tmp_path / "src").mkdir()
    return record(tmp_path / "src", fmt, codec)


def _copy(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst) if dst.is_dir() else dst.unlink()
    shutil.copytree(src, dst) if src.is_dir() else shutil.copyfile(src, dst)
    return dst


def test_random_bit_flips_anywhere_never_read_as_other_numbers(episode: Path, tmp_path: Path) -> None:
    original = everything(episode)
    fmt = "zarr" if episode.is_dir() else "hdf5"
    rng = np.random.default_rng(0)
    copy = tmp_path / episode.name
    results: dict[str, int] = {"error": 0, "same": 0}
    wrong: list[str] = []
    files = files_of(episode)
    for k in range(FLIPS[fmt]):
        _copy(episode, copy)
        # every file is hit (metadata documents included), then files at random weighted by size
        rel = files[k].relative_to(episode) if k < len(files) else None
        target = (copy / rel if rel is not None and episode.is_dir() else
                  copy if episode.is_file() else copy / rng.choice(files).relative_to(episode))
        flip_bit(target, rng)
        result = outcome(copy, original)
        if result in results:
            results[result] += 1
        else:
            wrong.append(f"{target.relative_to(tmp_path)}: {result}")
    assert not wrong, (results, len(wrong), wrong[:12])
    assert results["error"] > 0


def test_every_missing_or_truncated_chunk_file_is_an_error_naming_it(episode: Path, tmp_path: Path) -> None:
    if episode.is_file():
        pytest.skip("an HDF5 episode is one file: truncation is in the next test")
    original = everything(episode)
    copy = tmp_path / episode.name
    for file in files_of(episode):
        rel = file.relative_to(episode)
        for damage in ("delete", "truncate", "empty"):
            _copy(episode, copy)
            target = copy / rel
            if damage == "delete":
                target.unlink()
            else:
                data = target.read_bytes()
                target.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"")
            try:
                read = everything(copy)
            except EpisodeError as exc:
                message = str(exc)
                assert str(copy) in message
                if rel.name != "zarr.json":  # a chunk: the message names the array and its file
                    assert str(rel.parent) in message and rel.name in message, message
                continue
            assert same(read, original), f"{damage} {rel} read as other numbers"
            pytest.fail(f"{damage} {rel} went unnoticed")


def test_a_truncated_hdf5_file_is_an_error_at_every_length(episode: Path, tmp_path: Path) -> None:
    if episode.is_dir():
        pytest.skip("zarr chunk files are truncated one by one in the test above")
    original = everything(episode)
    size = episode.stat().st_size
    copy = tmp_path / episode.name
    for length in np.linspace(0, size - 1, 40).astype(int):
        _copy(episode, copy)
        with open(copy, "r+b") as f:
            f.truncate(int(length))
        assert outcome(copy, original) == "error", length


def test_check_reads_every_byte_and_names_each_damaged_episode(tmp_path: Path) -> None:
    paths = [record(tmp_path, fmt, "lossless") for fmt in ("hdf5", "zarr", "zarr")]
    (paths[2] / "cameras/wrist/rgb/c.7.0.0.0").unlink()  # a frame only the full read touches
    open_episode(paths[2]).close()  # opening reads the metadata only
    items = check_episodes(tmp_path)
    assert [type(i).__name__ for i in items] == ["EpisodeSummary", "EpisodeSummary", "EpisodeProblem"]
    problem = items[2]
    assert isinstance(problem, EpisodeProblem)
    assert "cameras/wrist/rgb" in problem.message and "c.7.0.0.0" in problem.message and "frame 7" in problem.message


DAMAGED_ATTRS: dict[str, Callable[[Any], None]] = {
    "instruction": lambda attrs: attrs.__setitem__("instruction", "reach the blue cube"),
    "joint_names": lambda attrs: attrs.__setitem__("joint_names", '["j0", "j1", "j9"]'),
    "initial_state": lambda attrs: attrs.__setitem__("initial_state", '{"target": [0.4, 0.1, 0.3]}'),
    "camera_stats": lambda attrs: attrs.__setitem__("camera_stats", '{"front": {"frames_used": 7}}'),
}


@pytest.mark.parametrize("name", DAMAGED_ATTRS)
def test_an_altered_hdf5_attribute_is_damage(tmp_path: Path, name: str) -> None:
    import h5py

    path = record(tmp_path, "hdf5", "lossless")
    with h5py.File(path, "r+") as f:
        DAMAGED_ATTRS[name](f.attrs)
    with pytest.raises(EpisodeError, match="attributes") as err:
        everything(path)
    assert str(path) in str(err.value)


def test_training_verifies_its_episodes_and_names_the_damaged_ones_it_skips(tmp_path: Path) -> None:
    from teleop.train.features import select_episodes

    paths = [record(tmp_path, fmt, "lossless") for fmt in ("hdf5", "zarr", "zarr", "hdf5")]
    (paths[1] / "cameras/front/rgb/c.2.0.0.0").unlink()  # a frame only a full read touches
    (tmp_path / "episode_000009.zarr").mkdir()  # an unreadable zarr folder
    (tmp_path / "episode_000009.zarr" / "zarr.json").write_text("{not json")
    with h5py_file(paths[3]) as f:  # a failed take: left out unless asked for
        f.attrs["success"] = np.int8(0)
        from recorder.hdf5 import seal

        seal(f)
    log: list[str] = []
    assert select_episodes(tmp_path, log=log.append) == [paths[0], paths[2]]
    text = "\n".join(log)
    assert "skipping episode_000001.zarr" in text and "cameras/front/rgb/c.2.0.0.0" in text
    assert "skipping episode_000009.zarr" in text
    assert "2 unreadable or damaged" in text and "1 failed" in text
    assert select_episodes(tmp_path, include_failed=True, log=log.append) == [paths[0], paths[2], paths[3]]


def h5py_file(path: Path) -> Any:
    import h5py

    return h5py.File(path, "r+")


def test_cli_check_names_each_damaged_episode_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from teleop.cli import main

    paths = [record(tmp_path, fmt, "lossless") for fmt in ("hdf5", "zarr")]
    assert main(["episodes", "check", str(tmp_path)]) == 0
    assert "2 episodes checked, every byte read: 2 intact, 0 damaged" in capsys.readouterr().out
    (paths[1] / "cameras/front/rgb/c.4.0.0.0").unlink()
    assert main(["episodes", "list", str(tmp_path)]) == 0  # the metadata is intact
    assert "metadata only; `teleop episodes check" in capsys.readouterr().out
    assert main(["episodes", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "1 intact, 1 damaged or unfinished (episode_000001.zarr)" in out
    line = next(line for line in out.splitlines() if line.startswith("episode_000001.zarr"))
    assert "cameras/front/rgb/c.4.0.0.0 is missing" in line and "frame 4" in line


def test_cli_train_include_failed_reaches_the_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import teleop.cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(teleop.cli, "_train", lambda *args, **kwargs: seen.update(kwargs))
    record(tmp_path, "hdf5", "lossless")
    assert teleop.cli.main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--include-failed"]) == 0
    assert seen["include_failed"] is True


def test_a_damaged_feature_cache_is_computed_again_not_used(tmp_path: Path) -> None:
    from teleop.train.features import _read_cache, _write_cache

    feats = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    cached = tmp_path / "cache" / "key.npz"
    _write_cache(cached, feats)
    np.testing.assert_array_equal(_read_cache(cached, 40), feats)
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0x10  # a bit inside the embeddings
    cached.write_bytes(bytes(data))
    assert _read_cache(cached, 40) is None


def test_damage_that_hangs_the_storage_library_is_reported_not_waited_on(tmp_path: Path) -> None:
    from recorder.episodes import verify_episode

    pytest.importorskip("PIL")
    path = record(tmp_path, "hdf5", "jpeg")
    data = bytearray(path.read_bytes())
    n = len(data)
    data[n // 3 : n // 3 + n // 10] = bytes(n // 10)  # zeroes over the heap of JPEG files: HDF5 loops on it
    path.write_bytes(bytes(data))
    problem = verify_episode(path, timeout_s=10.0)
    assert isinstance(problem, EpisodeProblem)
    assert "did not finish within 10 s" in problem.message and "damaged" in problem.message
