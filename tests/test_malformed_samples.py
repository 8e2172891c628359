"""A device that sends garbage cannot stop the loop, move the robot, or reach the episode file.

A scripted device plays a list of samples, valid ones mixed with malformed ones of every kind (each field of
DeviceSample with a wrong type, shape or value, or no DeviceSample at all), through a real rig and a real
episode writer. Whatever the mix, the episode must finish, the command must not change on a malformed sample,
the episode must count exactly the malformed samples it was sent, and the recorded device arrays must keep
one shape and hold only what valid samples said.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from conftest import SimulatedClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from devices.base import Device, DeviceSample
from devices.human_hand import HumanHand
from devices.sample import validate_sample
from devices.trace import RecordingDevice, TraceRecorder, read_trace
from recorder.backend import open_episode
from teleop.errors import DeviceError, MalformedSampleError
from teleop.recording import record_episode
from teleop.rig import Rig, RigConfig, build_rig
from teleop.session import EpisodeResult, SessionConfig
from teleop.sim import SimConfig

FUTURE = object()  # stands for "t an hour after the device clock", made at read time

NAN_POSE = np.full((4, 4), np.nan)
INF_POSE = np.eye(4)
INF_POSE[1, 3] = np.inf
SHEARED = np.eye(4)
SHEARED[0, 1] = 0.5
LAST_ROW = np.eye(4)
LAST_ROW[3, 2] = 1.0
NAN_KEYPOINTS = np.zeros((21, 3))
NAN_KEYPOINTS[7, 1] = np.nan

MALFORMED: list[tuple[str, Any]] = [
    ("t", None), ("t", "1000.0"), ("t", float("nan")), ("t", float("inf")), ("t", np.array([1.0, 2.0])),
    ("t", True), ("t", 1 + 0j), ("t", [1000.0]), ("t", FUTURE),
    ("engaged", np.array([True, False])), ("engaged", "yes"), ("engaged", 1), ("engaged", None),
    ("engaged", np.array([True])), ("engaged", 1.0),
    ("T_world_device", np.eye(3)), ("T_world_device", np.eye(4)[:3]), ("T_world_device", np.zeros(16)),
    ("T_world_device", np.ones((4, 4, 1))), ("T_world_device", NAN_POSE), ("T_world_device", INF_POSE),
    ("T_world_device", np.full((4, 4), "a")), ("T_world_device", [[1.0, 0.0], [0.0]]),
    ("T_world_device", 2 * np.eye(4)), ("T_world_device", SHEARED), ("T_world_device", LAST_ROW),
    ("T_world_device", np.diag([-1.0, 1.0, 1.0, 1.0])), ("T_world_device", np.eye(4, dtype=bool)),
    ("T_world_device", "pose"), ("T_world_device", np.eye(4).astype(object)), ("T_world_device", np.eye(4) + 0j),
    ("keypoints", np.zeros((20, 3))), ("keypoints", np.zeros((21, 2))), ("keypoints", np.zeros(63)),
    ("keypoints", NAN_KEYPOINTS), ("keypoints", np.full((21, 3), -np.inf)), ("keypoints", "hand"),
    ("keypoints", np.ones((21, 3), dtype=bool)), ("keypoints", np.zeros((21, 3)).tolist()[:-1]),
    ("gripper", "0.5"), ("gripper", None), ("gripper", float("nan")), ("gripper", float("inf")), ("gripper", -0.5),
    ("gripper", 1.5), ("gripper", np.array([0.5, 0.5])), ("gripper", True), ("gripper", 0.5 + 0j), ("gripper", [0.5]),
    ("axes", None), ("axes", [0.1, 0.2]), ("axes", {"left_x": "a"}), ("axes", {"left_x": float("nan")}),
    ("axes", {"left_x": None}), ("axes", {1: 0.5}), ("axes", {"left_x": np.array([1.0, 2.0])}), ("axes", "axes"),
    ("axes", {"left_x": True}),
    ("buttons", None), ("buttons", {"grip": "yes"}), ("buttons", {"grip": np.array([True, False])}),
    ("buttons", ["grip"]), ("buttons", {"grip": None}), ("buttons", {"grip": 1}), ("buttons", {2: True}),
    ("device_time", "now"), ("device_time", float("nan")), ("device_time", float("inf")),
    ("device_time", np.array([1.0, 2.0])), ("device_time", True),
    ("sample", None), ("sample", {"t": 1000.0}), ("sample", "sample"),
]
FIELDS = {field for field, _ in MALFORMED}


@dataclasses.dataclass
class Good:
    """A valid sample, stamped at read time; values in the types a backend may use (NumPy scalars too)."""

    engaged: bool
    pose: np.ndarray | None
    keypoints: np.ndarray | None
    gripper: float
    axes: dict[str, float]
    buttons: dict[str, bool]
    device_time: float | None
    numpy_scalars: bool

    def sample(self, t: float) -> DeviceSample:
        wrap: Callable[[Any], Any] = np.float64 if self.numpy_scalars else (lambda x: x)
        engaged: Any = np.bool_(self.engaged) if self.numpy_scalars else self.engaged
        gripper: Any = np.float32(self.gripper) if self.numpy_scalars else self.gripper
        return DeviceSample(t=wrap(t), engaged=engaged, T_world_device=self.pose, keypoints=self.keypoints,
                            gripper=gripper, axes=dict(self.axes), buttons=dict(self.buttons),
                            device_time=self.device_time)


@dataclasses.dataclass
class Bad:
    good: Good
    field: str
    value: Any

    def sample(self, t: float) -> object:
        if self.field == "sample":
            return self.value
        value: Any = t + 3600.0 if self.value is FUTURE else self.value
        return dataclasses.replace(self.good.sample(t), **{self.field: value})


class ScriptedDevice(Device):
    """Returns the script's samples in order; `before_read` sees the command in force before each tick."""

    name = "scripted-test"

    def __init__(self, clock: Callable[[], float], script: list[Good | Bad], before_read: Callable[[], None]) -> None:
        super().__init__(clock)
        self.script, self.before_read, self.reads = script, before_read, 0

    def _read(self) -> DeviceSample:
        self.before_read()
        item = self.script[min(self.reads, len(self.script) - 1)]
        self.reads += 1
        return cast(DeviceSample, item.sample(self.clock()))  # malformed on purpose


