"""`apo-planner eval`: the executor alone in both of its modes (FC and prompt) and with the planner, on
the recipe's benchmark (`eval.benchmark`, BFCL by default) through the benchmark's own generation and
official checker, then the comparison reports. (The folder for a leaderboard PR is
`apo-planner submission`, from these results.)

The stage starts the executor's OpenAI-compatible server (`eval.executor.server`: vLLM on GPUs,
`transformers serve` for tiny CPU models, or an external one it only checks), and the planner's server
too when the planner runs behind one; both stop when the stage ends. The benchmark's handlers, prompts,
decoding and checker are the same either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apo_planner.artifacts import EvalDir
from apo_planner.benchmarks import BENCHMARKS, Benchmark, EvalJob, Executor
from apo_planner.evaluation.config import GATE_KEYS, EvalConfig, EvalError, ExecutorConfig
from apo_planner.evaluation.planner_arm import PlannerRuntime
from apo_planner.serving import ServerConfig, serve
from apo_planner.tiny import ensure_tiny_model


@dataclass
class EvalResult:
    output: Path
    comparison: dict[str, Any]


def benchmark(config: EvalConfig) -> Benchmark:
    return BENCHMARKS.get(config.benchmark)


def executor_model(config: EvalConfig) -> tuple[str | None, str]:
    """(local model dir or None, the model id the server answers to): the benchmark's local handlers send
    the local path when there is one, else the Hub id of their executor entry."""
    executor = config.executor
    if executor.model_path:
        model = str(Path(executor.model_path).resolve())
        return model, model
    if executor.server.engine == "transformers":
        raise EvalError("eval.executor.server.engine=transformers needs eval.executor.model_path (a local model dir)")
    return None, benchmark(config).served_model(executor.handler)


def prepare_executor(config: ExecutorConfig) -> None:
    """What must exist before the executor is served: the tiny model of a smoke recipe."""
    if config.model_path and config.tiny_model:
        ensure_tiny_model(str(Path(config.model_path).resolve()))


def served_roles(config: EvalConfig) -> dict[str, tuple[ServerConfig, str]]:
    """role -> (its server settings, the model id it serves) for the servers this stage uses."""
    _, executor = executor_model(config)
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


def outputs(config: EvalConfig) -> list[Path]:
    """What a finished evaluation leaves for the cards: the comparison (its .md and .png beside it)."""
    return [EvalDir(Path(config.output)).comparison_file]


def evaluate(config: EvalConfig, runtime: Any = None) -> EvalResult:
    """Generate every arm (resuming what is already there), score, compare, write the reports."""
    from apo_planner.evaluation.compare import write_reports

    bench = benchmark(config)
    folder = EvalDir(Path(config.output).resolve())
    output = folder.root
    root = folder.benchmark_root(bench.name)  # this evaluation's tree in the benchmark's own layout
    bench.use_root(root)
    categories = bench.resolve(config.categories)
    runtime = runtime or PlannerRuntime(config.planner, config.injection)
    model_path, _ = executor_model(config)
    e = config.executor
    executor = Executor(
        entry=e.handler,
        prompt_entry=e.prompt_handler,
        model_path=model_path,
        max_tokens=e.max_tokens,
        temperature=e.temperature,
        num_threads=e.num_threads,
    )
    job = EvalJob(root, categories, executor, config.planner_mode, runtime, config.limit)
    bench.prepare(job)  # unknown executor entries fail here, before any server starts
    reset_stale_results(root, run_identity(config))
    prepare_executor(config.executor)
    with contextlib.ExitStack() as servers:  # stopped on success, failure and Ctrl-C alike
        urls = {role: servers.enter_context(serve(s, m, output, role)) for role, (s, m) in served_roles(config).items()}
        job.executor = dataclasses.replace(executor, base_url=urls["executor"])
        runtime.base_url = urls.get("planner", runtime.base_url)
        runtime.planner  # noqa: B018 - load it now: a planner that cannot load fails the run, not each entry
        comparison = {"benchmark": bench.name, **bench.run(job), "limit": config.limit}
    write_reports(comparison, output)
    return EvalResult(output, comparison)
