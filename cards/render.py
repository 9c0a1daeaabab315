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

import jinja2
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

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


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )


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


def dataset_card(dataset_dir: Path, repo_id: str, history: list[dict[str, Any]] | None = None) -> DatasetCard:
    import datasets

    stats = json.loads((dataset_dir / "stats.json").read_text())
    ds = datasets.load_dataset(str(dataset_dir))
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
    text = (
        _env()
        .from_string((TEMPLATES / "dataset_card.md.jinja").read_text())
        .render(
            card_data=card_data.to_yaml(),
            pretty_name=card_data.pretty_name,
            stats=stats,
            version=stats["dataset_version"],
            repo_id=repo_id,
            license=license_id,
            example=json.dumps(example, indent=2, ensure_ascii=False)[:4000],
            history=history,
        )
    )
    return DatasetCard(text)


def _eval_results(comparison: dict[str, Any], model_name: str) -> list[EvalResult]:
    results = []
    for row in comparison["categories"]:
        planner = row["planner"]
        if planner["accuracy"] is None:
            continue
        common = {
            "task_type": "text-generation",
            "task_name": "Function calling",
            "dataset_type": "gorilla-llm/Berkeley-Function-Calling-Leaderboard",
            "dataset_name": f"BFCL v4 {row['category']}",
            "dataset_config": row["category"],
            "dataset_split": "test",
            "source_name": "apo-planner eval (bfcl-eval checker)",
            "source_url": "https://github.com/ShishirPatil/gorilla/tree/main/berkeley-function-call-leaderboard",
        }
        results.append(
            EvalResult(
                metric_type="accuracy",
                metric_value=planner["accuracy"],
                metric_name=f"accuracy with {comparison['baseline_model']} as executor",
                **common,
            )
        )
        if planner["avg_calls"] is not None:
            results.append(
                EvalResult(
                    metric_type="avg_tool_calls",
                    metric_value=planner["avg_calls"],
                    metric_name="average tool calls per entry",
                    **common,
                )
            )
    return results


def model_card(
    train_dir: Path,
    comparison_path: Path,
    repo_id: str,
    *,
    adapter: bool,
    dataset_repo: str,
    model_repo: str,
    adapter_repo: str,
    license_id: str,
) -> ModelCard:
    metrics = json.loads((train_dir / "metrics.json").read_text())
    provenance = json.loads((train_dir / "training_provenance.json").read_text())
    comparison = json.loads(comparison_path.read_text())
    base_model = provenance["base_model"]["id"]  # what training recorded: a Hub id, or a local base's folder name
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
        eval_results=None if adapter else _eval_results(comparison, name) or None,
    )
    text = (
        _env()
        .from_string((TEMPLATES / "model_card.md.jinja").read_text())
        .render(
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
            comparison=comparison,
            config=provenance["train_config"],
        )
    )
    return ModelCard(text)
