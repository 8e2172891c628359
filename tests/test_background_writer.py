"""BackgroundWriter: steps written in order on one thread, close drains the queue, writer-thread errors reach
the caller, a full queue stops the recording instead of the control loop."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_recorder import FakeClock, make_meta, make_steps, rss_mb

from recorder.backend import create_writer, open_episode
from recorder.background import BackgroundWriter, release_freed_memory
from recorder.cameras import DepthFrame
from recorder.step import Step
from recorder.writer import EpisodeWriter
from teleop.errors import EpisodeError


class MemoryWriter(EpisodeWriter):
    """An episode writer that keeps the step times in memory; it can hold or fail the writer thread.

    Args:
        gate: _write_step waits for it (a closed gate is a disk that stopped).
        fail_at: Row index whose write raises `error`.
    """

    suffix = ".mem"

    def __init__(self, path: Path, gate: threading.Event | None = None, fail_at: int = -1,
                 error: BaseException | None = None, **kwargs: Any) -> None:
        super().__init__(path, make_meta(), min_free_bytes=0, **kwargs)
        self.gate, self.fail_at, self.error = gate, fail_at, error
        self.times: list[float] = []
        self.threads: set[int] = set()
        self.flushes: list[int] = []
        self.final_attrs: dict[str, Any] = {}

    def _create_storage(self) -> None:
        self.partial.write_bytes(b"")

    def _create_arrays(self, rows: Mapping[str, np.ndarray]) -> None:
        pass

    def _grow(self, names: Collection[str], rows: int) -> None:
        pass

    def _write_step(self, i: int, rows: Mapping[str, np.ndarray]) -> None:
        if self.gate is not None:
            self.gate.wait()
        if i == self.fail_at and self.error is not None:
            raise self.error
        self.times.append(float(rows["timestamp"]))
        self.threads.add(threading.get_ident())

    def _write_frame(self, j: int, rows: Mapping[str, np.ndarray]) -> None:
        pass

    def _flush_storage(self, num_steps: int) -> None:
        self.flushes.append(num_steps)

    def _finish(self, lengths: Mapping[str, int], attrs: Mapping[str, Any]) -> None:
        self.final_attrs = dict(attrs)

    def _close_storage(self) -> None:
        pass


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Poll until `condition()` holds; False if it did not within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def append_until_error(writer: BackgroundWriter, steps: list[Step]) -> EpisodeError:
    """Append steps (slowly, cycling through them) until append raises; that error."""
    for k in range(100_000):
        step = steps[k % len(steps)]
        try:
            writer.append(Step(**{**step.__dict__, "t": 1000.0 + k}))
        except EpisodeError as exc:
            return exc
        time.sleep(0.001)
    raise AssertionError("append never raised")


@pytest.fixture
def steps() -> list[Step]:
    return make_steps(40)


def test_steps_are_written_in_order_on_the_writer_thread(tmp_path: Path, steps: list[Step]) -> None:
    inner = MemoryWriter(tmp_path / "episode_000000.mem")
    writer = BackgroundWriter(inner, max_queued_steps=8).open()
    for k in range(400):
        writer.append(Step(**{**steps[k % len(steps)].__dict__, "t": float(k)}))
    path = writer.close(True)
    assert inner.times == [float(k) for k in range(400)]
    assert inner.threads and threading.get_ident() not in inner.threads
    assert path.exists() and inner.final_attrs["num_steps"] == 400 and writer.num_steps == 400


@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
def test_both_backends_round_trip_through_the_writer_thread(tmp_path: Path, steps: list[Step], fmt: str) -> None:
    writer = BackgroundWriter(create_writer(tmp_path, make_meta(), fmt)).open()
    for step in steps:
        writer.append(step)
    path = writer.close(False, {"late_ticks": 3})
    with open_episode(path) as episode:
        assert episode.num_steps == len(steps) and episode.success is False and episode.attrs["late_ticks"] == 3
        np.testing.assert_array_equal(episode.timestamps, [s.t for s in steps])
        np.testing.assert_array_equal(episode.action, np.stack([s.action for s in steps]))
        np.testing.assert_array_equal(episode.frames("wrist"), np.stack([s.frames["wrist"].rgb for s in steps]))


def test_close_writes_every_queued_step_first(tmp_path: Path, steps: list[Step]) -> None:
    gate = threading.Event()
    inner = MemoryWriter(tmp_path / "episode_000000.mem", gate=gate)
    writer = BackgroundWriter(inner, max_queued_steps=64).open()
    for step in steps:
        writer.append(step)
    assert inner.times == [] and writer.num_steps == len(steps)  # the disk is "stopped": all still queued
    gate.set()
    writer.close(None)
    assert inner.times == [s.t for s in steps] and inner.final_attrs["num_steps"] == len(steps)


def test_a_full_queue_raises_instead_of_blocking(tmp_path: Path, steps: list[Step]) -> None:
    gate = threading.Event()
    inner = MemoryWriter(tmp_path / "episode_000000.mem", gate=gate)
    writer = BackgroundWriter(inner, max_queued_steps=4, put_timeout_s=0.02).open()
    accepted = 0
    with pytest.raises(EpisodeError, match="the disk cannot keep up: 4 steps are waiting") as err:
        for step in steps:
            writer.append(step)
            accepted += 1
    assert str(inner.partial) in str(err.value)
    assert 4 <= accepted <= 5  # the queue, plus the step the stopped writer thread holds
    gate.set()
    writer.close(None, {"incomplete": True})
    assert inner.times == [s.t for s in steps[:accepted]]


def test_a_disk_error_on_the_writer_thread_is_raised_in_the_caller(tmp_path: Path, steps: list[Step]) -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    inner = MemoryWriter(tmp_path / "episode_000000.mem", fail_at=5, error=full)
    writer = BackgroundWriter(inner).open()
    err = append_until_error(writer, steps)
    message = str(err)
    assert message.startswith(f"disk full while writing {inner.partial}")
    assert f"kept as {inner.partial}" in message and "earlier episodes are intact" in message
    assert writer.failed and inner.times == [1000.0 + k for k in range(5)]
    with pytest.raises(EpisodeError, match="disk full"):
        writer.close(None)
    assert inner.partial.exists() and not inner.path.exists()  # kept for repair


def test_an_unexpected_writer_thread_error_names_the_episode(tmp_path: Path, steps: list[Step]) -> None:
    inner = MemoryWriter(tmp_path / "episode_000000.mem", fail_at=3, error=ValueError("bad row"))
    writer = BackgroundWriter(inner).open()
    err = append_until_error(writer, steps)
    assert str(inner.partial) in str(err) and "ValueError: bad row" in str(err)
    path = writer.close(True)  # the steps before the error are finished, marked incomplete
    assert path.exists() and inner.final_attrs["incomplete"] is True and inner.final_attrs["num_steps"] == 3
    assert inner.final_attrs["success"] == -1


def test_an_error_not_yet_raised_is_raised_by_close(tmp_path: Path, steps: list[Step]) -> None:
    inner = MemoryWriter(tmp_path / "episode_000000.mem", fail_at=2, error=ValueError("bad row"))
    writer = BackgroundWriter(inner).open()
    for step in steps[:4]:
        writer.append(step)
    with pytest.raises(EpisodeError, match="ValueError: bad row"):
        writer.close(True)
    assert inner.path.exists() and inner.final_attrs["incomplete"] is True and inner.final_attrs["num_steps"] == 2


def test_the_writer_thread_flushes_while_no_step_arrives(tmp_path: Path, steps: list[Step]) -> None:
    clock = FakeClock()
    inner = MemoryWriter(tmp_path / "episode_000000.mem", flush_interval_s=1.0, clock=clock)
    writer = BackgroundWriter(inner).open()
    writer.append(steps[0])
    writer.append(steps[1])
    assert eventually(lambda: inner.times == [steps[0].t, steps[1].t])
    assert inner.flushes == [1]  # the first step at once, the second one waits for the interval
    clock.now += 1.0  # a second passes without a step (the operator paused, the loop stalled)
    assert eventually(lambda: inner.flushes == [1, 2])
    writer.close(None)


def test_the_first_step_is_flushed_at_once(tmp_path: Path, steps: list[Step]) -> None:
    """A recording killed right after it started leaves a step to repair, whatever the flush interval."""
    inner = MemoryWriter(tmp_path / "episode_000000.mem", flush_interval_s=3600.0, clock=FakeClock())
    writer = BackgroundWriter(inner).open()
    writer.append(steps[0])
    assert eventually(lambda: inner.flushes == [1])
    for step in steps[1:5]:
        writer.append(step)
    assert eventually(lambda: len(inner.times) == 5) and inner.flushes == [1]
    writer.close(None)


def test_discard_drops_the_queue_and_deletes_the_partial(tmp_path: Path, steps: list[Step]) -> None:
    gate = threading.Event()
    inner = MemoryWriter(tmp_path / "episode_000000.mem", gate=gate)
    writer = BackgroundWriter(inner).open()
    for step in steps[:10]:
        writer.append(step)
    threading.Timer(0.05, gate.set).start()  # the held step may still be written, the queued ones are dropped
    writer.discard()
    assert list(tmp_path.iterdir()) == [] and len(inner.times) <= 1
    with pytest.raises(EpisodeError, match="after close"):
        writer.append(steps[0])


def files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("codec", ["lossless", "jpeg"])
def test_zarr_chunks_written_directly_are_the_files_zarr_writes(tmp_path: Path, codec: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The zarr writer encodes chunks itself (recorder.zarr_store._ChunkWriter); every file must be the one
    zarr would have written: colour, JPEG and depth frames, and small arrays across chunks (of 16 rows here)."""
    zarr_store = pytest.importorskip("recorder.zarr_store")
    monkeypatch.setattr(zarr_store, "STEP_CHUNK_ROWS", 16)
    steps, depths = [], []
    for step in make_steps(100):
        wrist = step.frames["wrist"]
        depths.append((wrist.rgb[..., 0].astype(np.uint16) * 7).astype(np.uint16))
        wrist = DepthFrame(wrist.rgb, wrist.t, wrist.seq, depth=depths[-1], depth_scale_m=1e-3)
        steps.append(Step(**{**step.__dict__, "frames": {**step.frames, "wrist": wrist}}))

    def record(directory: Path) -> Path:
        directory.mkdir()
        clock = FakeClock()
        writer = create_writer(directory, make_meta(), "zarr", clock=clock, image_codec=codec)
        for step in steps:
            clock.now += 0.05  # a flush every 4 steps
            writer.append(step)
        return writer.close(True)

    ours = record(tmp_path / "direct")
    with monkeypatch.context() as patch:
        patch.setattr(zarr_store, "_encodes_synchronously", lambda codecs: False)
        through_zarr = record(tmp_path / "zarr")
    if not zarr_store._encodes_synchronously(tuple(zarr_store.IMAGE_CODECS)):
        pytest.skip("this zarr's codecs cannot encode synchronously: both went through zarr")
    written, expected = files(ours), files(through_zarr)
    assert written.keys() == expected.keys()
    assert [name for name in written if written[name] != expected[name]] == []
    with open_episode(ours) as episode:
        assert episode.num_steps == len(steps)
        np.testing.assert_array_equal(episode.timestamps, [s.t for s in steps])
        np.testing.assert_array_equal(episode.depths("wrist"), np.stack(depths))


