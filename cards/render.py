"""Cards for the three repos, rendered from the run's own artifacts.

Metadata goes through `huggingface_hub`'s card-data classes (so it is valid Hub YAML), the body
through Jinja with `StrictUndefined` (a missing value fails loudly), and the result is parsed
back with `DatasetCard` / `ModelCard` before it is written. Every number comes from
`stats.json`, `metrics.json` and `comparison.json`; nothing is typed in by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from apo_planner.artifacts import Comparison, DatasetDir, EvalDir, TrainDir
from apo_planner.benchmarks import BENCHMARKS, Benchmark
from apo_planner.cards.recipe import RECIPE_FILE
from apo_planner.templating import render_file

TEMPLATES = Path(__file__).parent / "templates"
_LICENSES = {
    "cc by 4.0": "cc-by-4.0",
    "cc-by-4.0": "cc-by-4.0",
    "apache-2.0": "apache-2.0",
    "apache 2.0": "apache-2.0",
    "mit": "mit",
    "cc by-sa 4.0": "cc-by-sa-4.0",
    "cc-by-sa-4.0": "cc-by-sa-4.0",
}


def hub_license(licenses: set[str]) -> str:
    """One Hub license id for the dataset: the source's, or 'other' when rows disagree."""
    ids = {_LICENSES.get(name.strip().lower(), "other") for name in licenses if name}
    return ids.pop() if len(ids) == 1 else "other"


def size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def version_history(previous: list[dict[str, Any]], stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Earlier releases plus this build (a rebuilt version replaces its own entry)."""
    entry = {"version": stats["dataset_version"], "pairs": stats["pairs"], "fingerprint": stats["fingerprint"]}
    return [h for h in previous if h["version"] != entry["version"]] + [entry]


def _fetch_recipe(repo_id: str, version: str, repo_type: str = "model") -> str:
    """Shell words that download a repo's shipped recipe at a version and print its local path."""
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    return f'"$(hf download {repo_id} {RECIPE_FILE}{kind} --revision v{version} --quiet)"'


def dataset_rebuild_command(repo_id: str, version: str) -> str:
    """One command that rebuilds the dataset from the recipe it ships, into a folder of its own."""
    output = f"{repo_id.split('/')[-1]}-v{version}"
    return f"apo-planner build --recipe {_fetch_recipe(repo_id, version, 'dataset')} --output {output}"


def model_rebuild_command(repo_id: str, version: str, dataset_repo: str, dataset_version: str, merge: bool) -> str:
    """One command that trains the adapter again (and merges it, for the merged model) from the recipe the
    repo ships, on the released dataset at the version it was trained on."""
    sets = (
        f"--set train.dataset={dataset_repo} --set train.dataset_revision=v{dataset_version} "
        f"--set train.output={repo_id.split('/')[-1]}-v{version}"
    )
    lines = [f"R={_fetch_recipe(repo_id, version)}", f'apo-planner train --recipe "$R" {sets}']
    if merge:
        lines.append(f'apo-planner merge --recipe "$R" {sets}')
    return " \\\n  && ".join(lines)


def dataset_card(
    dataset_dir: DatasetDir,
    repo_id: str,
    history: list[dict[str, Any]] | None = None,
    recipe: dict[str, Any] | None = None,
) -> DatasetCard:
    """The dataset repo's card: Hub metadata (license from the rows, size, splits, version) and a body
    whose every number is the build's `stats.json`, with one real row as the example, how to load any
    version, and (with the shipped `recipe`) the one command that rebuilds it."""
    from apo_planner.dataset import load_preference_dataset

    stats = dataset_dir.stats().model_dump()
    ds = load_preference_dataset(str(dataset_dir.root))
    licenses = {row["license"] for split in ds.values() for row in split["provenance"]}
    license_id = hub_license(licenses)
    splits = [s for s, n in stats["splits"].items() if n]
    source_datasets = [stats["source"]] if not stats["source"].startswith("local:") else []
    card_data = DatasetCardData(
        pretty_name=f"APO planner preference pairs ({repo_id.split('/')[-1]})",
        license=license_id,
        language=["en"],
        task_categories=["text-generation"],
        tags=["tool-calling", "function-calling", "planning", "preference", "dpo", "apo", "synthetic"],
        size_categories=[size_category(stats["pairs"])],
        source_datasets=source_datasets or None,
        configs=[{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in splits]}],
        version=stats["dataset_version"],
    )
    example_row = ds[splits[0]][0]
    example = {
        k: example_row[k]
        for k in ("id", "prompt", "chosen", "rejected", "num_calls_chosen", "num_calls_rejected", "removed_calls")
    }
    history = version_history(history or [], stats)
    source_path = (recipe or {}).get("build", {}).get("source")
    text = render_file(
        TEMPLATES / "dataset_card.md.jinja",
        trim=True,
        card_data=card_data.to_yaml(),
        pretty_name=card_data.pretty_name,
        stats=stats,
        version=stats["dataset_version"],
        repo_id=repo_id,
        license=license_id,
        example=json.dumps(example, indent=2, ensure_ascii=False)[:4000],
        history=history,
        recipe_file=RECIPE_FILE if recipe is not None else None,
        rebuild=dataset_rebuild_command(repo_id, stats["dataset_version"]),
        source_path=source_path,
        source_in_checkout=isinstance(source_path, str) and not Path(source_path).is_absolute(),
        local_source=stats["source"].startswith("local:"),
        review=dataset_dir.review(),
        decontaminated_against=_benchmark_titles(stats.get("decontamination", {}).get("benchmarks") or {}),
    )
    return DatasetCard(text)


