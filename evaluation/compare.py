"""The comparison's reports: `comparison.json` (what cards read, written through `Comparison`), `.md` (for
people, as the decomposition) and `.png` (accuracy with its 95% interval against calls), all from the numbers
the benchmark read back from its own result and score files (`Benchmark.run`) and the statistics computed
from them (`apo_planner.evaluation.statistics`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apo_planner.artifacts import Comparison, EvalDir, atomic_file, write_json, write_text
from apo_planner.benchmarks import ARM_LABELS, BENCHMARKS
from apo_planner.evaluation.statistics import POOLED
from apo_planner.templating import render_file

TEMPLATES = Path(__file__).parent / "templates"
DECOMPOSITION = ("baseline", "placebo", "planner", "oracle")  # each step against the one before it
MARKERS = {"fc": "o", "prompt": "s", "placebo": "x", "planner": "*", "oracle": "^", "plan_only": "D"}


def decomposition(comparison: Comparison) -> list[dict[str, Any]]:
    """The pooled steps executor alone -> + placebo -> + planner -> + oracle plan (those that ran), each with
    its difference from the step before; then plan only and the other mode beside them."""
    baseline = comparison.planner_mode
    steps, previous = [], None
    for step in DECOMPOSITION:
        arm = baseline if step == "baseline" else step
        stats = comparison.arm_stats(arm, POOLED)
        if stats is None:
            continue
        pair = comparison.pair(arm, previous, POOLED) if previous else None
        steps.append({"arm": arm, "label": ARM_LABELS[arm], "stats": stats, "against": previous, "pair": pair})
        previous = arm
    for arm, against in (("plan_only", "planner"), (comparison.other_mode, baseline)):
        stats = comparison.arm_stats(arm, POOLED) if arm else None
        if stats is not None:
            pair = comparison.pair(against, arm, POOLED) or comparison.pair(arm, against, POOLED)
            steps.append({"arm": arm, "label": ARM_LABELS[arm], "stats": stats, "against": None, "pair": pair})
    for step in steps:  # how each row's difference reads
        pair = step["pair"]
        step["step"] = "beside" if step["against"] is None and pair else len([s for s in steps if s["against"]]) + 1
        step["difference"] = f"{ARM_LABELS[pair.a]} − {ARM_LABELS[pair.b]}" if pair else None
    for number, step in enumerate((s for s in steps if s["step"] != "beside"), start=1):
        step["step"] = number
    return steps


def report_values(comparison: Comparison) -> dict[str, Any]:
    """What every report template gets: the comparison, its arms in order, the pairs grouped, the coverage."""
    stats = comparison.statistics
    categories = [r["category"] for r in comparison.categories]
    arms = [a for a in comparison.arms if stats and any(s.arm == a.name for s in stats.arms)]
    groups: dict[tuple[str, str], list[Any]] = {}
    for pair in stats.pairs if stats else []:
        groups.setdefault((pair.a, pair.b), []).append(pair)
    return {
        "comparison": comparison,
        "stats": stats,
        "arms": arms,
        "labels": ARM_LABELS,
        "scopes": [*categories, POOLED],
        "categories": categories,
        "pair_groups": list(groups.values()),
        "steps": decomposition(comparison),
        "coverage": comparison.coverage(),
        "pooled": POOLED,
    }


def write_reports(comparison: Comparison, output: Path) -> list[Path]:
    """comparison.json (what cards read), .md (for people) and .png, from the same numbers; each written
    atomically, the .json last (a killed write leaves the previous comparison.json, and the stage runs again)."""
    folder = EvalDir(output)
    bench = BENCHMARKS.get(comparison.benchmark)
    markdown = render_file(
        TEMPLATES / "comparison.md.jinja",
        trim=True,
        title=bench.title,
        checker=bench.checker,
        changes_file=folder.changes_markdown.name,
        **report_values(comparison),
    )
    with atomic_file(folder.comparison_plot) as png:
        plot(comparison, png)
    write_text(folder.comparison_markdown, markdown)
    write_json(folder.comparison_file, comparison.model_dump(mode="json"))
    return [folder.comparison_file, folder.comparison_markdown, folder.comparison_plot]


def plot(comparison: Comparison, path: Path) -> list[dict[str, Any]]:
    """Accuracy (with its Wilson 95% interval as an error bar) vs average calls, per category and arm, an arrow
    from the executor alone to with planner. Returns what it drew (arm, scope, accuracy, interval, calls)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=120)
    stats = comparison.statistics
    scopes = [r["category"] for r in comparison.categories]
    for i, scope in enumerate(scopes):
        color = f"C{i % 10}"
        points = {}
        for arm in comparison.arms:
            s = comparison.arm_stats(arm.name, scope) if stats else None
            if s is None or s.avg_calls is None:
                continue
            acc = s.accuracy
            ax.errorbar(
                [s.avg_calls],
                [acc.value],
                yerr=[[acc.value - acc.low], [acc.high - acc.value]],
                color=color,
                marker=MARKERS.get(arm.name, "o"),
                markersize=9 if arm.name == "planner" else 6,
                capsize=3,
                linestyle="none",
                label=f"{scope}: {ARM_LABELS.get(arm.name, arm.name)}",
            )
            points[arm.name] = (s.avg_calls, acc.value)
            drawn.append({"arm": arm.name, "scope": scope, "accuracy": acc, "avg_calls": s.avg_calls})
        base = points.get(comparison.planner_mode)
        if base and "planner" in points:
            ax.annotate("", xy=points["planner"], xytext=base, arrowprops={"arrowstyle": "->", "color": color})
    ax.set_xlabel("average tool calls per entry")
    ax.set_ylabel(f"{BENCHMARKS.get(comparison.benchmark).title} accuracy (%), 95% interval")
    ax.set_title("executor alone -> + placebo / + planner / + oracle plan")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return drawn
