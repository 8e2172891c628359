"""Low-pass filters for vectors and poses: exponential moving average and the One Euro filter.

The One Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a first-order low-pass filter whose cutoff
rises with the signal's speed: `cutoff = min_cutoff + beta * |dx/dt|`, where dx/dt is itself low-passed at
`d_cutoff`. Slow motion (a hand held still) is smoothed hard, which removes jitter; fast motion passes with
little lag. Each step's smoothing factor comes from the real time between samples, so irregular rates work.

Every filter here is a gain on the innovation: `x_hat += a * (x - x_hat)`, with `a` constant (EMA) or
adaptive (One Euro). A pose filter applies the same rule to the rotation on the manifold:
`R_hat = exp(a * log(R R_hat^T)) R_hat` (a slerp by `a`), with the One Euro speed the angular speed.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from kinematics.safety import as_finite_array
from teleop.errors import TeleopError, UnsafeInputError


@dataclass(frozen=True)
class EmaFilterConfig:
    """Exponential moving average: `x_hat += alpha * (x - x_hat)` per sample (time between samples unused).

    Attributes:
        alpha: Weight of each new sample, in (0, 1]; 1 passes the input through unchanged.
    """

    alpha: float = 0.5

    def build(self) -> EmaFilter:
        """Validate and return the stateful vector filter."""
        self.validate()
        return EmaFilter(self)

    def validate(self) -> None:
        """Raise TeleopError if alpha is outside (0, 1]."""
        _check(
            _finite(self.alpha) and 0.0 < self.alpha <= 1.0,
            f"EmaFilterConfig.alpha must be in (0, 1], got {self.alpha}",
        )


@dataclass(frozen=True)
class OneEuroFilterConfig:
    """One Euro filter settings (Casiez et al. 2012).

    Attributes:
        min_cutoff_hz: Cutoff frequency at rest [Hz], > 0; lower removes more jitter and adds lag when slow.
        beta: Cutoff increase per unit of speed [Hz per (unit/s)], >= 0; higher reduces lag when fast.
        d_cutoff_hz: Cutoff of the speed estimate [Hz], > 0.

    The defaults suit hand-held positions in metres (2.5 Hz cutoff at 0.2 m/s).
    """

    min_cutoff_hz: float = 0.5
    beta: float = 10.0
    d_cutoff_hz: float = 1.0

    def build(self) -> OneEuroFilter:
        """Validate and return the stateful vector filter."""
        self.validate()
        return OneEuroFilter(self)

    def validate(self) -> None:
        """Raise TeleopError for a non-positive cutoff or a negative beta."""
        c = self
        _check(_finite(c.min_cutoff_hz) and c.min_cutoff_hz > 0, f"min_cutoff_hz must be > 0 Hz, got {c.min_cutoff_hz}")
        _check(_finite(c.beta) and c.beta >= 0, f"beta must be >= 0 (0: a fixed cutoff), got {c.beta}")
        _check(_finite(c.d_cutoff_hz) and c.d_cutoff_hz > 0, f"d_cutoff_hz must be > 0 Hz, got {c.d_cutoff_hz}")


FilterConfig = EmaFilterConfig | OneEuroFilterConfig


@dataclass(frozen=True)
class PoseFilterConfig:
    """Filter of a pose T (4, 4): position and rotation each with its own gain.

    Attributes:
        position: Filter of the position [m] (One Euro speeds in m/s).
        rotation: Filter of the rotation (One Euro speeds in rad/s); None uses the position settings.
    """

    position: FilterConfig
    rotation: FilterConfig | None = None

    def build(self) -> PoseFilter:
        """Validate and return the stateful pose filter."""
        rotation = self.position if self.rotation is None else self.rotation
        return PoseFilter(self, _gain(self.position, isotropic=True), _gain(rotation, isotropic=True))


# ------------------------------------------------------------------------------------------------- gains
class _Gain(abc.ABC):
    """Smoothing factor for one step from the innovation (input - previous estimate)."""

    uses_time = True  # False: a per-sample gain, so samples with equal timestamps are still filtered

    @abc.abstractmethod
    def __call__(self, innovation: np.ndarray, dt: float) -> float | np.ndarray: ...

    def reset(self) -> None:  # noqa: B027 - stateless gains have nothing to forget
        pass


class _EmaGain(_Gain):
    uses_time = False

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha

    def __call__(self, innovation: np.ndarray, dt: float) -> float:
        return self.alpha


class _OneEuroGain(_Gain):
    """Adaptive gain from the low-passed rate of change; per component, or from its norm if isotropic."""

    def __init__(self, config: OneEuroFilterConfig, isotropic: bool) -> None:
        self.config = config
        self.isotropic = isotropic
        self._rate: np.ndarray | None = None  # low-passed rate of change [unit/s]

    def __call__(self, innovation: np.ndarray, dt: float) -> float | np.ndarray:
        c = self.config
        rate = innovation / dt
        a_d = smoothing_factor(c.d_cutoff_hz, dt)
        previous = 0.0 if self._rate is None else self._rate  # at rest before the first step, as in the paper
        self._rate = previous + a_d * (rate - previous)
        speed = float(np.linalg.norm(self._rate)) if self.isotropic else np.abs(self._rate)
        return smoothing_factor(c.min_cutoff_hz + c.beta * speed, dt)

    def reset(self) -> None:
        self._rate = None


def _gain(config: FilterConfig, isotropic: bool) -> _Gain:
    config.validate()
    if isinstance(config, EmaFilterConfig):
        return _EmaGain(config.alpha)
    if isinstance(config, OneEuroFilterConfig):
        return _OneEuroGain(config, isotropic)
    raise TeleopError(f"unknown filter config {type(config).__name__}: use EmaFilterConfig or OneEuroFilterConfig")


def smoothing_factor(cutoff_hz: float | np.ndarray, dt: float) -> float | np.ndarray:
    """Gain of a first-order low-pass filter with `cutoff_hz` [Hz] over a step of dt [s], in (0, 1)."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


