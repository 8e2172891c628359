"""The train/validation split of an exported dataset: by whole episodes, deterministic in the seed."""

from __future__ import annotations

import numpy as np

RULE = ("round(episodes * valid_fraction) episodes (at least 1 when valid_fraction > 0, at most all but one) "
        "drawn without replacement by numpy.random.default_rng(seed).choice; the same rule as diffusion_policy's "
        "get_val_mask(n_episodes, val_ratio, seed)")


def valid_mask(episodes: int, valid_fraction: float, seed: int) -> np.ndarray:
    """Which of `episodes` episodes (in dataset order) are held out for validation, (episodes,) bool.

    Every episode is in exactly one of the two sets. With valid_fraction > 0 at least one episode is held out
    and at least one kept for training (a single episode is kept for training).
    """
    mask = np.zeros(episodes, dtype=bool)
    if valid_fraction <= 0 or episodes < 2:
        return mask
    held_out = min(max(1, round(episodes * valid_fraction)), episodes - 1)
    mask[np.random.default_rng(seed).choice(episodes, size=held_out, replace=False)] = True
    return mask
