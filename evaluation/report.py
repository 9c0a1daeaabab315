"""The comparison as a terminal table (comparison.md / .json / .png hold the same numbers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_comparison(comparison: dict[str, Any], output: Path, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"BFCL: {comparison['baseline_model']} alone vs + planner -> {output}")
    for column in (
        "category",
        "entries",
        "executor acc % (calls)",
        "+ planner acc % (calls)",
        "Δ acc",
        "GT calls",
        "planned / fell back",
    ):
        table.add_column(column, no_wrap=column == "category")  # a category cut to "parallel…" is ambiguous
    for r in comparison["categories"]:
        p = r["planner"].get("planner", {})
        table.add_row(
            r["category"],
            str(r["baseline"]["entries"]),
            f"{r['baseline']['accuracy']} ({r['baseline']['avg_calls']})",
            f"{r['planner']['accuracy']} ({r['planner']['avg_calls']})",
            str(r["delta_accuracy"]),
            str(r["ground_truth_avg_calls"]),
            f"{p.get('planned', 0)} / {sum(p.get('fallbacks', {}).values())}",
        )
    console.print(table)
