"""The control loop: fixed rate on an injected clock, late ticks, holding still on bad input."""

from __future__ import annotations

import numpy as np

from devices.base import Device, DeviceSample
from recorder.step import Step
from teleop.rig import RigConfig, build_rig
from teleop.session import SessionConfig
from teleop.sim import SimConfig


class ListSink:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    def append(self, step: Step) -> None:
        self.steps.append(step)


def _rig(clock, rate_hz: float = 20.0, max_s: float = 1.0, cameras: tuple[str, ...] | None = ()):  # noqa: ANN001, ANN202
    config = RigConfig(robot="franka", task="franka-reach", sim=SimConfig(cameras=cameras),
                       session=SessionConfig(rate_hz=rate_hz, max_duration_s=max_s, stop_on_success_s=None))
    return build_rig(config, clock=clock, sleep=clock.sleep)


def test_ticks_lie_on_the_rate_grid_and_the_rate_is_reported(clock) -> None:  # noqa: ANN001
    rig = _rig(clock, rate_hz=50.0, max_s=1.0)
    sink = ListSink()
    rig.session.reset(0)
    rig.device.connect()
    result = rig.session.run_episode(sink)
    rig.close()
    t = np.array([s.t for s in sink.steps])
    np.testing.assert_allclose(np.diff(t), 0.02, atol=1e-9)
    assert result.steps == len(sink.steps) == 51
    assert result.late_ticks == 0
    assert abs(result.achieved_rate_hz - 50.0) < 1e-6


class Stalling(Device):
    """A device whose read takes 3 control periods once (a hiccup in a driver)."""

    def __init__(self, clock, stall_at: int, seconds: float) -> None:  # noqa: ANN001
        super().__init__(clock)
        self.reads, self.stall_at, self.seconds = 0, stall_at, seconds

    def _read(self) -> DeviceSample:
        self.reads += 1
        if self.reads == self.stall_at:
            self.clock.sleep(self.seconds)
        return DeviceSample(t=self.clock(), engaged=False, T_world_device=np.eye(4))


def test_a_late_tick_is_counted_and_the_grid_skips_ahead_without_a_burst(clock) -> None:  # noqa: ANN001
    rig = _rig(clock, rate_hz=20.0, max_s=1.0)
    rig.session.device = Stalling(clock, stall_at=5, seconds=0.15)
    sink = ListSink()
    rig.session.reset(0)
    rig.session.device.connect()
    result = rig.session.run_episode(sink)
    rig.close()
    gaps = np.diff([s.t for s in sink.steps])
    assert result.late_ticks == 1
    assert gaps.min() > 0.05 - 1e-9  # never two ticks closer than a period: no catch-up burst
    assert result.steps < 21


class Glitchy(Device):
    """Engaged, with a pose that turns to NaN, inf or a wild jump for a while."""

    def __init__(self, clock, bad: np.ndarray) -> None:  # noqa: ANN001
        super().__init__(clock)
        self.bad, self.reads = bad, 0

    def _read(self) -> DeviceSample:
        self.reads += 1
        pose = np.eye(4)
        pose[:3, 3] = [0.3, 0.0, 1.0]
        if self.reads > 3:
            pose = self.bad
        return DeviceSample(t=self.clock(), engaged=True, T_world_device=pose, gripper=float("nan"))


def test_nan_inf_and_wild_poses_leave_the_robot_holding_still(clock) -> None:  # noqa: ANN001
    nan_pose = np.full((4, 4), np.nan)
    inf_pose = np.eye(4)
    inf_pose[0, 3] = np.inf
    far_pose = np.eye(4)
    far_pose[:3, 3] = [50.0, 0.0, 1.0]
    for bad, every_sample_rejected in ((nan_pose, True), (inf_pose, True), (far_pose, False)):
        rig = _rig(clock, max_s=1.0)
        rig.session.device = Glitchy(clock, bad)
        sink = ListSink()
        rig.session.reset(0)
        rig.session.device.connect()
        result = rig.session.run_episode(sink)
        q1, _ = rig.sim.joint_state()
        ee1 = rig.sim.ee_pose()[:3, 3]
        rig.close()
        actions = np.array([s.action for s in sink.steps])
        assert np.isfinite(actions).all()
        if every_sample_rejected:
            assert result.rejected_samples == result.steps - 3
            assert (actions[3:] == actions[3]).all()  # the last safe command, held
            np.testing.assert_allclose(q1[:7], sink.steps[3].joint_pos[:7], atol=2e-3)
        else:  # a jump is refused once; a pose that stays there becomes the new clutch anchor
            assert result.rejected_samples == 1
        np.testing.assert_allclose(ee1, sink.steps[3].ee_pose[:3], atol=2e-3)  # the hand did not move


def test_each_step_carries_state_action_device_sample_and_stamped_frames(clock) -> None:  # noqa: ANN001
    rig = _rig(clock, max_s=0.2, cameras=None)
    sink = ListSink()
    rig.session.reset(0)
    rig.device.connect()
    rig.session.run_episode(sink)
    rig.close()
    step = sink.steps[-1]
    assert step.joint_pos.shape == step.joint_vel.shape == (9,)
    assert step.ee_pose.shape == (7,) and abs(np.linalg.norm(step.ee_pose[3:]) - 1) < 1e-9
    assert step.action.shape == (8,)
    assert set(step.device) >= {"t", "engaged", "T_world_device", "keypoints", "gripper"}
    assert set(step.frames) == {"front", "wrist"}
    assert all(np.isfinite(f.t) for f in step.frames.values())
    assert "target_pos" in step.extras
