"""The statistics primitives and what they say about the paper's table (DESIGN "Measured facts -> Statistics")."""

import numpy as np
import pytest
from scipy.stats import binomtest

from apo_planner.artifacts import EntryOutcome
from apo_planner.benchmarks import BENCHMARKS
from apo_planner.evaluation.statistics import compute, paper_support
from apo_planner.stats import (
    best_case_p,
    bootstrap_resamples,
    mcnemar_exact,
    min_distinguishable_gain,
    paired_bootstrap,
    proportion_interval,
)


def test_accuracy_intervals_are_scipys_wilson_and_exact_intervals():
    for k, n in ((0, 24), (16, 24), (24, 24), (93, 100)):
        for method in ("wilson", "exact"):
            ci = binomtest(k, n).proportion_ci(method=method)
            got = proportion_interval(k, n, method)
            assert (got.value, got.low, got.high) == (k / n, ci.low, ci.high)
    assert proportion_interval(0, 0) == proportion_interval(0, 0, "exact")  # no entries: [0, 1]


def test_mcnemar_is_the_exact_two_sided_binomial_on_the_discordant_entries():
    for only_a, only_b in ((2, 0), (3, 1), (12, 3), (0, 7)):
        assert mcnemar_exact(only_a, only_b) == binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert mcnemar_exact(0, 0) == 1.0
    # a net gain of 2 entries can never reach p < 0.05; 6 is the least that can
    assert best_case_p(2) == 0.5 and best_case_p(5) == 0.0625 and best_case_p(6) == 0.03125
    assert min_distinguishable_gain() == 6


def test_the_paired_bootstrap_is_seeded_and_keeps_each_stratum_its_size():
    strata = ["a"] * 24 + ["b"] * 100
    idx = bootstrap_resamples(len(strata), strata, resamples=50, seed=1)
    labels = np.asarray(strata)[idx]
    assert ((labels == "a").sum(axis=1) == 24).all() and ((labels == "b").sum(axis=1) == 100).all()
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, 124).astype(float), rng.integers(0, 2, 124).astype(float)
    first = paired_bootstrap(a, b, strata=strata, seed=7)
    assert first == paired_bootstrap(a, b, strata=strata, seed=7)
    assert first != paired_bootstrap(a, b, strata=strata, seed=8)
    assert first.value == pytest.approx((a - b).mean()) and first.low <= first.value <= first.high


def test_the_papers_gains_cannot_be_told_from_noise_at_their_categories_sizes():
    rows = {p.category: p for p in paper_support(BENCHMARKS.get("bfcl"))}
    lpm = rows["live_parallel_multiple"]
    assert (lpm.entries, lpm.points_per_entry, lpm.gain_entries, lpm.best_p) == (24, 4.167, 2.0, 0.5)
    assert not lpm.distinguishable and lpm.min_gain_entries == 6 and lpm.min_gain_points == 25.0
    java, multiple = rows["simple_java"], rows["multiple"]
    assert (java.entries, java.points_per_entry, java.gain_entries, java.best_p) == (100, 1.0, 1.0, 1.0)
    assert (multiple.entries, multiple.points_per_entry, multiple.gain_entries, multiple.best_p) == (
        200,
        0.5,
        4.0,
        0.125,
    )
    assert not any(p.distinguishable for p in rows.values())
    assert "a net gain of 2 can at best reach p=0.5" in lpm.sentence and "one entry is 4.17 points" in lpm.sentence


def test_a_two_entry_gain_on_24_reads_as_not_distinguishable():
    """The issue's own example: "+2 entries of 24, p=0.5"."""
    fc = [EntryOutcome(id=f"e{i}", category="live_parallel_multiple", passed=i < 16, calls=2) for i in range(24)]
    planner = [o.model_copy(update={"passed": o.passed or o.id in ("e16", "e17")}) for o in fc]
    stats = compute([{"fc": fc, "planner": planner}], ["fc", "planner"], ["live_parallel_multiple"], "fc", None)
    pair = next(p for p in stats.pairs if p.scope == "pooled")
    assert (pair.only_a, pair.only_b, pair.p_value, pair.significant) == (2, 0, 0.5, False)
    assert "not distinguishable from executor alone (FC) at 95% (+2 entries of 24: 2 gained, 0 lost, p=0.5" in (
        pair.sentence
    )
    accuracy = next(s for s in stats.arms if s.arm == "planner" and s.scope == "pooled").accuracy
    assert accuracy.value == 75.0 and (accuracy.low, accuracy.high) == (55.1, 88.0)
    (claim,) = [c for c in stats.claims if c.scope == "pooled"]
    assert claim.fewer_calls == "undetermined" and "not shown" in claim.sentence