def _pose(offset: list[float], rotvec: list[float], float32: bool) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = np.array([0.3, 0.0, 1.0]) + offset
    return T.astype(np.float32) if float32 else T


small = st.floats(-0.03, 0.03)
curls = st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5)
poses = st.builds(_pose, st.lists(small, min_size=3, max_size=3), st.lists(small, min_size=3, max_size=3),
                  st.booleans())
goods = st.builds(
    Good,
    engaged=st.booleans(),
    pose=st.none() | poses,
    keypoints=st.none() | curls.map(lambda c: HumanHand().keypoints(np.array(c))),
    gripper=st.floats(0.0, 1.0),
    axes=st.dictionaries(st.sampled_from(["left_x", "left_y", "confidence"]), st.floats(-1.0, 1.0), max_size=3),
    buttons=st.dictionaries(st.sampled_from(["grip", "trigger", "tracked"]), st.booleans(), max_size=3),
    device_time=st.none() | st.floats(0.0, 1e6),
    numpy_scalars=st.booleans(),
)
bads = st.builds(lambda good, bad: Bad(good, *bad), goods, st.sampled_from(MALFORMED))
scripts = st.lists(st.one_of(goods, bads), min_size=1, max_size=30)


def _record(good: Good, t: float, engaged: bool) -> dict[str, Any]:
    """What a valid sample must become in the episode file, worked out here rather than by the code under test."""
    return {"t": t, "engaged": engaged,
            "T_world_device": np.full((4, 4), np.nan) if good.pose is None else good.pose.astype(np.float64),
            "keypoints": np.full((21, 3), np.nan) if good.keypoints is None else good.keypoints,
            "gripper": np.float64(np.float32(good.gripper) if good.numpy_scalars else good.gripper)}


@pytest.fixture(scope="module", params=["franka", "allegro"])
def rig(request: pytest.FixtureRequest) -> Any:
    clock = SimulatedClock()
    config = RigConfig(robot=request.param, sim=SimConfig(cameras=()),
                       session=SessionConfig(rate_hz=20.0, max_duration_s=1000.0, stop_on_success_s=None))
    built = build_rig(config, clock=clock, sleep=clock.sleep)
    yield built
    built.close()


GOOD = Good(engaged=True, pose=_pose([0.0, 0.0, 0.0], [0.1, 0.0, 0.0], False), keypoints=HumanHand().keypoints(
    np.full(5, 0.3)), gripper=0.4, axes={"left_x": 0.5}, buttons={"grip": True}, device_time=3.5, numpy_scalars=True)


def test_the_catalogue_covers_every_field_of_a_sample() -> None:
    assert FIELDS == {f.name for f in dataclasses.fields(DeviceSample)} | {"sample"}


@pytest.mark.parametrize(("field", "value"), MALFORMED, ids=[f"{f}-{i}" for i, (f, _) in enumerate(MALFORMED)])
def test_each_malformed_field_is_refused_with_its_name(field: str, value: Any) -> None:
    with pytest.raises(MalformedSampleError) as caught:
        validate_sample(Bad(GOOD, field, value).sample(1000.0), now=1000.0)
    assert (field if field != "sample" else "not a DeviceSample") in str(caught.value)


