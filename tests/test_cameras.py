"""Camera sources: one contract for every backend, video files, missing devices and SDKs, a faked RealSense SDK."""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recorder.cameras import (
    DEAD,
    FINISHED,
    STALLED,
    CameraSource,
    DepthFrame,
    DeviceClockMap,
    FoundCamera,
    OpenCVCamera,
    RealSenseCamera,
    SyntheticCamera,
    find_cameras,
    parse_camera,
    read_counter,
)
from teleop.errors import DeviceError, MissingDependencyError

cv2 = pytest.importorskip("cv2")


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def collect(camera: CameraSource, n: int, timeout_s: float = 5.0) -> list:
    """Poll frames_since like a consumer until `n` frames or the source ends."""
    frames: list = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < n and time.monotonic() < deadline:
        frames += camera.frames_since(frames[-1].seq if frames else -1)
        if not camera.status().alive and not camera.frames_since(frames[-1].seq if frames else -1):
            break
        time.sleep(0.003)
    return frames


def write_video(path: Path, n: int = 30, fps: float = 30.0, size: tuple[int, int] = (64, 48)) -> Path:
    """An MJPG avi whose frame k is red with green level 8k mod 256 (BGR as OpenCV writes it)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for k in range(n):
        bgr = np.zeros((size[1], size[0], 3), np.uint8)
        bgr[..., 2] = 220
        bgr[..., 1] = (8 * k) % 256
        writer.write(bgr)
    writer.release()
    return path


# --- a fake pyrealsense2: pipeline, config and frames, the narrowest boundary of the SDK -------------------


class SettableClock:
    """The monotonic clock as the fake device sets it when it hands over a frame (its receive time)."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class FakeFrame:
    def __init__(self, data: np.ndarray, timestamp_ms: float, domain: int, number: int) -> None:
        self.data, self.timestamp_ms, self.domain, self.number = data, timestamp_ms, domain, number

    def get_data(self) -> np.ndarray:
        return self.data

    def get_timestamp(self) -> float:
        return self.timestamp_ms

    def get_frame_timestamp_domain(self) -> int:
        return self.domain

    def get_frame_number(self) -> int:
        return self.number


class FakeFrameset:
    def __init__(self, color: FakeFrame, depth: FakeFrame | None) -> None:
        self.color, self.depth = color, depth

    def get_color_frame(self) -> FakeFrame:
        return self.color

    def get_depth_frame(self) -> FakeFrame | None:
        return self.depth


def fake_realsense(script: list[Any], clock: SettableClock, width: int = 8, height: int = 6,
                   devices: int = 1, pace_s: float = 0.005) -> types.ModuleType:
    """A pyrealsense2 stand-in whose pipeline plays `script`: (receive_s, device_ms, domain, number) or an exception.

    A frame comes `pace_s` of real time after the call; after the script every call times out like the SDK's.
    """
    rs: Any = types.ModuleType("pyrealsense2")
    rs.stream = types.SimpleNamespace(color="color", depth="depth")
    rs.format = types.SimpleNamespace(rgb8="rgb8", z16="z16")
    rs.timestamp_domain = types.SimpleNamespace(hardware_clock=0, system_time=1, global_time=2)
    intrinsics = types.SimpleNamespace(fx=600.0, fy=601.0, ppx=4.0, ppy=3.0, width=width, height=height)
    profile = types.SimpleNamespace(
        get_stream=lambda stream: types.SimpleNamespace(
            as_video_stream_profile=lambda: types.SimpleNamespace(get_intrinsics=lambda: intrinsics)),
        get_device=lambda: types.SimpleNamespace(
            first_depth_sensor=lambda: types.SimpleNamespace(get_depth_scale=lambda: 0.001)))

    class Config:
        def __init__(self) -> None:
            self.streams: list[tuple] = []

        def enable_device(self, serial: str) -> None:
            self.serial = serial

        def enable_stream(self, *args: Any) -> None:
            self.streams.append(args)

    class Pipeline:
        def __init__(self) -> None:
            self.events = iter(script)
            self.depth = False

        def start(self, config: Config) -> Any:
            if not devices:
                raise RuntimeError("No device connected")
            self.depth = any(s[0] == "depth" for s in config.streams)
            return profile

        def wait_for_frames(self, timeout_ms: int = 5000) -> FakeFrameset:
            event = next(self.events, None)
            if event is None:
                time.sleep(timeout_ms / 1000)
                raise RuntimeError(f"Frame didn't arrive within {timeout_ms}")
            time.sleep(pace_s)
            if isinstance(event, Exception):
                raise event
            receive_s, device_ms, domain, number = event
            clock.t = receive_s
            rgb = np.full((height, width, 3), number % 256, np.uint8)
            depth = np.full((height, width), 1000 + number, np.uint16)
            return FakeFrameset(FakeFrame(rgb, device_ms, domain, number),
                                FakeFrame(depth, device_ms, domain, number) if self.depth else None)

        def stop(self) -> None:
            self.events = iter(())

    class Align:
        def __init__(self, stream: str) -> None:
            self.stream = stream

        def process(self, frames: FakeFrameset) -> FakeFrameset:
            return frames

    rs.config, rs.pipeline, rs.align = Config, Pipeline, Align
    return rs


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi")


