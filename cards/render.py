"""Cards for the three repos, rendered from the run's own artifacts.

Metadata goes through `huggingface_hub`'s card-data classes (so it is valid Hub YAML), the body
through Jinja with `StrictUndefined` (a missing value fails loudly), and the result is parsed
back with `DatasetCard` / `ModelCard` before it is written. Every number comes from
`stats.json`, `metrics.json` and `comparison.json`; nothing is typed in by hand.
"""

from __future__ import annotations

import json
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


def _eval_results(comparison: Comparison, bench: Benchmark) -> list[EvalResult]:
    """model-index entries; each metric's name carries the plan coverage it was measured with."""
    results = []
    coverage = comparison.coverage()
    for row in comparison.categories:
        planner = row["planner"]
        if planner["accuracy"] is None:
            continue
        measured = f"{comparison.baseline_model} as executor, plan coverage {coverage[row['category']]}"
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
) -> ModelCard:
    """The adapter's or the merged model's card: base model and dataset from the training provenance,
    trainer settings as the run used them, metrics, (merged model only) BFCL model-index results, each
    with the plan coverage it was measured with, how to load it at `version` and how to rebuild it."""
    metrics = train_dir.metrics().model_dump()
    provenance = train_dir.provenance()
    comparison = eval_dir.comparison()
    bench = BENCHMARKS.get(comparison.benchmark)
    base_model = provenance["base_model"]["id"]  # what training recorded: a Hub id, or a local base's folder name
    trained_on = provenance["dataset"].get("version")
    dataset_version = trained_on if trained_on and trained_on != "unknown" else version
    name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        model_name=name,
        base_model=base_model,
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
        evaluation_section=bench.card_section(comparison).strip(),
        benchmark_title=bench.title,
        config=provenance["train_config"],
        trainer=provenance["trainer_args"],  # every DPOConfig value the run used, TRL's defaults included
        version=version,
        base_revision=provenance["base_model"].get("revision"),
        recipe_file=RECIPE_FILE,
        rebuild=model_rebuild_command(repo_id, version, dataset_repo, dataset_version, merge=not adapter),
    )
    return ModelCard(text)