def test_a_valid_sample_comes_back_in_plain_types_with_its_own_arrays() -> None:
    raw = GOOD.sample(1000.0)
    assert isinstance(raw.t, np.float64) and isinstance(raw.engaged, np.bool_)  # what a backend may return
    checked = validate_sample(raw, now=1000.0)
    assert type(checked.t) is float and type(checked.engaged) is bool and type(checked.gripper) is float
    assert checked.gripper == pytest.approx(0.4) and checked.axes == {"left_x": 0.5}
    assert checked.buttons == {"grip": True} and checked.device_time == 3.5
    assert checked.T_world_device is not raw.T_world_device and checked.keypoints is not raw.keypoints
    np.testing.assert_array_equal(checked.T_world_device, raw.T_world_device)
    assert validate_sample(DeviceSample(t=5), now=5.0) == DeviceSample(t=5.0)  # an int time is a time
    assert validate_sample(dataclasses.replace(raw, gripper=1.0 + 1e-9)).gripper == 1.0  # rounding is clipped


def test_device_read_refuses_a_malformed_sample_naming_the_device_and_goes_on_after_it() -> None:
    clock = SimulatedClock()
    script: list[Good | Bad] = [Bad(GOOD, "engaged", np.array([True, False])), GOOD]
    device = ScriptedDevice(clock, script, lambda: None)
    device.connect()
    with pytest.raises(MalformedSampleError, match=r"scripted-test sent a malformed sample: engaged must be a bool"):
        device.read()
    assert isinstance(MalformedSampleError("x"), DeviceError)
    assert device.status().last_sample_age_s is None  # the refused sample does not count as a sample
    assert device.read().engaged is True
    assert device.status().last_sample_age_s == 0.0


def test_a_trace_keeps_only_the_samples_that_passed(tmp_path: Path) -> None:
    clock = SimulatedClock()
    script: list[Good | Bad] = [GOOD, Bad(GOOD, "t", None), Bad(GOOD, "axes", None), GOOD]
    recorder = TraceRecorder(tmp_path / "t.trace.jsonl")
    device = RecordingDevice(ScriptedDevice(clock, script, lambda: None), recorder)
    device.connect()
    outcomes: list[bool | None] = []
    for _ in script:
        try:
            outcomes.append(device.read().engaged)
        except MalformedSampleError:
            outcomes.append(None)
        clock.sleep(0.05)
    recorder.close()
    assert outcomes == [True, None, None, True]
    assert [s.t for s in read_trace(tmp_path / "t.trace.jsonl").samples] == pytest.approx([1000.0, 1000.15])


def test_the_episode_result_names_what_the_robot_held_still_on() -> None:
    result = EpisodeResult(malformed_samples=3, last_malformed_sample="vive sent a malformed sample: t must be ...",
                           stale_samples=2)
    assert result.device_problems == ["3 malformed device samples refused (last: vive sent a malformed sample: t "
                                      "must be ...)", "2 stale device samples"]
    assert result.attrs()["malformed_samples"] == 3 and EpisodeResult().device_problems == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=scripts)
def test_malformed_samples_hold_the_robot_are_counted_and_never_recorded(
        rig: Rig, tmp_path_factory: pytest.TempPathFactory, script: list[Good | Bad]) -> None:
    before: list[np.ndarray] = []  # the command in force when each read happens, i.e. before that tick's
    device = ScriptedDevice(rig.session.clock, script, lambda: before.append(rig.controller.action.copy()))
    rig.device = device
    out = tmp_path_factory.mktemp("episodes")

    episode = record_episode(rig, out, seed=0, should_stop=lambda: device.reads >= len(script))

    result = episode.result
    assert result.steps == len(script)
    injected = sum(isinstance(item, Bad) for item in script)
    assert result.malformed_samples == injected
    assert result.stale_samples == 0 and result.device_errors == 0
    assert bool(result.last_malformed_sample) == (injected > 0)
    with open_episode(episode.path) as reader:
        assert reader.num_steps == len(script)
        assert reader.attrs["malformed_samples"] == injected
        actions, timestamps = reader.action, reader.timestamps
        device_rows = {key: reader.device(key) for key in reader.device_keys}
    n = len(script)
    assert {key: (a.shape, a.dtype) for key, a in device_rows.items()} == {
        "t": ((n,), np.float64), "engaged": ((n,), np.bool_), "T_world_device": ((n, 4, 4), np.float64),
        "keypoints": ((n, 21, 3), np.float64), "gripper": ((n,), np.float64)}
    last_good: tuple[Good, float] | None = None
    for k, item in enumerate(script):
        row = {key: a[k] for key, a in device_rows.items()}
        if isinstance(item, Good):
            last_good = (item, float(timestamps[k]))
            expected = _record(item, timestamps[k], item.engaged)
        else:  # held: the command did not change, and the last valid sample (disengaged) stands in
            np.testing.assert_array_equal(actions[k], before[k], err_msg=f"step {k}: {item.field}={item.value!r}")
            if last_good is None:
                expected = {"t": timestamps[k], "engaged": False, "T_world_device": np.full((4, 4), np.nan),
                            "keypoints": np.full((21, 3), np.nan), "gripper": 0.0}
            else:
                expected = _record(*last_good, engaged=False)
        for key, value in expected.items():
            np.testing.assert_array_equal(row[key], value, err_msg=f"step {k}, device/{key}")
