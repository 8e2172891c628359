"""RobotModel: limits and joint order from the URDF, Jacobians vs finite differences, FK vs pybullet."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pinocchio as pin
import pytest

from kinematics.robot_model import RobotModel, load_model
from kinematics.robots import ROBOTS
from teleop.errors import TeleopError, UnknownNameError, UnsafeInputError

ALL = sorted(ROBOTS)


def _urdf_limits(spec_name: str) -> dict[str, tuple[float, ...]]:
    """(lower, upper, velocity) of every limited joint, read straight from the URDF text."""
    root = ET.parse(ROBOTS[spec_name].urdf_path).getroot()
    out = {}
    for joint in root.iter("joint"):
        limit = joint.find("limit")
        if limit is not None and "lower" in limit.attrib:
            out[joint.attrib["name"]] = tuple(float(limit.attrib[k]) for k in ("lower", "upper", "velocity"))
    return out


def _random_q(model: RobotModel, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(model.lower, model.upper)


@pytest.mark.parametrize("name", ALL)
def test_joint_names_and_limits_come_from_the_urdf_in_spec_order(name: str) -> None:
    model = load_model(name)
    limits = _urdf_limits(name)
    assert model.joint_names == ROBOTS[name].joints
    expected = np.array([limits[j] for j in model.joint_names])
    np.testing.assert_allclose(model.lower, expected[:, 0])
    np.testing.assert_allclose(model.upper, expected[:, 1])
    np.testing.assert_allclose(model.velocity_limit, expected[:, 2])


def test_load_model_is_cached_and_accepts_a_spec() -> None:
    assert load_model("franka") is load_model(ROBOTS["franka"])


@pytest.mark.parametrize("finger", range(4))
def test_allegro_joint_blocks_move_only_their_own_fingertip(finger: int) -> None:
    # Spec order is index 0-3, middle 4-7, ring 8-11, thumb 12-15; pinocchio's order differs.
    model = load_model("allegro")
    q = model.home
    tips = model.fingertips(q)
    q_moved = q.copy()
    q_moved[4 * finger : 4 * finger + 4] += 0.15
    moved = np.linalg.norm(model.fingertips(q_moved) - tips, axis=1)
    assert moved[finger] > 5e-3
    assert np.all(np.delete(moved, finger) < 1e-12)


@pytest.mark.parametrize("name", ALL)
def test_jacobian_matches_finite_differences_of_fk(name: str) -> None:
    model = load_model(name)
    rng = np.random.default_rng(7)
    frames: list[str | None] = [None, *model.spec.fingertip_frames]
    eps = 1e-6
    for _ in range(5):
        q = _random_q(model, rng)
        for frame in frames:
            T = model.fk(q, frame)
            J = model.jacobian(q, frame)
            assert J.shape == (6, model.n)
            J_fd = np.empty_like(J)
            for i in range(model.n):
                dq = np.zeros(model.n)
                dq[i] = eps
                T_plus = model.fk(q + dq, frame)
                J_fd[:3, i] = (T_plus[:3, 3] - T[:3, 3]) / eps
                J_fd[3:, i] = pin.log3(T_plus[:3, :3] @ T[:3, :3].T) / eps
            np.testing.assert_allclose(J, J_fd, atol=2e-5)


@pytest.mark.parametrize("name", ALL)
def test_pose_and_jacobian_of_id_agrees_with_fk_and_the_checked_query(name: str) -> None:
    """The solver's unchecked query gives the same pose and Jacobian, also where the spec's joint order is not
    pinocchio's (the Allegro)."""
    model = load_model(name)
    rng = np.random.default_rng(11)
    for frame in [model.spec.ee_frame, *model.spec.fingertip_frames]:
        q = _random_q(model, rng)
        T, J = model.pose_and_jacobian_of_id(q, model.frame_id(frame))
        T_checked, J_checked = model.pose_and_jacobian(q.tolist(), frame)
        np.testing.assert_array_equal(T, T_checked)
        np.testing.assert_array_equal(J, J_checked)
        np.testing.assert_allclose(T, model.fk(q, frame), atol=1e-15)


def test_fingertips_and_their_jacobians_agree_with_frame_queries() -> None:
    model = load_model("allegro")
    q = _random_q(model, np.random.default_rng(3))
    tips, jacs = model.fingertips_and_jacobians(q)
    np.testing.assert_allclose(tips, model.frame_positions(q, model.spec.fingertip_frames))
    np.testing.assert_allclose(tips, model.fingertips(q))
    for k, frame in enumerate(model.spec.fingertip_frames):
        np.testing.assert_allclose(jacs[k], model.jacobian(q, frame)[:3])


def _pybullet_fk_in_base(name: str, link: str, qs: np.ndarray) -> np.ndarray:
    """Positions of a URDF link frame in the URDF base link frame, from pybullet, for each row of qs."""
    import pybullet as p

    spec = ROBOTS[name]
    cid = p.connect(p.DIRECT)
    try:
        body = p.loadURDF(str(spec.urdf_path), useFixedBase=True, physicsClientId=cid)
        count = p.getNumJoints(body, physicsClientId=cid)
        infos = [p.getJointInfo(body, i, physicsClientId=cid) for i in range(count)]
        joint_index = {info[1].decode(): info[0] for info in infos}
        link_index = {info[12].decode(): info[0] for info in infos}
        # getBasePositionAndOrientation is the base's inertial frame: undo the local inertial offset.
        com_pos, com_orn = p.getBasePositionAndOrientation(body, physicsClientId=cid)
        inertial_pos, inertial_orn = p.getDynamicsInfo(body, -1, physicsClientId=cid)[3:5]
        inv_pos, inv_orn = p.invertTransform(inertial_pos, inertial_orn)
        base_pos, base_orn = p.multiplyTransforms(com_pos, com_orn, inv_pos, inv_orn)
        world_to_base = p.invertTransform(base_pos, base_orn)
        out = []
        for q in qs:
            for joint, value in zip(spec.joints, q, strict=True):
                p.resetJointState(body, joint_index[joint], float(value), physicsClientId=cid)
            state = p.getLinkState(body, link_index[link], computeForwardKinematics=True, physicsClientId=cid)
            pos, _ = p.multiplyTransforms(*world_to_base, state[4], state[5])
            out.append(pos)
        return np.array(out)
    finally:
        p.disconnect(cid)


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("franka", "panda_hand_tcp"),
        ("xarm7", "link_eef"),
        ("allegro", "link_15.0_tip"),
        ("allegro", "link_7.0_tip"),
    ],
)
def test_fk_agrees_with_pybullet(name: str, frame: str) -> None:
    model = load_model(name)
    rng = np.random.default_rng(11)
    qs = np.array([_random_q(model, rng) for _ in range(20)])
    expected = _pybullet_fk_in_base(name, frame, qs)
    got = np.array([model.fk(q, frame)[:3, 3] for q in qs])
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_unknown_frame_lists_the_valid_frames() -> None:
    model = load_model("franka")
    with pytest.raises(UnknownNameError) as info:
        model.fk(model.home, "panda_hand_tpc")
    assert "panda_hand_tcp" in str(info.value)
    assert "panda_hand_tcp" in info.value.valid


def test_wrong_shaped_q_and_arm_fingertips_are_refused() -> None:
    model = load_model("franka")
    with pytest.raises(UnsafeInputError):
        model.fk(np.zeros(6))
    with pytest.raises(TeleopError, match="fingertip"):
        model.fingertips(model.home)
