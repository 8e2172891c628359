"""Webcam hands: the landmarker result -> sample conversion, the model file, and MediaPipe on a real video."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import HAND_VIDEO as VIDEO

from devices import hand_model
from devices.hand_model import build_task_from_mediapipe_wheel, check_task, fetch_model, find_model
from devices.webcam_hands import WebcamHands, create_landmarker, detect, sample_from_result
from teleop.errors import DeviceError, UnknownNameError

WRIST, INDEX_MCP, MIDDLE_MCP, MIDDLE_TIP, LITTLE_MCP = 0, 5, 9, 12, 17


# --------------------------------------------------------------------- result -> sample (no MediaPipe needed)
def _hand(label: str, score: float, centre: tuple[float, float, float] = (0.01, -0.02, 0.03)) -> tuple:
    rng = np.random.default_rng(len(label))
    points = rng.normal(scale=0.04, size=(21, 3)) + np.asarray(centre)
    landmarks = [SimpleNamespace(x=x, y=y, z=z, visibility=0.0, presence=0.0) for x, y, z in points]
    categories = [SimpleNamespace(index=0, score=score, display_name="", category_name=label)]
    return landmarks, categories, points


def _result(*hands: tuple) -> SimpleNamespace:
    return SimpleNamespace(hand_world_landmarks=[h[0] for h in hands], handedness=[h[1] for h in hands],
                           hand_landmarks=[])


def test_the_requested_hand_becomes_wrist_centred_keypoints() -> None:
    left, right = _hand("Left", 0.99), _hand("Right", 0.8)
    sample = sample_from_result(_result(left, right), t=12.5, handedness="Right", device_time=0.4)
    assert sample.engaged and sample.t == 12.5 and sample.device_time == 0.4
    assert sample.keypoints is not None and sample.keypoints.shape == (21, 3)
    np.testing.assert_allclose(sample.keypoints, right[2] - right[2][WRIST], atol=1e-15)
    assert sample.axes["confidence"] == 0.8 and sample.buttons["tracked"]
    assert sample.T_world_device is None


def test_low_confidence_or_no_hand_or_the_other_hand_disengages() -> None:
    weak = sample_from_result(_result(_hand("Right", 0.3)), t=1.0, min_confidence=0.5)
    assert not weak.engaged and weak.keypoints is not None and weak.axes["confidence"] == 0.3
    nothing = sample_from_result(_result(), t=1.0)
    assert not nothing.engaged and nothing.keypoints is None and not nothing.buttons["tracked"]
    other = sample_from_result(_result(_hand("Left", 0.95)), t=1.0, handedness="Right")
    assert not other.engaged and other.keypoints is None


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(UnknownNameError, match="Right"):
        WebcamHands(handedness="both")
    with pytest.raises(DeviceError, match="min_confidence"):
        WebcamHands(min_confidence=1.5)


# --------------------------------------------------------------------------------------------- the model file
@pytest.fixture
def no_model_anywhere(tmp_path, monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.delenv(hand_model.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_a_missing_model_says_where_it_looked_and_how_to_get_one(no_model_anywhere) -> None:  # noqa: ANN001
    with pytest.raises(DeviceError) as info:
        find_model()
    message = str(info.value)
    assert "TELEOP_HAND_MODEL" in message and str(no_model_anywhere / "cache" / "teleop") in message
    assert "teleop models fetch" in message and "--from-wheel" in message
    with pytest.raises(DeviceError, match="does not exist"):
        find_model(no_model_anywhere / "nope.task")


def test_the_device_refuses_to_connect_without_a_model(no_model_anywhere) -> None:  # noqa: ANN001
    pytest.importorskip("cv2")
    device = WebcamHands(source=0)
    with pytest.raises(DeviceError, match="no hand landmarker model found"):
        device.connect()
    assert not device.connected


def test_a_file_that_is_no_task_bundle_is_refused(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    bogus = tmp_path / "bogus.task"
    bogus.write_bytes(b"not a zip")
    monkeypatch.setenv(hand_model.ENV_VAR, str(bogus))
    with pytest.raises(DeviceError, match="not a hand landmarker model"):
        find_model()


@pytest.fixture(scope="module")
def model(hand_landmarker_model) -> Path:  # noqa: ANN001
    return hand_landmarker_model


def test_a_wheel_without_the_hand_files_is_refused_by_name(tmp_path) -> None:  # noqa: ANN001
    import zipfile

    wheel = tmp_path / "mediapipe-1.2.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mediapipe/__init__.py", "")
    with pytest.raises(DeviceError, match="has no mediapipe/modules/palm_detection/palm_detection_full.tflite"):
        build_task_from_mediapipe_wheel(tmp_path / "out.task", wheel=wheel)
    assert not (tmp_path / "out.task").exists()


def test_the_model_built_from_the_wheel_is_found_by_env_and_cache(model, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    assert check_task(model) == model
    monkeypatch.setenv(hand_model.ENV_VAR, str(model))
    assert find_model() == model
    monkeypatch.delenv(hand_model.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cached = build_task_from_mediapipe_wheel()  # default: into the cache
    assert cached == tmp_path / "teleop" / "hand_landmarker.task" and find_model() == cached
    assert find_model(model) == model  # an explicit path wins


def test_fetch_downloads_checks_and_explains_failures(model, tmp_path) -> None:  # noqa: ANN001
    out = fetch_model(tmp_path / "fetched.task", url=model.as_uri())
    assert out.read_bytes() == model.read_bytes()
    not_a_model = tmp_path / "page.html"
    not_a_model.write_text("<html>sign in</html>")
    with pytest.raises(DeviceError, match="did not give a hand landmarker model"):
        fetch_model(tmp_path / "bad.task", url=not_a_model.as_uri())
    with pytest.raises(DeviceError, match="could not download the hand model .*build_task_from_mediapipe_wheel"):
        fetch_model(tmp_path / "missing.task", url=(tmp_path / "absent.task").as_uri())
    assert not (tmp_path / "bad.task").exists() and not (tmp_path / "missing.task").exists()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".part"] == []


# -------------------------------------------------------------------------------------- MediaPipe on a video
@pytest.fixture(scope="module")
def video() -> Path:
    if not VIDEO.is_file():
        pytest.skip(f"{VIDEO} is not here")
    pytest.importorskip("mediapipe")
    return VIDEO


def _frames(count: int) -> list[np.ndarray]:
    cv2 = pytest.importorskip("cv2")
    capture = cv2.VideoCapture(str(VIDEO))
    frames: list[np.ndarray] = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_a_real_right_hand_is_tracked_in_every_frame_with_plausible_bones(model, video) -> None:  # noqa: ANN001
    landmarker = create_landmarker(model)
    samples, latency_ms = [], []
    try:
        for i, frame in enumerate(_frames(60)):
            start = time.perf_counter()
            result = detect(landmarker, frame, timestamp_ms=round(i * 1000 / 30))
            latency_ms.append(1e3 * (time.perf_counter() - start))
            samples.append(sample_from_result(result, t=i / 30, handedness="Right"))
    finally:
        landmarker.close()
    assert len(samples) == 60
    tracked = [s for s in samples if s.engaged]
    assert len(tracked) >= 58
    for sample in tracked:
        kp = sample.keypoints
        assert kp is not None and np.all(kp[WRIST] == 0.0)
        assert 0.06 <= np.linalg.norm(kp[MIDDLE_MCP]) <= 0.12  # wrist to middle-finger MCP [m]
        assert 0.05 <= np.linalg.norm(kp[MIDDLE_TIP] - kp[MIDDLE_MCP]) <= 0.11  # middle finger
        assert 0.01 <= np.linalg.norm(kp[INDEX_MCP] - kp[LITTLE_MCP]) <= 0.08  # palm width
    assert float(np.median(latency_ms[5:])) < 250.0  # ~11-25 ms here; a broken delegate is 10x slower


def _write_clip(path: Path, frames: list[np.ndarray], flip: bool = False) -> Path:
    cv2 = pytest.importorskip("cv2")
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (width, height))
    for frame in frames:
        writer.write(cv2.flip(frame, 1) if flip else frame)
    writer.release()
    return path


def _wait_for(condition, timeout: float = 30.0) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def _ended(device: WebcamHands) -> bool:
    """The video has ended and the capture thread has finished."""
    thread = device._thread
    return device.status().reason == "the video ended" and thread is not None and not thread.is_alive()


def test_the_device_tracks_a_video_then_disengages_when_it_ends(model, video, tmp_path) -> None:  # noqa: ANN001
    clip = _write_clip(tmp_path / "clip.avi", _frames(12))
    device = WebcamHands(source=clip, model=model, pace_video=False)
    assert not device.connected and device._thread is None  # nothing runs before connect()
    device.connect()
    try:
        _wait_for(lambda: device.frames >= 1)
        sample = device.read()  # never waits for the capture thread
        _wait_for(lambda: _ended(device))
        assert device.frames == 12 and len(device.latency_ms) == 12
        assert not device.read().engaged  # no more frames: the session holds
        status = device.status()
        assert not status.connected and status.reason == "the video ended" and status.last_sample_age_s is not None
        assert sample.engaged and sample.keypoints is not None and sample.device_time is not None
    finally:
        device.disconnect()
    assert device._thread is None


def test_a_mirrored_source_is_flipped_back_so_the_right_hand_stays_right(model, video, tmp_path) -> None:  # noqa: ANN001
    clip = _write_clip(tmp_path / "selfie.avi", _frames(3), flip=True)
    results = {}
    for mirrored in (False, True):
        device = WebcamHands(source=clip, model=model, mirrored=mirrored, pace_video=False)
        engaged = []
        device.connect()
        try:
            _wait_for(lambda d=device: _ended(d))
            engaged.append(device._sample is not None and device._sample.axes["confidence"] > 0)
        finally:
            device.disconnect()
        results[mirrored] = engaged[0]
    assert results == {False: False, True: True}


def test_the_stale_frame_guard_disengages(model, video, tmp_path, clock) -> None:  # noqa: ANN001
    clip = _write_clip(tmp_path / "one.avi", _frames(2))
    device = WebcamHands(source=clip, model=model, clock=clock, pace_video=False, max_age_s=0.5)
    device.connect()
    try:
        _wait_for(lambda: _ended(device))
        with device._lock:  # as if the capture thread had stalled with a good frame
            device._sample = sample_from_result(_result(_hand("Right", 0.9)), t=clock())
        assert device.read().engaged
        clock.sleep(0.6)
        assert not device.read().engaged
        with device._lock:
            device._ended = ""  # as if the thread were still running, stalled
        assert "the camera stalled" in device.status().reason
    finally:
        device.disconnect()


def test_a_camera_that_does_not_open_is_a_clear_error(model) -> None:  # noqa: ANN001
    pytest.importorskip("cv2")
    with pytest.raises(DeviceError, match="could not open camera 97"):
        WebcamHands(source=97, model=model).connect()


def test_tracking_a_missing_video_names_it(tmp_path) -> None:  # noqa: ANN001
    pytest.importorskip("cv2")
    from devices.webcam_hands import track_video

    with pytest.raises(DeviceError, match="could not open the video .*nope.mp4"):
        track_video(tmp_path / "nope.mp4")
