"""`apo-planner eval`: the executor alone and with the planner, through bfcl-eval's own generation
and official checker, then the comparison reports and a leaderboard-style export.

bfcl-eval's local-model handlers talk to an OpenAI-compatible server on /v1/completions: vLLM in
production (`make serve-executor`), or `transformers serve` started here for tiny CPU models. The
handlers, prompts, decoding and checker are the same either way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import requests

from apo_planner.artifacts import EvalDir
from apo_planner.serving import transformers_server
from apo_planner.templating import render_file
from evaluation.bfcl_setup import resolve_categories, use_project_root
from evaluation.config import EvalConfig, ExecutorConfig


@dataclass
class EvalResult:
    output: Path
    comparison: dict[str, Any]
    baseline: str
    planned: str


@contextlib.contextmanager
def executor_server(config: ExecutorConfig, log_dir: Path) -> Iterator[tuple[str, str | None]]:
    """(base_url, local model path or None) of a ready executor server, started here if needed."""
    if config.backend == "vllm":
        try:
            requests.get(config.base_url.rstrip("/") + "/models", timeout=10)
        except requests.RequestException:
            raise RuntimeError(
                f"no executor server answers at {config.base_url}. Start one with `make serve-executor` "
                "(vLLM in .venv-vllm; see README) or set eval.executor.base_url"
            ) from None
        yield config.base_url, config.model_path
        return
    from apo_planner.tiny import ensure_tiny_model

    if not config.model_path:
        raise ValueError("eval.executor.backend=transformers needs eval.executor.model_path (a local model dir)")
    model = str(Path(config.model_path).resolve())
    if config.tiny_model:
        ensure_tiny_model(model)
    with transformers_server(model, log_dir / "executor_server") as base_url:
        yield base_url, model


def _limit_ids(root: Path, categories: list[str], limit: int) -> None:
    """bfcl-eval's own subset mechanism: ids listed in PROJECT_ROOT/test_case_ids_to_generate.json."""
    from bfcl_eval.utils import load_dataset_entry

    ids = {c: [e["id"] for e in load_dataset_entry(c)[:limit]] for c in categories}
    (root / "test_case_ids_to_generate.json").write_text(json.dumps(ids, indent=2))


def generate(model: str, categories: list[str], root: Path, config: EvalConfig, local_model_path: str | None) -> None:
    from bfcl_eval._llm_response_generation import main as generation_main

    generation_main(
        SimpleNamespace(
            model=[model],
            test_category=categories,
            temperature=config.executor.temperature,
            include_input_log=False,
            exclude_state_log=False,
            num_gpus=1,
            num_threads=config.executor.num_threads,
            gpu_memory_utilization=0.9,
            backend="vllm",
            skip_server_setup=True,
            local_model_path=local_model_path,
            result_dir=str(root / "result"),
            allow_overwrite=False,
            run_ids=config.limit is not None,
            enable_lora=False,
            max_lora_rank=None,
            lora_modules=None,
        )
    )


def score(models: list[str], categories: list[str], root: Path, partial: bool) -> None:
    from bfcl_eval.eval_checker.eval_runner import main as eval_main

    eval_main(models, categories, str(root / "result"), str(root / "score"), partial_eval=partial)


def outputs(config: EvalConfig) -> list[Path]:
    """What a finished evaluation leaves for the cards: the comparison (its .md and .png beside it)."""
    return [EvalDir(Path(config.output)).comparison_file]


def evaluate(config: EvalConfig, runtime: Any = None) -> EvalResult:
    """Generate with both models (resuming what is already there), score, compare, export."""
    folder = EvalDir(Path(config.output).resolve())
    output = folder.root
    root = folder.bfcl_root  # this evaluation's result/ and score/ trees
    project_root = use_project_root(root)
    categories = resolve_categories(config.categories)
    from evaluation.compare import compare, write_reports
    from evaluation.handler import PlannerRuntime, register

    runtime = runtime or PlannerRuntime(config.planner, config.injection)
    baseline, planned = register(config.executor.handler, runtime, config.executor.max_tokens)
    if config.limit is not None:
        _limit_ids(project_root, categories, config.limit)
    with executor_server(config.executor, output) as (base_url, model_path):
        os.environ["REMOTE_OPENAI_BASE_URL"] = base_url
        if model_path:
            os.environ["REMOTE_OPENAI_TOKENIZER_PATH"] = model_path
        for model in (baseline, planned):
            generate(model, categories, root, config, model_path)
    score([baseline, planned], categories, root, partial=config.limit is not None)
    comparison = compare(root, baseline, planned, categories)
    comparison["limit"] = config.limit
    write_reports(comparison, output)
    export_submission(folder, baseline, planned)
    return EvalResult(output, comparison, baseline, planned)


def export_submission(output: EvalDir, baseline: str, planned: str) -> Path:
    """`bfcl_submission/`: the handler module, its ModelConfig entry and the steps of an upstream PR."""
    from evaluation import handler as handler_module

    folder = output.submission
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(handler_module.__file__, folder / "apo_planner_handler.py")
    template = Path(__file__).parent / "templates" / "submission.md.jinja"
    (folder / "README.md").write_text(render_file(template, baseline=baseline, planned=planned))
    return folder
