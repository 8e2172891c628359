"""Hand tracking from a webcam (or a video file) with MediaPipe's Hand Landmarker.

A capture thread, started by connect(), reads frames with OpenCV and runs the Hand Landmarker (Tasks API,
VIDEO running mode) on each; read() returns the newest result without blocking. Per frame the device gives
the 21 hand world landmarks of the requested hand, translated so that the wrist (landmark 0) is the origin
(MediaPipe centres them near the hand's middle), in metres; the axes keep MediaPipe's orientation (camera
aligned: x right, y down, z away from the camera, roughly), which the retargeter does not need since it
builds its own hand frame from the keypoints.

`t` is the time the frame was captured (the clock read right after OpenCV returned it). `engaged` is True
when a hand of the requested handedness was found with a handedness score >= min_confidence; otherwise, or
when the newest frame is older than `max_age_s` (the camera stalled), it is False and the session holds.
The chosen hand's score is in `axes["confidence"]`, and `buttons["tracked"]` repeats `engaged`. `status()`
counts frames with the hand tracked (engaged) in its rate and says why when there is none.

Handedness: frames go to MediaPipe as the camera gives them. With mediapipe 0.10.21 the label and the
chirality of the world landmarks are those of the hand as it appears in the image (a right hand filmed by a
normal camera is "Right"); a mirroring (selfie-view) source shows a right hand as a left one, so pass
`mirrored=True` for such a source and frames are flipped back before detection.

The model file is found by devices.hand_model.find_model (explicit path, $TELEOP_HAND_MODEL, the cache).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from devices.base import Clock, Device, DeviceSample
from devices.hand_model import find_model
from devices.status import DeviceStatus, RateMeter
from teleop.deps import require
from teleop.errors import DeviceError, UnknownNameError

HANDEDNESS = ("Right", "Left")
_MAX_FAILED_READS = 50  # consecutive failed camera reads (~2.5 s) before the camera counts as gone
_FAILED_READ_WAIT_S = 0.05


@dataclass(frozen=True)
class HandDetection:
    """One hand in one frame.

    Attributes:
        handedness: "Right" or "Left".
        score: Handedness score in [0, 1] (MediaPipe's confidence in the hand and its label).
        keypoints: 21 world landmarks, MediaPipe order, wrist at the origin (21, 3) [m].
    """

    handedness: str
    score: float
    keypoints: np.ndarray


def detections_from_result(result: Any) -> list[HandDetection]:
    """The hands of a HandLandmarkerResult: its `hand_world_landmarks` (per hand, 21 landmarks with x, y, z
    [m]) and `handedness` (per hand, categories with `category_name` and `score`)."""
    hands = []
    for landmarks, categories in zip(result.hand_world_landmarks, result.handedness, strict=True):
        points = np.array([(p.x, p.y, p.z) for p in landmarks], dtype=np.float64)
        if points.shape != (21, 3) or not categories:
            continue
        best = max(categories, key=lambda c: c.score)
        hands.append(HandDetection(str(best.category_name), float(best.score), points - points[0]))
    return hands


def sample_from_result(result: Any, t: float, handedness: str = "Right", min_confidence: float = 0.5,
                       device_time: float | None = None) -> DeviceSample:
    """A DeviceSample from one frame's HandLandmarkerResult.

    The most confident hand labelled `handedness` is used; engaged if its score >= min_confidence. Its
    keypoints are given even below the threshold (for display); with no such hand they are None.

    Args:
        result: The landmarker's result for the frame.
        t: Capture time of the frame [s] (monotonic).
        handedness: "Right" or "Left".
        min_confidence: Lowest handedness score that engages, in [0, 1].
        device_time: The source's own time of the frame [s], if any.
    """
    hands = [hand for hand in detections_from_result(result) if hand.handedness == handedness]
    if not hands:
        return DeviceSample(t=t, engaged=False, axes={"confidence": 0.0}, buttons={"tracked": False},
                            device_time=device_time)
    hand = max(hands, key=lambda h: h.score)
    engaged = hand.score >= min_confidence
    return DeviceSample(t=t, engaged=engaged, keypoints=hand.keypoints, axes={"confidence": hand.score},
                        buttons={"tracked": engaged}, device_time=device_time)


def create_landmarker(model_path: str | Path, num_hands: int = 2, min_detection_confidence: float = 0.5) -> Any:
    """A MediaPipe HandLandmarker in VIDEO running mode (one frame at a time, increasing timestamps).

    Raises:
        MissingDependencyError: mediapipe is not installed.
        DeviceError: the model file cannot be loaded.
    """
    mp = _mediapipe()
    vision = mp.tasks.vision
    options = vision.HandLandmarkerOptions(
        base_options=mp.tasks.BaseOptions(model_asset_path=str(model_path)),
        running_mode=vision.RunningMode.VIDEO,
        num_hands=num_hands,
        min_hand_detection_confidence=min_detection_confidence,
    )
    try:
        return vision.HandLandmarker.create_from_options(options)
    except (RuntimeError, ValueError) as exc:
        raise DeviceError(f"MediaPipe could not load the hand model {model_path} ({exc}): get a fresh one, see "
                          "devices.hand_model") from exc


def detect(landmarker: Any, frame_bgr: np.ndarray, timestamp_ms: int, mirrored: bool = False) -> Any:
    """Run the landmarker on an OpenCV BGR frame (H, W, 3) uint8; returns its HandLandmarkerResult."""
    cv2 = _cv2()
    mp = _mediapipe()
    rgb = cv2.cvtColor(cv2.flip(frame_bgr, 1) if mirrored else frame_bgr, cv2.COLOR_BGR2RGB)
    return landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), timestamp_ms)


def track_video(video: str | Path, model: str | Path | None = None, handedness: str = "Right",
                min_confidence: float = 0.5, num_hands: int = 2, mirrored: bool = False,
                max_frames: int | None = None, progress: Callable[[int, int], None] | None = None
                ) -> list[DeviceSample]:
    """Every frame of a video file tracked as WebcamHands tracks it: one DeviceSample per frame, `t` the
    frame's position in the file [s] (retargeting a recorded hand offline, benchmarks, tests).

    Args:
        video: The video file.
        model: Hand Landmarker `.task` file; None: devices.hand_model.find_model().
        handedness, min_confidence, num_hands, mirrored: As for WebcamHands.
        max_frames: Stop after this many frames (None: the whole file).
        progress: Called with (frames done, frames in the file) after each frame.
    Raises:
        DeviceError: the file cannot be opened or has no frames, or the model cannot be loaded.
    """
    cv2 = _cv2()
    label = handedness.capitalize()
    if label not in HANDEDNESS:
        raise UnknownNameError("handedness", handedness, HANDEDNESS)
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise DeviceError(f"OpenCV could not open the video {video}: check that the file exists and is a video")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    if max_frames is not None:
        total = min(total, max_frames)
    samples: list[DeviceSample] = []
    try:
        landmarker = create_landmarker(find_model(model), num_hands)
    except BaseException:
        capture.release()
        raise
    try:
        last_ms = -1
        while max_frames is None or len(samples) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            position_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3
            last_ms = max(last_ms + 1, round(1e3 * position_s))
            result = detect(landmarker, frame, last_ms, mirrored)
            samples.append(sample_from_result(result, last_ms / 1e3, label, min_confidence, position_s))
            if progress is not None:
                progress(len(samples), max(total, len(samples)))
    finally:
        capture.release()
        landmarker.close()
    if not samples:
        raise DeviceError(f"the video {video} has no frames OpenCV can decode")
    return samples


def _mediapipe() -> ModuleType:
    return require("mediapipe", extra="hands", purpose="Webcam hand tracking")


def _cv2() -> ModuleType:
    return require("cv2", extra="hands", purpose="Webcam hand tracking", package="opencv-python-headless")


class WebcamHands(Device):
    """Hand keypoints from a camera or a video file, tracked by MediaPipe (see the module docstring).

    Args:
        source: Camera index (0 is the first camera) or a video file path (or a stream URL).
        model: Hand Landmarker `.task` file; None: devices.hand_model.find_model().
        handedness: The operator's hand to track, "Right" or "Left".
        min_confidence: Lowest handedness score that engages, in [0, 1].
        clock: Monotonic clock [s] stamping the frames.
        mirrored: The source mirrors the image (selfie view): flip frames back before detection.
        max_age_s: A newest frame older than this disengages [s] (a stalled camera must not keep the hand).
        pace_video: Play a video file at its frame rate, like a camera (False: as fast as it decodes).
        num_hands: Hands MediaPipe looks for. 2 (default): the other hand cannot take the requested hand's
            place, but while only one hand is in view MediaPipe runs palm detection on every frame (~22 ms a
            frame here against ~12 ms with 1, 1280x720, 2 CPU cores).
    """

    name = "webcam-hands"

    def __init__(self, source: int | str | Path = 0, model: str | Path | None = None, handedness: str = "Right",
                 min_confidence: float = 0.5, clock: Clock = time.monotonic, mirrored: bool = False,
                 max_age_s: float = 0.5, pace_video: bool = True, num_hands: int = 2) -> None:
        super().__init__(clock)
        label = handedness.capitalize()
        if label not in HANDEDNESS:
            raise UnknownNameError("handedness", handedness, HANDEDNESS)
        if not 0.0 <= min_confidence <= 1.0:
            raise DeviceError(f"min_confidence must be in [0, 1], got {min_confidence}")
        self.source = source
        self.model = model
        self.handedness = label
        self.min_confidence = min_confidence
        self.mirrored = mirrored
        self.max_age_s = max_age_s
        self.pace_video = pace_video
        self.num_hands = num_hands
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sample: DeviceSample | None = None
        self._ended = ""  # why the capture thread stopped; "" while it runs
        self._meter = RateMeter()
        self.frames = 0  # frames processed since connect()
        self.latency_ms: collections.deque[float] = collections.deque(maxlen=1000)  # landmarker time per frame

    @property
    def is_file(self) -> bool:
        return not isinstance(self.source, int) and Path(self.source).is_file()

    def status(self) -> DeviceStatus:
        """Frames coming, rate and age of tracked frames and, if no hand is tracked, why."""
        if not self.connected:
            return DeviceStatus(False, reason=f"{self.name} is not connected: call .connect() first")
        sample = self.read()
        with self._lock:
            ended, meter = self._ended, self._meter
            if ended:
                reason = ended
            elif self._sample is None:
                reason = "waiting for the first frame"
            elif self._sample.engaged and not sample.engaged:
                reason = f"no frame for over {self.max_age_s:g} s: the camera stalled"
            elif not sample.engaged:
                reason = (f"no {self.handedness.lower()} hand with confidence >= {self.min_confidence:g} in view "
                          f"(best {sample.axes.get('confidence', 0.0):.2f}): show the hand to the camera")
            else:
                reason = ""
            return meter.status(self.clock(), connected=not ended, reason=reason)

    # ------------------------------------------------------------------------------------- lifecycle
    def _connect(self) -> None:
        cv2 = _cv2()
        model_path = find_model(self.model)
        landmarker = create_landmarker(model_path, self.num_hands)
        capture = cv2.VideoCapture(self.source if isinstance(self.source, int) else str(self.source))
        if not capture.isOpened():
            landmarker.close()
            what = f"camera {self.source}" if isinstance(self.source, int) else f"the video {self.source}"
            raise DeviceError(f"OpenCV could not open {what}: check that it exists (is plugged in) and no other "
                              "program uses it, or pass another camera index or a video file with --device-arg")
        if isinstance(self.source, int):
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one queued behind a slow detection
        self._stop.clear()
        self._sample = None
        self._ended = ""
        self._meter.reset()
        self.frames = 0
        self.latency_ms.clear()
        self._thread = threading.Thread(target=self._run, args=(capture, landmarker), name="webcam-hands",
                                        daemon=True)
        self._thread.start()

    def _disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _read(self) -> DeviceSample:
        now = self.clock()
        with self._lock:
            sample = self._sample
        if sample is None:
            return DeviceSample(t=now, engaged=False, axes={"confidence": 0.0}, buttons={"tracked": False})
        if now - sample.t > self.max_age_s and sample.engaged:
            return replace(sample, engaged=False, buttons={"tracked": False})
        return sample

    # --------------------------------------------------------------------------------- capture thread
    def _run(self, capture: Any, landmarker: Any) -> None:
        cv2 = _cv2()
        is_file = self.is_file
        fps = capture.get(cv2.CAP_PROP_FPS) if is_file else 0.0
        started = time.monotonic()
        last_ms, failed = -1, 0
        try:
            while not self._stop.is_set():
                ok, frame = capture.read()
                t = self.clock()
                if not ok:
                    failed += 1
                    if is_file or failed >= _MAX_FAILED_READS:
                        self._set_ended("the video ended" if is_file else
                                         f"camera {self.source} stopped giving frames: check its cable, then "
                                         "connect again")
                        return
                    self._stop.wait(_FAILED_READ_WAIT_S)
                    continue
                failed = 0
                position_s = capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3 if is_file else None
                # VIDEO mode needs strictly increasing timestamps [ms]: the file's position, or capture time.
                last_ms = max(last_ms + 1, round(1e3 * (position_s if position_s is not None else t)))
                self._process(landmarker, frame, t, last_ms, position_s)
                if is_file and self.pace_video and fps > 0:
                    self._stop.wait(max(0.0, started + self.frames / fps - time.monotonic()))
        except Exception as exc:  # a failure must leave a disengaged device that says why, not a stale hand
            self._set_ended(f"hand tracking failed: {exc!r}; disconnect and connect again")
        finally:
            with self._lock:
                if self._sample is not None:
                    self._sample = replace(self._sample, engaged=False, buttons={"tracked": False})
            capture.release()
            landmarker.close()

    def _process(self, landmarker: Any, frame: np.ndarray, t: float, timestamp_ms: int,
                 device_time: float | None) -> None:
        start = time.perf_counter()
        result = detect(landmarker, frame, timestamp_ms, self.mirrored)
        self.latency_ms.append(1e3 * (time.perf_counter() - start))
        sample = sample_from_result(result, t, self.handedness, self.min_confidence, device_time)
        with self._lock:
            self._sample = sample
            if sample.engaged:
                self._meter.tick(t)
        self.frames += 1

    def _set_ended(self, reason: str) -> None:
        with self._lock:
            self._ended = reason
