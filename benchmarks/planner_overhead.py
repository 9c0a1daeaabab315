"""Per-entry overhead of planning in the BFCL evaluation: planner latency / executor latency, tokens.

Runs the smoke evaluation path (tiny random executor behind `transformers serve`, tiny random
planner in process, bfcl-eval's own generation) on the first N entries of each category and
prints, per category, the mean planner and executor latency per entry (the executor's latency is
the floor measured in the same run), their ratio, and planner tokens per entry.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from apo_planner.tiny import make_tiny_model
from entry.recipe import load_recipe
from evaluation.bfcl_setup import use_project_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=32, help="executor and planner generation budget")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        use_project_root(tmp / "eval" / "bfcl")
        from evaluation.run import evaluate

        planner = make_tiny_model(tmp / "planner", seed=1)
        config = load_recipe(
            None,
            [
                f"eval.output={tmp / 'eval'}",
                f"eval.limit={args.limit}",
                f"eval.planner.model={planner}",
                f"eval.executor.model_path={tmp / 'executor'}",
                f"eval.executor.max_tokens={args.max_tokens}",
                f"eval.planner.max_new_tokens={args.max_tokens}",
            ],
        ).eval
        comparison = evaluate(config).comparison
    print(f"{'category':<20}{'entries':>8}{'planner s':>11}{'executor s':>12}{'ratio':>8}{'planner tokens':>16}")
    for row in comparison["categories"]:
        p = row["planner"]["planner"]
        print(
            f"{row['category']:<20}{row['planner']['entries']:>8}{p['latency_s']:>11.4f}"
            f"{row['planner']['executor_latency_s']:>12.4f}{p.get('latency_ratio', float('nan')):>8.3f}"
            f"{p['tokens']:>16.1f}"
        )
    print(
        "tiny random models, same generation budget for both: the ratio measures the planning path's cost "
        "(prompt rendering, in-process generate, parse) against one executor request over HTTP"
    )


if __name__ == "__main__":
    main()
