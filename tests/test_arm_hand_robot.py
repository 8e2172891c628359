"""The xArm7 with the Allegro hand at its flange as one robot: the joined model, the simulator, the
controller that splits a tracked hand into wrist and fingers, and scripted demonstrations recorded like any
robot's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import record_scripted
from scipy.spatial.transform import Rotation

from devices.base import DeviceSample
from kinematics.robot_model import load_model
from kinematics.robots import get_robot
from recorder.backend import open_episode
from teleop.controllers import ArmHandController, make_controller
from teleop.errors import TeleopError
from teleop.sim import PybulletSim, SimConfig

ROBOT = "xarm7-allegro"


def test_the_joined_model_has_the_arm_joints_then_the_hand_joints() -> None:
    spec, arm, hand = get_robot(ROBOT), load_model("xarm7"), load_model("allegro")
    model = load_model(spec)
    assert model.joint_names == arm.joint_names + hand.joint_names and model.n == 23
    np.testing.assert_array_equal(model.lower, np.concatenate([arm.lower, hand.lower]))
    np.testing.assert_array_equal(model.velocity_limit, np.concatenate([arm.velocity_limit, hand.velocity_limit]))
    q = model.home + 0.1
    T_flange = arm.fk(q[:7], "link_eef")
    T_mount = np.eye(4)
    T_mount[:3, 3] = spec.mount.xyz  # type: ignore[union-attr]
    np.testing.assert_allclose(model.fk(q, "palm_link"), T_flange @ T_mount, atol=1e-9)
    for frame in spec.fingertip_frames:  # a fingertip is where the hand's own model puts it on the palm
        np.testing.assert_allclose(model.fk(q, frame), T_flange @ T_mount @ hand.fk(q[7:], frame), atol=1e-9)


def test_the_arm_holds_still_while_the_fingers_move() -> None:
    """Behind seven joints the Allegro's undamped finger joints made pybullet's solver blow up as soon as the
    fingers moved fast (the arm flailed over a metre): the simulator damps a mounted hand's joints."""
    spec = get_robot(ROBOT)
    model = load_model(spec)
    with PybulletSim(spec, SimConfig(cameras=(), image_size=(32, 32))) as sim:
        q = np.array(spec.home)
        sim.reset(q)
        flange = sim.link_pose("link_eef")[:3, 3]
        for k in range(40):
            q_fingers = q.copy()
            q_fingers[7:] += 0.6 * np.sin(0.3 * k)  # every finger joint at up to 3.6 rad/s
            q_fingers = np.clip(q_fingers, model.lower, model.upper)
            sim.command(q_fingers)
            sim.step(0.05)
        assert np.linalg.norm(sim.link_pose("link_eef")[:3, 3] - flange) < 0.01
        assert np.abs(sim.arm_positions()[7:] - q_fingers[7:]).max() < 0.05


def test_devices_that_give_a_wrist_and_fingers_drive_it_and_others_are_refused_with_why() -> None:
    spec = get_robot(ROBOT)
    assert isinstance(make_controller(spec, "openxr-hands"), ArmHandController)
    assert isinstance(make_controller(spec, "scripted"), ArmHandController)
    with pytest.raises(TeleopError, match="openxr-hands.*webcam-hands gives keypoints .* but no wrist pose"):
        make_controller(spec, "webcam-hands")
    with pytest.raises(TeleopError, match="no hand keypoints"):
        make_controller(spec, "vive")


def _hand_samples(real_hand_samples: list[DeviceSample], dt: float) -> list[DeviceSample]:
    """The real hand's fingers on a wrist that moves 10 cm and turns 0.3 rad (a tracked right hand)."""
    samples = []
    for k, s in enumerate(real_hand_samples):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec((0.0, 0.3 * np.sin(0.5 * k * dt), 0.0)).as_matrix()
        T[:3, 3] = (0.1 * np.sin(0.7 * k * dt), 1.1, 0.05 * np.cos(0.9 * k * dt))
        samples.append(replace(s, T_world_device=T))
    return samples


