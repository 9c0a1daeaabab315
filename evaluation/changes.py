"""What changed, entry by entry: the entries the planner fixed and broke against each executor-alone arm.

`changes.json` holds every one of them (run 1), `changes.md` the first `eval.statistics.changes_listed` of
each kind: the question, the plan the executor saw, both answers, and the checker's error for the failing
one, from the benchmark's own files (`Benchmark.entry_details`).
"""

from __future__ import annotations

from pathlib import Path

from apo_planner.artifacts import BaselineChanges, ChangedEntry, Changes, Comparison, EvalDir, write_json, write_text
from apo_planner.benchmarks import ARM_LABELS, Benchmark, EntryDetail
from apo_planner.templating import render_file

TEMPLATES = Path(__file__).parent / "templates"
BASELINES = ("fc", "prompt")


def build_changes(comparison: Comparison, bench: Benchmark, root: Path) -> Changes:
    """Fixed and broken entries of the planner arm against every executor-alone arm of run 1 (under `root`)."""
    run = comparison.runs[0].entries if comparison.runs else {}
    models = {a.name: a.model for a in comparison.arms}
    details: dict[tuple[str, str], dict[str, EntryDetail]] = {}

    def detail(arm: str, category: str, entry_id: str) -> EntryDetail | None:
        key = (arm, category)
        if key not in details:
            details[key] = bench.entry_details(root, models[arm], category)
        return details[key].get(entry_id)

    baselines = []
    planner = {(o.category, o.id): o for o in run.get("planner", [])}
    for baseline in (b for b in BASELINES if run.get(b)):
        fixed, broken = [], []
        for alone in run[baseline]:
            planned = planner.get((alone.category, alone.id))
            if planned is None or planned.passed == alone.passed:
                continue
            base = detail(baseline, alone.category, alone.id)
            plan = detail("planner", alone.category, alone.id)
            failing, failed = ("baseline", base) if planned.passed else ("planner", plan)
            entry = ChangedEntry(
                category=alone.category,
                id=alone.id,
                question=(base or plan).question if (base or plan) else "",
                plan=plan.plan if plan else None,
                baseline_output=base.output if base else "",
                planner_output=plan.output if plan else "",
                failing=failing,
                error=failed.error if failed else None,
            )
            (fixed if planned.passed else broken).append(entry)
        baselines.append(BaselineChanges(baseline=baseline, label=ARM_LABELS[baseline], fixed=fixed, broken=broken))
    return Changes(benchmark=bench.name, planner=models.get("planner", ""), baselines=baselines)


def write_changes(changes: Changes, output: Path, title: str, listed: int = 20) -> list[Path]:
    """changes.json (all of them) and changes.md (the first `listed` of each kind)."""
    folder = EvalDir(output)
    write_json(folder.changes_file, changes.model_dump(mode="json"))
    markdown = render_file(TEMPLATES / "changes.md.jinja", trim=True, changes=changes, title=title, listed=listed)
    write_text(folder.changes_markdown, markdown)
    return [folder.changes_file, folder.changes_markdown]


def counts(changes: Changes) -> dict[str, dict[str, int]]:
    """baseline arm -> {"fixed": n, "broken": n}, what comparison.json keeps of changes.json."""
    return {b.baseline: {"fixed": len(b.fixed), "broken": len(b.broken)} for b in changes.baselines}
