"""Curating recorded episodes: delete to the trash and restore byte for byte, label with the checksums kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_integrity import everything, files_of, record, same

from recorder.backend import create_writer, next_episode_path, open_episode
from recorder.labels import label_episode
from recorder.trash import empty_trash, move_to_trash, restore, trash_entries
from teleop.errors import EpisodeError

FORMATS = ["hdf5", "zarr"]


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)) if path.is_dir() else "": p.read_bytes() for p in files_of(path)}


@pytest.mark.parametrize("fmt", FORMATS)
def test_delete_and_restore_bring_an_episode_back_byte_for_byte(tmp_path: Path, fmt: str) -> None:
    paths = [record(tmp_path, fmt, "lossless", steps=4) for _ in range(3)]
    before = snapshot(paths[2])
    entry = move_to_trash(paths[2])
    assert not paths[2].exists() and entry.name == paths[2].name
    assert [e.name for e in trash_entries(tmp_path)] == [paths[2].name]
    assert next_episode_path(tmp_path, fmt).name.startswith("episode_000003")  # the number stays taken
    assert restore(tmp_path, paths[2].name) == paths[2]
    assert snapshot(paths[2]) == before and trash_entries(tmp_path) == []


def test_restore_refuses_a_taken_name_unless_asked_to_replace(tmp_path: Path) -> None:
    path = record(tmp_path, "hdf5", "lossless", steps=4)
    original = snapshot(path)
    move_to_trash(path)
    newer = record(tmp_path, "hdf5", "lossless", steps=6)
    os.rename(newer, path)  # another episode under the same name (as a trim leaves one)
    with pytest.raises(EpisodeError, match="exists.*--replace"):
        restore(tmp_path, path.name)
    restore(tmp_path, path.name, replace=True)
    assert snapshot(path) == original
    [entry] = trash_entries(tmp_path)
    assert entry.name == path.name and entry.path.name == f"{path.name}~2"  # the replaced one is kept too
    assert empty_trash(tmp_path) == [entry.path.name] and trash_entries(tmp_path) == []


def test_an_episode_being_recorded_cannot_be_deleted(tmp_path: Path) -> None:
    writer = create_writer(tmp_path, open_episode(record(tmp_path, "hdf5", "lossless", steps=2)).meta)
    writer.open()
    with pytest.raises(EpisodeError, match="is being recorded"):
        move_to_trash(writer.partial)
    writer.discard()


@pytest.mark.parametrize("fmt", FORMATS)
def test_labels_change_and_stay_sealed(tmp_path: Path, fmt: str) -> None:
    path = record(tmp_path, fmt, "lossless", steps=4)
    data = everything(path)
    label_episode(path, success=False, instruction="stack the cubes", note="dropped the cube")
    with open_episode(path) as episode:
        assert episode.success is False and episode.attrs["instruction"] == "stack the cubes"
        assert episode.attrs["note"] == "dropped the cube"
    label_episode(path, success=None)
    after = everything(path)
    assert after["attrs"]["success"] is None and after["attrs"]["instruction"] == "stack the cubes"
    for key in ("attrs", "meta"):
        data.pop(key), after.pop(key)
    assert same(after, data)  # every array and frame as it was


def test_labelling_a_damaged_episode_refuses_and_does_not_seal_the_damage(tmp_path: Path) -> None:
    import h5py

    path = record(tmp_path, "hdf5", "lossless", steps=4)
    with h5py.File(path, "r+") as f:
        f.attrs["instruction"] = "something else"
    with pytest.raises(EpisodeError, match="do not match their checksum"):
        label_episode(path, note="looks fine")
    with pytest.raises(EpisodeError, match="do not match their checksum"):
        open_episode(path)


def _label_forever(path: str) -> None:
    for k in range(10**6):
        label_episode(Path(path), note=f"note {k}")
        if k == 0:
            print("labelled", flush=True)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_kill_while_labelling_leaves_old_or_new_labels(tmp_path: Path, fmt: str) -> None:
    path = record(tmp_path, fmt, "lossless", steps=4)
    arrays = everything(path)
    arrays.pop("attrs"), arrays.pop("meta")
    rng = np.random.default_rng(1)
    for _ in range(4):
        child = subprocess.Popen([sys.executable, __file__, str(path)], cwd=Path(__file__).parents[1],
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline().strip() == "labelled"
        time.sleep(float(rng.uniform(0.0, 0.3)))  # some labels in, one likely half-written
        child.send_signal(signal.SIGKILL)
        child.wait()
        after = everything(path)  # opens: the labels are whole, old or new
        assert after["attrs"]["note"].startswith("note ")
        after.pop("attrs"), after.pop("meta")
        assert same(after, arrays)


if __name__ == "__main__":
    _label_forever(sys.argv[1])


CODECS = [("hdf5", "lossless"), ("hdf5", "jpeg"), ("zarr", "lossless"), ("zarr", "jpeg")]


@pytest.mark.parametrize(("fmt", "codec"), CODECS, ids=["-".join(c) for c in CODECS])
def test_trim_keeps_every_stream_frame_accurately_and_can_be_undone(tmp_path: Path, fmt: str, codec: str) -> None:
    from recorder.trim import trim_episode

    if codec == "jpeg":
        pytest.importorskip("PIL")
    path = record(tmp_path, fmt, codec, steps=12)
    full = everything(path)
    before = snapshot(path)
    result = trim_episode(path, 3, 10)  # the front camera runs at half rate: step 3 shows frame 1
    assert result.path == path and (result.start, result.end, result.num_steps) == (3, 10, 12)
    cut = everything(path)
    assert cut["n"] == 7
    for key in ("t", "q", "qd", "ee", "a", "device/engaged", "device/pose", "extras/target"):
        np.testing.assert_array_equal(cut[key], full[key][3:10], err_msg=key)
    for cam in ("front", "wrist"):
        for key in ("frames", "t", "seq"):
            np.testing.assert_array_equal(cut[f"{cam}/{key}"], full[f"{cam}/{key}"][3:10], err_msg=f"{cam}/{key}")
    np.testing.assert_array_equal(cut["front/index"], [0, 1, 1, 2, 2, 3, 3])  # each frame kept once
    with open_episode(path) as episode:
        assert episode.num_frames("front") == 4 and episode.num_frames("wrist") == 7
        assert episode.attrs["trimmed_from"] == path.name and episode.attrs["original_num_steps"] == 12
        assert list(episode.attrs["trim_range"]) == [3, 10]
        assert episode.duration_s == pytest.approx(0.6)
        episode.verify()
    # a second trim composes in the original's steps
    trim_episode(path, 1, 5)
    with open_episode(path) as episode:
        assert list(episode.attrs["trim_range"]) == [4, 8] and episode.attrs["original_num_steps"] == 12
        np.testing.assert_array_equal(episode.timestamps, full["t"][4:8])
    assert restore(tmp_path, result.original.path.name, replace=True) == path  # undo
    assert snapshot(path) == before


def test_trim_refuses_an_empty_or_out_of_range_cut(tmp_path: Path) -> None:
    from recorder.trim import trim_episode

    path = record(tmp_path, "hdf5", "lossless", steps=5)
    for start, end in ((3, 3), (4, 2), (-1, 3), (0, 6)):
        with pytest.raises(EpisodeError, match="cannot keep steps"):
            trim_episode(path, start, end)
    assert trim_entries_empty(tmp_path)


def trim_entries_empty(directory: Path) -> bool:
    return trash_entries(directory) == [] and not [p for p in directory.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------ the command line, on real recordings


@pytest.fixture(scope="module", params=CODECS, ids=["-".join(c) for c in CODECS])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two episodes recorded in simulation by the scripted operator (cameras, IK, the recorder)."""
    from teleop.cli import main

    fmt, codec = request.param
    out = tmp_path_factory.mktemp(f"demo-{fmt}-{codec}")
    assert main(["demo", "--episodes", "2", "--out", str(out), "--format", fmt, "--image-codec", codec]) == 0
    return out


