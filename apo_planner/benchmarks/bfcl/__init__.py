"""The Berkeley Function Calling Leaderboard, through the official `bfcl-eval` package.

Generation is bfcl-eval's own (`_llm_response_generation.main`, its local-model handlers talking to
the executor's OpenAI-compatible server on /v1/completions), scoring is its official checker
(`eval_checker.eval_runner.main`), and results land in its own layout under the eval folder's
`bfcl/` tree (`result/`, `score/`). The planner arm is a subclass of the executor's own handler
(`handler.py`) registered in bfcl-eval's model table for this process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import orjson

from apo_planner.benchmarks import BENCHMARKS
from apo_planner.benchmarks.base import Benchmark, BenchmarkError, EvalJob
from apo_planner.benchmarks.bfcl import project
from apo_planner.templating import render_file

if TYPE_CHECKING:
    from apo_planner.artifacts import Comparison

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
            job.executor.max_tokens,
            prompt_executor=job.executor.prompt_entry,
            planner_mode=job.planner_mode,
        )
        if job.limit is not None:
            from bfcl_eval.utils import load_dataset_entry

            ids = {c: [e["id"] for e in load_dataset_entry(c)[: job.limit]] for c in job.categories}
            project_root = self.use_root(job.root)
            (project_root / "test_case_ids_to_generate.json").write_text(json.dumps(ids, indent=2))
        job.extra["arms"] = arms

    def run(self, job: EvalJob) -> dict[str, Any]:
        from apo_planner.benchmarks.bfcl.results import compare

        if "arms" not in job.extra:
            self.prepare(job)
        arms = job.extra["arms"]
        os.environ["REMOTE_OPENAI_BASE_URL"] = job.executor.base_url
        if job.executor.model_path:
            os.environ["REMOTE_OPENAI_TOKENIZER_PATH"] = job.executor.model_path
        for model in arms.models:  # both executor entries share the one server: same model, other prompts
            _generate(model, job)
        score(arms.models, job.categories, job.root, partial=job.limit is not None)
        return compare(job.root, arms, job.categories)

    def card_section(self, comparison: Comparison) -> str:
        return render_file(
            TEMPLATES / "card_section.md.jinja",
            trim=True,
            comparison=comparison.model_dump(),
            coverage=comparison.coverage(),
        )

    def paper_table(self) -> dict[str, Any]:
        from apo_planner.benchmarks.bfcl.results import PAPER_TABLE

        return PAPER_TABLE


def _generate(model: str, job: EvalJob) -> None:
    from bfcl_eval._llm_response_generation import main as generation_main

    generation_main(
        SimpleNamespace(
            model=[model],
            test_category=job.categories,
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
