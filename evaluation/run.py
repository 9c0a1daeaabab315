"""`apo-planner eval`: the executor alone in both bfcl-eval modes (FC and prompt) and with the planner,
through bfcl-eval's own generation and official checker, then the comparison reports. (The folder
for a leaderboard PR is `apo-planner submission`, from these results.)

bfcl-eval's local-model handlers talk to an OpenAI-compatible server on /v1/completions. The stage
starts it (`eval.executor.server`: vLLM on GPUs, `transformers serve` for tiny CPU models, or an
external one it only checks), and the planner's server too when the planner runs behind one; both
stop when the stage ends. The handlers, prompts, decoding and checker are the same either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from apo_planner.artifacts import EvalDir
from apo_planner.evaluation.bfcl_setup import resolve_categories, use_project_root
from apo_planner.evaluation.config import GATE_KEYS, EvalConfig, EvalError, ExecutorConfig
from apo_planner.evaluation.handler import Arms, PlannerRuntime, register
from apo_planner.locks import output_lock
from apo_planner.serving import ServerConfig, serve
from apo_planner.tiny import ensure_tiny_model


@dataclass
class EvalResult:
    output: Path
    comparison: dict[str, Any]
    arms: Arms


def executor_model(config: ExecutorConfig) -> tuple[str | None, str]:
    """(local model dir or None, the model id the server answers to): bfcl-eval's local handlers send
    the local path when there is one, else the Hub id of their model config."""
    if config.model_path:
        model = str(Path(config.model_path).resolve())
        return model, model
    if config.server.engine == "transformers":
        raise EvalError("eval.executor.server.engine=transformers needs eval.executor.model_path (a local model dir)")
    from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING

    return None, MODEL_CONFIG_MAPPING[config.handler].model_name


def prepare_executor(config: ExecutorConfig) -> None:
    """What must exist before the executor is served: the tiny model of a smoke recipe."""
    if config.model_path and config.tiny_model:
        ensure_tiny_model(str(Path(config.model_path).resolve()))


def served_roles(config: EvalConfig) -> dict[str, tuple[ServerConfig, str]]:
    """role -> (its server settings, the model id it serves) for the servers this stage uses."""
    _, executor = executor_model(config.executor)
    roles = {"executor": (config.executor.server, executor)}
    if config.planner.backend == "openai":
        roles["planner"] = (config.planner.server, config.planner.model)
    return roles


def run_identity(config: EvalConfig) -> str:
    """What the result files were generated with: the models of both arms (the planner's files by
    name, size and time, since a re-merged planner keeps its path) and how they were asked."""
    planner = Path(config.planner.model)
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in planner.glob("*") if p.is_file())
    settings = config.model_dump(mode="json", exclude={"output", "limit", "categories", *GATE_KEYS})
    return hashlib.sha256(json.dumps([settings, files], sort_keys=True).encode()).hexdigest()


def reset_stale_results(root: Path, identity: str) -> None:
    """bfcl-eval resumes by skipping entries already in its result files; results made with other
    models or settings (a planner that was not there yet) must not be resumed as this run's."""
    marker = root / "identity.txt"
    if marker.is_file() and marker.read_text().strip() != identity:
        for tree in ("result", "score"):
            shutil.rmtree(root / tree, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(identity + "\n")


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
    """Generate with both models (resuming what is already there), score, compare, export; one
    evaluation per output folder at a time."""
    with output_lock(Path(config.output), "eval"):
        return _evaluate(config, runtime)


def _evaluate(config: EvalConfig, runtime: Any) -> EvalResult:
    folder = EvalDir(Path(config.output).resolve())
    output = folder.root
    root = folder.bfcl_root  # this evaluation's result/ and score/ trees
    project_root = use_project_root(root)
    categories = resolve_categories(config.categories)
    from apo_planner.evaluation.compare import compare, write_reports

    runtime = runtime or PlannerRuntime(config.planner, config.injection)
    arms = register(
        config.executor.handler,
        runtime,
        config.executor.max_tokens,
        prompt_executor=config.executor.prompt_handler,
        planner_mode=config.planner_mode,
    )
    if config.limit is not None:
        _limit_ids(project_root, categories, config.limit)
    reset_stale_results(root, run_identity(config))
    prepare_executor(config.executor)
    with contextlib.ExitStack() as servers:  # stopped on success, failure and Ctrl-C alike
        model_path, _ = executor_model(config.executor)
        urls = {role: servers.enter_context(serve(s, m, output, role)) for role, (s, m) in served_roles(config).items()}
        executor_url = urls["executor"]
        runtime.base_url = urls.get("planner", runtime.base_url)
        runtime.planner  # noqa: B018 - load it now: a planner that cannot load fails the run, not each entry
        os.environ["REMOTE_OPENAI_BASE_URL"] = executor_url
        if model_path:
            os.environ["REMOTE_OPENAI_TOKENIZER_PATH"] = model_path
        for model in arms.models:  # both executor entries share the one server: same model, other prompts
            generate(model, categories, root, config, model_path)
    score(arms.models, categories, root, partial=config.limit is not None)
    comparison = compare(root, arms, categories)
    comparison["limit"] = config.limit
    write_reports(comparison, output)
    return EvalResult(output, comparison, arms)
