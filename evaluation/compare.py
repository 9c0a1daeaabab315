"""Side by side: the executor alone vs the executor with the planner, in the paper's Table 1 layout.

Reads bfcl-eval's own result and score files. Accuracy is bfcl-eval's; average tool calls per
entry are counted by decoding each result with the handler's own `decode_ast` (bfcl-eval does not
record them); ground-truth calls come from its possible answers; planner overhead comes from the
planner metadata the augmented handler writes into each result line.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from apo_planner.artifacts import Comparison, EvalDir, write_json
from apo_planner.templating import render_file

# "APO-Based Small Planner for Efficient Tool Calling", Table 1: accuracy % (avg tool calls).
PAPER_TABLE = {
    "simple_java": {"baseline": (65.0, 1.05), "planner": (66.0, 1.04)},
    "multiple": {"baseline": (92.5, 1.02), "planner": (94.5, 1.01)},
    "parallel_multiple": {"baseline": (66.67, 2.21), "planner": (75.00, 2.25)},
}
TEMPLATES = Path(__file__).parent / "templates"


def registry_dir(name: str) -> str:
    return name.replace("/", "_")


def _one(root: Path, pattern: str) -> Path | None:
    found = sorted(root.glob(pattern))
    return found[0] if found else None


def read_results(bfcl_root: Path, model: str, category: str) -> list[dict[str, Any]]:
    path = _one(bfcl_root / "result" / registry_dir(model), f"**/BFCL_v4_{category}_result.json")
    if path is None:
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_accuracy(bfcl_root: Path, model: str, category: str) -> dict[str, Any] | None:
    path = _one(bfcl_root / "score" / registry_dir(model), f"**/BFCL_v4_{category}_score.json")
    if path is None:
        return None
    header = json.loads(path.read_text().splitlines()[0])
    return {"accuracy": header["accuracy"], "correct": header["correct_count"], "total": header["total_count"]}


def count_calls(handler: Any, result: Any, category: str) -> int:
    """Tool calls in one result, decoded the way the checker decodes it; undecodable counts 0."""
    from bfcl_eval.constants.enums import Language
    from bfcl_eval.utils import is_java, is_js

    language = Language.JAVA if is_java(category) else Language.JAVASCRIPT if is_js(category) else Language.PYTHON
    if not isinstance(result, str):
        return 0
    try:
        decoded = handler.decode_ast(result, language, False)
    except Exception:
        return 0
    return len(decoded) if isinstance(decoded, list) else 0


def ground_truth_calls(category: str, ids: set[str]) -> float | None:
    from bfcl_eval.utils import load_ground_truth_entry

    try:
        answers = [len(e["ground_truth"]) for e in load_ground_truth_entry(category) if e["id"] in ids]
    except Exception:
        return None  # categories without possible answers (e.g. irrelevance)
    return round(statistics.fmean(answers), 4) if answers else None


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def model_summary(bfcl_root: Path, model: str, category: str, handler: Any) -> dict[str, Any]:
    rows = read_results(bfcl_root, model, category)
    accuracy = read_accuracy(bfcl_root, model, category)
    planner = [r["planner"] for r in rows if isinstance(r.get("planner"), dict)]
    summary: dict[str, Any] = {
        "entries": len(rows),
        "accuracy": round(100 * accuracy["accuracy"], 2) if accuracy else None,
        "correct": accuracy["correct"] if accuracy else None,
        "avg_calls": _mean([count_calls(handler, r.get("result"), category) for r in rows]),
        "executor_latency_s": _mean([r["latency"] for r in rows if isinstance(r.get("latency"), (int, float))]),
        "executor_input_tokens": _mean(
            [r["input_token_count"] for r in rows if isinstance(r.get("input_token_count"), (int, float))]
        ),
        "inference_errors": sum(1 for r in rows if str(r.get("result", "")).startswith("Error during inference")),
    }
    if planner:
        fallbacks: dict[str, int] = {}
        for p in planner:
            if not p.get("plan"):
                reason = (p.get("fallback") or "none").split(":")[0]
                fallbacks[reason] = fallbacks.get(reason, 0) + 1
        summary["planner"] = {
            "planned": sum(1 for p in planner if p.get("plan")),
            "fallbacks": fallbacks,
            "tokens": _mean([p.get("prompt_tokens", 0) + p.get("completion_tokens", 0) for p in planner]),
            "completion_tokens": _mean([p.get("completion_tokens", 0) for p in planner]),
            "latency_s": _mean([p.get("latency", 0.0) for p in planner]),
        }
        executor = summary["executor_latency_s"]
        if executor:
            summary["planner"]["latency_ratio"] = round(summary["planner"]["latency_s"] / executor, 4)
    return summary


def compare(bfcl_root: Path, baseline: str, planned: str, categories: list[str]) -> dict[str, Any]:
    from bfcl_eval._llm_response_generation import build_handler

    handler = build_handler(baseline, 0.001)  # the planned entry subclasses it: same decoding
    table = []
    outcomes: Counter = Counter()
    for category in categories:
        base = model_summary(bfcl_root, baseline, category, handler)
        plan = model_summary(bfcl_root, planned, category, handler)
        outcomes["planned"] += plan.get("planner", {}).get("planned", 0)
        outcomes.update(plan.get("planner", {}).get("fallbacks", {}))
        ids = {r["id"] for r in read_results(bfcl_root, baseline, category)}
        row = {
            "category": category,
            "baseline": base,
            "planner": plan,
            "ground_truth_avg_calls": ground_truth_calls(category, ids),
            "delta_accuracy": None
            if None in (base["accuracy"], plan["accuracy"])
            else round(plan["accuracy"] - base["accuracy"], 2),
            "delta_avg_calls": None
            if None in (base["avg_calls"], plan["avg_calls"])
            else round(plan["avg_calls"] - base["avg_calls"], 4),
            "paper": PAPER_TABLE.get(category),
        }
        table.append(row)
    return {
        "baseline_model": baseline,
        "planner_model": planned,
        "categories": table,
        "planner_outcomes": {k: n for k, n in outcomes.items() if n},  # from the result files: resumes included
    }


def write_reports(comparison: dict[str, Any], output: Path) -> list[Path]:
    """comparison.json (what cards read), .md (for people) and .png, from the same numbers."""
    folder = EvalDir(output)
    write_json(folder.comparison_file, comparison)
    coverage = Comparison.model_validate(comparison).coverage()
    markdown = render_file(TEMPLATES / "comparison.md.jinja", trim=True, coverage=coverage, **comparison)
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
    ax.set_ylabel("BFCL accuracy (%)")
    ax.set_title("executor alone -> executor with the APO planner")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