def test_fsync_runs_on_its_own_thread_and_its_errors_reach_the_caller(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from recorder import fsync

    synced: list[tuple[int, int]] = []  # (fd, thread)
    failing: set[int] = set()

    def fake_fsync(fd: int) -> None:
        synced.append((fd, threading.get_ident()))
        if fd in failing:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(fsync.os, "fsync", fake_fsync)
    files = [tmp_path / name for name in ("a", "b")]
    for file in files:
        file.write_bytes(b"x")
    syncer = fsync.BackgroundFsync()
    syncer.submit(files)
    syncer.wait()
    assert len(synced) == 3 and threading.get_ident() not in {thread for _, thread in synced}  # 2 files, 1 dir
    failing.add(7)
    syncer.submit(fds=[7])
    with pytest.raises(OSError, match="Input/output error"):
        syncer.wait()
    syncer.wait()  # raised once
    syncer.close()


def test_open_errors_are_raised_in_the_caller(tmp_path: Path) -> None:
    writer = BackgroundWriter(create_writer(tmp_path / "missing" / "episode_000000.h5", make_meta()))
    with pytest.raises(EpisodeError, match="does not exist"):
        writer.open()


@pytest.mark.skipif(release_freed_memory() is False, reason="needs glibc's malloc_trim")
def test_memory_freed_after_a_burst_of_frames_goes_back_to_the_os() -> None:
    # What a queue of frames leaves behind when the writer catches up: ~1 MB blocks freed below a block
    # still in use, which the allocator keeps (the top of the heap is not free, so it cannot shrink).
    def burst() -> None:
        np.ones(1 << 21, np.uint8)  # a freed mapped block raises glibc's mmap threshold above frame size
        frames = [np.ones(921_600, np.uint8) for _ in range(60)]
        keep.append(np.ones(100_000, np.uint8))  # allocated above the frames
        frames.clear()

    keep: list[np.ndarray] = []
    start = rss_mb()
    thread = threading.Thread(target=burst)  # in its own arena, like a capture thread's frames
    thread.start()
    thread.join()
    assert release_freed_memory()
    assert rss_mb() - start < 10.0  # 60 frames are 55 MB; without the release ~53 MB stay
