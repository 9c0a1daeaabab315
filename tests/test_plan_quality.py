"""What the planner learned, with known answers: stub planners whose plans are the pairs' own chosen or rejected
plans give exactly the exact-match, F1 and redundant-call rates that construction implies."""

import pytest

from apo_planner.builders.build import build
from apo_planner.dataset import load_preference_dataset
from apo_planner.entry.recipe import load_recipe
from apo_planner.plan import Plan
from apo_planner.planner import PlanResult
from apo_planner.training.plan_quality import plan_generation, prompt_of
from tests.conftest import SMOKE_SOURCE


class PlansInOrder:
    """A planner that returns the given plans one after the other (None: a plan that did not parse)."""

    def __init__(self, plans):
        self.plans = list(plans)
        self.asked = []

    def plan_with_details(self, query, tools, context=None):
        self.asked.append((query, tools, context))
        plan = self.plans.pop(0)
        return PlanResult(plan, plan.to_text() if plan else "garbage", None if plan else "unparseable_plan: x", 1, 1, 0)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("plans")
    config = load_recipe(
        None, [f"build.source={SMOKE_SOURCE}", f"build.output={root / 'ds'}", "build.synthesizer=rule"]
    ).build
    build(config)
    test = list(load_preference_dataset(str(root / "ds"))["test"])
    assert len(test) >= 6
    # the construction below needs what the builder guarantees: the chosen calls are some of the rejected ones
    for row in test:
        assert row["num_calls_rejected"] - row["num_calls_chosen"] == len(row["removed_calls"]) > 0
    return test


def test_half_chosen_half_rejected_gives_the_rates_the_construction_implies(rows):
    chosen = [Plan.from_records(r["chosen_plan"]) for r in rows]
    rejected = [Plan.from_records(r["rejected_plan"]) for r in rows]
    half = [c if i % 2 == 0 else r for i, (c, r) in enumerate(zip(chosen, rejected, strict=True))]
    base = [None, *rejected[1:]]  # the rejected plan everywhere, and one plan that did not parse
    merged_planner = PlansInOrder(half)
    result = plan_generation(PlansInOrder(base), merged_planner, rows, {"max_steps": 8}, resamples=500, seed=3)
    n = len(rows)
    c = [r["num_calls_chosen"] for r in rows]
    r = [r["num_calls_rejected"] for r in rows]
    even, odd = range(0, n, 2), range(1, n, 2)
    generated = sum(c[i] for i in even) + sum(r[i] for i in odd)
    redundant = sum(r[i] - c[i] for i in odd)  # a rejected plan's extra calls are exactly the removed ones
    expected = {
        "parse_rate": 1.0,
        "exact_match": len(even) / n,
        "precision": sum(c) / generated,
        "recall": 1.0,  # every chosen call is also in the rejected plan
        "f1": 2 * sum(c) / (generated + sum(c)),
        "redundant_rate": redundant / generated,
        "missing_rate": 0.0,
        "avg_calls": generated / n,
        "calls_vs_chosen": (generated - sum(c)) / n,
        "calls_vs_rejected": (generated - sum(r)) / n,
    }
    merged = {m.name: m.merged for m in result.metrics}
    assert merged == pytest.approx({k: round(v, 4) for k, v in expected.items()}, abs=1e-4)
    base_generated = sum(r[1:])
    assert result.metric("parse_rate").base == round((n - 1) / n, 4)
    assert result.metric("exact_match").base == 0.0
    assert result.metric("redundant_rate").base == round(sum(r[i] - c[i] for i in range(1, n)) / base_generated, 4)
    assert result.metric("missing_rate").base == round(c[0] / sum(c), 4)  # the unparsed plan misses its calls
    for m in result.metrics:  # merged - base, with a paired interval around it
        assert m.delta.value == pytest.approx(m.merged - m.base, abs=2e-4)
        assert m.delta.low <= m.delta.value <= m.delta.high
    assert result.prompts == n and result.reference == {
        "avg_calls_chosen": round(sum(c) / n, 4),
        "avg_calls_rejected": round(sum(r) / n, 4),
    }
    # the planner was asked exactly what the planner prompt holds: the request, the catalog, the earlier turns
    assert [a[0] for a in merged_planner.asked] == [prompt_of(row)[0] for row in rows]
    again = plan_generation(PlansInOrder(base), PlansInOrder(half), rows, {"max_steps": 8}, resamples=500, seed=3)
    assert again == result  # seeded: the same plans give the same intervals
