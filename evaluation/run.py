"""`apo-planner eval`: the executor alone in both of its modes (FC and prompt), with the planner, and the
diagnostic arms the recipe turns on (`eval.diagnostics`: placebo plan, oracle plan, plan only), on the
recipe's benchmark (`eval.benchmark`, BFCL by default) through the benchmark's own generation and official
checker, `eval.repeats` times; then the statistics (`apo_planner.evaluation.statistics`), the comparison
reports and changes.md. (The folder for a leaderboard PR is `apo-planner submission`, from these results.)

The stage starts the executor's OpenAI-compatible server and the planner's (`eval.*.server`: vLLM on GPUs,
apo-planner's own `transformers` server for small CPU models, or an external one it only checks); both stop
when the stage ends. The planner arm asks its server through the leaderboard handler's own client, which is
probed with one real plan request before the first entry. The benchmark's handlers, prompts, decoding and
checker are the same on every engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from apo_planner.artifacts import Comparison, EvalDir, write_text
from apo_planner.benchmarks import BENCHMARKS, Benchmark, EvalJob, Executor, PlanSource
from apo_planner.evaluation.config import GATE_KEYS, REPORT_KEYS, EvalConfig, EvalError, ExecutorConfig
from apo_planner.evaluation.planner_arm import OraclePlans, PlaceboPlans, PlannerRuntime, planner_settings
from apo_planner.locks import output_lock
from apo_planner.pinning import LOCAL, SHA, UNVERIFIED, is_local, pin_served, snapshot_path
from apo_planner.serving import ServerConfig, serve, served_engine
from apo_planner.tiny import ensure_tiny_model

ARM_ORDER = ("fc", "prompt", "placebo", "planner", "oracle", "plan_only")


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
    if executor.server.engine in ("transformers", "transformers-serve"):
        raise EvalError(
            f"eval.executor.server.engine={executor.server.engine} needs eval.executor.model_path (a local model dir)"
        )
    return None, benchmark(config).served_model(executor.handler)


def prepare_executor(config: ExecutorConfig) -> None:
    """What must exist before the executor is served: the tiny model of a smoke recipe."""
    if config.model_path and config.tiny_model:
        ensure_tiny_model(str(Path(config.model_path).resolve()))


def served_roles(config: EvalConfig) -> dict[str, tuple[ServerConfig, str, str]]:
    """role -> (its server settings, the model id it serves, the recipe's revision of it) for the servers this
    stage uses (`pin_role` turns the revision into the commit the server is started at)."""
    _, executor = executor_model(config)
    planner = config.planner
    return {
        "executor": (config.executor.server, executor, config.executor.revision),
        "planner": (planner.server, planner.model, planner.revision),
    }


def pin_role(role: str, server: ServerConfig, model: str, revision: str) -> str | None:
    """The commit a role's server is started at: None for a local folder or a server someone else runs."""
    started = server.engine != "external"  # an external server's model is only the name it answers to
    if started and not is_local(model) and model.count("/") != 1:
        raise EvalError(
            f"eval.{role}.model {model!r} is neither a local folder nor a Hub id (owner/name): "
            + ("`apo-planner train` and `apo-planner merge` write it" if role == "planner" else "check the path")
        )
    pinned = pin_served(model, revision, started, f"eval.{role}.revision")
    return pinned if SHA.match(pinned) else None


def run_identity(config: EvalConfig) -> str:
    """What the result files were generated with: the models of both arms (the planner's files by
    name, size and time, since a re-merged planner keeps its path), how they were asked (the injection
    template by its content: one edited in place is another run), and on how many entries (bfcl-eval scores
    every line a result file holds, so a smaller `limit` must not inherit a larger run's lines)."""
    planner = Path(config.planner.model)
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in planner.glob("*") if p.is_file())
    settings = config.model_dump(mode="json", exclude={"output", "categories", "seed", *GATE_KEYS, *REPORT_KEYS})
    template = Path(config.injection.template) if config.injection.template else None
    injected = template.read_text(encoding="utf-8") if template and template.is_file() else None
    return hashlib.sha256(json.dumps([settings, files, injected], sort_keys=True).encode()).hexdigest()


