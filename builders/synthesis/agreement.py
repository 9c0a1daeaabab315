"""How far a model synthesizer's removals agree with the deterministic rules, per build.

The rules remove only what is redundant by construction (a retried failure, a repeated read, an exact
repeat), so they are a conservative reference, not a ground truth: a removal the rules also make is
surely right (precision against the rules), and a rule removal the model kept is redundancy it
missed (recall). A model removal the rules do not make may still be right (a lookup whose value the
user had already given); the report counts those by the kind of call removed so a reader can judge.
Counts are sums, so shards merge by adding them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from apo_planner.builders.records import Trajectory
from apo_planner.builders.synthesis.rule import RuleSynthesizer
from apo_planner.builders.synthesis.selection import Selection
from apo_planner.tools import read_only_hints

_SUMMED = ("trajectories", "reference_rejected", "model_removed", "rule_removed", "both_removed")


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


@dataclass
class Agreement:
    """Removals of a model synthesizer against the rule synthesizer's, on the trajectories both judged:
    the model's selection passed every check (or it found nothing to remove) and so did the rules'."""

    counts: Counter = field(default_factory=Counter)
    missed: Counter = field(default_factory=Counter)  # rule reason -> rule removals the model kept
    over_removed: Counter = field(default_factory=Counter)  # kind of call -> model removals the rules kept

    def add(
        self, trajectory: Trajectory, model: Selection | None, reference: Selection | None, rule: RuleSynthesizer
    ) -> None:
        """One trajectory: `model` None means the model removed nothing; `reference` None means the rules'
        own selection failed a consistency check, so there is nothing to compare against."""
        if reference is None:
            self.counts["reference_rejected"] += 1
            return
        by_model = set(model.removed) if model is not None else set()
        by_rule = reference.removed
        self.counts["trajectories"] += 1
        self.counts["model_removed"] += len(by_model)
        self.counts["rule_removed"] += len(by_rule)
        self.counts["both_removed"] += len(by_model & set(by_rule))
        self.missed.update(reason for i, reason in by_rule.items() if i not in by_model)
        hints = read_only_hints(trajectory.tools)
        for i in sorted(by_model - set(by_rule)):
            action = trajectory.actions[i]
            read_only = rule.is_read_only(action.tool, hints)
            kind = "failed" if action.failed else "read_only" if read_only else "state_changing"
            self.over_removed[kind] += 1

    def merge(self, other: dict[str, Any]) -> None:
        """Add a shard's `as_dict()`."""
        for key in _SUMMED:
            self.counts[key] += other.get(key, 0)
        self.missed.update(other.get("missed_by_rule", {}))
        self.over_removed.update(other.get("over_removed_by_kind", {}))

    def as_dict(self) -> dict[str, Any]:
        both = self.counts["both_removed"]
        return {
            "reference": "rule",
            **{key: self.counts[key] for key in _SUMMED},
            "precision": _ratio(both, self.counts["model_removed"]),
            "recall": _ratio(both, self.counts["rule_removed"]),
            "missed_by_rule": dict(sorted(self.missed.items())),
            "over_removed_by_kind": dict(sorted(self.over_removed.items())),
        }