def _benchmark_titles(counts: dict[str, int]) -> str:
    """'BFCL v4 (4,461)' for each benchmark a build was decontaminated against, by its registry title."""
    titles = [
        f"{BENCHMARKS.get(name).title if name in BENCHMARKS else name} ({n:,})" for name, n in sorted(counts.items())
    ]
    return ", ".join(titles) or "no benchmark"


def executor_name(comparison: Comparison) -> str:
    """The executor as it ran: the served model (a Hub id at its revision, or a local folder named as one) and the
    benchmark handler it was asked through; never the run's internal registry names (`-Max48`)."""
    e = comparison.executor
    if e is None:
        return comparison.baseline_model
    model = f"local model folder {e.model}" if e.local else f"{e.model}@{e.revision or 'main'}"
    handler = e.handlers.get(comparison.planner_mode)
    return f"{model} through {handler}" if handler else model


def _eval_results(comparison: Comparison, bench: Benchmark) -> list[EvalResult]:
    """model-index entries; each metric's name carries the executor and the plan coverage it was measured with."""
    results = []
    coverage = comparison.coverage()
    for row in comparison.categories:
        planner = row["planner"]
        if planner["accuracy"] is None:
            continue
        measured = f"{executor_name(comparison)} as executor, plan coverage {coverage[row['category']]}"
        common = {
            "task_type": "text-generation",
            "task_name": "Function calling",
            "dataset_type": bench.dataset_id,
            "dataset_name": f"{bench.title} {row['category']}",
            "dataset_config": row["category"],
            "dataset_split": "test",
            "source_name": f"apo-planner eval ({bench.checker})",
            "source_url": bench.url,
        }
        results.append(
            EvalResult(
                metric_type="accuracy",
                metric_value=planner["accuracy"],
                metric_name=f"accuracy ({measured})",
                **common,
            )
        )
        if planner["avg_calls"] is not None:
            results.append(
                EvalResult(
                    metric_type="avg_tool_calls",
                    metric_value=planner["avg_calls"],
                    metric_name=f"average tool calls per entry ({measured})",
                    **common,
                )
            )
    return results


def changes_file(benchmark: str) -> str:
    """What the model repos call the eval's changes.md (the entries the planner fixed and broke)."""
    return f"{benchmark}_changes.md"


_MULTI_TURN = {
    "each": "Trained on every user turn that led to tool calls, each with the conversation's earlier turns as "
    "context (`build.filters.multi_turn: each`).",
    "first": "Trained on the first user turn of each conversation only (`build.filters.multi_turn: first`); "
    "planning for later turns is untested.",
    "drop": "Trained on single-turn conversations only (`build.filters.multi_turn: drop`); multi-turn planning "
    "is untested.",
}


