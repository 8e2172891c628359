"""Device benchmark: the latency our device code adds between an SDK having a sample and read() returning it.

    python benchmarks/devices.py [--quick]

Progress goes to stderr; the last stdout line is one JSON object:
{"gamepad": {...}, "vive": {...}, "openxr": {...}, "webcam_hands": {...}, "keyboard": {...}, "replay": {...},
 "machine": {...}}.
Every backend gives p50_ms, p99_ms, max_ms and n (latency in milliseconds over n samples), the peer's figures
as peer_p50_ms, peer_p99_ms, peer_max_ms where there is a peer, load_avg (1-minute load average when the
backend started and ended), and full_gc / full_gc_max_ms: the full (generation 2) garbage collections during
the backend's run and the longest one (a pause of every Python thread, whichever thread triggered it). A
backend whose package or data is missing is {"skipped": "<why>"}.

Only the SDK is replaced, and only where there is no hardware: the fakes answer at the SDK call boundary
by copying prepared state (a C call's cost, about nothing), everything above them is the app's code.

* gamepad: a FIFO stands in for /dev/input/eventN; `inputs.GamePad` (its own parsing) reads it, as in
  tests/test_gamepad.py. At t0 (time.monotonic) one kernel report (ABS_X, then SYN_REPORT, stamped with a
  sequence number) is written; read() is polled until the sample carries that report: latency = the time
  right after the first read that shows it - t0. This covers the reader thread waking from select(),
  inputs' parsing, our normalisation and commit, and the hand-over to the reading thread. Peer: inputs' own
  event loop (`for events in pad`) on a thread over a FIFO of its own: the time its iteration returns the
  SYN_REPORT event object - t0. Reports are 1-3 ms apart; ours and the peer take turns in blocks.
  tight_poll repeats a quarter of the reports with a waiting loop that never sleeps (see Polling).
* vive, openxr: the SDK is polled inside read(), so the latency is read()'s wall time (perf_counter_ns
  around the call; p99_cpu_ms and max_cpu_ms from thread_time_ns: a wall time far above its CPU time is
  the thread waiting for a core, not our code). openvr: the real module (structs, constants) with init()
  returning a stand-in IVRSystem (one controller tracked, grip held, trigger half way). pyopenxr: the real
  module (structs, enums, exceptions, check_result) with the runtime functions replaced (a focused session,
  an Index controller tracked, squeeze and trigger pressed; in hand mode 26 valid joints written by an
  xrLocateHandJointsEXT callback of the real function-pointer type). Peer: the same SDK calls alone, with
  their arguments built beforehand, timed the same way; overhead_p50_ms = p50 - peer_p50.
* webcam_hands: WebcamHands on the shared video (/work/shared/data/hands/human_hand_video.mp4, else a
  synthetic video with no hand: then tracking is not measured, only the cost of looking), paced at the
  video's frame rate like a camera, with the model built from the mediapipe wheel. Latency = the time the
  sample is first seen by read() - its `t` (the capture stamp, right after OpenCV returns the frame); read()
  is polled every POLL_WEBCAM_S (this resolution is included). landmarker_p50_ms is the device's own
  per-frame detection time (colour conversion + detect_for_video, `WebcamHands.latency_ms`), added_* =
  latency - that, frame by frame. Peer: a raw MediaPipe loop on the same frames and options (VIDEO mode,
  2 hands), paced alike: colour conversion + mp.Image + detect_for_video per frame; p50_over_peer_ms =
  p50 - peer_p50. tracked_frames: frames with the right hand engaged; missed_frames: frames detected but
  never seen by read() (the poller fell behind).
* keyboard: press() at t0, then read(): latency = the time read() returns the key - t0 (one thread).
* replay: a 100 Hz trace replayed in real time: the poller wakes 0.5 ms before a sample's scheduled time
  (first read + its offset) and polls read(): latency = the time the first read showing it returns - the
  scheduled time. Samples where the poller itself woke after the scheduled time are not counted
  (poller_late).
Polling: read() is called in a loop with time.sleep(0) between calls, which lets a reader thread that is
waiting for the interpreter lock take it; a loop that never sleeps keeps the lock until the interpreter forces
a switch (sys.getswitchinterval(), 5 ms by default), which is what tight_poll shows. --quick is a smoke test,
not for figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

# Run as a script, this file's folder leads sys.path; the packages live in the repository root.
_ROOT = Path(__file__).resolve().parent.parent
if sys.path and Path(sys.path[0] or ".").resolve() == _ROOT / "benchmarks":
    sys.path[0] = str(_ROOT)

import argparse  # noqa: E402
import contextlib  # noqa: E402
import ctypes  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.common import c_stdout_to_stderr, log  # noqa: E402
from devices.base import DeviceSample  # noqa: E402
from devices.gamepad import Gamepad  # noqa: E402
from devices.keyboard import KeyboardDevice  # noqa: E402
from devices.openxr import OpenXRController  # noqa: E402
from devices.trace import ReplayDevice, TraceRecorder  # noqa: E402
from devices.vive import ViveController  # noqa: E402
from devices.webcam_hands import WebcamHands  # noqa: E402
from teleop.errors import DeviceError  # noqa: E402

SHARED_VIDEO = Path("/work/shared/data/hands/human_hand_video.mp4")
CONTROL_HZ = 20.0  # the session's default control rate
POLL_WEBCAM_S = 2e-4  # read() poll period while waiting for a webcam frame [s]
REPLAY_HZ = 100.0
REPLAY_LEAD_S = 5e-4  # the replay poller wakes this long before a sample is due [s]
TIMEOUT_S = 2.0  # a sample not seen within this is an error [s]
T = TypeVar("T")


@dataclass(frozen=True)
class BenchConfig:
    """Sample counts per backend; `quick` shrinks them for a smoke test."""

    gamepad_reports: int = 2000
    sdk_reads: int = 20000
    keyboard_presses: int = 5000
    replay_samples: int = 1000
    webcam_frames: int | None = None  # None: the whole video
    rounds: int = 4  # ours and the peer take turns this many times

    @classmethod
    def quick(cls) -> BenchConfig:
        return cls(gamepad_reports=100, sdk_reads=500, keyboard_presses=200, replay_samples=60, webcam_frames=20,
                   rounds=2)






# ------------------------------------------------------------------------------------------------ measuring
def summary(latencies_s: Sequence[float], prefix: str = "") -> dict[str, float]:
    """p50 / p99 / max of latencies [s] as milliseconds, keys prefixed with `prefix`."""
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    return {f"{prefix}p50_ms": round(float(np.percentile(ms, 50)), 4),
            f"{prefix}p99_ms": round(float(np.percentile(ms, 99)), 4),
            f"{prefix}max_ms": round(float(ms.max()), 4)}


def poll(read: Callable[[], T], shows: Callable[[T], bool], sleep_s: float | None = 0.0) -> tuple[T, float]:
    """Call read() until shows(its result): that result and the monotonic time right after that read [s].

    Between reads time.sleep(sleep_s); None never sleeps (the loop keeps the GIL for its switch interval).
    """
    end = time.monotonic() + TIMEOUT_S
    while True:
        value = read()
        now = time.monotonic()
        if shows(value):
            return value, now
        if now > end:
            raise TimeoutError(f"no sample showed the change within {TIMEOUT_S} s")
        if sleep_s is not None:
            time.sleep(sleep_s)


def sleep_until(t: float) -> None:
    """Sleep until monotonic time t [s] (returns at once if it has passed)."""
    wait = t - time.monotonic()
    if wait > 0:
        time.sleep(wait)


class FullCollections:
    """The full (generation 2) garbage collections during a `with` block, in any thread: their durations [s]."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._start = 0.0

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif info["generation"] == 2:
            self.durations.append(time.perf_counter() - self._start)

    def figures(self) -> dict[str, float]:
        longest = max(self.durations, default=0.0)
        return {"full_gc": len(self.durations), "full_gc_max_ms": round(longest * 1e3, 3)}


