"""Device traces: lossless round trip, crash-tolerant reading, replay timing, and replaying a real episode."""

from __future__ import annotations

import numpy as np
import pytest

from devices.base import Device, DeviceSample
from devices.trace import (
    RecordingDevice,
    ReplayDevice,
    TraceRecorder,
    TruncatedTraceWarning,
    read_trace,
)
from recorder.step import Step
from teleop.errors import DeviceError
from teleop.rig import RigConfig, build_rig
from teleop.session import SessionConfig
from teleop.sim import SimConfig


def _samples() -> list[DeviceSample]:
    rng = np.random.default_rng(3)
    pose = np.eye(4)
    pose[:3, 3] = rng.normal(size=3)
    return [
        DeviceSample(t=10.0, engaged=True, T_world_device=pose, keypoints=rng.normal(size=(21, 3)) * 0.05,
                     gripper=0.25, axes={"left_x": -0.5, "l2": 1 / 3}, buttons={"cross": True, "circle": False},
                     device_time=1.7e9 + 0.123456789),
        DeviceSample(t=10.05),  # every optional part missing
        DeviceSample(t=10.1, engaged=False, keypoints=np.full((21, 3), np.nan), gripper=1.0,
                     axes={"dpad_y": 1.0}, buttons={}, device_time=None),
    ]


def _write(path, samples: list[DeviceSample], device: str = "gamepad") -> None:  # noqa: ANN001
    with TraceRecorder(path, device=device) as recorder:
        for sample in samples:
            recorder.append(sample)


def _assert_same(a: DeviceSample, b: DeviceSample) -> None:
    assert (a.t, a.engaged, a.gripper, a.axes, a.buttons, a.device_time) == (
        b.t, b.engaged, b.gripper, b.axes, b.buttons, b.device_time)
    for x, y in ((a.T_world_device, b.T_world_device), (a.keypoints, b.keypoints)):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_array_equal(x, y)  # bit for bit, NaN included


def test_every_field_round_trips_exactly(tmp_path) -> None:  # noqa: ANN001
    samples = _samples()
    _write(tmp_path / "a.trace", samples)
    trace = read_trace(tmp_path / "a.trace")
    assert trace.device == "gamepad"
    assert len(trace.samples) == len(samples)
    for original, loaded in zip(samples, trace.samples, strict=True):
        _assert_same(original, loaded)


def test_an_empty_recording_still_reads_as_a_trace(tmp_path) -> None:  # noqa: ANN001
    TraceRecorder(tmp_path / "e.trace", device="keyboard").close()
    trace = read_trace(tmp_path / "e.trace")
    assert trace.device == "keyboard" and trace.samples == ()


