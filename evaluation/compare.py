"""The comparison's reports: `comparison.json` (what cards read), `.md` (for people) and `.png`, all from the
numbers the benchmark read back from its own result and score files (`Benchmark.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apo_planner.artifacts import Comparison, EvalDir, write_json
from apo_planner.benchmarks import BENCHMARKS
from apo_planner.templating import render_file

TEMPLATES = Path(__file__).parent / "templates"


def write_reports(comparison: dict[str, Any], output: Path) -> list[Path]:
    """comparison.json (what cards read), .md (for people) and .png, from the same numbers."""
    folder = EvalDir(output)
    write_json(folder.comparison_file, comparison)
    coverage = Comparison.model_validate(comparison).coverage()
    bench = BENCHMARKS.get(comparison.get("benchmark", "bfcl"))
    markdown = render_file(
        TEMPLATES / "comparison.md.jinja",
        trim=True,
        coverage=coverage,
        title=bench.title,
        checker=bench.checker,
        **comparison,
    )
    folder.comparison_markdown.write_text(markdown)
    plot(comparison, folder.comparison_plot)
    return [folder.comparison_file, folder.comparison_markdown, folder.comparison_plot]


def plot(comparison: dict[str, Any], path: Path) -> None:
    """Accuracy vs average calls per category, an arrow from the executor alone to with planner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for i, row in enumerate(comparison["categories"]):
        b, p = row["baseline"], row["planner"]
        if None in (b["avg_calls"], b["accuracy"], p["avg_calls"], p["accuracy"]):
            continue
        color = f"C{i}"
        ax.scatter([b["avg_calls"]], [b["accuracy"]], color=color, marker="o", label=f"{row['category']} (executor)")
        o = row.get("other_mode") or {}
        if None not in (o.get("avg_calls"), o.get("accuracy")):
            mode = comparison.get("other_mode")
            ax.scatter([o["avg_calls"]], [o["accuracy"]], color=color, marker="s", label=f"{row['category']} ({mode})")
        ax.scatter(
            [p["avg_calls"]], [p["accuracy"]], color=color, marker="*", s=120, label=f"{row['category']} (+planner)"
        )
        ax.annotate(
            "",
            xy=(p["avg_calls"], p["accuracy"]),
            xytext=(b["avg_calls"], b["accuracy"]),
            arrowprops={"arrowstyle": "->", "color": color},
        )
    ax.set_xlabel("average tool calls per entry")
    ax.set_ylabel(f"{BENCHMARKS.get(comparison.get('benchmark', 'bfcl')).title} accuracy (%)")
    ax.set_title("executor alone -> executor with the APO planner")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
