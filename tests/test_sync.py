"""Frames onto the control grid: exact drop / duplicate / stale counts, the pure rule and the live one agree."""

from __future__ import annotations

import collections
import queue
import time
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.cameras import DEAD, FINISHED, RUNNING, STALLED, CameraSource, CameraStatus, Capture, StreamEnded
from recorder.step import CameraFrame, CameraInfo
from recorder.sync import FrameSynchronizer, FrameUsage, align
from teleop.errors import DeviceError, TeleopError

PIXEL = np.zeros((2, 2, 3), np.uint8)


class RingSource:
    """A frame source without a thread: the test decides when each frame arrives. Same ring as CameraSource."""

    def __init__(self, capacity: int = 4) -> None:
        self.ring: collections.deque[CameraFrame] = collections.deque(maxlen=capacity)
        self.produced = 0
        self.state = RUNNING

    def emit(self, t: float) -> None:
        self.ring.append(CameraFrame(PIXEL, t, self.produced))
        self.produced += 1

    def frames_since(self, seq: int) -> list[CameraFrame]:
        return [frame for frame in self.ring if frame.seq > seq]

    def latest(self) -> CameraFrame | None:
        return self.ring[-1] if self.ring else None

    def status(self) -> CameraStatus:
        return CameraStatus(self.state, self.produced, 0.0, 0, 0, 0, "")


def run_live(step_times: np.ndarray, frame_times: np.ndarray, capacity: int = 4,
             receive_times: np.ndarray | None = None) -> tuple[list[CameraFrame], FrameSynchronizer]:
    """Deliver each frame once its receive time has come, tick the synchronizer at every step time."""
    receive_times = frame_times if receive_times is None else receive_times
    source = RingSource(capacity)
    sync = FrameSynchronizer({"cam": source}, max_age_s=0.1)
    used, k = [], 0
    for t in step_times:
        while k < len(frame_times) and receive_times[k] <= t:
            source.emit(float(frame_times[k]))
            k += 1
        frame = sync.frames_for_tick(float(t)).get("cam")
        if frame is not None:
            used.append(frame)
    return used, sync


STEPS_20HZ = np.arange(20) / 20 + 0.002  # a tick never falls exactly on a frame time


def test_a_camera_faster_than_the_loop_drops_the_frames_between_ticks() -> None:
    frames = np.arange(30) / 30
    result = align(STEPS_20HZ, frames, np.arange(30), max_age_s=0.1)
    np.testing.assert_array_equal(result.frame_index, np.floor(1.5 * np.arange(20) + 0.06).astype(int))
    assert (result.drops, result.duplicates, result.stale) == (9, 0, 0)  # frames 0..28 seen, 20 of them used
    used, sync = run_live(STEPS_20HZ, frames)
    assert [f.seq for f in used] == result.frame_index.tolist()
    stats = sync.stats()["cam"]
    assert (stats.frames, stats.used, stats.drops, stats.duplicates, stats.stale) == (29, 20, 9, 0, 0)
    assert stats.max_age_ms == pytest.approx(1e3 * np.max(result.age_s))


