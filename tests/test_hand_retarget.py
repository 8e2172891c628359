"""HandRetargeter: FK -> keypoints -> retarget round trip, frame invariance, monotone flexion, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from devices.human_hand import HumanHand
from kinematics.filters import EmaFilterConfig
from kinematics.hand_retarget import HandRetargetConfig, HandRetargeter, to_hand_frame
from kinematics.robot_model import load_model
from teleop.errors import TeleopError, UnsafeInputError

TIP_AND_BASE = ((8, 5), (12, 9), (16, 13), (4, 1))  # (tip, MCP/CMC) of index, middle, ring, thumb


def _retargeter(**kwargs: Any) -> HandRetargeter:
    return HandRetargetConfig(**kwargs).build(load_model("allegro"))


def _keypoints_with_tips(tips_hand: np.ndarray) -> np.ndarray:
    """A human hand whose index, middle, ring and thumb tips sit at tips_hand (4, 3), canonical frame.

    The palm keypoints come from the HumanHand model; the joints between base and tip are interpolated.
    """
    kp = HumanHand().keypoints(np.zeros(5))
    for (_tip, base), p_tip in zip(TIP_AND_BASE, tips_hand, strict=True):
        for j, f in enumerate((1 / 3, 2 / 3, 1.0)):
            kp[base + 1 + j] = kp[base] + f * (p_tip - kp[base])
    return kp


def _random_frame(kp: np.ndarray, rng: np.random.Generator, seed: int) -> np.ndarray:
    """The same keypoints seen from another frame (rotated and shifted)."""
    R = Rotation.random(random_state=seed).as_matrix()
    return kp @ R.T + rng.normal(size=3)


def test_human_and_robot_mappings_are_inverse() -> None:
    rt = _retargeter()
    p = np.random.default_rng(0).normal(size=(10, 3)) * 0.1
    np.testing.assert_allclose(rt.robot_to_human(rt.human_to_robot(p)), p, atol=1e-15)
    np.testing.assert_allclose(rt.human_to_robot(np.zeros(3)), rt.wrist_palm)


def test_mapping_sends_the_human_finger_direction_along_the_allegro_fingers() -> None:
    model = load_model("allegro")
    rt = _retargeter()
    tips = model.fingertips(np.zeros(16))
    finger_direction = rt.human_to_robot(np.array([1.0, 0.0, 0.0])) - rt.wrist_palm
    assert finger_direction @ (tips[1] - rt.wrist_palm) > 0  # toward the middle fingertip
    thumb_side = rt.human_to_robot(np.array([0.0, -1.0, 0.0])) - rt.wrist_palm  # human -y: thumb side
    assert thumb_side @ (tips[0] - tips[2]) > 0  # Allegro index is on the thumb side of the ring


def test_canonical_frame_is_independent_of_the_input_frame() -> None:
    rng = np.random.default_rng(1)
    kp = HumanHand().keypoints(np.array([0.3, 0.2, 0.5, 0.1, 0.7]))
    np.testing.assert_allclose(to_hand_frame(kp), kp, atol=1e-12)  # HumanHand already uses it
    for seed in range(5):
        np.testing.assert_allclose(to_hand_frame(_random_frame(kp, rng, seed)), kp, atol=1e-12)


@pytest.mark.parametrize(("filtered", "calls"), [(False, 60), (True, 150)])
def test_round_trip_from_robot_fingertips_recovers_them(filtered: bool, calls: int) -> None:
    """A hand held still: the solver alone reaches the fingertips within 2 s at 30 fps, with the default
    smoothing within 5 s at 30 fps (the One Euro filter settles slowly on a still hand, by design)."""
    model = load_model("allegro")
    rt = _retargeter() if filtered else _retargeter(joint_filter=None)
    rng = np.random.default_rng(2)
    tested = 0
    while tested < 25:
        q_true = rng.uniform(model.lower, model.upper)
        tips = model.fingertips(q_true)
        pinch = np.linalg.norm(tips[:3] - tips[3], axis=1)
        if pinch.min() < rt.config.scale * rt.config.pinch_far_m:
            continue  # a pinching pose asks for contact, not for the scaled human distance
        tested += 1
        kp = _random_frame(_keypoints_with_tips(rt.robot_to_human(tips)), rng, tested)
        rt.reset()
        for _ in range(calls):
            q = rt.retarget(kp)
        assert np.all(q >= model.lower) and np.all(q <= model.upper)
        assert np.linalg.norm(model.fingertips(q) - tips, axis=1).max() < 5e-3


def test_human_pinch_brings_robot_tips_closer_than_plain_scaling() -> None:
    model = load_model("allegro")
    hand = HumanHand()
    curl = np.array([0.65, 0.575, 0.0, 0.0, 0.0])  # thumb and index tips within a few mm
    kp = hand.keypoints(curl)
    assert np.linalg.norm(kp[4] - kp[8]) < 0.01
    distances = []
    for pinch_weight_close in (0.0, HandRetargetConfig().pinch_weight_close):
        rt = _retargeter(pinch_weight_close=pinch_weight_close)
        for _ in range(30):
            q = rt.retarget(kp)
        tips = model.fingertips(q)
        distances.append(np.linalg.norm(tips[0] - tips[3]))
    assert distances[1] < 0.03 < distances[0]


def test_human_hand_poses_retarget_without_nan_and_a_curled_index_flexes_the_robot_index() -> None:
    hand = HumanHand()
    rt = _retargeter()
    rng = np.random.default_rng(3)
    for _ in range(50):
        q = rt.retarget(hand.keypoints(rng.uniform(0, 1, 5), rng.uniform(-0.2, 0.2, 5)))
        assert np.isfinite(q).all()
        assert np.all(q >= rt.lower) and np.all(q <= rt.upper)

    def index_flexion(index_curl: float) -> float:
        rt.reset()
        for _ in range(20):
            q = rt.retarget(hand.keypoints(np.array([0.0, index_curl, 0.0, 0.0, 0.0])))
        return float(q[1:4].sum())  # index MCP, PIP, DIP flexion

    flexions = [index_flexion(c) for c in (0.0, 0.4, 0.8)]
    assert flexions[0] + 0.5 < flexions[1] < flexions[2]


def test_joint_filter_moves_a_fraction_alpha_per_call() -> None:
    hand = HumanHand()
    rt = _retargeter(joint_filter=EmaFilterConfig(alpha=0.25))
    q_open = rt.retarget(hand.keypoints(np.zeros(5)), dt=1.0)  # a long step: the speed bound stays out of it
    np.testing.assert_array_equal(q_open, rt._q_raw)  # the filter's first sample passes unchanged
    q_fist_first = rt.retarget(hand.keypoints(np.ones(5)), dt=1.0)
    np.testing.assert_allclose(q_fist_first, 0.25 * rt._q_raw + 0.75 * q_open)


def test_an_open_hand_closing_at_once_moves_every_joint_within_its_speed_limit() -> None:
    """The tracker jumps from an open hand to a fist: each call moves a joint at most its URDF velocity limit
    times dt, also with the filters off, and the hand still gets there."""
    hand = HumanHand()
    model = load_model("allegro")
    for rt in (_retargeter(), _retargeter(joint_filter=None, change_weight=1e-6)):
        rt.reset(model.home)
        previous = model.home
        for dt in (1 / 30, 1 / 30, 0.05, 0.01):
            q = rt.retarget(hand.keypoints(np.ones(5)), dt)
            assert np.all(np.abs(q - previous) <= model.velocity_limit * dt + 1e-12)
            previous = q
        for _ in range(300):
            q = rt.retarget(hand.keypoints(np.ones(5)))
        settled = _retargeter(joint_filter=None)
        for _ in range(50):
            q_settled = settled.retarget(hand.keypoints(np.ones(5)), dt=1.0)
        np.testing.assert_allclose(q, q_settled, atol=0.02)


def test_the_speed_bound_is_a_fraction_of_the_urdf_limit() -> None:
    model = load_model("allegro")
    rt = _retargeter(max_speed_fraction=0.25, joint_filter=None)
    q = rt.retarget(HumanHand().keypoints(np.ones(5)), dt=0.1)
    assert np.abs(q - model.home).max() == pytest.approx(0.25 * 7.0 * 0.1)


def test_pinch_terms_fade_in_smoothly_with_the_human_pinch_distance() -> None:
    """No pinch term while the fingers are apart, full weight and contact length when pinched, and weight
    and length continuous (a smoothstep, no kink) in between."""
    rt = _retargeter(pinch_weight=0.0)
    c = rt.config
    tips = np.zeros((4, 3))
    weights, lengths = [], []
    distances = np.linspace(0.0, 0.05, 501)
    for d in distances:
        tips[0] = (d, 0.0, 0.0)  # the index tip d from the thumb tip at the origin
        vectors, sqrt_w = rt._pinch_targets(tips, rt.model.home)
        weights.append(float(sqrt_w[0, 0]) ** 2)
        lengths.append(float(np.linalg.norm(vectors[0])))
    weights_arr = np.array(weights)
    assert weights_arr[distances <= c.pinch_near_m] == pytest.approx(c.pinch_weight_close)
    assert weights_arr[distances >= c.pinch_far_m] == pytest.approx(0.0)
    slope = np.diff(weights_arr) / np.diff(distances)
    assert np.abs(np.diff(slope)).max() < 0.05 * np.abs(slope).max()  # no jump in the slope
    assert np.abs(np.diff(lengths)).max() < 1e-3  # the target length moves a little per 0.1 mm


def test_a_bad_time_step_raises_and_leaves_the_state_alone() -> None:
    good = HumanHand().keypoints(np.full(5, 0.3))
    reference, rt = _retargeter(), _retargeter()
    reference.retarget(good)
    rt.retarget(good)
    for dt in (0.0, -0.01, float("nan"), "0.03"):
        with pytest.raises(UnsafeInputError, match="period"):
            rt.retarget(good, dt)  # type: ignore[arg-type]
    np.testing.assert_array_equal(rt.retarget(good), reference.retarget(good))


@pytest.mark.parametrize("bad", ["nan", "inf", "shape", "degenerate"])
def test_invalid_keypoints_raise_and_leave_the_state_alone(bad: str) -> None:
    good = HumanHand().keypoints(np.full(5, 0.3))
    reference, rt = _retargeter(), _retargeter()
    reference.retarget(good)
    rt.retarget(good)
    kp = good.copy()
    if bad == "nan":
        kp[7, 1] = np.nan
    elif bad == "inf":
        kp[0, 0] = np.inf
    elif bad == "shape":
        kp = kp[:20]
    else:
        kp = np.zeros((21, 3))
    with pytest.raises(UnsafeInputError):
        rt.retarget(kp)
    np.testing.assert_array_equal(rt.retarget(good), reference.retarget(good))


def test_config_is_validated_at_build() -> None:
    model = load_model("allegro")
    with pytest.raises(TeleopError):
        HandRetargetConfig(max_speed_fraction=0.0).build(model)
    with pytest.raises(TeleopError):
        HandRetargetConfig(joint_filter=EmaFilterConfig(alpha=1.5)).build(model)
    with pytest.raises(TeleopError):
        HandRetargetConfig(R_palm_hand=((1, 0, 0), (0, 1, 0), (0, 0, -1))).build(model)
    with pytest.raises(TeleopError):
        HandRetargetConfig().build(load_model("franka"))


# ------------------------------------------------------------------- the operator's hand model (HumanHand)
BONES = [(0, 1), (1, 2), (2, 3), (3, 4)] + [(b + i, b + i + 1) for b in (5, 9, 13, 17) for i in range(3)]


def test_human_hand_bones_keep_their_length_for_any_curl_and_spread() -> None:
    hand = HumanHand()
    rest = hand.keypoints(np.zeros(5))
    lengths = [np.linalg.norm(rest[a] - rest[b]) for a, b in BONES]
    rng = np.random.default_rng(4)
    for _ in range(20):
        kp = hand.keypoints(rng.uniform(0, 1, 5), rng.uniform(-0.3, 0.3, 5))
        np.testing.assert_allclose([np.linalg.norm(kp[a] - kp[b]) for a, b in BONES], lengths, rtol=1e-12)
        np.testing.assert_allclose(kp[[0, 5, 9, 13, 17]], rest[[0, 5, 9, 13, 17]])  # the palm does not move


def test_human_hand_is_a_right_hand_in_the_canonical_frame() -> None:
    kp = HumanHand().keypoints(np.zeros(5))
    assert kp[9, 1] == 0 and kp[9, 0] > 0.07  # middle MCP on +x
    assert kp[5, 1] < 0 < kp[17, 1]  # index on -y, little on +y
    assert kp[4, 1] < kp[8, 1]  # the thumb beyond the index
    curled = HumanHand().keypoints(np.full(5, 0.6))
    assert np.all(curled[[8, 12, 16, 20], 2] > 0.02)  # fingers curl toward +z, out of the palm


def test_human_finger_flexion_has_dip_two_thirds_of_pip() -> None:
    kp = HumanHand().keypoints(np.array([0.0, 0.7, 0.4, 0.9, 0.2]))

    def bend(a: int, b: int, c: int) -> float:
        u, v = kp[b] - kp[a], kp[c] - kp[b]
        return float(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))

    for mcp in (5, 9, 13, 17):
        pip, dip = bend(mcp, mcp + 1, mcp + 2), bend(mcp + 1, mcp + 2, mcp + 3)
        assert dip == pytest.approx(2.0 / 3.0 * pip, rel=1e-9)


def test_human_tips_approach_the_palm_as_curl_grows_and_the_thumb_can_oppose() -> None:
    hand = HumanHand()
    for finger in range(1, 5):
        reach = [np.linalg.norm(hand.fingertip(finger, c)) for c in np.linspace(0, 1, 11)]
        assert np.all(np.diff(reach) < 0)
    open_gap = np.linalg.norm(hand.fingertip(0, 0.0) - hand.fingertip(1, 0.0))
    best_gap = min(
        np.linalg.norm(hand.fingertip(0, t) - hand.fingertip(finger, c))
        for finger in (1, 2)
        for t in np.linspace(0.4, 1, 13)
        for c in np.linspace(0.3, 0.8, 11)
    )
    assert open_gap > 0.05 and best_gap < 0.01


@pytest.mark.parametrize("finger", range(5))
def test_human_finger_ik_reaches_reachable_targets(finger: int) -> None:
    hand = HumanHand()
    rng = np.random.default_rng(finger)
    for _ in range(10):
        curl, spread = rng.uniform(0.05, 0.95), rng.uniform(-0.2, 0.2)
        target = hand.fingertip(finger, curl, spread)
        pose = hand.place_fingertip(finger, target, np.full(5, 0.5))
        tip = pose.keypoints[(4, 8, 12, 16, 20)[finger]]
        assert np.linalg.norm(tip - target) < 1e-4
        assert np.delete(pose.curl, finger) == pytest.approx(0.5)


def test_human_finger_ik_stays_in_bounds_for_unreachable_targets() -> None:
    curl, spread, distance = HumanHand().solve_finger(1, np.array([0.5, 0.0, 0.0]))
    assert 0.0 <= curl <= 1.0 and -0.3 <= spread <= 0.35 and distance > 0.3


def test_human_hand_rejects_bad_parameters() -> None:
    hand = HumanHand()
    with pytest.raises(UnsafeInputError):
        hand.keypoints(np.zeros(4))
    with pytest.raises(UnsafeInputError):
        hand.keypoints(np.full(5, np.nan))
    with pytest.raises(UnsafeInputError):
        hand.solve_finger(1, np.array([np.nan, 0.0, 0.0]))
    with pytest.raises(UnsafeInputError):
        hand.fingertip(5, 0.5)


def test_every_joint_pinned_against_a_limit_gives_no_step_instead_of_a_solver_error() -> None:
    from kinematics.hand_retarget import HandRetargetConfig
    from kinematics.robot_model import load_model

    model = load_model("allegro")
    retargeter = HandRetargetConfig().build(model)
    q = model.upper.copy()
    step = retargeter._bounded_step(q, np.eye(16), -np.ones(16), model.lower, model.upper)  # pushed further out
    assert step.shape == (16,) and not step.any()
