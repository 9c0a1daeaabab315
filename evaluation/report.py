"""The comparison as a terminal table (comparison.md / .json / .png hold the same numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from apo_planner.artifacts import Comparison
from apo_planner.benchmarks import BENCHMARKS


def print_comparison(comparison: dict[str, Any], output: Path, console: Console | None = None) -> None:
    console = console or Console()
    title = BENCHMARKS.get(comparison.get("benchmark", "bfcl")).title
    table = Table(title=f"{title}: {comparison['baseline_model']} alone vs + planner -> {output}")
    other = comparison.get("other_mode_model")
    for column in (
        "category",
        "entries",
        "executor acc % (calls)",
        *([f"alone, {comparison['other_mode']} mode"] if other else []),
        "+ planner acc % (calls)",
        "Δ acc",
        "latency s alone → + planner",
        "GT calls",
        "plan coverage",
    ):
        table.add_column(column, no_wrap=column == "category")  # a category cut to "parallel…" is ambiguous
    coverage = Comparison.model_validate(comparison).coverage()
    for r in comparison["categories"]:
        table.add_row(
            r["category"],
            str(r["baseline"]["entries"]),
            f"{r['baseline']['accuracy']} ({r['baseline']['avg_calls']})",
            *([f"{r['other_mode']['accuracy']} ({r['other_mode']['avg_calls']})"] if other else []),
            f"{r['planner']['accuracy']} ({r['planner']['avg_calls']})",
            str(r["delta_accuracy"]),
            f"{r['baseline'].get('latency_s')} → {r['planner'].get('latency_s')}",
            str(r["ground_truth_avg_calls"]),
            str(coverage[r["category"]]),
        )
    console.print(table)