BACKENDS = ["synthetic", "video", "realsense"]


@pytest.fixture
def make_camera(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], CameraSource]]:
    cameras: list[CameraSource] = []

    def make(kind: str) -> CameraSource:
        if kind == "synthetic":
            camera: CameraSource = SyntheticCamera(96, 48, fps=60.0, buffer_size=8)
        elif kind == "video":
            camera = OpenCVCamera(write_video(tmp_path / "contract.avi", n=40, fps=60.0), buffer_size=8)
        else:
            clock = SettableClock()
            script = [(100.0 + k / 60, 5000.0 + 1000 * k / 60, 0, k) for k in range(40)]
            monkeypatch.setitem(sys.modules, "pyrealsense2", fake_realsense(script, clock, pace_s=1 / 60))
            camera = RealSenseCamera(width=8, height=6, fps=60.0, clock=clock, timeout_s=0.05, buffer_size=8)
        cameras.append(camera)
        return camera

    yield make
    for camera in cameras:
        camera.stop()


@pytest.mark.parametrize("kind", BACKENDS)
def test_every_backend_keeps_the_source_contract(kind: str, make_camera: Callable[[str], CameraSource]) -> None:
    threads = threading.active_count()
    camera = make_camera(kind)
    assert threading.active_count() == threads  # constructing starts nothing
    assert camera.latest() is None and camera.status().state == "stopped"
    with camera:
        frames = collect(camera, 12)
        assert camera.latest() is not None
        info = camera.info()
    assert len(frames) >= 12
    seqs = [f.seq for f in frames]
    assert seqs == list(range(len(frames)))  # numbered from 0, none skipped by a consumer that kept up
    assert np.all(np.diff([f.t for f in frames]) > 0)
    assert all(f.rgb.dtype == np.uint8 and f.rgb.shape == (info.height, info.width, 3) for f in frames)
    ring = camera.frames_since(-1)  # what the ring holds now: the newest frames, in order
    assert 1 <= len(ring) <= 8 and [f.seq for f in ring] == list(range(ring[0].seq, ring[-1].seq + 1))
    assert camera.frames_since(ring[-1].seq) == [] and camera.frames_since(ring[-2].seq) == [ring[-1]]
    assert camera.latest() is ring[-1]
    camera.stop()  # twice is fine
    assert not camera.status().alive
    assert threading.active_count() == threads


def test_synthetic_frames_move_and_carry_their_number_in_the_image() -> None:
    with SyntheticCamera(640, 480, fps=30.0) as camera:
        frames = collect(camera, 6)
        status = camera.status()
    assert [read_counter(f.rgb) for f in frames] == [f.seq for f in frames]
    assert all(np.abs(a.rgb.astype(int) - b.rgb).mean() > 1 for a, b in zip(frames, frames[1:], strict=False))
    assert 20 < status.fps < 40 and status.errors == 0


