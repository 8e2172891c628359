"""Tasks and the scripted operator, through the real mapping, IK / retargeting and simulator."""

from __future__ import annotations

import numpy as np
import pytest

from devices.base import Device, DeviceSample
from teleop.rig import RigConfig, build_rig
from teleop.sim import SimConfig
from teleop.tasks import TASKS

SEEDS = range(20)


def _rig(task: str, clock, cameras: tuple[str, ...] | None = ()):  # noqa: ANN001, ANN202
    config = RigConfig(robot=TASKS[task].robot, task=task, sim=SimConfig(cameras=cameras))
    return build_rig(config, clock=clock, sleep=clock.sleep)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_scripted_operator_succeeds_on_at_least_90_percent_of_seeds(task: str, clock) -> None:  # noqa: ANN001
    rig = _rig(task, clock)
    successes = []
    try:
        for seed in SEEDS:
            rig.session.reset(seed)
            rig.device.connect()
            result = rig.session.run_episode()
            rig.device.disconnect()
            successes.append(result.success)
            assert result.stopped_by in ("success", "time limit")
    finally:
        rig.close()
    assert sum(successes) >= 0.9 * len(SEEDS), successes


class Idle(Device):
    """An operator who never grips: the robot must stay where it started."""

    def _read(self) -> DeviceSample:
        return DeviceSample(t=self.clock(), engaged=False, T_world_device=np.eye(4))


@pytest.mark.parametrize("task", ["franka-reach", "franka-pick", "xarm7-reach"])
def test_success_is_not_free_an_idle_operator_fails_and_the_robot_holds(task: str, clock) -> None:  # noqa: ANN001
    rig = _rig(task, clock)
    try:
        rig.session.device = Idle(clock)
        rig.session.reset(0)
        q0, _ = rig.sim.joint_state()
        rig.session.device.connect()
        result = rig.session.run_episode()
        q1, _ = rig.sim.joint_state()
    finally:
        rig.close()
    assert not result.success and result.stopped_by == "time limit"
    assert result.held_ticks == result.steps
    np.testing.assert_allclose(q1[:7], q0[:7], atol=2e-3)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_reset_is_seeded_and_randomised(task: str, clock) -> None:  # noqa: ANN001
    rig = _rig(task, clock)
    try:
        a, b, c = rig.session.reset(1), rig.session.reset(2), rig.session.reset(1)
    finally:
        rig.close()
    assert a == c
    assert a != b


@pytest.mark.parametrize("task", sorted(TASKS))
def test_cameras_render_the_scene(task: str, clock) -> None:  # noqa: ANN001
    rig = _rig(task, clock, cameras=None)
    try:
        rig.session.reset(0)
        frames = {name: rig.sim.render(name) for name in rig.sim.cameras}
    finally:
        rig.close()
    expected = {"front"} if TASKS[task].robot in ("allegro", "xarm7-allegro") else {"front", "wrist"}
    assert set(frames) == expected
    for frame in frames.values():
        assert frame.rgb.shape == (224, 224, 3) and frame.rgb.dtype == np.uint8
        assert frame.rgb.std() > 10  # not blank
        red = (frame.rgb[..., 0] > 150) & (frame.rgb[..., 1] < 80) & (frame.rgb[..., 2] < 80)
        if frame is frames["front"]:
            assert red.sum() > 3, "the red target/object is in view of the front camera"


def test_an_unknown_camera_lists_the_task_cameras(clock) -> None:  # noqa: ANN001
    from teleop.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="front, wrist"):
        _rig("franka-reach", clock, cameras=("top",))
