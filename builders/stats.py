"""What a build counts: records read and dropped (with examples), selections rejected, calls removed,
synthesis work. Shards count separately and merge; `as_dict` is the counting part of stats.json."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

_MAX_EXAMPLES = 3
_SUMMED = ("records_read", "trajectories", "duplicate_records", "pairs", "calls_chosen_total", "calls_rejected_total")
_COUNTED = ("dropped", "selection_rejected", "removed_calls_by_reason", "synthesis")


@dataclass
class BuildStats:
    """Counts the build reports; mergeable across shards; `as_dict` is what stats.json holds."""

    counts: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    drop_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    selection_rejected: Counter = field(default_factory=Counter)
    removed_calls_by_reason: Counter = field(default_factory=Counter)
    synthesis: Counter = field(default_factory=Counter)

    def drop(self, reason: str, detail: str | None) -> None:
        self.dropped[reason] += 1
        if detail and len(self.drop_examples[reason]) < _MAX_EXAMPLES:
            self.drop_examples[reason].append(detail)

    def merge(self, other: dict[str, Any]) -> None:
        """Add a shard's `as_dict` (read back from its stats.json) to these counts."""
        for key in _SUMMED:
            self.counts[key] += other.get(key, 0)
        for key in _COUNTED:
            getattr(self, key).update(other.get(key, {}))
        for reason, examples in other.get("drop_examples", {}).items():
            for example in examples:
                if len(self.drop_examples[reason]) < _MAX_EXAMPLES:
                    self.drop_examples[reason].append(example)

    def as_dict(self) -> dict[str, Any]:
        pairs = self.counts["pairs"]
        return {
            **{key: self.counts[key] for key in _SUMMED},
            **{key: dict(sorted(getattr(self, key).items())) for key in _COUNTED},
            "dropped_total": sum(self.dropped.values()),
            "drop_examples": dict(sorted(self.drop_examples.items())),
            "avg_calls_chosen": round(self.counts["calls_chosen_total"] / pairs, 4) if pairs else 0.0,
            "avg_calls_rejected": round(self.counts["calls_rejected_total"] / pairs, 4) if pairs else 0.0,
        }