def test_a_video_file_plays_at_its_rate_then_finishes_without_an_error(video: Path) -> None:
    camera = OpenCVCamera(video)
    camera.start()
    t0 = time.monotonic()
    frames = collect(camera, 30)
    wait_until(lambda: camera.status().state == FINISHED)
    elapsed = time.monotonic() - t0
    status = camera.status()
    camera.stop()
    assert [f.seq for f in frames] == list(range(30))
    assert np.all(np.diff([f.t for f in frames]) > 0)
    assert 0.8 < elapsed < 3.0  # 30 frames at 30 fps, in real time
    assert status.state == FINISHED and not status.alive and status.errors == 0 and status.frames == 30
    assert camera.fps == 30.0 and camera.info().width == 64 and camera.info().height == 48
    first, last = frames[0].rgb.astype(int), frames[-1].rgb.astype(int)
    assert first[..., 0].mean() > 180 and first[..., 2].mean() < 40  # RGB, not OpenCV's BGR
    assert last[..., 1].mean() - first[..., 1].mean() > 150  # frames in file order


def test_a_video_file_not_in_realtime_decodes_as_fast_as_it_can_at_the_requested_size(video: Path) -> None:
    with OpenCVCamera(video, width=32, height=24, realtime=False) as camera:
        t0 = time.monotonic()
        wait_until(lambda: camera.status().state == FINISHED)
        elapsed = time.monotonic() - t0
        latest = camera.latest()
    assert elapsed < 0.8 and camera.status().frames == 30
    assert latest is not None and latest.seq == 29 and latest.rgb.shape == (24, 32, 3)


def test_a_webcam_index_that_does_not_exist_says_so() -> None:
    camera = OpenCVCamera(7)
    with pytest.raises(DeviceError, match="no camera at index 7: "):
        camera.start()
    assert not camera.status().alive


class FakeWebcam:
    """cv2.VideoCapture for webcam index 0 (the SDK boundary; OpenCV does the rest): a frame every 1/fps s,
    whose CAP_PROP_POS_MSEC is `stamp(k, now)` [s] x 1000, as OpenCV's V4L2 backend reports the driver's buffer
    time. Frame k is BGR (k, 0, 200). After `fail_after` frames read() fails, as when the camera is unplugged."""

    def __init__(self, stamp: Callable[[int, float], float], backend: str = "V4L2", fps: float = 60.0,
                 fail_after: int | None = None) -> None:
        self.stamp, self.backend, self.fps, self.fail_after = stamp, backend, fps, fail_after
        self.requested: dict[int, float] = {}
        self.stamps: list[float] = []  # the stamp of each frame read
        self.returned: list[float] = []  # when each read() returned a frame
        self.released = False

    def open(self, index: int, *args: Any) -> Any:
        if index != 0:
            return types.SimpleNamespace(isOpened=lambda: False, release=lambda: None)
        return self

    def isOpened(self) -> bool:  # noqa: N802  (OpenCV's names)
        return not self.released

    def set(self, prop: int, value: float) -> bool:
        self.requested[prop] = value
        return True

    def get(self, prop: int) -> float:
        sizes = {cv2.CAP_PROP_FRAME_WIDTH: 32.0, cv2.CAP_PROP_FRAME_HEIGHT: 24.0, cv2.CAP_PROP_FPS: self.fps}
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self.stamps[-1] * 1000.0 if self.stamps else 0.0
        return sizes.get(prop, -1.0)

    def getBackendName(self) -> str:  # noqa: N802
        return self.backend

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(1.0 / self.fps)
        k = len(self.stamps)
        if self.fail_after is not None and k >= self.fail_after:
            return False, None
        bgr = np.zeros((24, 32, 3), np.uint8)
        bgr[..., 0], bgr[..., 2] = k, 200
        now = time.monotonic()
        self.stamps.append(self.stamp(k, now))
        self.returned.append(now)
        return True, bgr

    def release(self) -> None:
        self.released = True


def queued_for(seconds: float) -> Callable[[int, float], float]:
    """Driver stamps of frames that waited `seconds` (+ up to 3 ms) in the driver's queue before being read."""
    jitter = np.random.default_rng(0).uniform(0.0, 0.003, 1000)
    return lambda k, now: now - seconds - jitter[k]


