"""What a build counts: records read (per format) and dropped (with examples), content the readers
skipped, how results paired with calls, trajectories per source row, selections rejected, calls removed,
synthesis work, and the length distributions the length filters act on. Shards count separately and
merge; `as_dict` is the counting part of stats.json."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from apo_planner.builders.abstraction import PAIRING
from apo_planner.builders.config import BuildConfig
from apo_planner.builders.errors import BuildError
from apo_planner.builders.review import ReviewSample
from apo_planner.builders.synthesis.agreement import Agreement
from apo_planner.formats.records import DropReason

_MAX_EXAMPLES = 3
_SUMMED = ("records_read", "trajectories", "duplicate_records", "pairs", "calls_chosen_total", "calls_rejected_total")
_COUNTED = ("dropped", "selection_rejected", "removed_calls_by_reason", "synthesis", "formats", "skipped_content")
# Measured in characters (no tokenizer is known at build time; `train` measures tokens):
LENGTHS = {
    "rationale_chars": "reasoning + text of one assistant message that made calls (counted once per message)",
    "trajectory_chars": "what build.filters.max_chars compares: query, context, rationales, results, answer",
    "prompt_chars": "the planner prompt: system prompt, context and query messages plus the tool catalog JSON",
    "pair_chars": "prompt_chars plus the longer completion (what train.max_length bounds, in tokens)",
}
HISTOGRAMS_KEY = "length_histograms"  # shards only: what merging needs to recompute percentiles
REVIEW_KEY = "review_candidates"  # shards only: each shard's part of the review sample


def _bucket(value: int) -> int:
    """Exact below 1,000, three significant digits above: percentiles stay within 0.5% and a
    histogram of 310k values stays a few thousand keys, so shards can carry and merge it."""
    if value < 1000:
        return value
    digits = len(str(value)) - 3
    return round(value, -digits)


def percentiles(histogram: Counter, points: Iterable[float] = (0.5, 0.95)) -> dict[str, int]:
    """Nearest-rank percentiles (p50, p95) of a bucketed histogram (the caller adds the exact maximum,
    which buckets round)."""
    total = sum(histogram.values())
    if not total:
        return {"n": 0, "p50": 0, "p95": 0, "max": 0}
    ordered = sorted((int(v), c) for v, c in histogram.items())
    out: dict[str, int] = {"n": total}
    for p in points:
        rank, running = max(1, math.ceil(p * total - 1e-9)), 0
        for value, count in ordered:
            running += count
            if running >= rank:
                out[f"p{round(p * 100)}"] = value
                break
    return out


@dataclass
class BuildStats:
    """Counts the build reports; mergeable across shards; `as_dict` is what stats.json holds."""

    counts: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    drop_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    selection_rejected: Counter = field(default_factory=Counter)
    removed_calls_by_reason: Counter = field(default_factory=Counter)
    synthesis: Counter = field(default_factory=Counter)
    formats: Counter = field(default_factory=Counter)  # source rows read by each format
    skipped_content: Counter = field(default_factory=Counter)  # blocks readers saw and did not read, by kind
    result_pairing: Counter = field(
        default_factory=Counter
    )  # kept trajectories' results: by id, by order, orphans, none
    trajectories_per_record: Counter = field(default_factory=Counter)  # kept trajectories -> source rows
    lengths: dict[str, Counter] = field(default_factory=lambda: {name: Counter() for name in LENGTHS})
    longest: Counter = field(default_factory=Counter)  # exact maximum per length
    agreement: Agreement | None = None  # a model synthesizer's removals against the rules' (None for rule builds)
    answer_sources: Counter = field(default_factory=Counter)  # pairs made; those whose kept calls explain the answer
    review: ReviewSample = field(default_factory=lambda: ReviewSample(0, 0))  # the build sets the recipe's
    throughput: dict[str, Any] | None = None  # this build's synthesis rates (None: no model was asked)
    shard_throughput: list[dict[str, Any]] = field(default_factory=list)  # merged: each shard's, in shard order

    def drop(self, reason: str, detail: str | None) -> None:
        self.dropped[reason] += 1
        if detail and len(self.drop_examples[reason]) < _MAX_EXAMPLES:
            self.drop_examples[reason].append(detail)

    def measure(self, name: str, value: int) -> None:
        self.lengths[name][_bucket(value)] += 1
        self.longest[name] = max(self.longest[name], value)

    def merge(self, other: dict[str, Any]) -> None:
        """Add a shard's stats.json (`as_dict` plus its histograms) to these counts."""
        for key in _SUMMED:
            self.counts[key] += other.get(key, 0)
        for key in _COUNTED:
            getattr(self, key).update(other.get(key, {}))
        self.result_pairing.update(other.get("result_pairing", {}))
        self.trajectories_per_record.update({int(k): v for k, v in other.get("trajectories_per_record", {}).items()})
        for reason, examples in other.get("drop_examples", {}).items():
            for example in examples:
                if len(self.drop_examples[reason]) < _MAX_EXAMPLES:
                    self.drop_examples[reason].append(example)
        if other.get("agreement"):
            self.agreement = self.agreement or Agreement()
            self.agreement.merge(other["agreement"])
        theirs_sources = other.get("answer_sources_kept", {})
        self.answer_sources.update({k: theirs_sources.get(k, 0) for k in ("pairs", "kept", "unchecked")})
        if other.get(REVIEW_KEY):
            theirs = other[REVIEW_KEY]
            if not self.review.candidates():
                self.review = ReviewSample(theirs["size"], theirs["seed"])
            elif theirs["seed"] != self.review.seed:
                raise BuildError(f"shard {other.get('shard')} drew its review sample with another build.review.seed")
            self.review.merge(theirs)
        if other.get("throughput"):
            self.shard_throughput.append({"shard": other.get("shard"), **other["throughput"]})
        for name, histogram in other.get(HISTOGRAMS_KEY, {}).items():
            self.lengths[name].update({int(k): v for k, v in histogram.items()})
            self.longest[name] = max(self.longest[name], other.get("lengths", {}).get(name, {}).get("max", 0))

    def _summary(self, name: str) -> dict[str, int]:
        """p50 / p95 from the histogram (a bucket's value never above the exact maximum), and that maximum."""
        summary = percentiles(self.lengths[name])
        if summary["n"]:
            top = self.longest[name]
            summary = {k: (min(v, top) if k != "n" else v) for k, v in summary.items()} | {"max": top}
        return summary

    def _throughput(self) -> dict[str, Any] | None:
        """A build's rates as measured; merged shards: each shard's (they may have run at different times
        on different servers, so their sum is not a rate anyone measured) and the summed counts."""
        if not self.shard_throughput:
            return self.throughput
        totals = {
            key: sum(t[key] for t in self.shard_throughput)
            for key in ("requests", "trajectories", "prompt_tokens", "completion_tokens")
        }
        return {**totals, "shards": self.shard_throughput}

    def histograms(self) -> dict[str, dict[str, int]]:
        return {name: {str(k): v for k, v in sorted(h.items())} for name, h in self.lengths.items()}

    def as_dict(self) -> dict[str, Any]:
        pairs = self.counts["pairs"]
        records = self.counts["records_read"]
        return {
            **{key: self.counts[key] for key in _SUMMED},
            **{key: dict(sorted(getattr(self, key).items())) for key in _COUNTED},
            "dropped_total": sum(self.dropped.values()),
            "result_pairing": {key: self.result_pairing[key] for key in PAIRING},
            "drop_examples": dict(sorted(self.drop_examples.items())),
            "trajectories_per_record": {str(k): v for k, v in sorted(self.trajectories_per_record.items())},
            "avg_trajectories_per_record": round(self.counts["trajectories"] / records, 4) if records else 0.0,
            "avg_calls_chosen": round(self.counts["calls_chosen_total"] / pairs, 4) if pairs else 0.0,
            "avg_calls_rejected": round(self.counts["calls_rejected_total"] / pairs, 4) if pairs else 0.0,
            "lengths": {name: self._summary(name) for name in self.lengths},
            "agreement": self.agreement.as_dict() if self.agreement else None,
            "throughput": self._throughput(),
            "answer_sources_kept": {
                "pairs": self.answer_sources["pairs"],
                "kept": self.answer_sources["kept"],
                "unchecked": self.answer_sources["unchecked"],  # dropped a free-text result: not checked there
                "share": round(self.answer_sources["kept"] / n, 4) if (n := self.answer_sources["pairs"]) else None,
            },
        }


def length_filters(stats: BuildStats, config: BuildConfig) -> dict[str, dict[str, int]]:
    """Each length filter of the build with its threshold and what it removed (the training stage
    reports its own `max_length` filter in metrics.json)."""
    return {
        "build.filters.max_chars": {
            "limit": config.filters.max_chars,
            "removed": stats.dropped.get(DropReason.TOO_LONG.value, 0),
        }
    }
