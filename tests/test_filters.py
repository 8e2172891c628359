"""Filters: One Euro against an EMA, timestamps, reset, pose filtering, validation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kinematics.filters import (
    EmaFilterConfig,
    OneEuroFilterConfig,
    PoseFilterConfig,
    VectorFilter,
    smoothing_factor,
)
from teleop.errors import TeleopError, UnsafeInputError

RATE_HZ = 100.0
NOISE_M = 0.001  # tracking jitter of a VR controller [m]
NOISE_RAD = 0.002
ONE_EURO = OneEuroFilterConfig(min_cutoff_hz=0.3, beta=10.0, d_cutoff_hz=1.0)


def _run(filt: VectorFilter, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.array([filt(xi, ti) for xi, ti in zip(x, t, strict=True)])


def _noisy(signal: np.ndarray, seed: int = 0) -> np.ndarray:
    return signal + np.random.default_rng(seed).normal(0.0, NOISE_M, signal.shape)


def _times(seconds: float) -> np.ndarray:
    return np.arange(int(seconds * RATE_HZ)) / RATE_HZ


def _jitter(config: EmaFilterConfig | OneEuroFilterConfig) -> float:
    """Output std on a noisy constant 3-vector, after the filter settled."""
    t = _times(20.0)
    y = _run(config.build(), _noisy(np.full((t.size, 3), 0.3)), t)
    return float(y[int(2 * RATE_HZ) :].std())


def test_one_euro_on_a_noisy_constant_converges_and_removes_jitter() -> None:
    t = _times(10.0)
    x = _noisy(np.full((t.size, 3), 0.3))
    y = _run(ONE_EURO.build(), x, t)
    settled = y[int(2 * RATE_HZ) :]
    assert np.abs(settled.mean(axis=0) - 0.3).max() < 1e-3
    assert settled.std() < x.std() / 6


def test_one_euro_lags_less_than_an_ema_with_the_same_jitter_on_a_ramp() -> None:
    # The EMA alpha with the same jitter as the One Euro filter (its variance is alpha / (2 - alpha) sigma^2).
    jitter = _jitter(ONE_EURO)
    ratio = (jitter / NOISE_M) ** 2
    alpha = 2 * ratio / (1 + ratio)
    assert _jitter(EmaFilterConfig(alpha=alpha)) == pytest.approx(jitter, rel=0.2)
    t = _times(4.0)
    speed = 0.3  # [m/s], a calm hand motion
    truth = np.outer(speed * t, np.ones(3))
    x = _noisy(truth, seed=1)
    steady = slice(int(1 * RATE_HZ), None)
    lag_one_euro = (truth - _run(ONE_EURO.build(), x, t))[steady].mean()
    lag_ema = (truth - _run(EmaFilterConfig(alpha=alpha).build(), x, t))[steady].mean()
    assert 0 < lag_one_euro < lag_ema / 5, (lag_one_euro, lag_ema)


def test_the_gain_follows_the_timestamps() -> None:
    config = OneEuroFilterConfig(min_cutoff_hz=2.0, beta=0.0)  # beta 0: a plain low-pass, gain set by dt
    for dt in (0.004, 0.02, 0.1):
        filt = config.build()
        filt(np.zeros(2), 5.0)
        y = filt(np.ones(2), 5.0 + dt)
        np.testing.assert_allclose(y, smoothing_factor(2.0, dt), rtol=1e-12)


def test_irregular_sampling_gives_the_same_output_as_regular_sampling() -> None:
    """A ramp sampled at 100 Hz and at jittered intervals (5-15 ms): the outputs agree in time."""

    def ramp(t: np.ndarray) -> np.ndarray:
        return np.outer(0.3 * t, (1.0, -0.5, 0.2))

    t_regular = _times(3.0)
    rng = np.random.default_rng(3)
    t_irregular = np.cumsum(rng.uniform(0.005, 0.015, 300))
    t_irregular = t_irregular[t_irregular < 3.0]
    y_regular = _run(ONE_EURO.build(), ramp(t_regular), t_regular)
    y_irregular = _run(ONE_EURO.build(), ramp(t_irregular), t_irregular)
    late = (t_irregular > 1.0) & (t_irregular <= t_regular[-1])
    expected = np.array([np.interp(t_irregular[late], t_regular, y_regular[:, k]) for k in range(3)]).T
    np.testing.assert_allclose(y_irregular[late], expected, atol=5e-4)
    # Treating the same samples as regular (ignoring their times) is several times further off.
    y_wrong = _run(ONE_EURO.build(), ramp(t_irregular), np.arange(t_irregular.size) / RATE_HZ)
    assert np.abs(y_wrong[late] - expected).max() > 1.2e-3


def test_reset_forgets_the_estimate_and_the_speed() -> None:
    used, fresh = ONE_EURO.build(), ONE_EURO.build()
    for k in range(50):
        used(np.array([0.01 * k, -0.02 * k]), k / RATE_HZ)
    used.reset()
    assert used.value is None
    x = _noisy(np.full((100, 2), 3.0))
    t = 100.0 + _times(1.0)
    np.testing.assert_array_equal(_run(used, x, t), _run(fresh, x, t))
    used.reset()
    np.testing.assert_array_equal(used(np.array([7.0, 7.0]), 200.0), [7.0, 7.0])  # passes unchanged


def test_repeated_timestamps_hold_and_backward_time_or_nan_raise_without_changing_the_state() -> None:
    filt = ONE_EURO.build()
    filt(np.zeros(3), 1.0)
    y = filt(np.ones(3), 1.01)
    np.testing.assert_array_equal(filt(np.full(3, 5.0), 1.01), y)  # the same instant: the same estimate
    with pytest.raises(UnsafeInputError, match="back"):
        filt(np.ones(3), 1.0)
    with pytest.raises(UnsafeInputError):
        filt(np.array([np.nan, 0.0, 0.0]), 1.02)
    with pytest.raises(UnsafeInputError):
        filt(np.ones(4), 1.02)
    np.testing.assert_array_equal(filt.value, y)


def test_ema_moves_alpha_of_the_way_every_sample() -> None:
    filt = EmaFilterConfig(alpha=0.25).build()
    filt(np.zeros(2), 0.0)
    np.testing.assert_allclose(filt(np.ones(2), 0.0), 0.25)  # per sample: equal times still filter
    np.testing.assert_allclose(filt(np.ones(2), 0.5), 0.25 + 0.75 * 0.25)


@pytest.mark.parametrize(
    "config",
    [
        lambda: EmaFilterConfig(alpha=0.0),
        lambda: EmaFilterConfig(alpha=1.5),
        lambda: EmaFilterConfig(alpha=float("nan")),
        lambda: OneEuroFilterConfig(min_cutoff_hz=0.0),
        lambda: OneEuroFilterConfig(min_cutoff_hz=-1.0),
        lambda: OneEuroFilterConfig(min_cutoff_hz=float("inf")),
        lambda: OneEuroFilterConfig(beta=-0.1),
        lambda: OneEuroFilterConfig(beta=float("nan")),
        lambda: OneEuroFilterConfig(d_cutoff_hz=0.0),
        lambda: PoseFilterConfig(position=OneEuroFilterConfig(), rotation=EmaFilterConfig(alpha=2.0)),
        lambda: PoseFilterConfig(position=EmaFilterConfig(alpha=-1.0)),
    ],
)
def test_out_of_range_parameters_raise_instead_of_disabling_the_filter(config) -> None:  # noqa: ANN001
    with pytest.raises(TeleopError, match="filter"):
        config().build()


# ------------------------------------------------------------------------------------------ pose filter
def _pose(p: np.ndarray, rotvec: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(rotvec).as_matrix()
    T[:3, 3] = p
    return T


def _noisy_poses(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    rotvec0 = np.array([0.3, -0.2, 1.0])
    return [
        _pose(np.array([0.4, 0.1, 0.3]) + rng.normal(0, NOISE_M, 3), rotvec0 + rng.normal(0, NOISE_RAD, 3))
        for _ in range(n)
    ]


def test_pose_filter_removes_position_and_rotation_jitter() -> None:
    filt = PoseFilterConfig(position=ONE_EURO).build()
    poses = _noisy_poses(1000, seed=4)
    out = [filt(T, k / RATE_HZ) for k, T in enumerate(poses)]
    R_true = Rotation.from_rotvec([0.3, -0.2, 1.0])
    raw_angles = (Rotation.from_matrix([T[:3, :3] for T in poses[200:]]) * R_true.inv()).magnitude()
    out_angles = (Rotation.from_matrix([T[:3, :3] for T in out[200:]]) * R_true.inv()).magnitude()
    assert out_angles.mean() < raw_angles.mean() / 5
    positions = np.array([T[:3, 3] for T in out[200:]])
    assert positions.std(axis=0).max() < NOISE_M / 5
    for T in out:
        np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-9)
        np.testing.assert_array_equal(T[3], (0, 0, 0, 1))


def test_pose_filter_does_not_depend_on_the_axes_of_the_frame() -> None:
    """Filtering poses seen from a rotated frame gives the rotated output (isotropic speeds)."""
    T_new_old = _pose(np.array([1.0, -2.0, 0.5]), np.array([0.4, 1.2, -0.7]))
    a, b = PoseFilterConfig(position=ONE_EURO).build(), PoseFilterConfig(position=ONE_EURO).build()
    rng = np.random.default_rng(5)
    for k in range(200):
        T = _pose(rng.normal(0, 0.05, 3) + 0.002 * k, rng.normal(0, 0.1, 3) + 0.01 * k)
        np.testing.assert_allclose(b(T_new_old @ T, k / RATE_HZ), T_new_old @ a(T, k / RATE_HZ), atol=1e-9)


def test_pose_filter_with_an_ema_slerps_alpha_of_the_rotation() -> None:
    filt = PoseFilterConfig(position=EmaFilterConfig(alpha=0.25)).build()
    filt(np.eye(4), 0.0)
    T = filt(_pose(np.array([0.4, 0.0, 0.0]), np.array([0.0, 0.0, 0.8])), 0.01)
    np.testing.assert_allclose(T[:3, 3], (0.1, 0.0, 0.0), atol=1e-12)
    np.testing.assert_allclose(Rotation.from_matrix(T[:3, :3]).as_rotvec(), (0, 0, 0.2), atol=1e-12)
