"""Small-sample statistics every stage reports with: intervals, the exact paired test, the paired bootstrap.

Benchmark categories are small (BFCL's `live_parallel_multiple` has 24 entries, so one entry is 4.17
points) and held-out plan sets are small too, so every reported difference carries an interval and,
for paired pass/fail outcomes, an exact test. Kept in the core because two stages use it: the
evaluation stage (arms of a benchmark run, paired by entry) and training (base vs merged planner,
paired by held-out prompt). Everything here is a pure function of its inputs and a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval (same units)."""

    value: float
    low: float
    high: float

    def rounded(self, digits: int) -> Estimate:
        return Estimate(round(self.value, digits), round(self.low, digits), round(self.high, digits))


def proportion_interval(successes: int, n: int, method: str = "wilson", confidence: float = CONFIDENCE) -> Estimate:
    """A binomial proportion with its interval (scipy's Wilson score or Clopper-Pearson `exact`); n=0 gives
    the uninformative [0, 1]."""
    if n == 0:
        return Estimate(0.0, 0.0, 1.0)
    from scipy.stats import binomtest

    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method=method)
    return Estimate(successes / n, float(ci.low), float(ci.high))


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """The exact McNemar test: two-sided binomial test of the discordant pairs against p = 1/2. No discordant
    pairs at all gives 1.0 (nothing distinguishes the two)."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(only_a, discordant, 0.5, alternative="two-sided").pvalue)


def best_case_p(net_gain: int) -> float:
    """The smallest exact-McNemar p-value a net gain of `net_gain` entries can have: every discordant entry
    in one direction (`net_gain` vs 0). A gain of 2 entries can never get below 0.5."""
    return mcnemar_exact(abs(net_gain), 0)


def min_distinguishable_gain(alpha: float = 1 - CONFIDENCE) -> int:
    """The smallest net gain in entries whose best case reaches p < alpha (6 at 5%: p = 0.03125)."""
    gain = 1
    while best_case_p(gain) >= alpha:
        gain += 1
    return gain


def _strata_indices(strata: Sequence[str] | None, n: int) -> list[np.ndarray]:
    if strata is None:
        return [np.arange(n)]
    labels = np.asarray(strata)
    return [np.flatnonzero(labels == s) for s in dict.fromkeys(strata)]


def bootstrap_resamples(
    n: int, strata: Sequence[str] | None = None, resamples: int = 2000, seed: int = 0
) -> np.ndarray:
    """(resamples, n) row indices drawn with replacement, within each stratum when `strata` is given (so every
    resample keeps each category's size: a pooled interval stratified by category)."""
    rng = np.random.default_rng(seed)
    groups = _strata_indices(strata, n)
    parts = [g[rng.integers(0, len(g), size=(resamples, len(g)))] for g in groups if len(g)]
    return np.concatenate(parts, axis=1) if parts else np.zeros((resamples, 0), dtype=int)


def percentile_interval(samples: np.ndarray, value: float, confidence: float = CONFIDENCE) -> Estimate:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return Estimate(float(value), float(low), float(high))


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    strata: Sequence[str] | None = None,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """mean(a) - mean(b) over paired rows (entry i of `a` is entry i of `b`), with a percentile interval from
    resampling rows (stratified by `strata`); the same seed gives the same interval."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y):
        raise ValueError(f"paired samples differ in length: {len(x)} vs {len(y)}")
    if len(x) == 0:
        return Estimate(0.0, 0.0, 0.0)
    idx = bootstrap_resamples(len(x), strata, resamples, seed)
    diff = x - y
    return percentile_interval(diff[idx].mean(axis=1), float(diff.mean()), confidence)


def paired_ratio_bootstrap(
    metric: Callable[[np.ndarray], float | np.ndarray],
    a: np.ndarray,
    b: np.ndarray,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Estimate:
    """metric(a) - metric(b) for a metric of per-row count columns (a ratio of sums, say), with a percentile
    interval from resampling the same rows of both. `metric` takes an (..., rows, columns) array and reduces
    the rows axis, so it is evaluated on all resamples at once."""
    if len(a) == 0:
        return Estimate(0.0, 0.0, 0.0)
    idx = bootstrap_resamples(len(a), None, resamples, seed)
    samples = np.asarray(metric(a[idx])) - np.asarray(metric(b[idx]))
    return percentile_interval(samples, float(metric(a) - metric(b)), confidence)