# ----------------------------------------------------------------------------------------------- filters
class VectorFilter:
    """Stateful filter of vectors of a fixed shape with timestamps; the first sample passes unchanged."""

    def __init__(self, gain: _Gain) -> None:
        self._gain = gain
        self._x: np.ndarray | None = None
        self._t = 0.0

    @property
    def value(self) -> np.ndarray | None:
        """The current estimate, or None before the first sample (or after reset)."""
        return None if self._x is None else self._x.copy()

    def reset(self) -> None:
        """Forget the estimate and the speed: the next sample passes unchanged."""
        self._x = None
        self._gain.reset()

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered value of sample x (any fixed shape) taken at monotonic time t [s].

        With a time-based filter (One Euro), a sample with the same timestamp as the previous one returns
        the previous estimate; an EMA filters every sample.

        Raises:
            UnsafeInputError: x non-finite or of another shape than before, or t earlier than the previous
                sample; the filter state is unchanged.
        """
        x = as_finite_array(x, None if self._x is None else self._x.shape, "filter input")
        if self._x is None:
            self._x, self._t = x.copy(), _time(t)
            return x.copy()
        dt = _step(self._t, t)
        if dt == 0.0 and self._gain.uses_time:
            return self._x.copy()
        innovation = x - self._x
        self._x = self._x + self._gain(innovation, dt) * innovation
        self._t = float(t)
        return self._x.copy()


class EmaFilter(VectorFilter):
    """Exponential moving average of vectors; build with EmaFilterConfig.build()."""

    def __init__(self, config: EmaFilterConfig) -> None:
        super().__init__(_gain(config, isotropic=False))
        self.config = config


class OneEuroFilter(VectorFilter):
    """One Euro filter of vectors, each component with its own adaptive cutoff; build with
    OneEuroFilterConfig.build()."""

    def __init__(self, config: OneEuroFilterConfig) -> None:
        super().__init__(_gain(config, isotropic=False))
        self.config = config


class PoseFilter:
    """Filter of poses T (4, 4): position by a gain on the displacement, rotation by a slerp with a gain
    on the rotation vector log(R R_hat^T); One Euro speeds are |velocity| [m/s] and |angular velocity|
    [rad/s], so the filter does not depend on the axes of the frame. Build with PoseFilterConfig.build()."""

    def __init__(self, config: PoseFilterConfig, position_gain: _Gain, rotation_gain: _Gain) -> None:
        self.config = config
        self._position_gain, self._rotation_gain = position_gain, rotation_gain
        self._T: np.ndarray | None = None
        self._t = 0.0

    @property
    def value(self) -> np.ndarray | None:
        """The current pose estimate (4, 4), or None before the first sample (or after reset)."""
        return None if self._T is None else self._T.copy()

    def reset(self) -> None:
        """Forget the estimate and the speeds: the next pose passes unchanged."""
        self._T = None
        self._position_gain.reset()
        self._rotation_gain.reset()

    def __call__(self, T: np.ndarray, t: float) -> np.ndarray:
        """The filtered pose (4, 4) of pose T (4, 4, a proper rotation) taken at monotonic time t [s].

        Samples with equal timestamps are handled as in VectorFilter.__call__.

        Raises:
            UnsafeInputError: T non-finite, not 4x4 or without a proper rotation, or t earlier than the
                previous sample; the filter state is unchanged.
        """
        T = as_finite_array(T, (4, 4), "pose to filter")
        R = T[:3, :3]
        if np.abs(R.T @ R - np.eye(3)).max() > 1e-3 or np.linalg.det(R) <= 0:
            raise UnsafeInputError("pose to filter has no proper rotation: orthonormalise it first")
        if self._T is None:
            self._T, self._t = T.copy(), _time(t)
            return T.copy()
        dt = _step(self._t, t)
        if dt == 0.0 and (self._position_gain.uses_time or self._rotation_gain.uses_time):
            return self._T.copy()
        out = np.eye(4)
        dp = T[:3, 3] - self._T[:3, 3]
        out[:3, 3] = self._T[:3, 3] + self._position_gain(dp, dt) * dp
        R_hat = self._T[:3, :3]
        rotvec = Rotation.from_matrix(T[:3, :3] @ R_hat.T).as_rotvec()
        a = float(self._rotation_gain(rotvec, dt))
        out[:3, :3] = Rotation.from_rotvec(a * rotvec).as_matrix() @ R_hat
        self._T, self._t = out, float(t)
        return out.copy()


def pose_filter_config(config: FilterConfig | PoseFilterConfig) -> PoseFilterConfig:
    """A PoseFilterConfig from a vector filter config (used for position and rotation) or itself."""
    return config if isinstance(config, PoseFilterConfig) else PoseFilterConfig(position=config)


def _time(t: float) -> float:
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise UnsafeInputError(f"filter timestamp must be a number of seconds, got {t!r}") from None
    if not math.isfinite(value):
        raise UnsafeInputError(f"filter timestamp must be finite, got {t!r}")
    return value


def _step(t_previous: float, t: float) -> float:
    dt = _time(t) - t_previous
    if dt < 0:
        raise UnsafeInputError(f"filter timestamps went back by {-dt:.6f} s: pass monotonic times, or reset the filter")
    return dt


def _finite(x: float) -> bool:
    try:
        return math.isfinite(x)
    except TypeError:
        return False


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise TeleopError(f"invalid filter config: {message}")
