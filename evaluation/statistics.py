"""The comparison's statistics, from every arm's per-entry outcomes (`Comparison.runs`), for any benchmark.

Per arm and scope (each category, and `pooled` over them): accuracy with its Wilson 95% interval, calls
against the ground truth, tokens, latency percentiles and the benchmark's cost per correct entry. Per pair
of arms on the same entries: the 2x2 table, the exact McNemar test, seeded paired-bootstrap intervals of the
accuracy difference (stratified by category when pooled), of the calls difference and of the tokens
difference, and one sentence that says what they show. The pairs are the decomposition: the executor alone
-> + placebo (the longer prompt) -> + planner (the plan's content) -> + oracle plan (the ceiling), the
planner against its own plans scored alone (what the executor adds to, or loses from, a plan), and the two
executor modes against each other. docs/evaluate-statistics.md says what each number can and cannot show.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

import numpy as np

from apo_planner.artifacts import (
    POOLED,
    ArmStats,
    ClaimCheck,
    ComparisonStats,
    EntryOutcome,
    Interval,
    PairStats,
    PaperSupport,
    RepeatSpread,
)
from apo_planner.benchmarks import ARM_LABELS, Benchmark
from apo_planner.stats import (
    CONFIDENCE,
    Estimate,
    best_case_p,
    mcnemar_exact,
    min_distinguishable_gain,
    paired_bootstrap,
    proportion_interval,
)

ALPHA = 1 - CONFIDENCE

# (a, b, what the difference a - b measures); `baseline` / `other` stand for the executor alone in the planner
# arm's mode and in the other mode.
PAIRS = (
    ("planner", "baseline", "the planner's effect on this executor"),
    ("planner", "other", "the planner against the executor's other mode"),
    ("other", "baseline", "the mode effect: the executor's two modes, both alone"),
    ("placebo", "baseline", "what a plan-shaped prompt of the same length does by itself"),
    ("planner", "placebo", "what the plan's content adds beyond its length"),
    ("oracle", "baseline", "the ceiling: what a perfect plan does for this executor"),
    ("oracle", "planner", "what a perfect plan would still add over the planner's"),
    ("planner", "plan_only", "what the executor adds to the planner's own plan (or loses by not following it)"),
)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def _p(value: float) -> float:
    return float(f"{value:.4g}")


def _interval(estimate: Estimate, scale: float, digits: int) -> Interval:
    return Interval(
        value=round(estimate.value * scale, digits),
        low=round(estimate.low * scale, digits),
        high=round(estimate.high * scale, digits),
    )


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def arm_stats(arm: str, scope: str, outcomes: list[EntryOutcome]) -> ArmStats:
    """One arm's numbers over one scope's entries."""
    n, correct = len(outcomes), sum(o.passed for o in outcomes)
    latencies = [o.latency_s for o in outcomes if o.latency_s is not None]
    costs = [o.cost for o in outcomes if o.cost is not None]
    cost = sum(costs) if costs else None
    planned = [o.planned for o in outcomes if o.planned is not None]
    return ArmStats(
        arm=arm,
        scope=scope,
        entries=n,
        correct=correct,
        accuracy=_interval(proportion_interval(correct, n), 100, 2),
        avg_calls=_round(_mean(o.calls for o in outcomes), 4),
        excess_calls=_round(_mean(o.excess_calls for o in outcomes), 4),
        missing_calls=_round(_mean(o.missing_calls for o in outcomes), 4),
        executor_tokens=_round(_mean(o.executor_tokens for o in outcomes), 1),
        planner_tokens=_round(_mean(o.planner_tokens for o in outcomes), 1),
        tokens=_round(_mean(o.executor_tokens + o.planner_tokens for o in outcomes), 1),
        latency_p50_s=_round(np.percentile(latencies, 50), 4) if latencies else None,
        latency_p95_s=_round(np.percentile(latencies, 95), 4) if latencies else None,
        cost=float(f"{cost:.4g}") if cost is not None else None,
        cost_per_correct=float(f"{cost / correct:.4g}") if cost is not None and correct else None,
        planned=sum(planned) if planned else None,
    )


def _paired(a: list[EntryOutcome], b: list[EntryOutcome]) -> list[tuple[EntryOutcome, EntryOutcome]]:
    """The entries both arms answered, matched by (category, id), in `a`'s order."""
    other = {(o.category, o.id): o for o in b}
    return [(x, other[(x.category, x.id)]) for x in a if (x.category, x.id) in other]


