"""How sure a figure is: bootstrap intervals of a mean over test items, and of the paired difference of two systems.

Headline metrics are means of per-item values (a pose's MPJPE, a text's ROUGE-L, whether a text retrieves its pose
first). Resampling the items with replacement (Efron's percentile bootstrap) gives a 95 % interval of the mean; for
two systems scored on the same items, resampling the item-wise differences gives the interval of the difference,
and one system "beats" the other only when that interval excludes zero. Items that are not independent (several
captions of one record) are resampled by group, and a verdict needs at least `MIN_ITEMS_FOR_VERDICT` independent
items: on fewer, a percentile bootstrap's interval of a mean is too narrow to be trusted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_NUM_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
MIN_ITEMS_FOR_VERDICT = 30
TOO_FEW_ITEMS = "too few items"


@dataclass(frozen=True)
class Interval:
    """A mean over items and its bootstrap interval; `num_groups` counts the independent groups that were resampled
    when the items came in groups (`None`: every item on its own)."""

    mean: float
    low: float
    high: float
    num_items: int
    num_groups: int | None = None

    def to_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @property
    def num_independent(self) -> int:
        return self.num_items if self.num_groups is None else self.num_groups

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
    values,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    groups=None,
) -> Interval:
    """
    The mean of `values` and its percentile-bootstrap interval.

    Args:
        values (array-like of shape `(N,)`): one value per test item.
        num_resamples (`int`, *optional*, defaults to 2000), confidence (`float`, *optional*, defaults to 0.95),
        seed (`int`, *optional*, defaults to 0): the resampling.
        groups (array-like of shape `(N,)`, *optional*): the group of each item (e.g. its record, when a record
            gives several items): whole groups are resampled, and the mean is over their items (a cluster
            bootstrap). Groups numbered in the order of the items, one item each, resample as items do.
    Returns:
        [`Interval`].
    """
    values = _values(values, "values")
    if not 0 < confidence < 1:
        raise ValueError(f"`confidence` must be in (0, 1), got {confidence!r}.")
    if num_resamples < 1:
        raise ValueError(f"`num_resamples` must be >= 1, got {num_resamples!r}.")
    generator = np.random.default_rng(seed)
    if groups is None:
        indices = generator.integers(0, values.size, size=(num_resamples, values.size))
        means, num_groups = values[indices].mean(axis=1), None
    else:
        groups = np.asarray(groups).reshape(-1)
        if groups.shape != values.shape:
            raise ValueError(f"`groups` must give one group per value ({values.size}), got {groups.size}.")
        _, group_of = np.unique(groups, return_inverse=True)
        sums, counts = np.bincount(group_of, weights=values), np.bincount(group_of)
        num_groups = len(counts)
        chosen = generator.integers(0, num_groups, size=(num_resamples, num_groups))
        means = sums[chosen].sum(axis=1) / counts[chosen].sum(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(values.mean()), float(low), float(high), int(values.size), num_groups)


def paired_difference(ours, theirs, **kwargs) -> Interval:
    """The mean of `ours - theirs` over the same items, with its bootstrap interval (see [`bootstrap_interval`])."""
    ours, theirs = _values(ours, "ours"), _values(theirs, "theirs")
    if ours.shape != theirs.shape:
        raise ValueError(f"A paired difference needs the same items: got {ours.size} and {theirs.size} values.")
    return bootstrap_interval(ours - theirs, **kwargs)


def verdict(difference: Interval, lower_is_better: bool) -> str:
    """`"better"`, `"worse"` or `"no significant difference"`: whether the interval of `ours - theirs` excludes 0,
    and on which side; `"too few items"` on fewer than `MIN_ITEMS_FOR_VERDICT` independent items."""
    if difference.num_independent < MIN_ITEMS_FOR_VERDICT:
        return TOO_FEW_ITEMS
    if not difference.excludes(0.0):
        return "no significant difference"
    better = difference.high < 0 if lower_is_better else difference.low > 0
    return "better" if better else "worse"


__all__ = [
    "MIN_ITEMS_FOR_VERDICT",
    "TOO_FEW_ITEMS",
    "Interval",
    "bootstrap_interval",
    "paired_difference",
    "verdict",
]
