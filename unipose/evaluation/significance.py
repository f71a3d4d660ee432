"""How sure a figure is: bootstrap intervals of a mean over test items, and of the paired difference of two systems.

Headline metrics are means of per-item values (a pose's MPJPE, a text's ROUGE-L, whether a text retrieves its pose
first). Resampling the items with replacement (Efron's percentile bootstrap) gives a 95 % interval of the mean; for
two systems scored on the same items, resampling the item-wise differences gives the interval of the difference,
and one system "beats" the other only when that interval excludes zero.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


DEFAULT_NUM_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean over items and its bootstrap interval."""

    mean: float
    low: float
    high: float
    num_items: int

    def to_dict(self) -> dict:
        return asdict(self)

    def excludes(self, value: float) -> bool:
        return not self.low <= value <= self.high


def _values(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"`{name}` is empty: a bootstrap needs at least one item.")
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` holds NaN or infinite values.")
    return array


def bootstrap_interval(
    values, num_resamples: int = DEFAULT_NUM_RESAMPLES, confidence: float = DEFAULT_CONFIDENCE, seed: int = 0
) -> Interval:
    """
    The mean of `values` and its percentile-bootstrap interval.

    Args:
        values (array-like of shape `(N,)`): one value per test item.
        num_resamples (`int`, *optional*, defaults to 2000), confidence (`float`, *optional*, defaults to 0.95),
        seed (`int`, *optional*, defaults to 0): the resampling.
    Returns:
        [`Interval`].
    """
    values = _values(values, "values")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}.")
    if num_resamples < 1:
        raise ValueError(f"`num_resamples` must be >= 1, got {num_resamples!r}.")
    generator = np.random.default_rng(seed)
    indices = generator.integers(0, values.size, size=(num_resamples, values.size))
    means = values[indices].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(values.mean()), float(low), float(high), int(values.size))


def paired_difference(ours, theirs, **kwargs) -> Interval:
    """The mean of `ours - theirs` over the same items, with its bootstrap interval (see [`bootstrap_interval`])."""
    ours, theirs = _values(ours, "ours"), _values(theirs, "theirs")
    if ours.shape != theirs.shape:
        raise ValueError(f"A paired difference needs the same items: got {ours.size} and {theirs.size} values.")
    return bootstrap_interval(ours - theirs, **kwargs)


def verdict(difference: Interval, lower_is_better: bool) -> str:
    """`"better"`, `"worse"` or `"no significant difference"`: whether the interval of `ours - theirs` excludes 0,
    and on which side."""
    if not difference.excludes(0.0):
        return "no significant difference"
    better = difference.high < 0 if lower_is_better else difference.low > 0
    return "better" if better else "worse"


__all__ = ["Interval", "bootstrap_interval", "paired_difference", "verdict"]
