"""The comparison as terminal tables: every arm's accuracy with its 95% interval, and every difference with
its 2x2 table, p-value and intervals (comparison.md / .json / .png hold the same numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from apo_planner.artifacts import Comparison
from apo_planner.benchmarks import ARM_LABELS, BENCHMARKS
from apo_planner.evaluation.statistics import POOLED


def print_comparison(comparison: Comparison | dict[str, Any], output: Path, console: Console | None = None) -> None:
    """Two tables: every arm in every scope (accuracy with its interval), every difference (p and intervals)."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log or a pipe: wide enough for the intervals, not 80 columns
            console = Console(width=140)
    if not isinstance(comparison, Comparison):
        comparison = Comparison.model_validate(comparison)
    title = BENCHMARKS.get(comparison.benchmark).title
    arms = [a.name for a in comparison.arms if comparison.arm_stats(a.name, POOLED)]
    table = Table(title=f"{title}: accuracy per arm, Wilson 95% intervals -> {output}")
    for column in ("scope", "arm", "entries", "accuracy % [95% CI]", "calls", "excess / missing", "plan coverage"):
        table.add_column(column, no_wrap=column in ("scope", "arm"))  # a category cut to "parallel…" is ambiguous
    coverage = comparison.coverage()
    scopes = [*(r["category"] for r in comparison.categories), POOLED]
    for scope in scopes:
        for arm in arms:
            s = comparison.arm_stats(arm, scope)
            if s is None:
                continue
            cover = str(coverage[scope]) if arm == "planner" and scope in coverage else ""
            extra = f"{s.excess_calls} / {s.missing_calls}" if s.excess_calls is not None else "–"
            table.add_row(
                scope, ARM_LABELS.get(arm, arm), str(s.entries), str(s.accuracy), str(s.avg_calls), extra, cover
            )
        table.add_section()
    console.print(table)
    stats = comparison.statistics
    if not stats or not stats.pairs:
        return
    diffs = Table(
        title=f"differences a − b, paired by entry: exact McNemar p, paired-bootstrap 95% CI ({stats.resamples} "
        f"resamples, seed {stats.seed})"
    )
    for column in ("a − b", "scope", "n", "only a / only b", "p", "Δ acc, points [95% CI]", "Δ calls [95% CI]"):
        diffs.add_column(column, no_wrap=column in ("a − b", "scope"))
    previous = None
    for p in stats.pairs:
        if previous and (p.a, p.b) != previous:
            diffs.add_section()
        previous = (p.a, p.b)
        diffs.add_row(
            f"{p.a} − {p.b}",
            p.scope,
            str(p.entries),
            f"{p.only_a} / {p.only_b}",
            f"{p.p_value:g}",
            p.delta_accuracy.signed(),
            p.delta_calls.signed() if p.delta_calls else "–",
        )
    console.print(diffs)
    legend = ", ".join(f"{a} = {ARM_LABELS.get(a, a)}" for a in arms)
    console.print(f"arms: {legend}. Every sentence is in {output / 'comparison.md'}.")