def pair_stats(
    a: str,
    b: str,
    question: str,
    scope: str,
    pairs: list[tuple[EntryOutcome, EntryOutcome]],
    labels: dict[str, str],
    resamples: int,
    seed: int,
) -> PairStats:
    """Arm `a` against arm `b` on the same entries (see module docstring)."""
    n = len(pairs)
    both = sum(x.passed and y.passed for x, y in pairs)
    only_a = sum(x.passed and not y.passed for x, y in pairs)
    only_b = sum(y.passed and not x.passed for x, y in pairs)
    strata = [x.category for x, _ in pairs] if scope == POOLED else None
    kwargs = {"strata": strata, "resamples": resamples, "seed": seed}
    acc = paired_bootstrap([float(x.passed) for x, _ in pairs], [float(y.passed) for _, y in pairs], **kwargs)
    calls = paired_bootstrap([x.calls for x, _ in pairs], [y.calls for _, y in pairs], **kwargs)
    tokens = paired_bootstrap(
        [x.executor_tokens + x.planner_tokens for x, _ in pairs],
        [y.executor_tokens + y.planner_tokens for _, y in pairs],
        **kwargs,
    )
    p_value = _p(mcnemar_exact(only_a, only_b))
    delta_accuracy = _interval(acc, 100, 2)
    delta_calls = _interval(calls, 1, 4) if n else None
    stats = {
        "a": a,
        "b": b,
        "question": question,
        "scope": scope,
        "entries": n,
        "both": both,
        "only_a": only_a,
        "only_b": only_b,
        "neither": n - both - only_a - only_b,
        "p_value": p_value,
        "delta_accuracy": delta_accuracy,
        "delta_calls": delta_calls,
        "delta_tokens": _interval(tokens, 1, 1) if n else None,
        "significant": p_value < ALPHA,
    }
    stats["sentence"] = pair_sentence(stats, labels)
    return PairStats(**stats)


def pair_sentence(stats: dict[str, Any], labels: dict[str, str]) -> str:
    """One plain sentence from a pair's numbers, e.g. "multiple: + planner is not distinguishable from executor
    alone (FC) at 95% (+2 entries of 24: 3 gained, 1 lost, p=0.625; Δ +8.33 points [-8.33, +25.0]) ..."."""
    a, b, n = labels[stats["a"]], labels[stats["b"]], stats["entries"]
    if n == 0:
        return f"{stats['scope']}: {a} and {b} share no entries here; nothing can be said."
    net = stats["only_a"] - stats["only_b"]
    if stats["significant"]:
        verdict = f"{a} is {'higher' if net > 0 else 'lower'} than {b} at 95%"
    else:
        verdict = f"{a} is not distinguishable from {b} at 95%"
    acc = stats["delta_accuracy"]
    text = (
        f"{stats['scope']}: {verdict} ({net:+d} entries of {n}: {stats['only_a']} gained, {stats['only_b']} lost, "
        f"p={stats['p_value']:g}; Δ accuracy {acc.signed()} points)"
    )
    calls = stats["delta_calls"]
    if calls is not None:
        if calls.high < 0:
            reading = "fewer calls"
        elif calls.low > 0:
            reading = "more calls"
        else:
            reading = "no difference in calls shown"
        text += f"; {reading} (Δ calls per entry {calls.signed()})"
    return text + "."


def _scoped(outcomes: list[EntryOutcome], categories: list[str]) -> dict[str, list[EntryOutcome]]:
    out = {c: [o for o in outcomes if o.category == c] for c in categories}
    out[POOLED] = [o for o in outcomes if o.category in categories]
    return out


def _resolve(name: str, baseline: str, other: str | None) -> str | None:
    return {"baseline": baseline, "other": other}.get(name, name)


def pair_list(arms: list[str], baseline: str, other: str | None) -> list[tuple[str, str, str]]:
    """The decomposition's pairs among the arms that ran."""
    out = []
    for a, b, question in PAIRS:
        ra, rb = _resolve(a, baseline, other), _resolve(b, baseline, other)
        if ra in arms and rb in arms and ra != rb:
            out.append((ra, rb, question))
    return out


def _points(value: float) -> str:
    return f"{value:.3g} point{'' if value == 1 else 's'}"


def _entries(value: float) -> str:
    return f"{value:g} entr{'y' if value == 1 else 'ies'}"


def paper_support(bench: Benchmark) -> list[PaperSupport]:
    """Per category of the benchmark's published table: how many points one entry is at the category's full
    size, how many entries the published gain is, and whether any run with that gain could reach p < 0.05."""
    out = []
    need = min_distinguishable_gain(ALPHA)
    for category, paper in bench.paper_table().items():
        size = bench.category_size(category)
        if not size:
            continue
        per_entry = 100 / size
        gain = round(paper["planner"][0] - paper["baseline"][0], 2)
        gain_entries = round(gain / per_entry, 2)
        best = _p(best_case_p(round(gain_entries)))
        distinguishable = best < ALPHA
        sentence = (
            f"{category}: {size} entries, so one entry is {_points(per_entry)}; the published {gain:+g} points "
            f"is {_entries(gain_entries)}, and a net gain of {round(gain_entries)} can at best reach p={best:g} "
            f"(exact McNemar, every discordant entry one way), so it "
            f"{'could' if distinguishable else 'cannot'} be told from noise at this size; the smallest net gain "
            f"that could is {_entries(need)} ({_points(need * per_entry)})."
        )
        out.append(
            PaperSupport(
                category=category,
                entries=size,
                points_per_entry=round(per_entry, 3),
                paper_baseline=paper["baseline"][0],
                paper_planner=paper["planner"][0],
                paper_gain=gain,
                gain_entries=gain_entries,
                best_p=best,
                distinguishable=distinguishable,
                min_gain_entries=need,
                min_gain_points=round(need * per_entry, 2),
                sentence=sentence,
            )
        )
    return out


