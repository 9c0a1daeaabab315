"""What the planner learned, measured without any benchmark: plans written for the held-out prompts.

The lm-eval task (`preference_eval`) compares the log-likelihoods of the two plans of a pair; the rejected
plan is the longer one, so even a random model prefers the chosen plan there by construction. This is the
direct measure instead: the base and the merged planner each *write* a plan for every prompt of the
dataset's `test` split, through `apo_planner.planner.Planner` with the same constrained decoding as
deployment, and each plan's calls (tool and arguments) are compared with the pair's `chosen_plan` and
`rejected_plan`:

- exact match: the call set equals the chosen plan's;
- precision, recall and F1 of the calls against the chosen plan;
- redundant-call rate: the share of generated calls that the chosen plan had removed from the rejected one
  (calls beyond the chosen plan's that are among the removed ones);
- missing-call rate: the share of the chosen plan's calls the generated plan left out;
- average calls, beside the chosen and rejected plans' averages;
- the share of plans that parse.

Rates are ratios of sums over the prompts (a plan with more calls weighs more), and base -> merged comes
with a seeded paired-bootstrap 95% interval over the prompts (`apo_planner.stats`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from apo_planner.artifacts import PlanGeneration, PlanMetric
from apo_planner.plan import Plan
from apo_planner.stats import paired_ratio_bootstrap

# the per-prompt counts every metric is a ratio of sums of
COLUMNS = ("rows", "parsed", "exact", "generated", "chosen", "rejected", "matched", "redundant", "missing")
_C = {name: i for i, name in enumerate(COLUMNS)}


def _ratio(numerator: str, denominator: str) -> Callable[[np.ndarray], np.ndarray]:
    def metric(counts: np.ndarray) -> np.ndarray:
        top, bottom = counts[..., _C[numerator]].sum(axis=-1), counts[..., _C[denominator]].sum(axis=-1)
        return np.divide(top, bottom, out=np.zeros_like(top, dtype=float), where=bottom != 0)

    return metric


def _f1(counts: np.ndarray) -> np.ndarray:
    top = 2 * counts[..., _C["matched"]].sum(axis=-1)
    bottom = counts[..., _C["generated"]].sum(axis=-1) + counts[..., _C["chosen"]].sum(axis=-1)
    return np.divide(top, bottom, out=np.zeros_like(top, dtype=float), where=bottom != 0)


def _calls_minus(reference: str) -> Callable[[np.ndarray], np.ndarray]:
    def metric(counts: np.ndarray) -> np.ndarray:
        diff = counts[..., _C["generated"]] - counts[..., _C[reference]]
        return diff.sum(axis=-1) / counts[..., _C["rows"]].sum(axis=-1)

    return metric


METRICS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "parse_rate": ("share of plans that parse", _ratio("parsed", "rows")),
    "exact_match": ("call set equals the chosen plan's", _ratio("exact", "rows")),
    "precision": ("generated calls that are in the chosen plan", _ratio("matched", "generated")),
    "recall": ("chosen calls that were generated", _ratio("matched", "chosen")),
    "f1": ("F1 of the calls against the chosen plan", _f1),
    "redundant_rate": ("generated calls the chosen plan had removed", _ratio("redundant", "generated")),
    "missing_rate": ("chosen calls the plan left out", _ratio("missing", "chosen")),
    "avg_calls": ("calls per plan", _ratio("generated", "rows")),
    "calls_vs_chosen": ("calls per plan minus the chosen plan's", _calls_minus("chosen")),
    "calls_vs_rejected": ("calls per plan minus the rejected plan's", _calls_minus("rejected")),
}


def call_key(tool: str, arguments: dict[str, Any]) -> str:
    """A call's identity: the tool and its arguments as canonical JSON (key order does not matter)."""
    return tool + json.dumps(arguments, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def calls(plan: Plan | None) -> Counter:
    return Counter(call_key(s.tool, dict(s.arguments)) for s in plan.steps) if plan else Counter()


def plan_counts(generated: Plan | None, chosen: Plan, rejected: Plan) -> list[int]:
    """One prompt's counts (`COLUMNS`), calls compared as multisets. A generated call is matched to a chosen call
    first; only the calls left over count as redundant when they are among those the chosen plan removed (so a
    plan that repeats a kept lookup is not charged for the lookup itself)."""
    g, c, r = calls(generated), calls(chosen), calls(rejected)
    removed = r - c
    return [
        1,
        int(generated is not None),
        int(generated is not None and g == c),
        sum(g.values()),
        sum(c.values()),
        sum(r.values()),
        sum((g & c).values()),
        sum(((g - c) & removed).values()),
        sum((c - g).values()),
    ]


def prompt_of(row: dict[str, Any]) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(query, tools, earlier turns) of a dataset row: its prompt is `planner_prompt(query, context)`."""
    messages = row["prompt"]
    context = [m for m in messages[:-1] if m.get("role") != "system"]
    tools = json.loads(row["tools"]) if row.get("tools") else []
    return messages[-1]["content"], tools, context


def generate(planner: Any, rows: Iterable[dict[str, Any]]) -> list[Plan | None]:
    """The planner's plan for every row (None where it wrote none that parses: `plan_with_details` says why)."""
    out = []
    for row in rows:
        query, tools, context = prompt_of(row)
        out.append(planner.plan_with_details(query, tools, context or None).plan)
    return out


def score(generated: list[Plan | None], rows: list[dict[str, Any]]) -> np.ndarray:
    """(prompts, columns) counts of a planner's plans against the rows' chosen and rejected plans."""
    return np.array(
        [
            plan_counts(plan, Plan.from_records(row["chosen_plan"]), Plan.from_records(row["rejected_plan"]))
            for plan, row in zip(generated, rows, strict=True)
        ],
        dtype=float,
    ).reshape(len(rows), len(COLUMNS))


def summarize(
    base: np.ndarray, merged: np.ndarray, decoding: dict[str, Any], resamples: int = 2000, seed: int = 0
) -> PlanGeneration:
    """Every metric for base and merged, and merged - base with its paired bootstrap interval."""
    from apo_planner.artifacts import Interval

    metrics = []
    for name, (description, metric) in METRICS.items():
        delta = paired_ratio_bootstrap(metric, merged, base, resamples=resamples, seed=seed).rounded(4)
        metrics.append(
            PlanMetric(
                name=name,
                description=description,
                base=round(float(metric(base)), 4),
                merged=round(float(metric(merged)), 4),
                delta=Interval(value=delta.value, low=delta.low, high=delta.high),
            )
        )
    rows = int(base[:, _C["rows"]].sum()) if len(base) else 0
    reference = {
        "avg_calls_chosen": round(float(_ratio("chosen", "rows")(base)), 4) if rows else 0.0,
        "avg_calls_rejected": round(float(_ratio("rejected", "rows")(base)), 4) if rows else 0.0,
    }
    return PlanGeneration(
        split="test",
        prompts=rows,
        seed=seed,
        resamples=resamples,
        decoding=decoding,
        metrics=metrics,
        reference=reference,
    )


def plan_generation(
    base: Any, merged: Any, rows: list[dict[str, Any]], decoding: dict[str, Any], resamples: int = 2000, seed: int = 0
) -> PlanGeneration:
    """Both planners on the same held-out rows, scored and compared."""
    return summarize(score(generate(base, rows), rows), score(generate(merged, rows), rows), decoding, resamples, seed)