def test_a_camera_slower_than_the_loop_repeats_each_frame() -> None:
    frames = np.arange(10) / 10
    result = align(STEPS_20HZ, frames, np.arange(10), max_age_s=0.1)
    np.testing.assert_array_equal(result.frame_index, np.arange(20) // 2)
    assert (result.drops, result.duplicates, result.stale) == (0, 10, 0)
    used, sync = run_live(STEPS_20HZ, frames)
    stats = sync.stats()["cam"]
    assert (stats.frames, stats.used, stats.drops, stats.duplicates) == (10, 10, 0, 10)


def test_no_step_takes_a_frame_from_the_future_and_a_step_before_any_frame_has_none() -> None:
    frames = np.array([0.03, 0.09, 0.12])
    result = align(np.array([0.0, 0.05, 0.1, 0.2]), frames, np.array([3, 4, 5]), max_age_s=0.05)
    np.testing.assert_array_equal(result.frame_index, [-1, 0, 1, 2])
    assert np.isnan(result.age_s[0]) and result.age_s[3] == pytest.approx(0.08)
    assert (result.drops, result.duplicates, result.stale) == (0, 0, 1)


def test_a_stall_is_duplicates_and_stale_steps_not_drops() -> None:
    frames = np.arange(30) / 30
    frames = frames[(frames < 0.3) | (frames >= 0.6)]  # the camera produced nothing for 0.3 s
    result = align(STEPS_20HZ, frames, np.arange(len(frames)), max_age_s=0.1)
    assert result.duplicates == 5  # the steps at 0.352 .. 0.552 s reuse the frame from 0.267 s
    assert result.stale == 4  # 0.402 .. 0.552 s: older than 0.1 s
    used, sync = run_live(STEPS_20HZ, frames)
    stats = sync.stats()["cam"]
    assert (stats.drops, stats.duplicates, stats.stale) == (result.drops, 5, 4)
    assert stats.max_age_ms == pytest.approx((0.552 - 8 / 30) * 1e3)


def test_frames_lost_from_a_small_ring_still_count_as_drops() -> None:
    frames = np.arange(60) / 60  # 60 fps, a 5 Hz loop, a ring of 2: most frames leave the ring unread
    steps = np.arange(5) / 5 + 0.002
    result = align(steps, frames, np.arange(60), max_age_s=0.1)
    used, sync = run_live(steps, frames, capacity=2)
    assert [f.seq for f in used] == result.frame_index.tolist() == [0, 12, 24, 36, 48]
    assert sync.stats()["cam"].drops == result.drops == 44


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(5.0, 120.0), st.floats(5.0, 100.0), st.floats(0.0, 0.4),
       st.integers(1, 6))
def test_the_live_synchronizer_agrees_with_align(seed: int, fps: float, rate_hz: float, jitter: float,
                                                 capacity: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(2 * fps)
    frame_times = np.arange(n) / fps + rng.uniform(-jitter, jitter, n) / fps  # jittered, still in order
    step_times = np.arange(int(2 * rate_hz)) / rate_hz + rng.uniform(0, 1 / rate_hz)
    result = align(step_times, frame_times, np.arange(n), max_age_s=0.1)
    used, sync = run_live(step_times, frame_times, capacity, receive_times=np.maximum.accumulate(frame_times))
    stats = sync.stats()["cam"]
    steps_with_frame = int(np.sum(result.frame_index >= 0))
    assert [f.seq for f in used] == result.frame_index[result.frame_index >= 0].tolist()
    assert (stats.drops, stats.duplicates, stats.stale) == (result.drops, result.duplicates, result.stale)
    assert stats.frames == stats.used + stats.drops and steps_with_frame == stats.used + stats.duplicates
    assert stats.missing == len(step_times) - steps_with_frame
    assert all(f.t <= t for f, t in zip(used, step_times[result.frame_index >= 0], strict=True))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(5.0, 120.0), st.floats(5.0, 100.0))
def test_with_transport_latency_steps_still_use_only_past_frames_and_seqs_never_go_back(
        seed: int, fps: float, rate_hz: float) -> None:
    rng = np.random.default_rng(seed)
    frame_times = np.arange(int(2 * fps)) / fps
    receive = frame_times + rng.uniform(0.0, 0.05, frame_times.size)
    receive = np.maximum.accumulate(receive)  # a driver delivers in order
    step_times = np.arange(int(2 * rate_hz)) / rate_hz + 0.001
    used, sync = run_live(step_times, frame_times, receive_times=receive)
    seqs = [f.seq for f in used]
    assert np.all(np.diff(seqs) >= 0)
    stats = sync.stats()["cam"]
    assert stats.duplicates == int(np.sum(np.diff(seqs) == 0))
    assert stats.drops == int(np.sum(np.maximum(np.diff(seqs) - 1, 0)))


def test_align_refuses_unsorted_input() -> None:
    with pytest.raises(TeleopError, match="increasing"):
        align(np.array([0.0, 1.0]), np.array([0.0, 0.5]), np.array([1, 1]), max_age_s=0.1)


