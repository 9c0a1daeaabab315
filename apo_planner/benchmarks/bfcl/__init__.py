"""The Berkeley Function Calling Leaderboard, through the official `bfcl-eval` package.

Generation is bfcl-eval's own (`_llm_response_generation.main`, its local-model handlers talking to
the executor's OpenAI-compatible server on /v1/completions), scoring is its official checker
(`eval_checker.eval_runner.main`), and results land in its own layout under the eval folder's
`bfcl/` tree (`result/`, `score/`). The planner arm is a subclass of the executor's own handler
(`handler.py`) registered in bfcl-eval's model table for this process; the oracle and placebo arms are the
same subclass with another plan source. The plan-only arm writes the planner arm's plans as answers
(`ground_truth.calls_output`, the anchor's path) under its own registry name, and the checker scores them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson

from apo_planner.artifacts import write_json, write_text
from apo_planner.benchmarks import BENCHMARKS
from apo_planner.benchmarks.base import ORACLE, PLAN_ONLY, Benchmark, BenchmarkError, EntryDetail, EvalJob
from apo_planner.benchmarks.bfcl import project
from apo_planner.templating import render_file

if TYPE_CHECKING:
    from apo_planner.artifacts import Comparison
    from apo_planner.plan import Plan

TEMPLATES = Path(__file__).parent / "templates"
DATA_FILES = "BFCL_v4_*.json"  # the question files shipped inside bfcl_eval/data


class BFCL(Benchmark):
    name = "bfcl"
    title = "BFCL v4"
    checker = "the official bfcl-eval checker"
    module = "bfcl_eval"
    dataset_id = "gorilla-llm/Berkeley-Function-Calling-Leaderboard"
    url = "https://github.com/ShishirPatil/gorilla/tree/main/berkeley-function-call-leaderboard"

    def use_root(self, root: Path) -> Path:
        return project.use_project_root(root)

    def categories(self) -> list[str]:
        return project.valid_categories()

    def resolve(self, names: list[str]) -> list[str]:
        return project.resolve_categories(names)

    def decontamination_queries(self) -> Iterator[tuple[str, str]]:
        """Every user turn of every BFCL question file, read from the package's data folder without importing
        bfcl_eval (which needs its project root set first)."""
        for path in sorted(project.data_dir().glob(DATA_FILES)):
            with path.open("rb") as fh:
                for line in fh:
                    try:
                        entry = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        break  # not a file of entries (e.g. the format-sensitivity index)
                    if not isinstance(entry, dict):
                        break
                    for turn in entry.get("question") or []:
                        for message in turn if isinstance(turn, list) else [turn]:
                            if isinstance(message, dict) and message.get("role") == "user" and message.get("content"):
                                yield entry.get("id", path.stem), str(message["content"])

    def served_model(self, entry: str) -> str:
        from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING

        if entry not in MODEL_CONFIG_MAPPING:
            valid = ", ".join(sorted(MODEL_CONFIG_MAPPING))
            raise BenchmarkError(f"unknown bfcl-eval model {entry!r}; valid names: {valid}")
        return MODEL_CONFIG_MAPPING[entry].model_name

    def prepare(self, job: EvalJob) -> None:
        """Register this job's entries in bfcl-eval (which checks the executor entries) and, with a limit, write
        bfcl-eval's own subset file; before any server starts, so a wrong name costs nothing."""
        from apo_planner.benchmarks.bfcl.handler import register

        arms = register(
            job.executor.entry,
            job.plans,
            job.plan_settings,
            job.executor.max_tokens,
            prompt_executor=job.executor.prompt_entry,
            planner_mode=job.planner_mode,
            injected=job.injected,
            plan_only=job.plan_only,
            seed=job.seed,
            sampling=(job.executor.sampling, job.executor.api) if job.executor.sampling else None,
            result_dir=job.root / "result",
        )
        if job.limit is not None:
            from bfcl_eval.utils import load_dataset_entry

            ids = {c: [e["id"] for e in load_dataset_entry(c)[: job.limit]] for c in job.categories}
            project_root = self.use_root(job.root)
            write_json(project_root / "test_case_ids_to_generate.json", ids)
        job.extra["arms"] = arms

    def run(self, job: EvalJob) -> dict[str, Any]:
        from apo_planner.benchmarks.bfcl.results import compare, read_results

        if "arms" not in job.extra:
            self.prepare(job)
        arms = job.extra["arms"]
        os.environ["REMOTE_OPENAI_BASE_URL"] = job.executor.base_url
        tokenizer = job.executor.tokenizer or job.executor.model_path  # a served Hub model: its pinned snapshot
        if tokenizer:
            os.environ["REMOTE_OPENAI_TOKENIZER_PATH"] = tokenizer
        for model in arms.models:  # every executor entry shares the one server: same model, other prompts
            oracle = model == arms.injected.get(ORACLE)
            categories = [c for c in job.categories if not oracle or self.supports(ORACLE, c)]
            if categories:
                _generate(model, job, categories)
        if arms.plan_only:
            for category in (c for c in job.categories if self.supports(PLAN_ONLY, c)):
                rows = read_results(job.root, arms.planner, category)
                self.score_plans(job, arms.plan_only, category, {str(r["id"]): r.get("planner") or {} for r in rows})
        scored = [*arms.models, *([arms.plan_only] if arms.plan_only else [])]
        score(scored, job.categories, job.root, partial=job.limit is not None)
        return compare(job.root, arms, job.categories)

    def supports(self, arm: str, category: str) -> bool:
        """The oracle and plan-only arms need single-turn ground-truth calls (not relevance, multi-turn, agentic
        or format-sensitivity categories)."""
        if arm not in (ORACLE, PLAN_ONLY):
            return True
        from bfcl_eval.utils import is_agentic, is_format_sensitivity, is_multi_turn, is_relevance_or_irrelevance

        checks = (is_agentic, is_format_sensitivity, is_multi_turn, is_relevance_or_irrelevance)
        return not any(check(category) for check in checks)

    def oracle_plan(self, test_entry: dict[str, Any]) -> Plan | None:
        from bfcl_eval.utils import extract_test_category_from_id

        from apo_planner.plan import Plan, PlanStep

        category = extract_test_category_from_id(test_entry["id"])
        if not self.supports(ORACLE, category):
            return None
        truth = _truth(category).get(str(test_entry["id"]))
        if not truth:
            return None
        steps = [PlanStep(tool=name, arguments=arguments) for name, arguments in truth]
        return Plan(steps=steps)

    def score_plans(self, job: EvalJob, model: str, category: str, plans: dict[str, dict[str, Any]]) -> None:
        """Each plan's calls written as the Qwen FC executor would answer them (`calls_output`, the ground-truth
        anchor's path), with the planner's tokens and latency (the entry's whole latency: no executor ran), into
        `model`'s result file; the checker scores it with the rest. An entry without a plan answers nothing."""
        from bfcl_eval.utils import get_directory_structure_by_category, is_java

        from apo_planner.benchmarks.bfcl.ground_truth import calls_output, java_arguments
        from apo_planner.benchmarks.bfcl.results import registry_dir
        from apo_planner.plan import PlanParseError, parse_plan

        functions = _functions(category)
        lines = []
        for entry_id, info in plans.items():
            calls = []
            if info.get("plan"):
                try:
                    plan = parse_plan(info["plan"])
                except PlanParseError:
                    plan = None
                for step in plan.steps if plan else ():
                    arguments = dict(step.arguments)
                    if is_java(category):
                        arguments = java_arguments(step.tool, arguments, functions.get(entry_id, []))
                    calls.append((step.tool, arguments))
            lines.append(
                {
                    "id": entry_id,
                    "result": calls_output(calls),
                    "latency": float(info.get("latency") or 0.0),  # no executor: the entry's time is the planner's
                    "input_token_count": 0,
                    "output_token_count": 0,
                    "planner": info,
                }
            )
        folder = job.root / "result" / registry_dir(model) / get_directory_structure_by_category(category)
        folder.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        write_text(folder / f"BFCL_v4_{category}_result.json", text)

    def entry_details(self, root: Path, model: str, category: str) -> dict[str, EntryDetail]:
        from apo_planner.benchmarks.bfcl.results import entry_details

        return entry_details(root, model, category)

    def category_size(self, category: str) -> int | None:
        from bfcl_eval.utils import load_dataset_entry

        try:
            return len(load_dataset_entry(category, include_prereq=False, include_language_specific_hint=False))
        except Exception:
            return None

    def card_section(self, comparison: Comparison, changes_link: str | None = None) -> str:
        from apo_planner.artifacts import POOLED
        from apo_planner.benchmarks.base import ARM_LABELS

        return render_file(
            TEMPLATES / "card_section.md.jinja",
            trim=True,
            comparison=comparison,
            stats=comparison.statistics,
            arms=comparison.reported_arms(),
            scopes=comparison.scopes(),
            baselines=comparison.baselines(),
            labels=ARM_LABELS,
            pooled=POOLED,
            coverage=comparison.coverage(),
            changes_link=changes_link,
        )

    def paper_table(self) -> dict[str, Any]:
        from apo_planner.benchmarks.bfcl.results import PAPER_TABLE

        return PAPER_TABLE