def claim_check(pair: PairStats, labels: dict[str, str]) -> ClaimCheck:
    """The paper's claim, "fewer calls at equal or better accuracy", read off one planner-vs-baseline pair."""
    calls, acc = pair.delta_calls, pair.delta_accuracy
    fewer = "undetermined" if calls is None or calls.low <= 0 <= calls.high else "yes" if calls.high < 0 else "no"
    net = pair.only_a - pair.only_b
    accuracy = "not distinguishable" if not pair.significant else "better" if net > 0 else "worse"
    against = f"against {labels[pair.b]}, {pair.scope}"
    if accuracy == "worse":
        verdict = f"contradicted {against}: accuracy is lower (Δ {acc.signed()} points, p={pair.p_value:g})"
    elif fewer == "no":
        verdict = f"contradicted {against}: more calls (Δ {calls.signed()} per entry)"
    elif fewer == "undetermined":
        shown = f"Δ {calls.signed()} per entry" if calls else "no calls measured"
        verdict = f"not shown {against}: the calls interval ({shown}) includes 0"
    elif accuracy == "better":
        verdict = f"supported {against}: fewer calls (Δ {calls.signed()}) and higher accuracy (p={pair.p_value:g})"
    else:
        verdict = (
            f"fewer calls shown {against} (Δ {calls.signed()} per entry); equal accuracy is not shown: no difference "
            f"was detected (p={pair.p_value:g}), but the interval {acc.signed()} points still allows a loss of "
            f"{max(0.0, -acc.low):g} points"
        )
    return ClaimCheck(scope=pair.scope, baseline=pair.b, fewer_calls=fewer, accuracy=accuracy, sentence=verdict + ".")


def repeat_spread(
    runs: list[dict[str, list[EntryOutcome]]], arms: list[str], pairs: list[tuple[str, str, str]], categories: list[str]
) -> list[RepeatSpread]:
    """Each arm's accuracy and each pair's accuracy difference in every run, per scope, with their range."""
    if len(runs) < 2:
        return []
    out = []
    scopes = [*categories, POOLED]

    def spread(what: str, scope: str, values: list[float]) -> RepeatSpread:
        values = [round(v, 2) for v in values]
        sd = round(statistics.stdev(values), 2) if len(values) > 1 else None
        return RepeatSpread(what=what, scope=scope, values=values, low=min(values), high=max(values), sd=sd)

    for arm in arms:
        for scope in scopes:
            values = []
            for run in runs:
                scoped = _scoped(run.get(arm, []), categories)[scope]
                values.append(100 * sum(o.passed for o in scoped) / len(scoped) if scoped else 0.0)
            out.append(spread(arm, scope, values))
    for a, b, _ in pairs:
        for scope in scopes:
            values = []
            for run in runs:
                matched = _paired(_scoped(run.get(a, []), categories)[scope], run.get(b, []))
                values.append(100 * sum(x.passed - y.passed for x, y in matched) / len(matched) if matched else 0.0)
            out.append(spread(f"{a} - {b}", scope, values))
    return out


def compute(
    runs: list[dict[str, list[EntryOutcome]]],
    arm_order: list[str],
    categories: list[str],
    baseline: str,
    other: str | None,
    bench: Benchmark | None = None,
    resamples: int = 2000,
    seed: int = 0,
) -> ComparisonStats:
    """Everything in `ComparisonStats`, from the runs' per-entry outcomes (paired statistics on run 1)."""
    first = runs[0]
    arms = [a for a in arm_order if first.get(a)]
    labels = {a: ARM_LABELS.get(a, a) for a in arm_order}
    scoped = {arm: _scoped(first[arm], categories) for arm in arms}
    arm_rows = [
        arm_stats(arm, scope, outcomes)
        for arm in arms
        for scope, outcomes in scoped[arm].items()
        if outcomes or scope == POOLED
    ]
    pairs = pair_list(arms, baseline, other)
    pair_rows = []
    for a, b, question in pairs:
        for scope in [*categories, POOLED]:
            matched = _paired(scoped[a][scope], scoped[b][scope])
            if matched or scope == POOLED:
                pair_rows.append(pair_stats(a, b, question, scope, matched, labels, resamples, seed))
    baselines = {baseline, *([other] if other else [])}
    claims = [claim_check(p, labels) for p in pair_rows if p.a == "planner" and p.b in baselines and p.entries]
    return ComparisonStats(
        confidence=CONFIDENCE,
        resamples=resamples,
        seed=seed,
        arms=arm_rows,
        pairs=pair_rows,
        paper=paper_support(bench) if bench is not None else [],
        claims=claims,
        repeats=repeat_spread(runs, arms, pairs, categories),
    )