def test_a_v4l2_webcam_is_stamped_with_the_drivers_buffer_time(monkeypatch: pytest.MonkeyPatch) -> None:
    webcam = FakeWebcam(queued_for(0.04))
    monkeypatch.setattr(cv2, "VideoCapture", webcam.open)
    with OpenCVCamera(0, width=32, height=24, fps=60.0, buffer_size=64) as camera:
        frames = collect(camera, 20)
        status = camera.status()
    assert len(frames) >= 20 and [f.seq for f in frames] == list(range(len(frames)))
    # The capture time, not the receive time, which is late by the 40 ms the frame waited in the queue.
    np.testing.assert_allclose([f.t for f in frames], webcam.stamps[: len(frames)], rtol=0, atol=1e-9)
    assert np.all(np.array(webcam.returned[: len(frames)]) - [f.t for f in frames] >= 0.04)
    assert status.timestamps == "device" and status.errors == 0
    assert frames[3].rgb[0, 0].tolist() == [200, 0, 3]  # RGB, not OpenCV's BGR
    assert webcam.requested == {cv2.CAP_PROP_FRAME_WIDTH: 32, cv2.CAP_PROP_FRAME_HEIGHT: 24, cv2.CAP_PROP_FPS: 60.0}
    assert webcam.released


@pytest.mark.parametrize(("backend", "stamp"), [
    ("V4L2", lambda k, now: time.time() - 0.04),  # a driver that stamps on the wall clock (uvcvideo clock=realtime)
    ("GSTREAMER", queued_for(0.04)),  # another backend: CAP_PROP_POS_MSEC is not known to be a capture time
])
def test_a_webcam_without_usable_driver_stamps_is_stamped_on_receipt(
        monkeypatch: pytest.MonkeyPatch, backend: str, stamp: Callable[[int, float], float]) -> None:
    webcam = FakeWebcam(stamp, backend=backend)
    monkeypatch.setattr(cv2, "VideoCapture", webcam.open)
    with OpenCVCamera(0, buffer_size=64) as camera:
        frames = collect(camera, 10)
        status = camera.status()
    late = np.array([f.t for f in frames]) - webcam.returned[: len(frames)]
    assert len(frames) >= 10 and np.all(late >= 0) and np.all(late < 0.5)
    assert status.timestamps == "receive" and status.errors == 0


def test_a_driver_stamp_off_the_clock_mid_stream_is_counted_and_that_frame_timed_from_its_receipt(
        monkeypatch: pytest.MonkeyPatch) -> None:
    queued = queued_for(0.2)
    webcam = FakeWebcam(lambda k, now: now - 3.0 if k == 5 else queued(k, now))
    monkeypatch.setattr(cv2, "VideoCapture", webcam.open)
    with OpenCVCamera(0, buffer_size=64) as camera:
        frames = collect(camera, 10)
        status = camera.status()
    t = np.array([f.t for f in frames])
    assert len(frames) >= 10 and np.all(np.diff(t) > 0)
    # Frame 5: its receipt less frame 4's wait in the queue (200-203 ms), near where its stamp should be.
    assert webcam.returned[5] - 0.25 < t[5] < webcam.returned[5] - 0.15
    np.testing.assert_allclose(np.delete(t, 5), np.delete(webcam.stamps[: len(t)], 5), rtol=0, atol=1e-9)
    assert status.timestamps == "device" and status.errors == 1 and status.state == "running"
    assert "stamped a frame 3.0" in status.last_error


def test_an_unplugged_webcam_is_marked_dead_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    webcam = FakeWebcam(queued_for(0.02), fail_after=6)
    monkeypatch.setattr(cv2, "VideoCapture", webcam.open)
    with OpenCVCamera(0, buffer_size=64, max_read_failures=3) as camera:
        wait_until(lambda: camera.status().state == DEAD)
        status = camera.status()
        frames = camera.frames_since(-1)
    assert [f.seq for f in frames] == list(range(6))
    assert status.errors == 4 and not status.alive  # 3 failed reads, then the one that ended it
    assert "returned no frame 3 times in a row: it was unplugged" in status.last_error
    assert "reconnect it" in status.last_error