_FUNCTIONS: dict[str, dict[str, list[dict[str, Any]]]] = {}
_TRUTH: dict[str, dict[str, list[tuple[str, dict[str, Any]]]]] = {}


def _functions(category: str) -> dict[str, list[dict[str, Any]]]:
    """id -> the entry's function docs as bfcl-eval ships them (without its language hints, which rewrite
    Java and JavaScript types to "string"): what the ground-truth anchor writes values by."""
    if category not in _FUNCTIONS:
        from bfcl_eval.utils import load_dataset_entry

        entries = load_dataset_entry(category, include_prereq=False, include_language_specific_hint=False)
        _FUNCTIONS[category] = {str(e["id"]): e.get("function", []) for e in entries}
    return _FUNCTIONS[category]


def _truth(category: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """id -> the ground-truth calls as the anchor writes them (`ground_truth.ground_truth_calls`)."""
    if category not in _TRUTH:
        from bfcl_eval.utils import is_java, load_ground_truth_entry

        from apo_planner.benchmarks.bfcl.ground_truth import ground_truth_calls

        functions = _functions(category)
        _TRUTH[category] = {
            str(g["id"]): ground_truth_calls(g["ground_truth"], functions.get(str(g["id"]), []), is_java(category))
            for g in load_ground_truth_entry(category)
        }
    return _TRUTH[category]


def _generate(model: str, job: EvalJob, categories: list[str]) -> None:
    from bfcl_eval._llm_response_generation import main as generation_main

    generation_main(
        SimpleNamespace(
            model=[model],
            test_category=categories,
            temperature=job.executor.temperature,
            include_input_log=False,
            exclude_state_log=False,
            num_gpus=1,
            num_threads=job.executor.num_threads,
            gpu_memory_utilization=0.9,
            backend="vllm",
            skip_server_setup=True,
            local_model_path=job.executor.model_path,
            result_dir=str(job.root / "result"),
            allow_overwrite=False,
            run_ids=job.limit is not None,
            enable_lora=False,
            max_lora_rank=None,
            lora_modules=None,
        )
    )


def score(models: list[str], categories: list[str], root: Path, partial: bool) -> None:
    """bfcl-eval's official checker over `root/result`, writing `root/score` (`partial`: a subset ran)."""
    from bfcl_eval.eval_checker.eval_runner import main as eval_main

    eval_main(models, categories, str(root / "result"), str(root / "score"), partial_eval=partial)


BENCHMARKS.register(BFCL.name)(BFCL())