def reset_stale_results(root: Path, identity: str) -> None:
    """bfcl-eval resumes by skipping entries already in its result files; results made with other
    models or settings (a planner that was not there yet) must not be resumed as this run's."""
    marker = root / "identity.txt"
    if marker.is_file() and marker.read_text().strip() != identity:
        for tree in ("result", "score"):
            shutil.rmtree(root / tree, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    write_text(marker, identity + "\n")


def outputs(config: EvalConfig) -> list[Path]:
    """What a finished evaluation leaves for the cards: the comparison (its .md and .png beside it)."""
    return [EvalDir(Path(config.output)).comparison_file]


def executor_info(config: EvalConfig, arms: list[dict[str, Any]], pinned: str | None) -> dict[str, Any]:
    """What the executor was: the model its server served (a local folder named as such, a Hub id with the
    commit it was served at), the benchmark's entries and handler classes it was asked through, and the
    sampling it ran with, as requested and as the engine runs it (vLLM raises bfcl's temperature 0.001 to 0.01)."""
    e = config.executor
    model_path, served = executor_model(config)
    by_mode = {a["name"]: a for a in arms if a["name"] in ("fc", "prompt")}
    sampling = e.sampling(e.max_tokens or 4096)  # bfcl-eval asks for what is left of the context, up to 4096
    engine = served_engine(e.server.engine, e.dialect)
    return {
        "model": e.model_path if model_path else served,
        "revision": LOCAL if model_path else (pinned or e.revision + UNVERIFIED),
        "api": e.dialect,
        "sampling": {"requested": asdict(sampling), "effective": sampling.effective(engine)},
        "local": model_path is not None,
        "tiny": bool(model_path and e.tiny_model),
        "engine": e.server.engine,
        "entries": {mode: a["entry"] for mode, a in by_mode.items() if a.get("entry")},
        "handlers": {mode: a["handler"] for mode, a in by_mode.items() if a.get("handler")},
        "max_tokens": e.max_tokens,
    }


def evaluate(config: EvalConfig) -> EvalResult:
    """Generate every arm (resuming what is already there) in every repeat, score, compare, write the reports;
    one evaluation per output folder at a time."""
    with output_lock(Path(config.output), "eval"):
        return _evaluate(config)


def _evaluate(config: EvalConfig) -> EvalResult:
    from apo_planner.evaluation.changes import build_changes, counts, write_changes
    from apo_planner.evaluation.compare import write_reports
    from apo_planner.evaluation.statistics import compute

    bench = benchmark(config)
    folder = EvalDir(Path(config.output).resolve())
    output = folder.root
    bench.use_root(folder.benchmark_root(bench.name))  # the root bfcl-eval keeps for the process
    categories = bench.resolve(config.categories)
    settings = planner_settings(config)
    runtime = PlannerRuntime(settings, api_key=os.environ.get(config.planner.api_key_env) or "EMPTY")
    model_path, served = executor_model(config)
    roles = {role: (s, m, pin_role(role, s, m, r)) for role, (s, m, r) in served_roles(config).items()}
    pinned = roles["executor"][2]  # every revision pinned before any server starts
    e = config.executor
    executor = Executor(
        entry=e.handler,
        prompt_entry=e.prompt_handler,
        model_path=model_path,
        max_tokens=e.max_tokens,
        temperature=e.temperature,
        num_threads=e.num_threads,
        sampling=e.sampling,
        api=e.dialect,
    )
    injected: dict[str, PlanSource] = {}
    if config.diagnostics.placebo:
        injected["placebo"] = PlaceboPlans(runtime)
    if config.diagnostics.oracle:
        injected["oracle"] = OraclePlans(bench.oracle_plan, settings)
    jobs = [
        EvalJob(
            folder.run_root(bench.name, run),  # this run's tree in the benchmark's own layout
            categories,
            executor,
            config.planner_mode,
            runtime,
            config.limit,
            injected=injected,
            plan_only=config.diagnostics.plan_only,
            seed=config.run_seed(run),
            run=run,
            plan_settings=settings,
        )
        for run in range(1, config.repeats + 1)
    ]
    bench.prepare(jobs[0])  # unknown executor entries fail here, before any server starts
    identity = run_identity(config)
    for job in jobs:
        reset_stale_results(job.root, f"{identity} seed={job.seed}")
    prepare_executor(config.executor)
    results = []
    with contextlib.ExitStack() as servers:  # stopped on success, failure and Ctrl-C alike
        urls = {role: servers.enter_context(serve(s, m, output, role, revision=r)) for role, (s, m, r) in roles.items()}
        tokenizer = model_path or (snapshot_path(served, pinned) if pinned else None)  # the served commit's
        runtime.base_url = urls["planner"]
        runtime.probe()  # one real plan request: a planner that refuses stops the run here, before any arm
        for job in jobs:
            job.executor = dataclasses.replace(
                executor, base_url=urls["executor"], tokenizer=str(tokenizer) if tokenizer else None
            )
            runtime.reset()  # each run plans again
            if job.run > 1:
                bench.prepare(job)  # this run's seed
            results.append(bench.run(job))
    entries = [r.pop("entries", {}) for r in results]
    order = {name: i for i, name in enumerate(ARM_ORDER)}  # the decomposition's order, whatever the benchmark's
    results[0]["arms"] = sorted(results[0].get("arms", []), key=lambda a: order.get(a["name"], len(order)))
    comparison = Comparison.model_validate(
        {
            "benchmark": bench.name,
            **results[0],
            "limit": config.limit,
            "executor": executor_info(config, results[0].get("arms", []), pinned),
            "runs": [{"run": j.run, "seed": j.seed, "entries": run} for j, run in zip(jobs, entries, strict=True)],
        }
    )
    baseline = config.planner_mode
    other = comparison.other_mode if comparison.other_mode_model else None
    s = config.statistics
    arm_order = [a for a in ARM_ORDER if any(arm.name == a for arm in comparison.arms)]
    statistics = compute(
        [run.entries for run in comparison.runs],
        arm_order,
        categories,
        baseline,
        other,
        bench,
        resamples=s.resamples,
        seed=s.seed,
    )
    changes = build_changes(comparison, bench, jobs[0].root)
    comparison = comparison.model_copy(update={"statistics": statistics, "changes": counts(changes)})
    write_changes(changes, output, bench.title, s.changes_listed)
    write_reports(comparison, output)
    return EvalResult(output, comparison.model_dump(mode="json"))