def test_a_real_hand_on_a_moving_wrist_commands_every_joint_within_its_velocity_limit(
    real_hand_samples: Any,
) -> None:
    controller = make_controller(get_robot(ROBOT), "openxr-hands")
    model = controller.model
    dt = 1.0 / 30.0
    controller.reset(model.home, np.eye(4))
    samples = _hand_samples(real_hand_samples, dt)
    commands = [model.home] + [controller.act(s, model.home, np.eye(4), dt) for s in samples]
    steps = np.abs(np.diff(np.array(commands), axis=0))
    assert np.all(steps <= model.velocity_limit * dt + 1e-9)
    assert controller.rejected == 0, controller.last_error
    assert steps[:, :7].max() > 0.002 and steps[:, 7:].max() > 0.05  # both the arm and the fingers moved


def test_lost_wrist_or_fingers_hold_their_own_part(real_hand_samples: Any) -> None:
    controller = make_controller(get_robot(ROBOT), "openxr-hands")
    model = controller.model
    samples = _hand_samples(real_hand_samples[:60], 1.0 / 30.0)
    controller.reset(model.home, np.eye(4))
    for s in samples[:30]:
        before = controller.act(s, model.home, np.eye(4), 1.0 / 30.0)
    no_wrist = controller.act(replace(samples[30], T_world_device=None), model.home, np.eye(4), 1.0 / 30.0)
    np.testing.assert_array_equal(no_wrist[:7], before[:7])
    assert "arm held" in controller.last_error
    no_fingers = controller.act(replace(samples[31], keypoints=None), model.home, np.eye(4), 1.0 / 30.0)
    np.testing.assert_array_equal(no_fingers[7:], no_wrist[7:])


def test_scripted_demonstrations_record_and_mostly_succeed(tmp_path: Path) -> None:
    summary = record_scripted(tmp_path, 3, robot=ROBOT, task="xarm7-allegro-reach")
    assert summary.success_rate >= 2 / 3
    with open_episode(sorted(tmp_path.glob("episode_*"))[0]) as episode:
        assert episode.meta.robot == ROBOT and episode.meta.task == "xarm7-allegro-reach"
        assert tuple(episode.meta.joint_names) == get_robot(ROBOT).joints
        assert tuple(episode.meta.action_names) == get_robot(ROBOT).joints
        assert episode.action.shape[1] == 23


def test_policies_predict_the_flange_motion_and_the_hand_joint_targets() -> None:
    from teleop.train.actions import default_action_space, make_action_space

    spec = get_robot(ROBOT)
    assert default_action_space(ROBOT) == "ee-delta"
    space = make_action_space("ee-delta", ROBOT, horizon=2, chunk=1)
    q = np.tile(np.array(spec.home), (5, 1))
    q[:, 1] += np.linspace(0.0, 0.2, 5)  # the arm moves; the fingers curl
    q[:, 8] += np.linspace(0.0, 0.5, 5)
    arm = load_model("xarm7")
    proprio = space.proprio(q)
    assert proprio.shape == (5, 7 + 16)
    np.testing.assert_allclose(proprio[:, :3], [arm.fk(row[:7], "link_eef")[:3, 3] for row in q], atol=1e-6)
    targets = space.targets(q, q)  # actions = the joints themselves
    flange = [arm.fk(row[:7], "link_eef")[:3, 3] for row in q]
    np.testing.assert_allclose(targets[0, :3], flange[2] - flange[0], atol=1e-6)  # 2 steps ahead
    np.testing.assert_allclose(targets[:, 6:], q[:, 7:], atol=1e-6)  # the hand's joint targets as recorded
    space.reset(q[0])
    action = space.decode(targets[0], q[0], 0.05)
    assert action.shape == (23,)
    np.testing.assert_allclose(action[7:], q[0, 7:], atol=1e-6)
    assert np.abs(action[:7] - q[0, :7]).max() > 1e-4  # the IK moves the arm toward the flange target