def test_a_camera_spec_names_its_backend_and_settings(tmp_path: Path) -> None:
    name, camera = parse_camera("side=realsense-depth:0123456789", (848, 480), 60.0)
    assert name == "side" and isinstance(camera, RealSenseCamera)
    assert (camera.serial, camera.width, camera.height, camera.depth) == ("0123456789", 848, 480, True)
    assert camera.fps == 60.0
    _, camera = parse_camera("top=realsense")
    assert isinstance(camera, RealSenseCamera) and camera.serial is None and not camera.depth
    assert (camera.width, camera.height) == (640, 480)
    _, camera = parse_camera("usb=2", (320, 240), 15.0)
    assert isinstance(camera, OpenCVCamera) and camera.source == 2 and camera.size == (320, 240)
    assert camera.requested_fps == 15.0
    _, camera = parse_camera("usb=/dev/video4")
    assert isinstance(camera, OpenCVCamera) and camera.source == 4
    _, camera = parse_camera(f"clip={tmp_path / 'a.mp4'}")
    assert isinstance(camera, OpenCVCamera) and camera.is_file and camera.requested_fps is None
    _, camera = parse_camera("test = synthetic", (160, 120))
    assert isinstance(camera, SyntheticCamera) and (camera.width, camera.height) == (160, 120)


def fake_realsense_listing(monkeypatch: pytest.MonkeyPatch, *devices: tuple[str, str]) -> None:
    """pyrealsense2 whose context lists `devices`, (serial, name) each."""
    rs = fake_realsense([], SettableClock())
    rs.camera_info = types.SimpleNamespace(serial_number="serial", name="name")
    listed = [types.SimpleNamespace(get_info=lambda key, d=d: {"serial": d[0], "name": d[1]}[key]) for d in devices]
    rs.context = lambda: types.SimpleNamespace(query_devices=lambda: listed)
    monkeypatch.setitem(sys.modules, "pyrealsense2", rs)


def test_find_cameras_probes_each_video_node_and_lists_realsense_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", FakeWebcam(queued_for(0.02)).open)  # only index 0 opens
    fake_realsense_listing(monkeypatch, ("0123456789", "Intel RealSense D435"))
    metadata, webcam, realsense = find_cameras(0.3, ["/dev/video1", "/dev/video0"])
    assert (metadata.source, metadata.device, metadata.width) == ("1", "/dev/video1", 0)
    assert metadata.problem.startswith("OpenCV cannot open it")
    assert (webcam.source, webcam.device, webcam.width, webcam.height) == ("0", "/dev/video0", 32, 24)
    assert 30 < webcam.fps < 90 and webcam.timestamps == "device" and webcam.problem == ""
    assert realsense == FoundCamera("realsense:0123456789", "Intel RealSense D435")


def test_teleop_cameras_prints_what_each_camera_gives(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from teleop.cli import main

    monkeypatch.setattr(cv2, "VideoCapture", FakeWebcam(queued_for(0.02)).open)
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # not installed: nothing listed, no error
    monkeypatch.setattr("recorder.cameras.find_cameras",
                        lambda probe_s: find_cameras(probe_s, ["/dev/video0"]))
    assert main(["cameras", "--probe-seconds", "0.3"]) == 0
    header, row, hint = capsys.readouterr().out.strip().splitlines()
    assert header.split()[:4] == ["source", "device", "size", "fps"]
    assert row.split()[:3] == ["0", "/dev/video0", "32x24"] and row.split()[4] == "device"
    assert "--camera usb=0" in hint


def test_a_missing_video_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DeviceError, match="no video file at .*nothing.avi"):
        OpenCVCamera(tmp_path / "nothing.avi").start()


def test_missing_sdks_name_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'teleop\[cameras\]'"):
        OpenCVCamera(0).start()
    with pytest.raises(MissingDependencyError, match=r"pip install 'teleop\[realsense\]'"):
        RealSenseCamera().start()


# --- RealSense ----------------------------------------------------------------------------------------