def test_a_cut_off_last_line_is_skipped_with_a_warning(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "killed.trace"
    _write(path, _samples())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the process died while writing the last line
    with pytest.warns(TruncatedTraceWarning, match="line 4"):
        trace = read_trace(path)
    assert len(trace.samples) == 2
    _assert_same(trace.samples[1], _samples()[1])


def test_a_corrupt_line_names_the_file_and_the_line(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "bad.trace"
    _write(path, _samples())
    lines = path.read_text().split("\n")
    lines[2] = lines[2][:20] + "#garbage" + lines[2][20:]
    path.write_text("\n".join(lines))
    with pytest.raises(DeviceError, match=r"bad\.trace, line 3"):
        read_trace(path)


def test_a_sample_with_a_wrong_shape_is_refused(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "shape.trace"
    _write(path, _samples())
    lines = path.read_text().split("\n")
    lines[1] = lines[1].replace('"T_world_device": [[', '"T_world_device": [[[0.0]], [', 1)
    path.write_text("\n".join(lines))
    with pytest.raises(DeviceError, match=r"line 2: malformed sample"):
        read_trace(path)


def test_a_file_that_is_not_a_trace_is_refused(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(DeviceError, match=r"notes\.txt, line 1"):
        read_trace(path)
    with pytest.raises(DeviceError, match="cannot read"):
        read_trace(tmp_path / "missing.trace")


def _timed_trace(tmp_path, offsets: list[float]):  # noqa: ANN001, ANN202
    path = tmp_path / "timed.trace"
    _write(path, [DeviceSample(t=500.0 + dt, engaged=True, axes={"index": float(i)}) for i, dt in enumerate(offsets)])
    return path


def test_replay_makes_each_sample_available_exactly_at_its_offset(tmp_path, clock) -> None:  # noqa: ANN001
    offsets = [0.0, 0.013, 0.04, 0.041, 0.1]
    clock.t = 20.0
    device = ReplayDevice(_timed_trace(tmp_path, offsets), clock=clock, sleep=clock.sleep)
    device.connect()
    first = device.read()  # starts the replay clock
    assert first.axes["index"] == 0.0 and first.t == 20.0 and first.device_time == 500.0
    for i, offset in enumerate(offsets[1:], start=1):
        clock.t = 20.0 + offset - 1e-6
        assert device.read().axes["index"] == i - 1, f"sample {i} appeared early"
        clock.t = 20.0 + offset
        sample = device.read()
        assert sample.axes["index"] == i and sample.t == clock.t and sample.engaged
        assert sample.device_time == pytest.approx(500.0 + offset, abs=1e-12)
    clock.t = 20.0 + 0.1 + 0.02  # the last sample lasts one median interval (0.02 s), then the trace ends
    ended = device.read()
    assert not ended.engaged and device.finished


def test_replay_can_loop_and_can_step_one_sample_per_read(tmp_path, clock) -> None:  # noqa: ANN001
    path = _timed_trace(tmp_path, [0.0, 0.1, 0.2])
    clock.t = 0.0
    looping = ReplayDevice(path, loop=True, clock=clock, sleep=clock.sleep)
    looping.connect()
    looping.read()
    clock.t = 0.3 + 0.15  # the loop lasts 0.3 s: 0.15 s into the second pass
    assert looping.read().axes["index"] == 1.0 and not looping.finished
    stepping = ReplayDevice(path, realtime=False, clock=clock)
    stepping.connect()
    assert [stepping.read().axes["index"] for _ in range(3)] == [0.0, 1.0, 2.0]
    assert not stepping.read().engaged and stepping.finished


def test_samples_paces_a_replay_with_the_injected_sleep(tmp_path, clock) -> None:  # noqa: ANN001
    clock.t = 7.0
    device = ReplayDevice(_timed_trace(tmp_path, [0.0, 0.25, 0.5]), clock=clock, sleep=clock.sleep)
    stamps = [sample.t for sample in device.samples()]
    np.testing.assert_allclose(stamps, [7.0, 7.25, 7.5])


def test_replay_of_an_empty_trace_fails_on_connect(tmp_path) -> None:  # noqa: ANN001
    TraceRecorder(tmp_path / "e.trace").close()
    with pytest.raises(DeviceError, match="no samples"):
        ReplayDevice(tmp_path / "e.trace").connect()


class _Steps:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    def append(self, step: Step) -> None:
        self.steps.append(step)


def _run(clock, device_for, seed: int = 4) -> tuple[list[Step], Device]:  # noqa: ANN001
    config = RigConfig(robot="franka", task="franka-reach", sim=SimConfig(cameras=()),
                       session=SessionConfig(max_duration_s=6.0))
    rig = build_rig(config, clock=clock, sleep=clock.sleep)
    try:
        rig.session.device = device_for(rig, clock)
        rig.session.reset(seed)
        rig.session.device.connect()
        sink = _Steps()
        rig.session.run_episode(sink)
        rig.session.device.disconnect()
    finally:
        rig.close()
    return sink.steps, rig.session.device


def test_a_recorded_operator_replays_into_the_same_joint_trajectory(tmp_path, clock) -> None:  # noqa: ANN001
    path = tmp_path / "operator.trace"
    recorder = TraceRecorder(path)
    original, recording = _run(clock, lambda rig, clock: RecordingDevice(rig.device, recorder))
    recorder.close()
    assert recording.name == "scripted"
    trace = read_trace(path)
    assert trace.device == "scripted" and len(trace.samples) == len(original)
    assert sum(s.engaged for s in trace.samples) > 10  # the operator really drove the arm

    fresh = type(clock)()  # a new clock from the same start, as in a fresh process
    replayed, _ = _run(fresh, lambda rig, clock: ReplayDevice(path, clock=clock, sleep=clock.sleep))
    assert len(replayed) == len(original)
    for a, b in zip(original, replayed, strict=True):
        np.testing.assert_allclose(b.action, a.action, rtol=0, atol=1e-9)
        np.testing.assert_allclose(b.joint_pos, a.joint_pos, rtol=0, atol=1e-9)
    moved = np.linalg.norm(original[-1].joint_pos - original[0].joint_pos)
    assert moved > 0.05