def _copy_demo(demo: Path, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "episodes"
    shutil.copytree(demo, out)
    return out


def test_cli_curates_real_recordings(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from teleop.cli import main

    folder = _copy_demo(demo, tmp_path)
    first, second = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    full = everything(first)
    assert main(["episodes", "show", str(first)]) == 0
    shown = capsys.readouterr().out
    assert "franka / franka-reach, success" in shown and "cameras:" in shown and "front:" in shown

    assert main(["episodes", "trim", str(first), "--auto"]) == 0
    out = capsys.readouterr().out
    assert "commanded motion: an action change above" in out and "the original is in the trash" in out
    with open_episode(first) as episode:
        start, end = (int(v) for v in episode.attrs["trim_range"])
        assert 0 < end - start <= full["n"] and episode.num_steps == end - start
        episode.verify()
    cut = everything(first)
    for key in ("t", "q", "a", "front/frames", "wrist/frames", "front/t"):
        np.testing.assert_array_equal(cut[key], full[key][start:end], err_msg=key)

    assert main(["episodes", "label", str(second), "--failure", "--note", "bumped the table"]) == 0
    capsys.readouterr()
    with open_episode(second) as episode:
        assert episode.success is False and episode.attrs["note"] == "bumped the table"

    assert main(["episodes", "delete", str(second)]) == 0
    assert main(["episodes", "trash", str(folder)]) == 0
    assert second.name in capsys.readouterr().out
    assert main(["episodes", "restore", str(folder), second.name]) == 0
    assert main(["episodes", "restore", str(folder), first.name, "--replace"]) == 0  # undo the trim
    assert same(everything(first), full)
    assert main(["episodes", "empty-trash", str(folder)]) == 0
    assert "deleted 1 episodes for good" in capsys.readouterr().out.splitlines()[-1]
    assert main(["episodes", "check", str(folder)]) == 0


def test_cli_trim_needs_one_way_to_say_the_range(demo: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    from teleop.cli import main

    folder = _copy_demo(demo, tmp_path)
    episode = sorted(folder.iterdir())[0]
    with open_episode(episode) as reader:
        full_times = reader.timestamps
    assert main(["episodes", "trim", str(episode)]) != 0
    assert main(["episodes", "trim", str(episode), "--auto", "--start", "2"]) != 0
    assert "trim needs one of" in capsys.readouterr().err
    assert main(["episodes", "trim", str(episode), "--start-s", "0.5", "--end-s", "1.0"]) == 0
    with open_episode(episode) as reader:
        kept = list(reader.attrs["trim_range"])
    t = full_times - full_times[0]
    inside = np.flatnonzero((t >= 0.5 - 1e-9) & (t < 1.0 - 1e-9))
    assert kept == [inside[0], inside[-1] + 1]


def test_report_flags_what_a_person_should_look_at(demo: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    from recorder.report import dataset_report
    from teleop.cli import main

    folder = _copy_demo(demo, tmp_path)
    first, second = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    label_episode(second, success=False)
    report = dataset_report(folder)
    by_name = {e.name: e for e in report.episodes}
    with open_episode(first) as episode:
        t, action = episode.timestamps, episode.action
        assert by_name[first.name].num_steps == episode.num_steps
    moving = np.flatnonzero(np.abs(np.diff(action, axis=0)).max(axis=1) > 1e-4) + 1
    assert by_name[first.name].idle_start_s == pytest.approx(t[moving[0] - 1] - t[0], abs=1e-9)
    assert not [f for f in by_name[first.name].flags if "failed" in f or "finite" in f or "jumps" in f]
    assert by_name[second.name].flags[0] == "failed"
    assert main(["episodes", "report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "    ! failed" in out and "2 episodes" in out and "1 succeeded (50%)" in out
    png = folder / "report.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_nan_and_a_jump_are_flagged(tmp_path: Path) -> None:
    from test_integrity import _meta, _step

    from recorder.report import dataset_report

    writer = create_writer(tmp_path, _meta())

    for i in range(20):
        step = _step(i)
        if i == 10:
            step.action[1] = 50.0  # a jump
        if i == 12:
            step.joint_pos[0] = np.nan
        writer.append(step)
    writer.close(True)
    [quality] = [e for e in dataset_report(tmp_path).episodes]
    assert any("not finite" in flag for flag in quality.flags)
    assert any("action jumps" in flag for flag in quality.flags)


def test_stats_are_lerobots_set_over_every_step(demo: Path, tmp_path: Path) -> None:
    import json

    from teleop.cli import main

    folder = _copy_demo(demo, tmp_path)
    assert main(["episodes", "stats", str(folder)]) == 0
    stats = json.loads((folder / "stats.json").read_text())
    actions = []
    for path in sorted(p for p in folder.iterdir() if p.name.startswith("episode_")):
        with open_episode(path) as episode:
            actions.append(episode.action)
    a = np.concatenate(actions)
    np.testing.assert_allclose(stats["action"]["mean"], a.mean(axis=0))
    np.testing.assert_allclose(stats["action"]["q99"], np.quantile(a, 0.99, axis=0))
    assert stats["action"]["count"] == [len(a)]
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    image = np.asarray(stats["observation.images.front"]["mean"])
    assert image.shape == (3, 1, 1) and 0.0 < image.min() and image.max() < 1.0


def test_replay_refuses_an_episode_trimmed_at_its_start(demo: Path, tmp_path: Path) -> None:
    from recorder.trim import trim_episode
    from teleop.errors import TeleopError
    from teleop.replay import replay_joint_positions

    folder = _copy_demo(demo, tmp_path)
    episode = sorted(p for p in folder.iterdir() if p.name.startswith("episode_"))[0]
    trim_episode(episode, 5, 20)
    with pytest.raises(TeleopError, match="was trimmed"):
        replay_joint_positions(episode)


def test_the_next_seed_follows_the_largest_in_the_folder(tmp_path: Path) -> None:
    from recorder.episodes import next_seed

    assert next_seed(tmp_path) == 0
    record(tmp_path, "hdf5", "lossless")  # seed 5
    assert next_seed(tmp_path) == 6
    (tmp_path / "episode_000009.h5").write_bytes(b"not an episode")  # unreadable: no seed, no error
    assert next_seed(tmp_path) == 6