def test_realsense_hardware_timestamps_map_onto_the_monotonic_clock_with_depth(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    clock = SettableClock()
    device_ms = 7000.0 + 1000.0 / 30 * np.arange(30)
    latency = np.concatenate([[0.002], rng.uniform(0.003, 0.009, 29)])  # the first frame is the quickest
    receive = 50.0 + device_ms / 1000 + latency
    script = [(r, d, 0, k) for k, (r, d) in enumerate(zip(receive, device_ms, strict=True))]
    monkeypatch.setitem(sys.modules, "pyrealsense2", fake_realsense(script, clock))
    with RealSenseCamera(serial="123", width=8, height=6, fps=30.0, depth=True, clock=clock, timeout_s=0.05,
                         buffer_size=64) as camera:
        frames = collect(camera, 30)
        info = camera.info()
    t = np.array([f.t for f in frames])
    assert len(frames) == 30 and all(isinstance(f, DepthFrame) for f in frames)
    assert np.all(t <= receive + 1e-12)  # never later than it arrived
    np.testing.assert_allclose(np.diff(t), np.diff(device_ms) / 1000, atol=1e-5)  # the device's intervals
    np.testing.assert_allclose(t, receive - latency + 0.002, atol=1e-4)  # late by the shortest latency only
    depth = frames[5].depth
    assert depth is not None and depth.dtype == np.uint16 and depth.shape == (6, 8) and depth[0, 0] == 1005
    assert frames[5].depth_scale_m == 0.001
    assert info.K[0, 0] == 600.0 and info.K[1, 2] == 3.0 and np.isnan(info.T_world_camera).all()


def test_realsense_system_time_stamps_are_moved_from_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SettableClock()
    wall_offset = 1.7e9
    receive = 20.0 + np.arange(10) / 30
    script = [(r, (r - 0.004 + wall_offset) * 1000, 1, k) for k, r in enumerate(receive)]
    monkeypatch.setitem(sys.modules, "pyrealsense2", fake_realsense(script, clock))
    camera = RealSenseCamera(fps=30.0, clock=clock, wall_clock=lambda: clock() + wall_offset, timeout_s=0.05,
                             buffer_size=64)
    with camera:
        frames = collect(camera, 10)
    np.testing.assert_allclose([f.t for f in frames], receive - 0.004, atol=1e-5)
    assert frames[0].rgb.shape == (6, 8, 3) and not isinstance(frames[0], DepthFrame)


def test_realsense_timeouts_and_lost_frames_are_counted_and_an_unplug_marks_it_dead(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SettableClock()
    script: list[Any] = [(1.0, 1000.0, 0, 0), (1.033, 1033.0, 0, 1),
                         RuntimeError("Frame didn't arrive within 1000"),
                         (2.1, 2100.0, 0, 4),  # the device numbered 2 and 3 but they never came
                         RuntimeError("No device connected")]
    monkeypatch.setitem(sys.modules, "pyrealsense2", fake_realsense(script, clock))
    camera = RealSenseCamera(fps=30.0, clock=clock)
    camera.start()
    wait_until(lambda: camera.status().state == DEAD)
    status = camera.status()
    latest = camera.latest()
    camera.stop()
    assert status.frames == 3 and status.lost == 2 and status.errors == 2 and not status.alive
    assert "No device connected" in status.last_error
    assert status.stalls == 1  # 1.033 s -> 2.1 s without a frame
    assert latest is not None and latest.seq == 2  # what it captured before dying is still there
    assert camera.status().state == DEAD  # stopping keeps the verdict


def test_a_realsense_that_is_not_plugged_in_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyrealsense2", fake_realsense([], SettableClock(), devices=0))
    with pytest.raises(DeviceError, match="no RealSense camera with serial 42 could be started.*USB 3"):
        RealSenseCamera(serial="42").start()


def test_a_stalled_source_is_marked_while_it_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SettableClock()
    monkeypatch.setitem(sys.modules, "pyrealsense2", fake_realsense([(1.0, 1000.0, 0, 0)], clock))
    with RealSenseCamera(fps=30.0, clock=clock, timeout_s=0.05) as camera:
        wait_until(lambda: camera.status().frames == 1)
        assert camera.status().state == "running"
        clock.t = 1.0 + 6 / 30  # six periods without a frame
        status = camera.status()
        assert status.state == STALLED and status.alive and status.stalls == 1


def test_the_device_clock_map_follows_a_slow_crystal_but_never_runs_ahead_of_receipt() -> None:
    clock_map = DeviceClockMap(drift=1e-4)
    device = np.arange(0, 60, 1 / 30)
    receive = 10.0 + device * (1 + 5e-5) + 0.003  # the device clock runs 50 ppm slow
    t = np.array([clock_map(d, r) for d, r in zip(device, receive, strict=True)])
    assert np.all(t <= receive) and np.all(np.diff(t) > 0)
    assert np.max(receive - t) < 1e-3  # tracked over a minute; an offset frozen at the start would be 3 ms off