def test_usage_counts_frames_rendered_in_the_tick_by_their_seqs() -> None:
    usage = FrameUsage()
    for seq in (4, 5, 5, 8, 9):
        usage.record(CameraFrame(PIXEL, 0.0, seq))
    assert (usage.stats.used, usage.stats.drops, usage.stats.duplicates, usage.stats.frames) == (4, 2, 1, 6)
    assert usage.stats.max_age_ms is None


# --- with real capture threads on an injected clock ------------------------------------------------------


class FedCamera(CameraSource):
    """A capture thread reading from a queue the test fills: a capture time, an exception, or None (the end)."""

    label = "fed camera"

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(fps=30.0, clock=clock)
        self.queue: queue.Queue[float | Exception | None] = queue.Queue()

    def feed(self, *items: float | Exception | None) -> None:
        before = self.status()
        for item in items:
            self.queue.put(item)
        frames = sum(isinstance(item, float) for item in items)
        deadline = time.monotonic() + 5.0
        while (self.status().frames < before.frames + frames or not self.queue.empty()) \
                and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.005)  # let the thread finish handling the last item

    def _open(self) -> None:
        pass

    def _read(self) -> Capture | None:
        try:
            item = self.queue.get(timeout=0.05)
        except queue.Empty:
            return None
        if isinstance(item, Exception):
            raise item
        if item is None:
            raise StreamEnded
        return Capture(PIXEL, item)

    def _close(self) -> None:
        pass

    def _info(self) -> CameraInfo:
        return CameraInfo(2, 2, np.eye(3), np.eye(4))


def test_a_camera_that_stalls_then_resumes_is_marked_counted_and_its_steps_are_stale(clock) -> None:  # noqa: ANN001
    camera = FedCamera(clock)
    sync = FrameSynchronizer({"cam": camera}, max_age_s=0.12, clock=clock, sleep=clock.sleep)
    with camera:
        camera.feed(clock() - 0.04)
        sync.wait_for_first_frames(1.0)
        seqs = []
        for tick in range(20):  # 20 Hz; two frames a tick except in ticks 5 to 11
            if not 5 <= tick < 12:
                camera.feed(*[clock() - k / 30 for k in (1, 0)])
            if tick == 8:
                assert camera.status().state == STALLED
            seqs.append(sync.frames_for_tick(clock())["cam"].seq)
            clock.sleep(0.05)
        status = camera.status()
    stats = sync.stats()["cam"]
    assert status.stalls == 1 and status.state != STALLED
    assert stats.duplicates == 7 and stats.stale == 5  # ticks 5..11 reuse the frame of tick 4; 7..11 are > 0.12 s
    assert stats.max_age_ms == pytest.approx(7 * 50)
    assert stats.frames == stats.used + stats.drops and np.all(np.diff(seqs) >= 0)


def test_a_dead_camera_keeps_its_last_frame_and_is_reported(clock) -> None:  # noqa: ANN001
    camera = FedCamera(clock)
    sync = FrameSynchronizer({"cam": camera}, max_age_s=0.12, clock=clock, sleep=clock.sleep)
    camera.start()
    camera.feed(clock())
    frames = []
    for tick in range(10):
        if tick == 3:
            camera.feed(OSError("USB device unplugged"))
        frames.append(sync.frames_for_tick(clock())["cam"])
        clock.sleep(0.05)
    camera.stop()
    stats = sync.stats()["cam"]
    assert {f.seq for f in frames} == {0}
    assert stats.state == DEAD and stats.errors == 1 and "USB device unplugged" in stats.last_error
    assert (stats.used, stats.duplicates, stats.stale) == (1, 9, 7)


def test_a_finished_source_is_not_an_error_and_a_silent_one_is_named(clock) -> None:  # noqa: ANN001
    done, silent = FedCamera(clock), FedCamera(clock)
    with done, silent:
        done.feed(clock(), None)
        assert done.status().state == FINISHED and done.status().errors == 0
        sync = FrameSynchronizer({"done": done, "silent": silent}, clock=clock, sleep=clock.sleep)
        with pytest.raises(DeviceError, match="no frame within 0.5 s from camera 'silent' \\(stalled\\)"):
            sync.wait_for_first_frames(0.5)