def limitations(recipe: Mapping[str, Any] | None, comparison: Comparison, benchmark_title: str) -> list[str]:
    """The card's limitations, derived from the recipe that ran and the comparison it produced."""
    out = []
    build = (recipe or {}).get("build", {})
    multi_turn = build.get("filters", {}).get("multi_turn")
    if multi_turn in _MULTI_TURN:
        out.append(_MULTI_TURN[multi_turn])
    if build.get("synthesizer") == "rule":
        out.append("The chosen plans were made by the rule synthesizer, not an LLM: they keep calls by fixed rules.")
    elif build.get("llm", {}).get("tiny_model"):
        out.append(
            "The chosen plans were selected by a tiny random model (a smoke run): they exercise the pipeline and "
            "carry no signal about which calls are redundant."
        )
    categories = [r["category"] for r in comparison.categories]
    out.append(f"Evaluated on {benchmark_title} {', '.join(f'`{c}`' for c in categories)} only.")
    if comparison.limit:
        out.append(
            f"The {benchmark_title} numbers come from a subset ({comparison.limit} entries per category), not the full "
            "leaderboard run."
        )
    executor = comparison.executor
    if executor is not None and executor.tiny:
        out.append(
            f"The executor was a tiny random model (`{executor.model}`): the {benchmark_title} numbers test the "
            "pipeline, not the method."
        )
    ran = {a.name for a in comparison.arms}
    missing = [name for name in ("placebo", "oracle") if name not in ran]
    if missing:
        out.append(
            f"No {' or '.join(missing)} arm ran (`eval.diagnostics`): the planner's effect is not separated from "
            + ("what a longer prompt does by itself" if "placebo" in missing else "the ceiling of plan injection")
            + "."
        )
    if len(comparison.runs) <= 1:
        out.append("One evaluation run (`eval.repeats: 1`): the serving stack's run-to-run noise is not measured.")
    return out


def model_card(
    train_dir: TrainDir,
    eval_dir: EvalDir,
    repo_id: str,
    *,
    adapter: bool,
    dataset_repo: str,
    model_repo: str,
    adapter_repo: str,
    license_id: str,
    version: str,
    recipe: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The adapter's or the merged model's card: base model and dataset from the training provenance,
    trainer settings as the run used them, metrics (the held-out plan metrics base -> merged with their
    intervals), (merged model only) BFCL model-index results, each with the plan coverage it was measured
    with, the evaluation with its intervals, limitations derived from `recipe` and the comparison, how to load
    it at `version` and how to rebuild it. A base model or executor is linked only when it is a Hub id."""
    metrics = train_dir.metrics().model_dump()
    generation = train_dir.metrics().plan_generation
    provenance = train_dir.provenance()
    comparison = eval_dir.comparison()
    bench = BENCHMARKS.get(comparison.benchmark)
    base_model = provenance["base_model"]["id"]  # what training recorded: a Hub id, or a local base's folder name
    base_on_hub = provenance["base_model"].get("revision") != "local"
    trained_on = provenance["dataset"].get("version")
    dataset_version = trained_on if trained_on and trained_on != "unknown" else version
    name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        model_name=name,
        base_model=base_model if base_on_hub else None,
        library_name="peft" if adapter else "transformers",
        license=license_id,
        datasets=[dataset_repo],
        language=["en"],
        pipeline_tag="text-generation",
        tags=["tool-calling", "function-calling", "planner", "apo", "dpo", "trl", *(["lora"] if adapter else [])],
        eval_results=None if adapter else _eval_results(comparison, bench) or None,
    )
    text = render_file(
        TEMPLATES / "model_card.md.jinja",
        trim=True,
        card_data=card_data.to_yaml(),
        title=f"{name}: an APO-trained tool-calling planner",
        adapter=adapter,
        base_model=base_model,
        repo_id=repo_id,
        model_repo=model_repo,
        adapter_repo=adapter_repo,
        dataset_repo=dataset_repo,
        metrics=metrics,
        provenance=provenance,
        comparison=comparison.model_dump(),
        coverage=comparison.coverage(),
        evaluation_section=bench.card_section(comparison, changes_file(bench.name)).strip(),
        base_on_hub=base_on_hub,
        generation=generation,
        limitations=limitations(recipe, comparison, bench.title),
        benchmark_title=bench.title,
        config=provenance["train_config"],
        trainer=provenance["trainer_args"],  # every DPOConfig value the run used, TRL's defaults included
        version=version,
        base_revision=provenance["base_model"].get("revision"),
        recipe_file=RECIPE_FILE,
        rebuild=model_rebuild_command(repo_id, version, dataset_repo, dataset_version, merge=not adapter),
    )
    return ModelCard(text)