def blocks(total: int, rounds: int) -> list[int]:
    """`total` split into `rounds` near-equal block sizes."""
    return [total // rounds + (1 if k < total % rounds else 0) for k in range(rounds)]


def timed_calls(call: Callable[[], object], n: int) -> tuple[list[float], list[float]]:
    """Wall and CPU time [s] of n calls of call(), one perf_counter_ns / thread_time_ns pair each."""
    wall, cpu = [], []
    for _ in range(n):
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        call()
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        wall.append((t1 - t0) * 1e-9)
        cpu.append((c1 - c0) * 1e-9)
    return wall, cpu


def ours_against_peer(ours: Callable[[], object], peer: Callable[[], object], n: int, rounds: int
                      ) -> dict[str, float]:
    """Wall times of read() (ours) and of the bare SDK calls (peer), taking turns in `rounds` blocks."""
    for call in (ours, peer):  # warm up: first calls allocate and fill caches
        timed_calls(call, 50)
    wall, cpu, peer_wall = [], [], []
    for size in blocks(n, rounds):
        w, c = timed_calls(ours, size)
        wall += w
        cpu += c
        peer_wall += timed_calls(peer, size)[0]
    cpu_ms = np.asarray(cpu) * 1e3
    figures = {**summary(wall), "p99_cpu_ms": round(float(np.percentile(cpu_ms, 99)), 4),
               "max_cpu_ms": round(float(cpu_ms.max()), 4), "n": n, **summary(peer_wall, "peer_")}
    figures["overhead_p50_ms"] = round(figures["p50_ms"] - figures["peer_p50_ms"], 4)
    figures["ratio_p50"] = round(figures["p50_ms"] / figures["peer_p50_ms"], 2)
    return figures


# ------------------------------------------------------------------------------------------------ gamepad
EVENT = struct.Struct("llHHi")  # struct input_event on x86_64: timeval (2 longs), type, code, value
EV_SYN, EV_ABS, SYN_REPORT, ABS_X = 0x00, 0x03, 0, 0x00
EPOCH_S = 1_700_000_000  # report k is stamped EPOCH_S + k [s], so a sample names the report it carries
STOP_SEQ = 10**6
DS4_NAME = "Sony Interactive Entertainment Wireless Controller"


def evdev_report(seq: int) -> bytes:
    """One kernel report: ABS_X to 0 or 255 (alternating), then SYN_REPORT, both stamped EPOCH_S + seq."""
    sec = EPOCH_S + seq
    return EVENT.pack(sec, 0, EV_ABS, ABS_X, 255 * (seq % 2)) + EVENT.pack(sec, 0, EV_SYN, SYN_REPORT, 0)


def fifo_pad(inputs: types.ModuleType, path: str) -> Any:
    """An inputs.GamePad reading the FIFO `path`; only the sysfs name lookup is replaced (a FIFO has none)."""

    class FifoPad(inputs.GamePad):  # type: ignore[misc,name-defined]
        def _set_name(self) -> None:
            self.name = DS4_NAME

    return FifoPad(inputs.devices, "/dev/input/by-id/usb-Bench_Pad-event-joystick", char_path_override=path)


def make_fifo(path: Path) -> int:
    """Create a FIFO; returns a write fd (O_RDWR: never blocks, unlike O_WRONLY before a reader exists)."""
    os.mkfifo(path)
    return os.open(path, os.O_RDWR)


class InputsLoop:
    """The peer: inputs' own iteration over a pad on a thread, noting when each SYN_REPORT object is returned."""

    def __init__(self, pad: Any) -> None:
        self.pad = pad
        self.seen: dict[float, float] = {}  # report stamp [s] -> monotonic time inputs returned it [s]
        self.thread = threading.Thread(target=self._run, name="inputs-loop", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for events in self.pad:  # GamePad.__iter__: blocks on the file, yields parsed events
            now = time.monotonic()
            for event in events:
                if event.code == "SYN_REPORT":
                    self.seen[event.timestamp] = now
                    if event.timestamp == EPOCH_S + STOP_SEQ:
                        return


def report_latencies(fd: int, seqs: Sequence[int], seen_at: Callable[[int], float | None],
                     rng: random.Random, sleep_s: float | None) -> list[float]:
    """Write each report at t0 and wait for it; seen_at(seq) -> the time it was seen or None [s]."""
    out: list[float] = []
    for seq in seqs:
        data = evdev_report(seq)
        t0 = time.monotonic()
        os.write(fd, data)
        seen, _ = poll(functools.partial(seen_at, seq), lambda t: t is not None, sleep_s)
        out.append(seen - t0)  # type: ignore[operator]
        time.sleep(rng.uniform(1e-3, 3e-3))
    return out


def ours_seen_at(device: Gamepad) -> Callable[[int], float | None]:
    """seen_at for our device: reads once; the time right after the read if it carries report `seq`."""

    def seen(seq: int) -> float | None:
        sample = device.read()
        now = time.monotonic()
        return now if sample.device_time == float(EPOCH_S + seq) else None

    return seen


class PadBench:
    """Our Gamepad and inputs' own loop, each on a FIFO of its own; reports are numbered across both."""

    def __init__(self, work: Path) -> None:
        inputs = importlib.import_module("inputs")
        self.ours_fd, self.peer_fd = make_fifo(work / "event-ours"), make_fifo(work / "event-peer")
        self.device = Gamepad(open_pad=lambda: fifo_pad(inputs, str(work / "event-ours")))
        self.device.connect()
        self.peer = InputsLoop(fifo_pad(inputs, str(work / "event-peer")))
        self.rng = random.Random(0)
        self.seq = 1
        self.sent_to_ours = 0

    def ours(self, n: int, sleep_s: float | None = 0.0) -> list[float]:
        """Latencies [s] of n reports through our device, read() polled with sleep(sleep_s) (None: never)."""
        self.sent_to_ours += n
        return self._reports(self.ours_fd, n, ours_seen_at(self.device), sleep_s)

    def theirs(self, n: int, sleep_s: float | None = 0.0) -> list[float]:
        """Latencies [s] of n reports through inputs' own loop, waited for alike."""
        return self._reports(self.peer_fd, n, lambda seq: self.peer.seen.get(float(EPOCH_S + seq)), sleep_s)

    def _reports(self, fd: int, n: int, seen_at: Callable[[int], float | None], sleep_s: float | None
                 ) -> list[float]:
        out = report_latencies(fd, range(self.seq, self.seq + n), seen_at, self.rng, sleep_s)
        self.seq += n
        return out

    def close(self) -> None:
        os.write(self.peer_fd, evdev_report(STOP_SEQ))
        self.peer.thread.join(timeout=1.0)
        self.device.disconnect()
        os.close(self.ours_fd)
        os.close(self.peer_fd)


def bench_gamepad(cfg: BenchConfig, work: Path) -> dict[str, Any]:
    bench = PadBench(work)
    ours: list[float] = []
    theirs: list[float] = []
    try:
        bench.ours(20)  # warm up
        bench.theirs(20)
        for size in blocks(cfg.gamepad_reports, cfg.rounds):
            ours += bench.ours(size)
            theirs += bench.theirs(size)
        tight = bench.ours(cfg.gamepad_reports // 4, None)  # a waiting loop that never lets go of the GIL
        tight_peer = bench.theirs(cfg.gamepad_reports // 4, None)
        assert bench.device.layout.name == "dualshock4" and bench.device.events == 2 * bench.sent_to_ours
    finally:
        bench.close()
    figures: dict[str, Any] = {**summary(ours), "n": len(ours), **summary(theirs, "peer_")}
    figures["ratio_p50"] = round(figures["p50_ms"] / figures["peer_p50_ms"], 2)
    figures["ratio_p99"] = round(figures["p99_ms"] / figures["peer_p99_ms"], 2)
    figures["tight_poll"] = {**summary(tight), **summary(tight_peer, "peer_"), "n": len(tight)}
    return figures


# ------------------------------------------------------------------------------------------------ vive
class FakeIVRSystem:
    """IVRSystem with one HMD (index 0) and one tracked right controller (index 1), grip held, trigger 0.5.

    Each call copies prepared state, as the C runtime does: its cost is about nothing.
    """

    CONTROLLER = 1

    def __init__(self, vr: Any) -> None:
        self.vr = vr
        self.poses = (vr.TrackedDevicePose_t * vr.k_unMaxTrackedDeviceCount)()
        for index in (0, self.CONTROLLER):
            pose = self.poses[index]
            pose.bDeviceIsConnected = pose.bPoseIsValid = 1
            pose.eTrackingResult = vr.TrackingResult_Running_OK
            for row, values in enumerate(((1, 0, 0, 0.1), (0, 1, 0, 1.2), (0, 0, 1, -0.3))):
                for col, value in enumerate(values):
                    pose.mDeviceToAbsoluteTracking.m[row][col] = value
        self.size = ctypes.sizeof(self.poses)
        self.state = vr.VRControllerState_t()
        self.state.unPacketNum = 1
        self.state.ulButtonPressed = 1 << vr.k_EButton_Grip
        self.state.rAxis[1].x = 0.5
        self.classes = {0: vr.TrackedDeviceClass_HMD, self.CONTROLLER: vr.TrackedDeviceClass_Controller}

    def getDeviceToAbsoluteTrackingPose(self, origin: int, predictedSecondsToPhotonsFromNow: float,  # noqa: N802
                                        trackedDevicePoseArray: Any) -> Any:  # noqa: N803
        ctypes.memmove(trackedDevicePoseArray, self.poses, self.size)
        return trackedDevicePoseArray

    def getTrackedDeviceClass(self, deviceIndex: int) -> int:  # noqa: N802, N803
        return self.classes.get(deviceIndex, self.vr.TrackedDeviceClass_Invalid)

    def getControllerRoleForTrackedDeviceIndex(self, deviceIndex: int) -> int:  # noqa: N802, N803
        return self.vr.TrackedControllerRole_RightHand if deviceIndex == self.CONTROLLER else \
            self.vr.TrackedControllerRole_Invalid

    def getControllerState(self, controllerDeviceIndex: int) -> tuple[bool, Any]:  # noqa: N802, N803
        return controllerDeviceIndex == self.CONTROLLER, self.state


def fake_openvr(real: types.ModuleType) -> tuple[types.ModuleType, FakeIVRSystem]:
    """A copy of the real openvr module whose init() returns a FakeIVRSystem (SteamVR is the only fake)."""
    vr = types.ModuleType("openvr")
    vr.__dict__.update(vars(real))
    system = FakeIVRSystem(real)
    vr.init = lambda applicationType, pStartupInfo=None: system  # type: ignore[attr-defined]  # noqa: N803
    vr.shutdown = lambda: None  # type: ignore[attr-defined]
    return vr, system


def bench_vive(cfg: BenchConfig) -> dict[str, Any]:
    vr, system = fake_openvr(importlib.import_module("openvr"))
    device = ViveController(openvr_module=vr)
    with device:
        sample = device.read()
        assert sample.engaged and sample.T_world_device is not None and sample.gripper == 0.5
        poses = (vr.TrackedDevicePose_t * vr.k_unMaxTrackedDeviceCount)()
        index = FakeIVRSystem.CONTROLLER

        def sdk_calls() -> None:  # the IVRSystem calls one read() makes
            system.getDeviceToAbsoluteTrackingPose(vr.TrackingUniverseStanding, 0.0, poses)
            system.getControllerRoleForTrackedDeviceIndex(index)
            system.getControllerState(index)

        return ours_against_peer(device.read, sdk_calls, cfg.sdk_reads, cfg.rounds)


# ------------------------------------------------------------------------------------------------ openxr
INDEX_PROFILE = "/interaction_profiles/valve/index_controller"


class FakeXrRuntime:
    """The OpenXR runtime behind pyopenxr's functions: a focused session, an Index controller tracked with
    squeeze and trigger pressed, a right hand with 26 valid joints. Answers copy prepared structs."""

    def __init__(self, xr: types.ModuleType) -> None:
        self.xr = xr
        self.events = [xr.SessionState.READY, xr.SessionState.FOCUSED]
        self.paths: dict[str, int] = {}
        flags = xr.SpaceLocationFlags
        tracked = (flags.POSITION_VALID_BIT | flags.ORIENTATION_VALID_BIT | flags.POSITION_TRACKED_BIT
                   | flags.ORIENTATION_TRACKED_BIT)
        identity = xr.Quaternionf(x=0.0, y=0.0, z=0.0, w=1.0)
        pose = xr.Posef(orientation=identity, position=xr.Vector3f(x=0.1, y=1.2, z=-0.3))
        self.location = xr.SpaceLocation(location_flags=tracked, pose=pose)
        self.pose_state = xr.ActionStatePose(is_active=1)
        self.float_state = xr.ActionStateFloat(current_state=1.0, is_active=1)
        self.bool_state = xr.ActionStateBoolean(current_state=0, is_active=1)
        self.vector_state = xr.ActionStateVector2f(current_state=xr.Vector2f(x=0.1, y=-0.2), is_active=1)
        self.joints = (xr.HandJointLocationEXT * 26)()
        for j in range(26):
            self.joints[j].location_flags = tracked
            self.joints[j].pose = xr.Posef(orientation=identity,
                                           position=xr.Vector3f(x=0.01 * j, y=1.1 + 0.002 * j, z=-0.3))
        self.locate = xr.PFN_xrLocateHandJointsEXT(self._locate_hand_joints)

    def _locate_hand_joints(self, tracker: Any, info: Any, locations: Any) -> int:
        joints = locations.contents
        joints.is_active = 1
        ctypes.memmove(joints._joint_locations, self.joints, ctypes.sizeof(self.joints))
        return 0

    def module(self) -> types.ModuleType:
        """A copy of the real `xr` module with the runtime's functions replaced by this runtime's."""
        xr = types.ModuleType("xr")
        xr.__dict__.update(vars(self.xr))
        for name in dir(self):
            if name.startswith("xr_"):
                setattr(xr, name[3:], getattr(self, name))
        for name in ("create_action_set", "create_action", "create_action_space", "create_reference_space",
                     "create_hand_tracker_ext"):
            setattr(xr, name, self._handle)
        for name in ("suggest_interaction_profile_bindings", "attach_session_action_sets", "begin_session",
                     "end_session", "sync_actions", "destroy_hand_tracker_ext", "destroy_space", "destroy_session",
                     "destroy_action_set", "destroy_instance"):
            setattr(xr, name, self._nothing)
        return xr

    def _handle(self, *args: Any) -> None:
        return None  # a null handle: the app only passes handles back

    def _nothing(self, *args: Any) -> None:
        return None

    def xr_enumerate_instance_extension_properties(self, layer_name: str | None = None) -> list[Any]:
        names = (self.xr.MND_HEADLESS_EXTENSION_NAME, self.xr.KHR_CONVERT_TIMESPEC_TIME_EXTENSION_NAME,
                 self.xr.EXT_HAND_TRACKING_EXTENSION_NAME)
        return [types.SimpleNamespace(extension_name=name.encode()) for name in names]

    def xr_create_instance(self, create_info: Any) -> Any:
        return self.xr.Instance()

    def xr_get_system(self, instance: Any, get_info: Any) -> int:
        return 1

    def xr_create_session(self, instance: Any, create_info: Any) -> Any:
        return self.xr.Session()

    def xr_enumerate_reference_spaces(self, session: Any) -> list[int]:
        return [int(self.xr.ReferenceSpaceType.LOCAL), int(self.xr.ReferenceSpaceType.STAGE)]

    def xr_string_to_path(self, instance: Any, path_string: str) -> int:
        return self.paths.setdefault(path_string, len(self.paths) + 1)

    def xr_poll_event(self, instance: Any) -> Any:
        if not self.events:
            raise self.xr.EventUnavailable()
        buffer = self.xr.EventDataBuffer()
        event = ctypes.cast(ctypes.byref(buffer), ctypes.POINTER(self.xr.EventDataSessionStateChanged)).contents
        event.type = self.xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED
        event.state = self.events.pop(0)
        return buffer

    def xr_convert_timespec_time_to_time_khr(self, instance: Any, timespec_time: Any) -> Any:
        return self.xr.Time(timespec_time.tv_sec * 1_000_000_000 + timespec_time.tv_nsec)

    def xr_get_action_state_pose(self, session: Any, get_info: Any) -> Any:
        return self.pose_state

    def xr_get_action_state_float(self, session: Any, get_info: Any) -> Any:
        return self.float_state

    def xr_get_action_state_boolean(self, session: Any, get_info: Any) -> Any:
        return self.bool_state

    def xr_get_action_state_vector2f(self, session: Any, get_info: Any) -> Any:
        return self.vector_state

    def xr_locate_space(self, space: Any, base_space: Any, time: Any) -> Any:
        return self.location

    def xr_get_current_interaction_profile(self, session: Any, top_level_user_path: int) -> Any:
        return types.SimpleNamespace(interaction_profile=self.xr_string_to_path(None, INDEX_PROFILE))

    def xr_path_to_string(self, instance: Any, path: int) -> str:
        return next(text for text, value in self.paths.items() if value == path)

    def xr_get_instance_proc_addr(self, instance: Any, name: str) -> Any:
        return ctypes.cast(self.locate, self.xr.PFN_xrVoidFunction)


def controller_sdk_calls(xr: types.ModuleType) -> Callable[[], None]:
    """The runtime calls one controller read() makes, with their arguments built once."""
    instance, session, space = xr.Instance(), xr.Session(), xr.Space()
    info = xr.ActionStateGetInfo(action=xr.Action(), subaction_path=1)
    sync = xr.ActionsSyncInfo(active_action_sets=[xr.ActiveActionSet(action_set=xr.ActionSet(), subaction_path=0)])
    when = xr.timespec(tv_sec=1, tv_nsec=0)

    def calls() -> None:
        with contextlib.suppress(xr.EventUnavailable):
            xr.poll_event(instance)
        xr_time = xr.convert_timespec_time_to_time_khr(instance, when)
        xr.sync_actions(session, sync)
        xr.get_action_state_pose(session, info)
        xr.get_action_state_float(session, info)
        xr.get_action_state_float(session, info)
        xr.get_action_state_vector2f(session, info)
        xr.get_action_state_boolean(session, info)
        xr.get_action_state_boolean(session, info)
        xr.locate_space(space, space, xr_time)

    return calls


def hand_sdk_calls(xr: types.ModuleType) -> Callable[[], None]:
    """The runtime calls one hand read() makes (xrLocateHandJointsEXT through its function pointer)."""
    instance = xr.Instance()
    locate = ctypes.cast(xr.get_instance_proc_addr(instance, "xrLocateHandJointsEXT"), xr.PFN_xrLocateHandJointsEXT)
    locations = xr.HandJointLocationsEXT(joint_locations=[xr.HandJointLocationEXT() for _ in range(26)])
    info = xr.HandJointsLocateInfoEXT(base_space=xr.Space(), time=1)
    tracker, when = xr.HandTrackerEXT(), xr.timespec(tv_sec=1, tv_nsec=0)

    def calls() -> None:
        with contextlib.suppress(xr.EventUnavailable):
            xr.poll_event(instance)
        xr.convert_timespec_time_to_time_khr(instance, when)
        xr.check_result(xr.Result(locate(tracker, info, locations)))

    return calls


def bench_openxr_mode(cfg: BenchConfig, mode: str) -> dict[str, Any]:
    real = importlib.import_module("xr")
    xr = FakeXrRuntime(real).module()
    with OpenXRController(mode=mode, xr_module=xr) as device:
        sample = device.read()
        assert sample.engaged and sample.T_world_device is not None, device.status().reason
        assert mode == "controller" or sample.keypoints is not None
        peer = controller_sdk_calls(xr) if mode == "controller" else hand_sdk_calls(xr)
        return ours_against_peer(device.read, peer, cfg.sdk_reads, cfg.rounds)


def bench_openxr(cfg: BenchConfig) -> dict[str, Any]:
    figures = bench_openxr_mode(cfg, "controller")
    log(f"  controller mode: {brief(figures)}")
    figures["hand"] = bench_openxr_mode(cfg, "hand")
    log(f"  hand mode: {brief(figures['hand'])}")
    return figures


# ------------------------------------------------------------------------------------------------ keyboard
def bench_keyboard(cfg: BenchConfig) -> dict[str, Any]:
    device = KeyboardDevice()
    latencies = []
    with device:
        for k in range(cfg.keyboard_presses + 50):
            key, axis, sign = ("w", "forward", 1.0) if k % 2 else ("s", "forward", -1.0)
            t0 = time.monotonic()
            device.press(key)
            sample = device.read()
            t1 = time.monotonic()
            assert sample.axes[axis] == sign
            device.release(key)
            device.read()  # clears the tap
            if k >= 50:  # the first presses warm up
                latencies.append(t1 - t0)
    return {**summary(latencies), "n": len(latencies)}


# ------------------------------------------------------------------------------------------------ replay
def write_trace(path: Path, n: int) -> list[float]:
    """A REPLAY_HZ trace of n samples (a controller pose, grip, trigger); returns the recorded times [s]."""
    times = [1000.0 + k / REPLAY_HZ for k in range(n)]
    T_world_device = np.eye(4)
    with TraceRecorder(path, device="vive") as recorder:
        for k, t in enumerate(times):
            T_world_device[:3, 3] = (0.1 + 1e-3 * k, 1.2, -0.3)
            recorder.append(DeviceSample(t=t, engaged=True, T_world_device=T_world_device.copy(),
                                         gripper=(k % 10) / 10, buttons={"grip": True, "trigger": False}))
    return times


def recorded_at(t: float) -> Callable[[DeviceSample], bool]:
    """Whether a replayed sample is the one recorded at t [s]."""
    return lambda sample: sample.device_time == t


def bench_replay(cfg: BenchConfig, work: Path) -> dict[str, Any]:
    times = write_trace(work / "trace.jsonl", cfg.replay_samples)
    latencies, late = [], 0
    with ReplayDevice(work / "trace.jsonl") as device:
        t_start = device.read().t  # the first read starts the replay clock
        for t in times[1:]:
            due = t_start + (t - times[0])
            sleep_until(due - REPLAY_LEAD_S)
            woke = time.monotonic()
            _, seen = poll(device.read, recorded_at(t))
            if woke > due:
                late += 1
            else:
                latencies.append(seen - due)
    return {**summary(latencies), "n": len(latencies), "poller_late": late, "rate_hz": REPLAY_HZ}


# ------------------------------------------------------------------------------------------------ webcam hands
def synthetic_video(path: Path, frames: int = 90, fps: float = 30.0) -> Path:
    """A 640x480 video of a moving gradient (no hand) written with OpenCV."""
    cv2 = importlib.import_module("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    if not writer.isOpened():
        raise DeviceError("OpenCV cannot write an mp4 video here")
    ramp = np.linspace(0, 255, 640, dtype=np.float64)
    for k in range(frames):
        row = ((ramp + 4 * k) % 256).astype(np.uint8)
        writer.write(np.repeat(np.tile(row, (480, 1))[:, :, None], 3, axis=2))
    writer.release()
    return path


def video_info(path: Path) -> tuple[float, int, str]:
    """(fps, frame count, "WxH") of a video file."""
    cv2 = importlib.import_module("cv2")
    capture = cv2.VideoCapture(str(path))
    try:
        size = f"{int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
        return float(capture.get(cv2.CAP_PROP_FPS)), int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), size
    finally:
        capture.release()


def next_frame(device: WebcamHands, last: float | None) -> tuple[DeviceSample, float]:
    """Poll read() until it gives a frame other than `last` (by the file position in device_time)."""
    return poll(device.read, lambda s: s.device_time is not None and s.device_time != last, POLL_WEBCAM_S)


def webcam_ours(video: Path, model: Path, frames: int) -> dict[str, Any]:
    """WebcamHands on the video, paced like a camera: per frame seen, latency and landmarker time [s]."""
    device = WebcamHands(source=video, model=model, pace_video=True)
    latencies: list[float] = []
    landmarker: list[float] = []
    added: list[float] = []
    tracked = missed = 0
    detected, last = 0, None
    with device:
        while len(latencies) < frames:
            sample, seen = next_frame(device, last)
            done = len(device.latency_ms)  # frames detected so far (the deque holds 1000)
            missed += max(0, done - detected - 1)
            detected, last = done, sample.device_time
            latencies.append(seen - sample.t)
            landmarker.append(device.latency_ms[-1] * 1e-3)  # this frame's: the next is a frame period away
            added.append(latencies[-1] - landmarker[-1])
            tracked += sample.engaged
    return {**summary(latencies), "n": len(latencies), **summary(landmarker, "landmarker_"),
            **summary(added, "added_"), "tracked_frames": tracked, "missed_frames": missed}


def webcam_peer(video: Path, model: Path, frames: int, fps: float) -> dict[str, Any]:
    """A raw MediaPipe loop on the same frames and options, paced at `fps`: per-frame conversion + detection."""
    cv2, mp = importlib.import_module("cv2"), importlib.import_module("mediapipe")
    vision = mp.tasks.vision
    options = vision.HandLandmarkerOptions(base_options=mp.tasks.BaseOptions(model_asset_path=str(model)),
                                           running_mode=vision.RunningMode.VIDEO, num_hands=2,
                                           min_hand_detection_confidence=0.5)
    capture = cv2.VideoCapture(str(video))
    times, hands = [], 0
    with vision.HandLandmarker.create_from_options(options) as landmarker:
        start = time.monotonic()
        for k in range(frames):
            ok, frame = capture.read()
            if not ok:
                break
            t0 = time.perf_counter()
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            result = landmarker.detect_for_video(image, round(1e3 * k / fps))
            times.append(time.perf_counter() - t0)
            hands += bool(result.hand_world_landmarks)
            sleep_until(start + (k + 1) / fps)
    capture.release()
    return {**summary(times, "peer_"), "peer_frames_with_a_hand": hands}


def webcam_inputs(work: Path) -> tuple[Path, Path, bool]:
    """(video, model, real video?); raises DeviceError or ImportError when they cannot be had."""
    for module in ("cv2", "mediapipe"):
        importlib.import_module(module)
    from devices.hand_model import build_task_from_mediapipe_wheel

    model = build_task_from_mediapipe_wheel(work / "hand_landmarker.task")
    if SHARED_VIDEO.is_file():
        return SHARED_VIDEO, model, True
    return synthetic_video(work / "synthetic.mp4"), model, False


def bench_webcam(cfg: BenchConfig, work: Path) -> dict[str, Any]:
    try:
        video, model, real = webcam_inputs(work)
    except (ImportError, DeviceError) as exc:
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    fps, count, size = video_info(video)
    frames = min(cfg.webcam_frames or count, count - 2, 1000)  # the last frames may not decode
    figures = webcam_ours(video, model, frames)
    figures.update(webcam_peer(video, model, frames, fps))
    figures["p50_over_peer_ms"] = round(figures["p50_ms"] - figures["peer_p50_ms"], 4)
    figures["video"] = f"{video.name}, {size} @ {fps:g} fps" if real else \
        f"synthetic {size} @ {fps:g} fps, no hand: tracking was not measured, only detection's cost"
    figures["poll_ms"] = POLL_WEBCAM_S * 1e3
    return figures


# ------------------------------------------------------------------------------------------------ running
def brief(figures: dict[str, Any]) -> str:
    keys = ("p50_ms", "p99_ms", "max_ms", "peer_p50_ms", "peer_p99_ms", "ratio_p50", "added_p50_ms", "skipped")
    return ", ".join(f"{k} {figures[k]}" for k in keys if k in figures)


BACKENDS: dict[str, Callable[[BenchConfig, Path], dict[str, Any]]] = {
    "gamepad": bench_gamepad,
    "vive": lambda cfg, work: bench_vive(cfg),
    "openxr": lambda cfg, work: bench_openxr(cfg),
    "webcam_hands": bench_webcam,
    "keyboard": lambda cfg, work: bench_keyboard(cfg),
    "replay": bench_replay,
}
PACKAGES = {"gamepad": "inputs", "vive": "openvr", "openxr": "xr", "webcam_hands": "mediapipe"}


def run_backend(name: str, cfg: BenchConfig, work: Path) -> dict[str, Any]:
    """One backend's figures, or {"skipped": why} if its package is missing."""
    package = PACKAGES.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        return {"skipped": f"the package {package!r} is not installed"}
    load = os.getloadavg()[0]
    folder = work / name
    folder.mkdir()
    with FullCollections() as collections:
        figures = BACKENDS[name](cfg, folder)
    figures.update(collections.figures())
    figures["load_avg"] = [round(load, 2), round(os.getloadavg()[0], 2)]
    return figures


def machine(started: float, load: float) -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"python": platform.python_version(), "cpu": cpu, "cpus": os.cpu_count(),
            "load_avg": [round(load, 2), round(os.getloadavg()[0], 2)], "wall_s": round(time.monotonic() - started, 1),
            "switch_interval_ms": sys.getswitchinterval() * 1e3, "control_period_ms": 1e3 / CONTROL_HZ}


def run(cfg: BenchConfig) -> dict[str, Any]:
    started, load = time.monotonic(), os.getloadavg()[0]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-devices-") as tmp:
        for name in BACKENDS:
            log(f"{name} ...")
            result[name] = run_backend(name, cfg, Path(tmp))
            log(f"  {brief(result[name])}")
    result["machine"] = machine(started, load)
    return result


def main(argv: Sequence[str] | None = None, emit: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs (a smoke test, not for figures)")
    args = parser.parse_args(argv)
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    with c_stdout_to_stderr():
        result = run(cfg)
    emit(json.dumps(result))


if __name__ == "__main__":
    main()
